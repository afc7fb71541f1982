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
