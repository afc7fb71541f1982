"""Training: CTC loss, AdamW with warm-up and cosine decay, clipping, checkpoints, resume.

``train()`` is the whole stage: it reads the data dirs, computes (or reuses)
features, builds the token table and CMVN stats from the training set, drops
utterances CTC cannot align (label longer than the subsampled input), and
writes a self-describing experiment dir::

    exp/NAME/config.yaml   fully resolved config, written at start
    exp/NAME/tokens.txt    token table
    exp/NAME/cmvn.json     global CMVN stats
    exp/NAME/train.log     one line per epoch (and everything said on the console)
    exp/NAME/metrics.jsonl per-epoch figures, for plots
    exp/NAME/epoch_N.pt    checkpoint after epoch N
    exp/NAME/last.pt       newest checkpoint (resume point; also written every
                           train.save_every_steps steps and on Ctrl-C)
    exp/NAME/best.pt       lowest dev loss (ties: lowest dev WER)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from rich.progress import TextColumn

from asrkit.checkpoint import load_checkpoint, save_checkpoint
from asrkit.config import ExperimentConfig, TrainConfig, config_from_dict, save_config
from asrkit.datadir import DataDir
from asrkit.dataset import AsrDataset, Batch, BucketBatchSampler, collate
from asrkit.decode import greedy_search
from asrkit.errors import TrainingError
from asrkit.features import GlobalCMVN, get_features
from asrkit.model import AsrModel, build_model, output_length
from asrkit.model.decoder import attention_loss, decoder_io
from asrkit import distributed
from asrkit.distributed import DistInfo
from torch.nn.parallel import DistributedDataParallel
from asrkit.progress import make_progress
from asrkit.score import score
from asrkit.tokenizer import CharTokenizer

log = logging.getLogger("asrkit")


@dataclass
class TrainState:
    """Runtime state that a resumed run continues from (kept out of the config)."""

    step: int = 0
    epoch: int = 0  # epochs completed
    batches_done: int = 0  # batches of the current epoch already consumed (mid-epoch resume)
    best_dev_wer: float = math.inf
    best_dev_loss: float = math.inf
    skipped_batches: int = 0


def lr_at(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Linear warm-up to ``cfg.lr`` over ``warmup_steps``, then cosine decay to ``lr * final_lr_ratio``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(total_steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    floor = cfg.lr * cfg.final_lr_ratio
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


def min_ctc_frames(tokens: list[int]) -> int:
    """Frames CTC needs for a label: one per token plus a blank between repeats."""
    return len(tokens) + sum(1 for a, b in zip(tokens, tokens[1:]) if a == b)


def select_trainable(data: DataDir, feats: dict[str, np.ndarray], tokenizer: CharTokenizer,
                     cfg: ExperimentConfig, max_duration: float | None) -> tuple[list[str], dict[str, list[int]], dict[str, int]]:
    """Utterance ids CTC can align, their token ids, and counts of what was dropped and why
    (plus ``unknown_chars``: characters outside the token table, mapped to <unk>)."""
    shift = cfg.feature.frame_shift_ms / 1000
    keep, tokens = [], {}
    dropped = {"too_long_label": 0, "too_long_audio": 0, "unknown_chars": 0}
    for utt in data.utt_ids():
        ids = tokenizer.encode(data.text[utt])
        dropped["unknown_chars"] += tokenizer.count_unknown(data.text[utt])
        num_frames = feats[utt].shape[0]
        if max_duration is not None and num_frames * shift > max_duration:
            dropped["too_long_audio"] += 1
            continue
        if output_length(num_frames, cfg.model) < min_ctc_frames(ids):
            dropped["too_long_label"] += 1
            continue
        keep.append(utt)
        tokens[utt] = ids
    return keep, tokens, dropped


def compute_loss(model: torch.nn.Module, batch: Batch, ctc_loss: torch.nn.CTCLoss) -> torch.Tensor:
    """The batch's loss summed over utterances: CTC, or λ·CTC + (1-λ)·CE with an attention decoder.

    Both terms are per-utterance negative log-likelihoods (CTC summed over
    alignments, CE summed over the label tokens and <eos>), so λ weighs like for like.
    """
    return _loss_and_log_probs(model, batch, ctc_loss)[0]


def _loss_and_log_probs(model: torch.nn.Module, batch: Batch, ctc_loss: torch.nn.CTCLoss):
    core: AsrModel = model.module if isinstance(model, DistributedDataParallel) else model  # type: ignore[assignment]
    if core.decoder is None:
        log_probs, enc_lens = model(batch.feats, batch.feat_lens)
        return ctc_loss(log_probs.transpose(0, 1), batch.targets, enc_lens, batch.target_lens), log_probs, enc_lens
    ys_in, ys_out = decoder_io(batch.targets, batch.target_lens)
    log_probs, enc_lens, logits = model(batch.feats, batch.feat_lens, ys_in)
    loss = ctc_loss(log_probs.transpose(0, 1), batch.targets, enc_lens, batch.target_lens)
    att = attention_loss(logits, ys_out, core.label_smoothing)
    return core.ctc_weight * loss + (1 - core.ctc_weight) * att, log_probs, enc_lens


def _autocast(device: torch.device, enabled: bool, dtype: str = "bf16"):
    return torch.autocast(device_type=device.type, dtype=torch.float16 if dtype == "fp16" else torch.bfloat16,
                          enabled=enabled and device.type == "cuda")


def _grad_scaler(device: torch.device, use_amp: bool, dtype: str) -> torch.amp.GradScaler:
    """Dynamic loss scaling for fp16 autocast (a no-op scaler otherwise): fp16 gradients underflow
    without it; bf16 has fp32's range and needs none."""
    enabled = use_amp and dtype == "fp16"
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type, enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # torch < 2.3 (pyproject allows 2.2): CUDA only, as autocast here


