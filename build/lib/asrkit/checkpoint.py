"""Self-describing checkpoints: weights, configs, tokens, CMVN and training state.

Written atomically (temporary file, then rename) so that a crash never leaves
half a checkpoint. Loaded with ``weights_only=True``: a checkpoint is plain
tensors and Python containers, never pickled code.

Every checkpoint carries ``version`` (``VERSION`` when written now; none means
1). ``load_checkpoint`` upgrades an older one in memory, step by step, so that
everything written since version 1 loads and decodes as it did:

- 1: weights, optimizer, config, tokens, CMVN, ``train_state``
  (step, epoch, batches_done, best_dev_wer, best_dev_loss, skipped_batches).
  One step was one batch; there was no gradient accumulation.
- 2: a step is one optimizer step (``train.accum_grad`` batches);
  ``train_state`` adds the learning-rate restart of an extended run
  (``lr_from_step``, ``lr_from``); optional ``scaler_state`` (fp16 loss
  scaling) and ``epoch_metrics`` (the finished epoch's ``metrics.jsonl`` row).
- 3: level invariance and waveform augmentation: the config has
  ``feature.level_norm``, ``feature.utterance_cmn`` and ``train.augment``; an
  older config gets the values that mean what it did (no level normalisation,
  no utterance CMN, no augmentation: ``config.LEGACY_VALUES``).
- 4: the config has a ``tokenizer`` section; a sentencepiece model's bytes
  are kept as ``sentencepiece`` beside ``tokens``. An older checkpoint is a
  character model (the section's defaults), read as before.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from asrkit.config import with_legacy_values
from asrkit.errors import CheckpointError

FORMAT = "asrkit-checkpoint-v1"  # the marker of every asrkit checkpoint (not its version)
VERSION = 4


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({**payload, "format": FORMAT, "version": VERSION}, tmp)
    os.replace(tmp, path)


def _upgrade(blob: dict[str, Any], path: Path) -> dict[str, Any]:
    """Bring an older checkpoint to ``VERSION`` (in memory; the file is left alone)."""
    version = blob.get("version", 1)
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path} has checkpoint version {version}; this asrkit reads up to {VERSION} "
                              "(upgrade asrkit)")
    if version == 1:
        if "train_state" in blob:
            blob["train_state"] = {**blob["train_state"], "lr_from_step": -1, "lr_from": 0.0}
        version = 2
    if version == 2:
        if isinstance(blob.get("config"), dict):
            blob["config"] = with_legacy_values(blob["config"])
        version = 3
    if version == 3:  # characters, which the tokenizer section's defaults mean
        version = 4
    blob["version"] = version
    return blob


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
    return _upgrade(blob, path)


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
    for key in ("optimizer_state", "scaler_state", "epoch_metrics"):  # an average is for decoding, not resuming
        averaged.pop(key, None)
    averaged["averaged_from"] = [str(p) for p in paths]
    return averaged


def select_epochs(exp_dir: Path, num: int, by: str = "dev_loss") -> list[Path]:
    """The ``num`` epoch checkpoints of ``exp_dir`` with the lowest dev loss (``dev_loss``), the lowest
    dev WER of the greedy search run after each epoch (``dev_wer``; ties go to the lower dev loss, as
    ESPnet picks by a validation accuracy), or the last ``num`` (``last``)."""
    import json

    metrics = exp_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise CheckpointError(f"{exp_dir} has no metrics.jsonl; is it an experiment dir?")
    rows = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if (exp_dir / f"epoch_{r['epoch']}.pt").is_file()]
    if by in ("dev_loss", "dev_wer"):
        if any(r[by] != r[by] for r in rows):  # NaN: trained without --dev
            raise CheckpointError(f"{exp_dir} was trained without a dev set; use --by last")
        rows.sort(key=lambda r: (r["dev_wer"], r["dev_loss"]) if by == "dev_wer" else r["dev_loss"])
    elif by == "last":
        rows.sort(key=lambda r: -r["epoch"])
    else:
        raise CheckpointError(f"--by must be dev_loss, dev_wer or last, not {by!r}")
    if len(rows) < num:
        raise CheckpointError(f"{exp_dir} has {len(rows)} epoch checkpoints, fewer than the {num} asked for")
    return [exp_dir / f"epoch_{r['epoch']}.pt" for r in sorted(rows[:num], key=lambda r: r["epoch"])]


def transfer_weights(model: torch.nn.Module, source: dict[str, torch.Tensor], source_vocab: int,
                     where: str) -> None:
    """Load ``source`` weights into ``model`` for fine-tuning (``asrkit train --init``).

    The model may have more tokens than the source (its token table extends the
    source's, old ids first): rows of vocabulary-sized tensors are copied for the
    old tokens and the new rows keep their fresh initialisation. Any other
    difference in shape is an error naming the tensor.
    """
    target = model.state_dict()
    missing = sorted(set(target) - set(source))
    if missing:
        raise CheckpointError(f"--init {where}: holds another model ({missing[0]} is missing); "
                              "the model config must match the one it was trained with")
    for key, value in source.items():
        if key not in target:
            raise CheckpointError(f"--init {where}: holds another model (unexpected {key}); "
                                  "the model config must match the one it was trained with")
        mine = target[key]
        if mine.shape == value.shape:
            mine.copy_(value)
        elif (value.dim() >= 1 and value.shape[0] == source_vocab and mine.shape[0] > source_vocab
              and mine.shape[1:] == value.shape[1:]):
            mine[:source_vocab].copy_(value)
        else:
            raise CheckpointError(f"--init {where}: {key} has shape {tuple(value.shape)}, this model "
                                  f"{tuple(mine.shape)}; the model config must match the one it was trained with")
