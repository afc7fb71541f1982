"""Feature storage, the Kaldi way: ``feats.scp`` + ``feats.N.ark`` shards + ``utt2num_frames``.

A data dir holds its features at its root, as Kaldi's do: ``feats.scp`` maps
each utterance to a matrix in one of the ``feats.N.ark`` files (float32, no
compression), written and read with ``kaldiio`` (what ESPnet uses), so Kaldi
and ESPnet tools read them as they are. ``utt2num_frames`` gives the lengths
without opening an ark.

Beside them ``feats.json`` is asrkit's record: the feature config, and per
utterance what produced its matrix (the ``wav.scp`` entry and the segment
times). An utterance whose record no longer matches the data dir is computed
again; a data dir holds one feature config, and another one is refused. A
``feats.scp`` without that record is *foreign* (e.g. Kaldi's
``compute-fbank-feats``): it is used as given and never rewritten.

``compute_missing`` writes the features of the utterances that need them with
``nj`` worker processes (one BLAS thread each), each writing its own ark over its share (Kaldi's
``split_data.sh`` + ``run.pl``). ``feats.scp`` is rewritten only once every
worker has finished, so it only ever lists complete arks; arks of an
interrupted or failed run are removed at the next start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from asrkit.config import FeatureConfig, legacy_feature_values
from asrkit.data import audio
from asrkit.data.datadir import DataDir, Utterance, read_table
from asrkit.data.features import utterance_features
from asrkit.errors import AsrkitError, DataDirError
from asrkit.progress import make_progress

log = logging.getLogger("asrkit")
SCP, RECORD, NUM_FRAMES = "feats.scp", "feats.json", "utt2num_frames"


def _kaldiio():
    try:
        import kaldiio
    except ImportError:  # pragma: no cover - a core dependency
        raise AsrkitError("kaldiio is not installed: pip install kaldiio") from None
    return kaldiio


def provenance(utt: Utterance) -> list:
    """What produced an utterance's features: its wav.scp entry and segment times."""
    return [utt.audio_path, utt.start, utt.end]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