@torch.no_grad()
def validate(model: AsrModel, loader, tokenizer: CharTokenizer, refs: dict[str, str], device: torch.device,
             amp: bool, amp_dtype: str = "bf16") -> tuple[float, float]:
    """Dev loss (per utterance) and greedy WER on the utterances the loader yields."""
    model.eval()
    ctc_loss = torch.nn.CTCLoss(blank=tokenizer.blank_id, reduction="sum", zero_infinity=True)
    total, count, hyps = 0.0, 0, {}
    for batch in loader:
        batch = batch.to(device)
        with _autocast(device, amp, amp_dtype):
            loss, log_probs, out_lens = _loss_and_log_probs(model, batch, ctc_loss)  # the training objective
        total += float(loss)
        count += len(batch.utt_ids)
        for utt, hyp in zip(batch.utt_ids, greedy_search(log_probs, out_lens, tokenizer.blank_id)):
            hyps[utt] = tokenizer.decode(hyp.tokens)
    report = score({u: refs[u] for u in hyps}, hyps)
    return total / max(count, 1), report.wer


def _batch_seed(seed: int, epoch: int, batch_index: int) -> int:
    return (seed * 1_000_003 + epoch) * 100_003 + batch_index


def train_one_epoch(model: AsrModel, loader, optimizer: torch.optim.Optimizer, ctc_loss: torch.nn.CTCLoss,
                    state: TrainState, cfg: ExperimentConfig, epoch: int, total_steps: int, device: torch.device,
                    save: Callable[[], None], info: DistInfo = DistInfo(),
                    scaler: torch.amp.GradScaler | None = None) -> tuple[float, int, float, int]:
    """One pass over ``loader``, continuing after ``state.batches_done`` batches of this epoch.

    Every batch is drawn under its own seed (seed, epoch, batch index), so a run
    resumed in the middle of an epoch sees the same batches, masks and dropout
    as one that never stopped (exactly so with ``num_workers=0``, the CPU default). ``save`` is called every ``train.save_every_steps``
    optimizer steps. Under torchrun the batch index in the seed is the global one,
    and all processes skip a batch together when any of them has a non-finite
    loss. Returns (summed loss, utterances, audio seconds, skipped batches) of
    this process.
    """
    tcfg = cfg.train
    use_amp = tcfg.amp and device.type == "cuda"
    if scaler is None:
        scaler = _grad_scaler(device, use_amp, tcfg.amp_dtype)
    frame_shift = cfg.feature.frame_shift_ms / 1000
    epoch_loss, epoch_utts, audio_seconds, skipped = 0.0, 0, 0.0, 0
    started = time.perf_counter()
    _seed_everything(_batch_seed(tcfg.seed, epoch, info.rank))
    with make_progress(TextColumn("{task.fields[info]}")) as progress:
        task = progress.add_task(f"epoch {epoch + 1}/{tcfg.epochs}", total=len(loader), info="",
                                 completed=state.batches_done)
        for index, batch in enumerate(loader):
            if index >= state.batches_done:
                lr = lr_at(state.step, tcfg, total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batch_audio = float(batch.feat_lens.sum()) * frame_shift  # on the host: no device sync
                batch = batch.to(device)
                with _autocast(device, use_amp, tcfg.amp_dtype):
                    loss_sum = compute_loss(model, batch, ctc_loss)
                num_utts = len(batch.utt_ids)
                loss = loss_sum / num_utts
                optimizer.zero_grad(set_to_none=True)
                finite = distributed.all_true(bool(torch.isfinite(loss)), info, device)
                if finite:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)  # (fp16) true gradients before clipping
                    # Clipping the global gradient norm keeps an exploding recurrent gradient
                    # from wrecking the weights in a single step.
                    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
                    finite = bool(torch.isfinite(grad_norm))
                    if not finite and scaler.is_enabled():  # fp16 overflow: smaller loss scale, batch skipped
                        scaler.update()
                if finite:
                    scaler.step(optimizer)
                    scaler.update()
                    state.step += 1
                    epoch_loss += float(loss_sum.detach())
                    epoch_utts += num_utts
                    audio_seconds += batch_audio
                else:  # a non-finite loss or gradient: skip the batch, count it
                    skipped += 1
                    state.skipped_batches += 1
                    optimizer.zero_grad(set_to_none=True)
                state.batches_done = index + 1
                speed = audio_seconds / max(time.perf_counter() - started, 1e-9)
                progress.update(task, advance=1, info=f"loss {epoch_loss / max(epoch_utts, 1):.3f} "
                                                      f"lr {lr:.2e} {speed:.0f} audio-s/s")
                if finite and tcfg.save_every_steps and state.step % tcfg.save_every_steps == 0:
                    save()
            _seed_everything(_batch_seed(tcfg.seed, epoch, (index + 1) * info.world_size + info.rank))  # next draw
    return epoch_loss, epoch_utts, audio_seconds, skipped


