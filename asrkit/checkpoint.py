"""Self-describing checkpoints: weights, configs, tokens, CMVN and training state.

Written atomically (temporary file, then rename) so that a crash never leaves
half a checkpoint. Loaded with ``weights_only=True``: a checkpoint is plain
tensors and Python containers, never pickled code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from asrkit.errors import CheckpointError

FORMAT = "asrkit-checkpoint-v1"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({"format": FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def resolve_checkpoint(path: str | Path) -> Path:
    """An experiment dir means its ``best.pt`` (else ``last.pt``); a file means itself."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} holds no checkpoint (best.pt or last.pt); train a model there first")
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = resolve_checkpoint(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for non-checkpoints
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not an asrkit checkpoint ({first[:160]})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an asrkit checkpoint (no '{FORMAT}' marker)")
    return blob


def average_checkpoints(paths: list[Path]) -> dict[str, Any]:
    """Element-wise mean of the float weights of ``paths``; everything else from the newest.

    Averaging the last few epochs smooths out the noise of the final steps; it
    is the standard last step of ESPnet and icefall recipes.
    """
    if not paths:
        raise CheckpointError("no checkpoints to average")
    blobs = [load_checkpoint(p) for p in paths]
    keys = blobs[0]["model_state"].keys()
    for path, blob in zip(paths[1:], blobs[1:]):
        if blob["model_state"].keys() != keys or blob["config"]["model"] != blobs[0]["config"]["model"]:
            raise CheckpointError(f"{path} holds a different model than {paths[0]}; cannot average them")
    newest = max(blobs, key=lambda b: b["train_state"]["step"])
    averaged = dict(newest)
    averaged["model_state"] = {}
    for key, tensor in newest["model_state"].items():
        if tensor.is_floating_point():
            total = sum(b["model_state"][key].double() for b in blobs)
            averaged["model_state"][key] = (total / len(blobs)).to(tensor.dtype)
        else:
            averaged["model_state"][key] = tensor
    averaged.pop("optimizer_state", None)  # an average is for decoding, not for resuming
    averaged["averaged_from"] = [str(p) for p in paths]
    return averaged


def select_epochs(exp_dir: Path, num: int, by: str = "dev_loss") -> list[Path]:
    """The ``num`` epoch checkpoints of ``exp_dir`` with the lowest dev loss, or the last ``num``."""
    import json

    metrics = exp_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise CheckpointError(f"{exp_dir} has no metrics.jsonl; is it an experiment dir?")
    rows = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if (exp_dir / f"epoch_{r['epoch']}.pt").is_file()]
    if by == "dev_loss":
        if any(r["dev_loss"] != r["dev_loss"] for r in rows):  # NaN: trained without --dev
            raise CheckpointError(f"{exp_dir} was trained without a dev set; use --by last")
        rows.sort(key=lambda r: r["dev_loss"])
    elif by == "last":
        rows.sort(key=lambda r: -r["epoch"])
    else:
        raise CheckpointError(f"--by must be dev_loss or last, not {by!r}")
    if len(rows) < num:
        raise CheckpointError(f"{exp_dir} has {len(rows)} epoch checkpoints, fewer than the {num} asked for")
    return [exp_dir / f"epoch_{r['epoch']}.pt" for r in sorted(rows[:num], key=lambda r: r["epoch"])]