class FeatureStore:
    """A data dir's stored features, read by utterance id (random access into the arks)."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir)
        scp = self.path / SCP
        if not scp.is_file():
            raise DataDirError(f"{self.path} has no {SCP}; run 'asrkit features {self.path}' first")
        rows = read_table(scp, check_sorted=False)
        self.entries = {key: value for key, value, _ in rows}
        check_pipes(scp, rows)
        arks: dict[str, str] = {}  # each ark's path resolved once here, not at every read

        def located(location: str) -> str:
            if audio.is_pipe(location):
                return location
            path, _, offset = location.rpartition(":")
            if path not in arks:
                arks[path] = _resolve(f"{path}:0", self.path).rpartition(":")[0]
            return f"{arks[path]}:{offset}"

        self._locations = {key: located(value) for key, value in self.entries.items()}
        self.record = read_record(self.path)
        self.external = self.record is None
        lengths = self.path / NUM_FRAMES
        self._num_frames: dict[str, int] = {}
        if lengths.is_file():
            self._num_frames = {k: int(v) for k, v, _ in read_table(lengths, check_sorted=False)}

    def __contains__(self, utt: str) -> bool:
        return utt in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, utt: str) -> np.ndarray:
        """The (num_frames, dim) float32 matrix of ``utt`` (a one-line error naming it and its ark)."""
        if utt not in self.entries:
            raise DataDirError(f"{self.path / SCP}: no features for utterance {utt!r}")
        location = self.entries[utt]
        if audio.is_pipe(location) and not audio.pipes_allowed():
            raise DataDirError(f"{self.path / SCP}: the features of {utt!r} come from a command pipe; pass "
                               f"{audio.PIPE_OPTION} to run it (it runs in a shell: only for data you trust)")
        try:
            matrix = _kaldiio().load_mat(self._locations[utt])
        except Exception as exc:  # kaldiio raises many kinds for a missing or cut file
            reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            hint = "" if self.external else f"; recompute with 'asrkit features {self.path} --force'"
            raise DataDirError(f"utterance {utt!r}: cannot read its features from {location} ({reason}){hint}") from None
        return np.asarray(matrix, dtype=np.float32)

    def num_frames(self, utt: str) -> int:
        if utt not in self._num_frames:  # a foreign store without utt2num_frames: read the matrix once
            self._num_frames[utt] = self[utt].shape[0]
        return self._num_frames[utt]

    @property
    def dim(self) -> int:
        return self[next(iter(self.entries))].shape[1]


def check_pipes(scp: Path, rows: list[tuple[str, str, int]] | None = None) -> None:
    """A feats.scp entry that ends in ``|`` is a command kaldiio runs in a shell: like a wav.scp
    pipe, it runs only with --allow-pipes (a one-line error naming the first such line)."""
    rows = read_table(scp, check_sorted=False) if rows is None else rows
    pipes = [(key, line_no) for key, value, line_no in rows if audio.is_pipe(value)]
    if pipes and not audio.pipes_allowed():
        key, line_no = pipes[0]
        raise DataDirError(f"{scp} line {line_no}: {key!r} is a command pipe ({len(pipes)} in all); pass "
                           f"{audio.PIPE_OPTION} to run them (they run in a shell: only for data you trust)")


def _resolve(location: str, root: Path) -> str:
    """An scp location ``ark_path:offset``; a relative ark path is relative to the data dir."""
    path, _, offset = location.rpartition(":")
    if path and not os.path.isabs(path) and not os.path.exists(path) and (root / path).exists():
        return f"{root / path}:{offset}"
    return location


def is_foreign(data_dir: Path | None) -> bool:
    """Whether a data dir holds a feats.scp that asrkit did not write (no record beside it)."""
    return data_dir is not None and (data_dir / SCP).is_file() and not (data_dir / RECORD).is_file()


def read_record(data_dir: Path) -> dict | None:
    """asrkit's record of the data dir's features, or None (foreign or no features).

    A record whose ``scp_sha256`` is not that of the current ``feats.scp`` (a run stopped between
    the two renames) describes nothing: every utterance counts as stale."""
    path = data_dir / RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataDirError(f"{path}: not asrkit's feature record (damaged JSON); remove it and run "
                           "'asrkit features --force'") from None
    if record.get("scp_sha256") != _digest(data_dir / SCP):
        record["utts"] = {}
    record["feature_config"] = legacy_feature_values(record["feature_config"])  # keys it predates
    return record


def config_dict(cfg: FeatureConfig) -> dict:
    return asdict(cfg)


def check_config(data_dir: Path, record: dict | None, cfg: FeatureConfig) -> None:
    """One data dir, one feature config: another is an error naming both."""
    if record is None or record["feature_config"] == config_dict(cfg):
        return
    stored, wanted = record["feature_config"], config_dict(cfg)
    differ = ", ".join(f"{k}={stored.get(k)!r} (asked: {wanted.get(k)!r})"
                       for k in sorted(wanted) if stored.get(k) != wanted.get(k))
    raise DataDirError(f"{data_dir} holds features of another config ({differ}); copy the data dir for this "
                       f"config (e.g. 'cp -r {data_dir} {data_dir}_{cfg.kind}{cfg.dim}', without its feats.*), "
                       "or recompute with 'asrkit features --force'")


def stale_utterances(data: DataDir, record: dict | None) -> list[Utterance]:
    """The utterances whose stored features are missing or were made from other audio."""
    known = record["utts"] if record is not None else {}
    return [utt for utt in data.utterances() if known.get(utt.utt_id) != provenance(utt)]


def compute_missing(data: DataDir, cfg: FeatureConfig, nj: int = 1, force: bool = False,
                    description: str = "features") -> FeatureStore:
    """Make ``data``'s features complete and current for ``cfg`` and return the store.

    A foreign ``feats.scp`` is used as it is (its dimension checked). Otherwise the
    utterances that are new or stale (or all, with ``force``) are computed by ``nj``
    worker processes into new ark shards, and ``feats.scp``, ``utt2num_frames`` and
    the record are rewritten once all of them have finished.
    """
    if data.path is None:
        raise DataDirError("features need a data dir on disk")
    root = data.path
    if is_foreign(root) and not force:
        store = FeatureStore(root)
        check_foreign(store, data, cfg)
        return store
    record = None if force else read_record(root)
    check_config(root, record, cfg)
    todo = data.utterances() if record is None else stale_utterances(data, record)
    if not todo and (root / SCP).is_file():
        return FeatureStore(root)
    data.check_pipes()
    _remove_orphans(root)  # left by a run that was stopped; the current feats.scp's arks stay
    redo = {t.utt_id for t in todo}
    kept = {} if record is None else {u: record["utts"][u] for u in data.text if u not in redo}
    old_entries = {} if record is None or not (root / SCP).is_file() else \
        {k: v for k, v, _ in read_table(root / SCP, check_sorted=False) if k in kept}
    old_frames = {} if record is None or not (root / NUM_FRAMES).is_file() else \
        {k: int(v) for k, v, _ in read_table(root / NUM_FRAMES, check_sorted=False) if k in kept}
    if record is not None and todo:
        log.info("%s: computing features for %d of %d utterances (new, or their audio changed)", root, len(todo),
                 len(data))
    first = 1 + max((_shard_number(p) for p in root.glob("feats.*.ark")), default=0)
    entries, frames = _run_jobs(todo, cfg, root, first, nj, description)
    entries.update(old_entries)
    frames.update(old_frames)
    provenances = {**kept, **{u.utt_id: provenance(u) for u in todo}}
    _commit(root, cfg, entries, frames, provenances)
    _remove_orphans(root)  # the shards the new feats.scp no longer uses
    return FeatureStore(root)


def up_to_date(data: DataDir, cfg: FeatureConfig) -> bool:
    """Whether ``compute_missing`` would compute nothing: a foreign feats.scp (used as it is), or
    asrkit's with this config and every utterance current."""
    root = data.path
    if root is None or not (root / SCP).is_file():
        return False
    record = read_record(root)
    return record is None or (record["feature_config"] == config_dict(cfg) and not stale_utterances(data, record))


