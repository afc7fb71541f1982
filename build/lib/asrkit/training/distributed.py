"""Data-parallel training across processes, as launched by ``torchrun``.

``torchrun --nproc_per_node N -m asrkit train ...`` starts N copies of the
command with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment
(and ``MASTER_ADDR``/``MASTER_PORT`` for the rendezvous; multi-node runs use
torchrun's ``--nnodes``/``--rdzv-endpoint``). Each process trains on its share
of the batches (``BucketBatchSampler(num_replicas, rank)``), gradients are
averaged by DistributedDataParallel, and only rank 0 logs, evaluates and writes
checkpoints. Without those variables everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from asrkit.errors import TrainingError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistInfo:
    """The process's place in the job, from torchrun's environment variables (single process without them)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise TrainingError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them)") from None
    if world < 1 or not 0 <= rank < world:
        raise TrainingError(f"RANK={rank} and WORLD_SIZE={world} do not fit together")
    return DistInfo(rank, world, local)


def init(info: DistInfo, device: torch.device) -> None:
    """Join the process group: NCCL between GPUs, gloo on CPUs."""
    if not info.enabled or dist.is_initialized():
        return
    if "MASTER_ADDR" not in os.environ:
        raise TrainingError("WORLD_SIZE > 1 but no MASTER_ADDR: launch with torchrun (see README)")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def _reduce_flag(flag: bool, op, info: DistInfo, device: torch.device) -> bool:
    if not info.enabled:
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=op)
    return bool(value.item())


def all_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True only if ``flag`` is true on every process (all must then take the same branch)."""
    return _reduce_flag(flag, dist.ReduceOp.MIN, info, device)


def any_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True if ``flag`` is true on any process (e.g. one of them got SIGTERM: all stop together)."""
    return _reduce_flag(flag, dist.ReduceOp.MAX, info, device)


def sum_all(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    if not info.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def weights_agree(model: torch.nn.Module, info: DistInfo, device: torch.device) -> bool:
    """Whether every process holds the same weights (a position-weighted checksum, gathered)."""
    if not info.enabled:
        return True
    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    position = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device)
    mine = torch.stack([flat.sum(), (flat * position).sum()]).to(device)
    gathered = [torch.zeros_like(mine) for _ in range(info.world_size)]
    dist.all_gather(gathered, mine)
    return all(torch.equal(g, gathered[0]) for g in gathered)


__all__ = ["DistInfo", "all_true", "any_true", "barrier", "from_env", "init", "shutdown", "sum_all", "weights_agree"]