def _setup_file_log(out_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(out_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def train(train_dir: str | Path, dev_dir: str | Path | None, out_dir: str | Path, cfg: ExperimentConfig,
          resume: bool = False) -> TrainState:
    """Train a CTC model on ``train_dir``; evaluate on ``dev_dir`` after every epoch."""
    out_dir = Path(out_dir)
    last_path = out_dir / "last.pt"
    checkpoint = None
    if resume and last_path.exists():
        checkpoint = load_checkpoint(last_path)
        saved = config_from_dict(checkpoint["config"], str(last_path))
        if saved != cfg:
            log.warning("resuming with the config saved in %s; the config given now is ignored", last_path)
        cfg = saved
    elif last_path.exists():
        raise TrainingError(f"{out_dir} already holds a checkpoint; pass --resume to continue it or choose a new --out")
    info = distributed.from_env()
    handler, level = None, log.level
    if info.is_main:  # rank 0 writes the experiment dir; the others only train
        out_dir.mkdir(parents=True, exist_ok=True)
        handler = _setup_file_log(out_dir)
    else:
        log.setLevel(logging.WARNING)
    try:
        return _train(Path(train_dir), Path(dev_dir) if dev_dir else None, out_dir, cfg, checkpoint, info)
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        log.setLevel(level)
        distributed.shutdown(info)


def _train(train_dir: Path, dev_dir: Path | None, out_dir: Path, cfg: ExperimentConfig,
           checkpoint: dict | None, info: DistInfo = DistInfo()) -> TrainState:
    tcfg = cfg.train
    _seed_everything(tcfg.seed)
    if tcfg.num_threads > 0:
        torch.set_num_threads(tcfg.num_threads)
    device = pick_device(tcfg.device, info)
    use_amp = tcfg.amp and device.type == "cuda"
    distributed.init(info, device)
    if info.enabled:
        log.info("distributed: %d processes (%s), this is rank %d", info.world_size,
                 "nccl" if device.type == "cuda" else "gloo", info.rank)

    train_data = DataDir.load(train_dir)
    dev_data = DataDir.load(dev_dir) if dev_dir else None
    if not info.is_main:
        distributed.barrier(info)  # rank 0 computes and caches missing features first
    train_feats = get_features(train_data, cfg.feature, "features (train)")
    dev_feats = get_features(dev_data, cfg.feature, "features (dev)") if dev_data else {}
    if info.is_main:
        distributed.barrier(info)

    if checkpoint is not None:
        tokenizer = CharTokenizer(checkpoint["tokens"])
        cmvn = GlobalCMVN.from_dict(checkpoint["cmvn"])
        log.info("resuming %s from epoch %d, step %d", out_dir, checkpoint["train_state"]["epoch"],
                 checkpoint["train_state"]["step"])
    else:
        tokenizer = CharTokenizer.build(train_data.text.values())
        cmvn = GlobalCMVN.from_features(list(train_feats.values()))
        if info.is_main:
            save_config(cfg, out_dir / "config.yaml")
    if info.is_main:
        tokenizer.save(out_dir / "tokens.txt")
        cmvn.save(out_dir / "cmvn.json")

    train_ids, train_tokens, dropped = select_trainable(train_data, train_feats, tokenizer, cfg, tcfg.max_duration)
    log.info("train: %d utterances, %d dropped (label longer than the subsampled input: %d, longer than %.1f s: %d)",
             len(train_ids), dropped["too_long_label"] + dropped["too_long_audio"], dropped["too_long_label"],
             tcfg.max_duration, dropped["too_long_audio"])
    if dropped["unknown_chars"]:
        log.warning("train: %d characters are not in the token table and map to <unk>", dropped["unknown_chars"])
    if not train_ids:
        raise TrainingError(f"{train_dir}: no utterance is usable for training")
    norm = {u: cmvn(f) for u, f in train_feats.items() if u in train_tokens}
    train_set = AsrDataset(train_ids, norm, train_tokens, tcfg.spec_augment)
    sampler = BucketBatchSampler([train_set.num_frames(i) for i in range(len(train_set))],
                                 tcfg.max_frames_per_batch, tcfg.max_utts_per_batch, shuffle=True, seed=tcfg.seed,
                                 num_replicas=info.world_size, rank=info.rank)
    pin = device.type == "cuda"
    workers = tcfg.num_workers if tcfg.num_workers >= 0 else (2 if device.type == "cuda" else 0)
    train_loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, collate_fn=collate,
                                               num_workers=workers, pin_memory=pin,
                                               persistent_workers=workers > 0)
    dev_loader = None
    if dev_data is not None:
        dev_ids, dev_tokens, dev_dropped = select_trainable(dev_data, dev_feats, tokenizer, cfg, None)
        if dev_dropped["too_long_label"]:
            log.info("dev: %d utterances cannot be aligned by CTC and are left out of dev loss/WER",
                     dev_dropped["too_long_label"])
        if dev_dropped["unknown_chars"]:
            log.warning("dev: %d characters are not in the token table (built from train) and map to <unk>",
                        dev_dropped["unknown_chars"])
        if not dev_ids:
            raise TrainingError(f"{dev_dir}: no dev utterance can be aligned by CTC; check the dev set")
        dev_set = AsrDataset(dev_ids, {u: cmvn(dev_feats[u]) for u in dev_ids}, dev_tokens)
        dev_sampler = BucketBatchSampler([dev_set.num_frames(i) for i in range(len(dev_set))],
                                         tcfg.max_frames_per_batch, tcfg.max_utts_per_batch, shuffle=False)
        dev_loader = torch.utils.data.DataLoader(dev_set, batch_sampler=dev_sampler, collate_fn=collate)

    model = build_model(cfg.feature.dim, len(tokenizer), cfg.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    state = TrainState()
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model_state"])
        optimizer.load_state_dict(checkpoint["optimizer_state"])
        state = TrainState(**checkpoint["train_state"])
    train_model: torch.nn.Module = model
    if info.enabled:  # gradients averaged across processes; every process starts from rank 0's weights
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    num_params = sum(p.numel() for p in model.parameters())
    log.info("model: %s, %.2fM parameters, %d tokens, device %s%s", cfg.model.rnn_type, num_params / 1e6,
             len(tokenizer), device, f" ({tcfg.amp_dtype} autocast)" if use_amp else "")

    total_steps = tcfg.epochs * len(sampler)
    ctc_loss = torch.nn.CTCLoss(blank=tokenizer.blank_id, reduction="sum", zero_infinity=True)

    def payload() -> dict:
        return {
            "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
            "config": cfg.to_dict(), "tokens": tokenizer.symbols, "cmvn": cmvn.to_dict(),
            "feat_dim": cfg.feature.dim, "vocab_size": len(tokenizer), "train_state": dataclasses.asdict(state),
        }

    def save_mid_epoch() -> None:
        if info.is_main:
            save_checkpoint(out_dir / "last.pt", payload())

    scaler = _grad_scaler(device, use_amp, tcfg.amp_dtype)  # kept across epochs (not across a resume)
    for epoch in range(state.epoch, tcfg.epochs):
        sampler.set_epoch(epoch)
        model.train()
        started = time.perf_counter()
        try:
            stats = train_one_epoch(train_model, train_loader, optimizer, ctc_loss, state, cfg, epoch, total_steps,
                                    device, save_mid_epoch, info, scaler)
        except KeyboardInterrupt:
            save_mid_epoch()
            log.warning("interrupted in epoch %d after step %d; saved %s (continue with --resume)",
                        epoch + 1, state.step, out_dir / "last.pt")
            raise
        epoch_loss, epoch_utts, audio_seconds, skipped = stats
        epoch_loss, epoch_utts, audio_seconds = distributed.sum_all([epoch_loss, epoch_utts, audio_seconds], info,
                                                                    device)
        elapsed = time.perf_counter() - started
        train_loss = epoch_loss / max(epoch_utts, 1)
        if skipped:
            log.warning("epoch %d: skipped %d batches with a non-finite loss or gradient", epoch + 1, skipped)
        if epoch_utts == 0 and skipped:
            raise TrainingError(f"epoch {epoch + 1}: every batch had a non-finite loss; lower train.lr or check the data")
        dev_loss, dev_wer = (validate(model, dev_loader, tokenizer, dev_data.text, device, use_amp, tcfg.amp_dtype)
                             if dev_loader is not None and info.is_main else (math.nan, math.nan))
        state.epoch, state.batches_done = epoch + 1, 0
        # Select by dev loss: on small dev sets the greedy WER moves in coarse steps and
        # often crowns a lucky early epoch; the loss is the smoother signal.
        improved = dev_loader is None or (dev_loss, dev_wer) < (state.best_dev_loss, state.best_dev_wer)
        if improved and dev_loader is not None:
            state.best_dev_wer, state.best_dev_loss = dev_wer, dev_loss
        if not info.is_main:
            continue  # rank 0 evaluates, logs and saves
        log.info("epoch %d/%d: train loss %.4f, dev loss %.4f, dev WER %.2f%%, %.1f s, %.0f audio-s/s%s",
                 epoch + 1, tcfg.epochs, train_loss, dev_loss, 100 * dev_wer, elapsed, audio_seconds / elapsed,
                 " (best)" if improved else "")
        with open(out_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"epoch": epoch + 1, "step": state.step, "train_loss": train_loss,
                                     "dev_loss": dev_loss, "dev_wer": dev_wer, "lr": lr_at(state.step, tcfg, total_steps),
                                     "seconds": elapsed, "audio_seconds_per_second": audio_seconds / elapsed}) + "\n")
        blob = payload()
        save_checkpoint(out_dir / f"epoch_{epoch + 1}.pt", blob)  # kept for averaging and for going back
        save_checkpoint(out_dir / "last.pt", blob)
        if improved:
            save_checkpoint(out_dir / "best.pt", blob)
    if info.enabled:
        if not distributed.weights_agree(model, info, device):
            raise TrainingError("the processes ended with different weights (distributed training went wrong)")
        log.info("all %d processes hold the same weights", info.world_size)
        distributed.barrier(info)  # nobody tears the group down while a peer is still in a collective
    return state