def check_foreign(store: FeatureStore, data: DataDir, cfg: FeatureConfig) -> None:
    """A feats.scp asrkit did not write: its dimension must be the config's, and it must cover the text."""
    missing = [u for u in data.utt_ids() if u not in store]
    if missing:
        raise DataDirError(f"{store.path / SCP}: {len(missing)} utterances of text have no features, e.g. "
                           f"{missing[0]!r} (a feats.scp asrkit did not write is used as it is)")
    if store.dim != cfg.dim:
        raise DataDirError(f"{store.path / SCP}: its features have {store.dim} dimensions, the config's "
                           f"{cfg.kind} has {cfg.dim} (set feature.num_mel_bins or feature.num_ceps to match)")


def _shard_number(path: Path) -> int:
    try:
        return int(path.name.split(".")[1])
    except (IndexError, ValueError):
        return 0


def _remove_orphans(root: Path) -> None:
    """The feats.N.ark files that feats.scp does not use."""
    used = {_resolve(v, root).rpartition(":")[0] for v in _scp_values(root)}
    for ark in root.glob("feats.*.ark"):
        if str(ark) not in used and str(ark.resolve()) not in used:
            ark.unlink(missing_ok=True)  # torchrun ranks may look at once


def _scp_values(root: Path) -> list[str]:
    if not (root / SCP).is_file():
        return []
    return [v for _, v, _ in read_table(root / SCP, check_sorted=False)]


def _commit(root: Path, cfg: FeatureConfig, entries: dict[str, str], frames: dict[str, int],
            provenances: dict[str, list]) -> None:
    """feats.scp, utt2num_frames and the record, each replaced atomically; the record names the
    digest of the feats.scp it describes, so a stop between the renames is detected."""
    scp_text = "".join(f"{u} {entries[u]}\n" for u in sorted(entries, key=lambda k: k.encode()))
    record = {"feature_config": config_dict(cfg),
              "scp_sha256": hashlib.sha256(scp_text.encode("utf-8")).hexdigest(), "utts": provenances}
    _write(root / NUM_FRAMES, "".join(f"{u} {frames[u]}\n" for u in sorted(frames, key=lambda k: k.encode())))
    _write(root / SCP, scp_text)
    _write(root / RECORD, json.dumps(record))


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------------- workers

