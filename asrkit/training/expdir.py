"""An experiment dir's records: its config on resume, ``metrics.jsonl`` and ``steps.jsonl`` (the run's state is
``asrkit.checkpoint.TrainState``, inside its checkpoints).

``metrics.jsonl`` has exactly one row per finished epoch (written after the
epoch's checkpoints; the row also travels inside them, so a run killed between
the two gets its row back on resume). ``steps.jsonl`` has one row per
optimizer step (loss, learning rate, gradient norm before clipping). A resumed
run first cuts both back to what its checkpoint has seen, so no row is ever
written twice.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from asrkit.checkpoint import TrainState
from asrkit.config import RESUMABLE_KEYS, ExperimentConfig, load_config
from asrkit.errors import TrainingError

METRICS_FILE = "metrics.jsonl"
STEPS_FILE = "steps.jsonl"


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(old: ExperimentConfig, new: ExperimentConfig) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    a, b = _flatten(old.to_dict()), _flatten(new.to_dict())
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def resolve_config(config: str | Path | None, overrides: list[str], out_dir: str | Path,
                   resume: bool) -> ExperimentConfig:
    """A run's config: ``--config`` plus ``--set`` overrides; on ``--resume`` without ``--config``,
    the config the run was started with (``OUT/config.yaml``) plus the overrides."""
    stored = Path(out_dir) / "config.yaml"
    if resume and config is None and stored.is_file():
        return load_config(stored, overrides, saved=True)
    return load_config(config, overrides)


def check_resumable(saved: ExperimentConfig, given: ExperimentConfig, source: str) -> list[str]:
    """The keys that changed since ``saved`` (all of them resumable), or a ``TrainingError``."""
    changed = config_changes(saved, given)
    refused = [k for k in changed if k not in RESUMABLE_KEYS]
    if refused:
        raise TrainingError(f"--resume: the config differs from the one {source} was trained with in "
                            f"{', '.join(refused)}; a resume may change only {', '.join(RESUMABLE_KEYS)} "
                            "(start a new --out, or fine-tune with --init)")
    return changed


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    return rows


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)


class RunLog:
    """``metrics.jsonl`` (one row per finished epoch) and ``steps.jsonl`` (one row per step)."""

    def __init__(self, out_dir: Path) -> None:
        self.metrics_path = out_dir / METRICS_FILE
        self.steps_path = out_dir / STEPS_FILE
        self._epochs: set[int] = set()
        self._steps = None

    def reconcile(self, state: TrainState, epoch_row: dict[str, Any] | None) -> None:
        """Cut both files back to what ``state`` has seen (a resumed run redoes the rest) and put back
        the last finished epoch's row when a kill came between its checkpoint and its row."""
        rows = {r["epoch"]: r for r in _read_rows(self.metrics_path) if r.get("epoch", math.inf) <= state.epoch}
        if epoch_row is not None and epoch_row["epoch"] == state.epoch and state.epoch not in rows:
            rows[state.epoch] = epoch_row
        if rows or self.metrics_path.exists():
            _write_rows(self.metrics_path, [rows[e] for e in sorted(rows)])
        self._epochs = set(rows)
        if self.steps_path.exists():
            _write_rows(self.steps_path, [r for r in _read_rows(self.steps_path) if r.get("step", 0) <= state.step])

    def epoch(self, row: dict[str, Any]) -> None:
        """Append a finished epoch's row (never twice)."""
        if row["epoch"] in self._epochs:
            return
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        self._epochs.add(row["epoch"])

    def step(self, row: dict[str, Any]) -> None:
        if self._steps is None:
            self._steps = open(self.steps_path, "a", encoding="utf-8", buffering=1)  # a line at a time
        self._steps.write(json.dumps(row) + "\n")

    def close(self) -> None:
        if self._steps is not None:
            self._steps.close()
            self._steps = None


__all__ = ["RunLog", "check_resumable", "config_changes", "resolve_config"]
