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
- 5: the data the run trained on (``train_data``, ``dev_data``: path,
  utterance count, fingerprint) and its ``world_size``; unknown (None) in
  older checkpoints.

``Checkpoint`` is what a checkpoint holds, as one typed record: every reader
takes its fields, none looks up string keys.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from asrkit.config import with_legacy_values
from asrkit.errors import CheckpointError

FORMAT = "asrkit-checkpoint-v1"  # the marker of every asrkit checkpoint (not its version)
VERSION = 5


@dataclass
class TrainState:
    """Runtime state that a resumed run continues from (kept out of the config)."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # epochs completed
    batches_done: int = 0  # batches of the current epoch already consumed (mid-epoch resume)
    best_dev_wer: float = math.inf
    best_dev_loss: float = math.inf
    skipped_batches: int = 0
    # An extended run (more epochs on resume) decays from ``lr_from`` at step ``lr_from_step``
    # to the floor at the new end; -1: the plain schedule.
    lr_from_step: int = -1
    lr_from: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainState":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DataRecord:
    """A data dir a run trained (or validated) on, as it was: where, how many utterances, and a
    fingerprint of its contents (``asrkit.data.datadir.DataDir.fingerprint``)."""

    path: str
    utterances: int
    fingerprint: str

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "DataRecord | None":
        return None if data is None else cls(str(data["path"]), int(data["utterances"]), str(data["fingerprint"]))


@dataclass
class Checkpoint:
    """Everything a checkpoint file holds: the one definition, read by training, resume, ``--init``,
    averaging and the recognizer (``load_checkpoint``), written by ``save_checkpoint``.

    A training checkpoint has every field; an averaged one (``average_checkpoints``) has no
    optimizer or scaler state and names its sources in ``averaged_from``. ``train_data``,
    ``dev_data`` and ``world_size`` are None in checkpoints from before version 5 (unknown)."""

    model_state: dict[str, torch.Tensor]
    config: dict[str, Any]  # the ExperimentConfig as a dict (config_from_dict rebuilds it)
    tokens: list[str]  # the token table
    cmvn: dict[str, Any]  # GlobalCMVN.to_dict()
    feat_dim: int
    vocab_size: int
    train_state: TrainState = field(default_factory=TrainState)
    sentencepiece: bytes | None = None  # the sentencepiece model's bytes (sentencepiece units)
    optimizer_state: dict[str, Any] | None = None
    scaler_state: dict[str, Any] | None = None  # fp16 loss scaling
    epoch_metrics: dict[str, Any] | None = None  # the last finished epoch's metrics.jsonl row
    features_external: bool = False  # trained on a feats.scp asrkit did not write
    train_data: DataRecord | None = None
    dev_data: DataRecord | None = None
    world_size: int | None = None  # processes that trained it (torchrun's nproc)
    averaged_from: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain tensors and containers (what ``torch.load(weights_only=True)`` reads back)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["train_state"] = self.train_state.to_dict()
        for name in ("train_data", "dev_data"):
            data[name] = None if data[name] is None else dataclasses.asdict(data[name])
        return data

    @classmethod
    def from_dict(cls, blob: dict[str, Any], where: str = "checkpoint") -> "Checkpoint":
        """The record of an upgraded checkpoint dict (``CheckpointError`` naming a missing entry)."""
        missing = [name for name in ("model_state", "config", "tokens", "cmvn", "feat_dim", "vocab_size")
                   if name not in blob]
        if missing:
            raise CheckpointError(f"{where}: incomplete checkpoint (no {', '.join(missing)})")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in blob.items() if k in known}
        values["train_state"] = TrainState.from_dict(blob.get("train_state") or {})
        values["train_data"] = DataRecord.from_dict(blob.get("train_data"))
        values["dev_data"] = DataRecord.from_dict(blob.get("dev_data"))
        values["tokens"] = list(blob["tokens"])
        values["feat_dim"], values["vocab_size"] = int(blob["feat_dim"]), int(blob["vocab_size"])
        return cls(**values)




def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({**checkpoint.to_dict(), "format": FORMAT, "version": VERSION}, tmp)
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
    if version == 4:  # the data and world size it trained with are unknown
        version = 5
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


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = resolve_checkpoint(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for non-checkpoints
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not an asrkit checkpoint ({first[:160]})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an asrkit checkpoint (no '{FORMAT}' marker)")
    return Checkpoint.from_dict(_upgrade(blob, path), str(path))


def average_checkpoints(paths: list[Path]) -> Checkpoint:
    """Element-wise mean of the float weights of ``paths``; everything else from the newest.

    Averaging the last few epochs smooths out the noise of the final steps; it
    is the standard last step of ESPnet and icefall recipes.
    """
    if not paths:
        raise CheckpointError("no checkpoints to average")
    records = [load_checkpoint(p) for p in paths]
    keys = records[0].model_state.keys()
    for path, record in zip(paths[1:], records[1:]):
        if record.model_state.keys() != keys or record.config["model"] != records[0].config["model"]:
            raise CheckpointError(f"{path} holds a different model than {paths[0]}; cannot average them")
    newest = max(records, key=lambda r: r.train_state.step)
    weights = {}
    for key, tensor in newest.model_state.items():
        if tensor.is_floating_point():
            weights[key] = (sum(r.model_state[key].double() for r in records) / len(records)).to(tensor.dtype)
        else:
            weights[key] = tensor
    # an average is for decoding, not resuming: no optimizer, scaler or epoch row
    return dataclasses.replace(newest, model_state=weights, optimizer_state=None, scaler_state=None,
                               epoch_metrics=None, averaged_from=[str(p) for p in paths])


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
