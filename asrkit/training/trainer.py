"""Training: CTC loss, AdamW with warm-up and cosine decay, clipping, accumulation, checkpoints, resume.

``train()`` is the whole stage. ``Trainer`` gives each event of a run one
home: ``__init__`` sets up (data, features, token table, CMVN: asrkit.training.setup; model,
optimizer; from scratch, from ``--init`` weights or from ``last.pt``),
``step`` is one optimizer step (``train.accum_grad`` batches), ``end_epoch``
writes the checkpoints first and then the epoch's ``metrics.jsonl`` row, and
``interrupted`` saves ``last.pt`` on Ctrl-C or SIGTERM. The experiment dir::

    exp/NAME/config.yaml   fully resolved config, written at start (and on resume)
    exp/NAME/tokens.txt    token table
    exp/NAME/cmvn.json     global CMVN stats
    exp/NAME/train.log     one line per epoch (and everything said on the console)
    exp/NAME/metrics.jsonl one row per finished epoch, for plots and averaging
    exp/NAME/steps.jsonl   one row per optimizer step (loss, lr, gradient norm before clipping)
    exp/NAME/epoch_N.pt    checkpoint after epoch N
    exp/NAME/last.pt       newest checkpoint (resume point; also written every
                           train.save_every_steps steps, on Ctrl-C and on SIGTERM)
    exp/NAME/best.pt       lowest dev loss (ties: lowest dev WER)

A step is one optimizer step: the warm-up, the schedule and
``save_every_steps`` count steps. A resume restarts an accumulation window
that was cut short.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch
from rich.progress import TextColumn
from torch.nn.parallel import DistributedDataParallel

from asrkit.checkpoint import Checkpoint, DataRecord, TrainState, load_checkpoint, save_checkpoint, transfer_weights
from asrkit.config import ExperimentConfig, TrainConfig, config_from_dict, save_config
from asrkit.data.augment import Augmenter
from asrkit.data.datadir import DataDir
from asrkit.data.dataset import Batch
from asrkit.errors import TrainingError
from asrkit.model import build_model
from asrkit.progress import make_progress
from asrkit.training import distributed
from asrkit.training.distributed import DistInfo
from asrkit.training.expdir import RunLog, check_resumable, config_changes
from asrkit.training.interrupt import Interrupted, StopSignals
from asrkit.training.loss import autocast, compute_loss, dev_figures, validation_sums
from asrkit.training.setup import features_for_training, make_loaders, tokens_and_cmvn

log = logging.getLogger("asrkit")


def lr_at(step: int, cfg: TrainConfig, total_steps: int, state: TrainState | None = None) -> float:
    """Linear warm-up to ``cfg.lr`` over ``warmup_steps``, then cosine decay to ``lr * final_lr_ratio``
    at ``total_steps``. An extended run (``state.lr_from_step`` >= 0) decays from the rate it had
    when it was extended, ``state.lr_from``, to the floor at its new end: no jump back up."""
    floor = cfg.lr * cfg.final_lr_ratio
    if state is not None and 0 <= state.lr_from_step <= step:
        span = max(total_steps - state.lr_from_step, 1)
        progress = min((step - state.lr_from_step) / span, 1.0)
        return floor + (state.lr_from - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(total_steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def pick_device(name: str, info: DistInfo | None = None) -> torch.device:
    """cpu or cuda (under torchrun, the GPU of this process's local rank)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device is 'cuda' but no CUDA device is available")
    if name == "cuda" and info is not None and info.enabled:
        if info.local_rank >= torch.cuda.device_count():
            raise TrainingError(f"LOCAL_RANK {info.local_rank} but only {torch.cuda.device_count()} GPUs")
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return torch.device(name)


def grad_scaler(device: torch.device, use_amp: bool, dtype: str) -> torch.amp.GradScaler:
    """Dynamic loss scaling for fp16 autocast (a no-op scaler otherwise): fp16 gradients underflow
    without it; bf16 has fp32's range and needs none."""
    enabled = use_amp and dtype == "fp16"
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type, enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # torch < 2.3 (pyproject allows 2.2): CUDA only, as autocast here


def _batch_seed(seed: int, epoch: int, batch_index: int) -> int:
    return (seed * 1_000_003 + epoch) * 100_003 + batch_index


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _setup_file_log(out_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(out_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def train(train_dir: str | Path | None, dev_dir: str | Path | None, out_dir: str | Path, cfg: ExperimentConfig,
          resume: bool = False, init: str | Path | None = None, accept_changes: bool = False) -> TrainState:
    """Train a CTC model on ``train_dir``; evaluate on ``dev_dir`` after every epoch.

    ``resume`` continues the run in ``out_dir`` from its ``last.pt``: ``cfg`` may
    differ from the stored config only in ``config.RESUMABLE_KEYS`` (more
    epochs extend the run); the train and dev data default to the ones the
    checkpoint records, and data that differ from them, or another number of
    processes, are refused unless ``accept_changes`` (the interrupted epoch
    then restarts with the new batch plan). ``init`` starts from another
    model's weights and CMVN with a fresh optimizer and schedule (fine-tuning).
    """
    out_dir = Path(out_dir)
    last_path = out_dir / "last.pt"
    checkpoint = None
    if resume and last_path.exists():
        checkpoint = load_checkpoint(last_path)
    elif last_path.exists():
        raise TrainingError(f"{out_dir} already holds a checkpoint; pass --resume to continue it or choose a new --out")
    if train_dir is None and checkpoint is None:
        raise TrainingError("--train is needed (only --resume takes it from the run's last.pt)")
    init_blob = load_checkpoint(init) if init is not None and checkpoint is None else None
    info = distributed.from_env()
    handler, level = None, log.level
    if info.is_main:  # rank 0 writes the experiment dir; the others only train
        out_dir.mkdir(parents=True, exist_ok=True)
        handler = _setup_file_log(out_dir)
    else:
        log.setLevel(logging.WARNING)
    trainer = None
    try:
        if checkpoint is not None:
            train_dir, dev_dir = _recorded_data(checkpoint, train_dir, dev_dir, last_path)
        trainer = Trainer(Path(train_dir), Path(dev_dir) if dev_dir else None, out_dir, cfg, checkpoint,
                          init_blob, str(init), info, accept_changes)
        return trainer.run()
    finally:
        if trainer is not None:
            trainer.runlog.close()
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        log.setLevel(level)
        if info.enabled:  # the DDP model (its reducer, its gloo work) goes before the group it talks through:
            trainer = None  # freed at interpreter exit after destroy_process_group, a rank sometimes
            gc.collect()  # aborted ("terminate called without an active exception") under load
        distributed.shutdown(info)


def _recorded_data(checkpoint: Checkpoint, train_dir, dev_dir, where: Path):
    """A resume's data dirs: those given, else the ones the checkpoint records."""
    if train_dir is None:
        if checkpoint.train_data is None:
            raise TrainingError(f"--train is needed: {where} predates the record of a run's data (version 5)")
        train_dir = checkpoint.train_data.path
    if dev_dir is None and checkpoint.dev_data is not None:
        dev_dir = checkpoint.dev_data.path  # so that best.pt goes on meaning the best on the same dev set
        log.info("resume: dev set %s, as the run recorded it", dev_dir)
    return train_dir, dev_dir


def data_record(data: DataDir, feats) -> DataRecord:
    """What the checkpoint records of a data dir: its path, size and fingerprint (with the feature
    entries when they are foreign: then they are the data)."""
    return DataRecord(str(data.path.resolve()), len(data), data.fingerprint(feats.entries if feats.external else None))


class Trainer:
    """One training run, one method per event: set-up (``__init__``), ``step``, ``end_epoch``,
    ``interrupted``; ``run`` strings them together."""

    def __init__(self, train_dir: Path, dev_dir: Path | None, out_dir: Path, cfg: ExperimentConfig,
                 checkpoint: Checkpoint | None = None, init: Checkpoint | None = None, init_path: str = "",
                 info: DistInfo = DistInfo(), accept_changes: bool = False) -> None:
        self.out_dir, self.info = out_dir, info
        saved_cfg = None
        if checkpoint is not None:
            saved_cfg = config_from_dict(checkpoint.config, str(out_dir / "last.pt"))
            for key in check_resumable(saved_cfg, cfg, str(out_dir / "last.pt")):
                log.info("resume: %s changed from %s to %s", key, _dotted(saved_cfg, key), _dotted(cfg, key))
        self.cfg, tcfg = cfg, cfg.train
        _seed_everything(tcfg.seed)
        if tcfg.num_threads > 0:
            torch.set_num_threads(tcfg.num_threads)
        self.device = device = pick_device(tcfg.device, info)
        self.use_amp = tcfg.amp and device.type == "cuda"
        distributed.init(info, device)
        if info.enabled:
            log.info("distributed: %d processes (%s), this is rank %d", info.world_size,
                     "nccl" if device.type == "cuda" else "gloo", info.rank)

        if init is not None:  # before any feature is computed for a config that cannot be used
            changed = [k for k in config_changes(config_from_dict(init.config, init_path), cfg)
                       if k.startswith("feature.")]
            if changed:
                raise TrainingError(f"--init {init_path}: its features differ from this config's in "
                                    f"{', '.join(changed)}; fine-tuning needs the same feature config")
        # noise and impulse-response folders are checked before any feature is computed
        self.augmenter = Augmenter(cfg.train.augment, cfg.feature.sample_rate, out_dir, tcfg.seed) \
            if cfg.train.augment.enabled else None
        train_data = DataDir.load(train_dir)
        self.dev_data = dev_data = DataDir.load(dev_dir) if dev_dir else None
        train_feats = features_for_training(train_data, cfg, info, "features (train)")
        dev_feats = features_for_training(dev_data, cfg, info, "features (dev)") if dev_data else None
        if dev_feats is not None and dev_feats.external != train_feats.external:
            raise TrainingError(f"{dev_dir} and {train_dir}: one has features asrkit wrote, the other a foreign "
                                "feats.scp; train and dev need the same kind")
        self.external_features = train_feats.external
        self.train_record = data_record(train_data, train_feats)
        self.dev_record = data_record(dev_data, dev_feats) if dev_data is not None else None
        restart_epoch = checkpoint is not None and self._changes_since(checkpoint, accept_changes)

        self.tokenizer, self.cmvn = tokens_and_cmvn(cfg, train_data, train_feats, out_dir, info, checkpoint, init,
                                                    init_path)
        if info.is_main:
            save_config(cfg, out_dir / "config.yaml")
            self.tokenizer.save(out_dir)
            self.cmvn.save(out_dir / "cmvn.json")
        loaders = make_loaders(cfg, self.tokenizer, self.cmvn, info, device, train_data, train_feats, dev_data,
                               dev_feats, self.augmenter)
        self.sampler, self.train_loader, self.dev_loader = loaders.sampler, loaders.train, loaders.dev

        self._set_up_model(checkpoint, init, init_path, restart_epoch)
        self.steps_per_epoch = math.ceil(len(self.sampler) / tcfg.accum_grad)
        self.total_steps = tcfg.epochs * self.steps_per_epoch
        if saved_cfg is not None and saved_cfg.train.epochs != tcfg.epochs:
            self._extend(saved_cfg)
        self.ctc_loss = torch.nn.CTCLoss(blank=self.tokenizer.blank_id, reduction="sum", zero_infinity=True)
        self.runlog = RunLog(out_dir)
        self.epoch_row = checkpoint.epoch_metrics if checkpoint else None
        if info.is_main:
            self.runlog.reconcile(self.state, self.epoch_row)
        self.stops = StopSignals()

    # ------------------------------------------------------------------ set-up
    def _set_up_model(self, checkpoint: Checkpoint | None, init: Checkpoint | None, init_path: str,
                      restart_epoch: bool) -> None:
        """The model, optimizer, loss scaler and run state: fresh, from the resumed checkpoint (its
        epoch from the first batch when ``restart_epoch``), or with ``--init`` weights."""
        cfg, tcfg, device = self.cfg, self.cfg.train, self.device
        self.model = model = build_model(cfg.feature.dim, len(self.tokenizer), cfg.model).to(device)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
        self.scaler = grad_scaler(device, self.use_amp, tcfg.amp_dtype)  # kept across epochs and resumes
        self.state = TrainState()
        if checkpoint is not None:
            model.load_state_dict(checkpoint.model_state)
            self.optimizer.load_state_dict(checkpoint.optimizer_state)
            if checkpoint.scaler_state:
                self.scaler.load_state_dict(checkpoint.scaler_state)
            self.state = dataclasses.replace(checkpoint.train_state)  # a copy: the record stays as read
            if restart_epoch:
                self.state.batches_done = 0
            log.info("resuming %s from epoch %d, step %d", self.out_dir, self.state.epoch, self.state.step)
        elif init is not None:
            transfer_weights(model, init.model_state, init.vocab_size, init_path)
        self.train_model: torch.nn.Module = model
        if self.info.enabled:  # gradients averaged across processes; every process starts from rank 0's weights
            self.train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        num_params = sum(p.numel() for p in model.parameters())
        log.info("model: %s, %.2fM parameters, %d tokens, device %s%s", cfg.model.rnn_type, num_params / 1e6,
                 len(self.tokenizer), device, f" ({tcfg.amp_dtype} autocast)" if self.use_amp else "")

    def _changes_since(self, checkpoint: Checkpoint, accept: bool) -> bool:
        """Whether the data or the number of processes differ from the run's record (which would put
        a mid-epoch resume in another batch plan): an error naming them, or with ``accept`` a warning
        and True (the epoch restarts). A record from before version 5 is not checked."""
        changes = []
        for name, old, new in (("training data", checkpoint.train_data, self.train_record),
                               ("dev data", checkpoint.dev_data, self.dev_record)):
            if old is not None and (new is None or (old.utterances, old.fingerprint) != (new.utterances,
                                                                                          new.fingerprint)):
                now = "none" if new is None else f"{new.path} has {new.utterances} ({new.fingerprint[:8]})"
                changes.append(f"{name} differ: {old.path} had {old.utterances} utterances ({old.fingerprint[:8]}), "
                               f"{now}")
        if checkpoint.world_size is not None and checkpoint.world_size != self.info.world_size:
            changes.append(f"the run had {checkpoint.world_size} processes, this one {self.info.world_size}")
        if changes and not accept:
            raise TrainingError(f"--resume: {'; '.join(changes)}; the run would go on with another batch plan: "
                                "pass --accept-changes to go on anyway (the interrupted epoch restarts from its "
                                "first batch)")
        if changes:
            log.warning("resume: %s; accepted (--accept-changes): epoch %d restarts from its first batch with the "
                        "new batch plan", "; ".join(changes), checkpoint.train_state.epoch + 1)
        return bool(changes)

    def _extend(self, saved_cfg: ExperimentConfig) -> None:
        """More (or fewer) epochs on resume: the rate goes on from where it is and decays to the
        floor by the new end, instead of jumping back up the longer cosine."""
        state, tcfg = self.state, self.cfg.train
        if tcfg.epochs < state.epoch:
            raise TrainingError(f"--resume: train.epochs={tcfg.epochs} but {state.epoch} epochs are already done")
        old_total = saved_cfg.train.epochs * self.steps_per_epoch
        current = lr_at(state.step, saved_cfg.train, old_total, state)
        state.lr_from_step, state.lr_from = state.step, current
        log.info("resume: the run is extended from %d to %d epochs; the learning rate goes on from %.3g at "
                 "step %d and decays to %.3g by step %d", saved_cfg.train.epochs, tcfg.epochs, current, state.step,
                 tcfg.lr * tcfg.final_lr_ratio, self.total_steps)

    # ------------------------------------------------------------------ events
    def run(self) -> TrainState:
        """Epochs from the state's onwards; SIGINT/SIGTERM stop at the next step, saving last.pt."""
        tcfg, state = self.cfg.train, self.state
        with self.stops:
            for epoch in range(state.epoch, tcfg.epochs):
                if self.at_max_steps():
                    break
                try:
                    self.check_stop()
                    stats = self.train_epoch(epoch)
                    if state.batches_done < len(self.train_loader):  # train.max_steps came mid-epoch
                        self.save_last()
                        log.info("train.max_steps=%d reached in epoch %d; saved %s (no metrics row for the "
                                 "unfinished epoch)", tcfg.max_steps, epoch + 1, self.out_dir / "last.pt")
                        break
                    dev_loss, dev_wer = self.validate()
                    self.check_stop()
                except KeyboardInterrupt as exc:
                    self.interrupted(epoch, exc)
                    raise
                self.end_epoch(epoch, stats, dev_loss, dev_wer)
        if self.info.enabled:
            if not distributed.weights_agree(self.model, self.info, self.device):
                raise TrainingError("the processes ended with different weights (distributed training went wrong)")
            log.info("all %d processes hold the same weights", self.info.world_size)
            distributed.barrier(self.info)  # nobody tears the group down while a peer is still in a collective
        return state

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the epoch's batches from ``state.batches_done`` on, ``accum_grad`` per step.

        Every batch is drawn under its own seed (seed, epoch, batch index), so a
        run resumed in the middle of an epoch sees the same batches, masks and
        dropout as one that never stopped (exactly so with ``num_workers=0``, the
        CPU default). Under torchrun the batch index in the seed is the global one.
        """
        tcfg, state, info = self.cfg.train, self.state, self.info
        self.sampler.set_epoch(epoch)
        self.model.train()
        stats = {"loss": 0.0, "utterances": 0, "audio_seconds": 0.0, "skipped": 0, "started": time.perf_counter()}
        num_batches = len(self.train_loader)
        if state.batches_done >= num_batches:  # stopped during validation: training was done
            return stats
        window: list[Batch] = []
        _seed_everything(_batch_seed(tcfg.seed, epoch, info.rank))
        with make_progress(TextColumn("{task.fields[info]}")) as progress:
            task = progress.add_task(f"epoch {epoch + 1}/{tcfg.epochs}", total=num_batches, info="",
                                     completed=state.batches_done)
            for index, batch in enumerate(self.train_loader):
                if index >= state.batches_done:
                    window.append(batch)
                    if len(window) == tcfg.accum_grad or index == num_batches - 1:
                        lr, took = self.step(window, epoch, stats)
                        state.batches_done = index + 1
                        progress.update(task, advance=len(window), info=_progress_info(stats, lr))
                        window = []
                        if took and tcfg.save_every_steps and state.step % tcfg.save_every_steps == 0:
                            self.save_last()
                        self.check_stop()  # a safe point: the step is whole
                        if self.at_max_steps() and state.batches_done < num_batches:
                            break
                _seed_everything(_batch_seed(tcfg.seed, epoch, (index + 1) * info.world_size + info.rank))  # next draw
        return stats

    def step(self, window: list[Batch], epoch: int, stats: dict[str, float]) -> tuple[float, bool]:
        """One optimizer step over the ``window``'s batches: (learning rate, whether the step was taken).

        Each batch's loss is its per-utterance mean divided by ``accum_grad``. A batch with a
        non-finite loss is left out (under torchrun: by every process together); a non-finite
        gradient (an fp16 overflow lowers the loss scale) skips the whole step.
        """
        tcfg, state, device = self.cfg.train, self.state, self.device
        lr = lr_at(state.step, tcfg, self.total_steps, state)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, utts, audio, used = 0.0, 0, 0.0, 0
        for batch in window:
            batch_audio = float(batch.feat_lens.sum()) * self.cfg.feature.frame_shift_ms / 1000  # host: no sync
            batch = batch.to(device)
            with autocast(device, self.use_amp, tcfg.amp_dtype):
                batch_loss = compute_loss(self.train_model, batch, self.ctc_loss)
            loss = batch_loss / len(batch.utt_ids) / tcfg.accum_grad
            if not distributed.all_true(bool(torch.isfinite(loss)), self.info, device):
                stats["skipped"] += 1
                state.skipped_batches += 1
                continue
            self.scaler.scale(loss).backward()
            loss_sum += float(batch_loss.detach())
            utts += len(batch.utt_ids)
            audio += batch_audio
            used += 1
        if not used:
            return lr, False
        self.scaler.unscale_(self.optimizer)  # (fp16) true gradients before clipping
        # Clipping the global gradient norm keeps an exploding recurrent gradient from wrecking the
        # weights in a single step; grad_clip 0 measures the norm without clipping.
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), tcfg.grad_clip or math.inf))
        if not math.isfinite(grad_norm):  # same on every process: the gradients are averaged
            if self.scaler.is_enabled():
                self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            stats["skipped"] += used
            state.skipped_batches += used
            return lr, False
        self.scaler.step(self.optimizer)
        self.scaler.update()
        state.step += 1
        stats["loss"] += loss_sum
        stats["utterances"] += utts
        stats["audio_seconds"] += audio
        if self.info.is_main:
            self.runlog.step({"step": state.step, "epoch": epoch + 1, "loss": loss_sum / utts, "lr": lr,
                              "grad_norm": grad_norm, "utterances": utts, "time": round(time.time(), 3)})
        return lr, True

    def validate(self) -> tuple[float, float]:
        """Dev loss and greedy WER; under torchrun each process takes a share of the dev batches and
        the sums are reduced, so all take the same best.pt decision and none waits alone."""
        if self.dev_loader is None:
            return math.nan, math.nan
        sums = validation_sums(self.model, self.dev_loader, self.tokenizer, self.dev_data.text, self.device,
                               self.use_amp, self.cfg.train.amp_dtype, self.check_stop)
        if self.info.enabled:  # a share one batch short matches its peers' stop checks (collectives)
            for _ in range(self.dev_loader.batch_sampler.longest_share() - len(self.dev_loader)):
                self.check_stop()
        return dev_figures(distributed.sum_all(sums, self.info, self.device))

    def at_max_steps(self) -> bool:
        return 0 < self.cfg.train.max_steps <= self.state.step

    def check_stop(self) -> None:
        """Raise ``Interrupted`` if a stop signal came; under torchrun all processes agree first, so
        that they stop at the same step (rank 0 then saves) and none waits in a collective."""
        if not self.info.enabled:
            return self.stops.check()
        if distributed.any_true(self.stops.received is not None, self.info, self.device):
            raise Interrupted(self.stops.received or signal.SIGTERM)

    def end_epoch(self, epoch: int, stats: dict[str, float], dev_loss: float, dev_wer: float) -> None:
        """Checkpoints first (epoch_N, last, best), then the epoch's metrics row, each once."""
        tcfg, state, info = self.cfg.train, self.state, self.info
        loss, utts, audio = distributed.sum_all([stats["loss"], stats["utterances"], stats["audio_seconds"]],
                                                info, self.device)
        elapsed = time.perf_counter() - stats["started"]
        if stats["skipped"]:
            log.warning("epoch %d: skipped %d batches with a non-finite loss or gradient", epoch + 1, stats["skipped"])
        if utts == 0 and stats["skipped"]:
            raise TrainingError(f"epoch {epoch + 1}: every batch had a non-finite loss; lower train.lr or check the data")
        state.epoch, state.batches_done = epoch + 1, 0
        # Select by dev loss: on small dev sets the greedy WER moves in coarse steps and
        # often crowns a lucky early epoch; the loss is the smoother signal.
        improved = self.dev_loader is None or (dev_loss, dev_wer) < (state.best_dev_loss, state.best_dev_wer)
        if improved and self.dev_loader is not None:
            state.best_dev_wer, state.best_dev_loss = dev_wer, dev_loss
        if not info.is_main:
            return  # rank 0 logs and saves
        train_loss = loss / max(utts, 1)
        row = {"epoch": epoch + 1, "step": state.step, "train_loss": train_loss, "dev_loss": dev_loss,
               "dev_wer": dev_wer, "lr": lr_at(state.step, tcfg, self.total_steps, state), "seconds": elapsed,
               "audio_seconds_per_second": audio / elapsed}
        self.epoch_row = row
        record = self.payload()
        save_checkpoint(self.out_dir / f"epoch_{epoch + 1}.pt", record)  # kept for averaging and for going back
        save_checkpoint(self.out_dir / "last.pt", record)
        if improved:
            save_checkpoint(self.out_dir / "best.pt", record)
        self.runlog.epoch(row)
        log.info("epoch %d/%d: train loss %.4f, dev loss %.4f, dev WER %.2f%%, %.1f s, %.0f audio-s/s%s",
                 epoch + 1, tcfg.epochs, train_loss, dev_loss, 100 * dev_wer, elapsed, audio / elapsed,
                 " (best)" if improved else "")

    def interrupted(self, epoch: int, exc: KeyboardInterrupt) -> None:
        """Ctrl-C or SIGTERM: rank 0 saves last.pt (a resume redoes an unfinished accumulation window)."""
        self.save_last()
        if not self.info.is_main:
            return
        name = exc.args[0] if isinstance(exc, Interrupted) else "SIGINT"
        log.warning("interrupted (%s) in epoch %d after step %d; saved %s (continue with --resume)",
                    name, epoch + 1, self.state.step, self.out_dir / "last.pt")

    # ------------------------------------------------------------------ saving
    def payload(self) -> Checkpoint:
        """The checkpoint of the run as it stands; ``epoch_metrics`` is the last finished epoch's row,
        so that a run killed between an epoch's checkpoints and its row gets the row back on resume."""
        entries = self.tokenizer.checkpoint_entries()
        return Checkpoint(
            model_state=self.model.state_dict(), config=self.cfg.to_dict(), tokens=entries["tokens"],
            cmvn=self.cmvn.to_dict(), feat_dim=self.cfg.feature.dim, vocab_size=len(self.tokenizer),
            train_state=dataclasses.replace(self.state), sentencepiece=entries.get("sentencepiece"),
            optimizer_state=self.optimizer.state_dict(),
            scaler_state=self.scaler.state_dict() if self.scaler.is_enabled() else None,
            epoch_metrics=self.epoch_row, features_external=self.external_features,
            train_data=self.train_record, dev_data=self.dev_record, world_size=self.info.world_size)

    def save_last(self) -> None:
        if self.info.is_main:
            save_checkpoint(self.out_dir / "last.pt", self.payload())


def _progress_info(stats: dict[str, float], lr: float) -> str:
    speed = stats["audio_seconds"] / max(time.perf_counter() - stats["started"], 1e-9)
    return f"loss {stats['loss'] / max(stats['utterances'], 1):.3f} lr {lr:.2e} {speed:.0f} audio-s/s"


def _dotted(cfg: ExperimentConfig, key: str):
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node