def _compute_share(utterances: list[Utterance], cfg: FeatureConfig, ark: str, progress=None) -> tuple[dict, dict]:
    """One job: the features of ``utterances`` into ``ark``; returns their scp entries and lengths."""
    kaldiio = _kaldiio()
    entries, frames = {}, {}
    scp = ark[:-len(".ark")] + ".part.scp"
    try:
        with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer:
            for utt in utterances:
                try:
                    matrix = utterance_features(utt, cfg)
                except AsrkitError as exc:
                    raise type(exc)(f"utterance {utt.utt_id!r}: {exc}") from None
                writer(utt.utt_id, matrix)
                frames[utt.utt_id] = int(matrix.shape[0])
                if progress is not None:
                    progress()
        for line in Path(scp).read_text(encoding="utf-8").splitlines():
            key, _, location = line.partition(" ")
            entries[key] = location
    finally:
        Path(scp).unlink(missing_ok=True)
    return entries, frames


_progress_queue = None


def _init_worker(queue) -> None:
    global _progress_queue
    _progress_queue = queue


def _worker(args):
    utterances, cfg, ark = args
    audio.quiet_notices()  # the parent says them, once for all jobs
    entries, frames = _compute_share(utterances, cfg, ark, lambda: _progress_queue.put(1))
    return entries, frames, audio.resampled_rates()


def _run_jobs(todo: list[Utterance], cfg: FeatureConfig, root: Path, first: int, nj: int,
              description: str) -> tuple[dict, dict]:
    """Split ``todo`` into ``nj`` contiguous shares (Kaldi's split_data.sh) and compute them."""

    if nj < 1:
        raise DataDirError(f"--nj must be at least 1, not {nj}")
    jobs = min(nj, len(todo))
    shares = [todo[len(todo) * j // jobs:len(todo) * (j + 1) // jobs] for j in range(jobs)]
    arks = [str((root / f"feats.{first + j}.ark").resolve()) for j in range(jobs)]
    try:
        with make_progress() as progress:
            task = progress.add_task(f"{description} ({jobs} job{'s' if jobs > 1 else ''})", total=len(todo))
            if jobs == 1:
                results = [_compute_share(shares[0], cfg, arks[0], lambda: progress.advance(task))]
            else:
                results = _in_workers(shares, arks, cfg, lambda: progress.advance(task))
                progress.update(task, completed=len(todo))
    except BaseException:
        for ark in arks:  # no partial shard survives; feats.scp was never touched
            Path(ark).unlink(missing_ok=True)
        raise
    entries: dict[str, str] = {}
    frames: dict[str, int] = {}
    for found in results:
        entries.update(found[0])
        frames.update(found[1])
    return entries, frames


def _in_workers(shares: list[list[Utterance]], arks: list[str], cfg: FeatureConfig, advance) -> list[tuple]:
    """One forked process per share; ``advance`` is called as the workers report utterances done.
    Fork: a worker starts in milliseconds (spawn would import torch and the CLI again, seconds per
    job); extraction is numpy/librosa only, with one BLAS thread (compute_features)."""
    import multiprocessing as mp
    import queue as queues

    context = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    done_queue = context.Queue()
    with context.Pool(len(shares), initializer=_init_worker, initargs=(done_queue,)) as pool:
        pending = pool.map_async(_worker, [(s, cfg, a) for s, a in zip(shares, arks)])
        while not pending.ready():
            pending.wait(0.2)
            try:
                while True:
                    done_queue.get_nowait()
                    advance()
            except queues.Empty:
                pass
        results = pending.get()  # re-raises a worker's error (it names the utterance)
    for _, _, rates in results:
        for rate, target in rates:
            audio.note_resampling(rate, target)
    return [(entries, frames) for entries, frames, _ in results]


__all__ = ["FeatureStore", "check_config", "compute_missing", "read_record", "stale_utterances", "up_to_date"]
