"""Training throughput: the bare model step against the real training loop, in seconds of audio per second.

(a) bare model step: forward + loss (CTC, or joint CTC/attention as configured)
    + backward + gradient clipping + AdamW, under the same autocast as
    training, over one epoch of batches collated in advance and already on the
    device (no loader, no SpecAugment, no host-to-device copies);
(b) the real training loop, ``asrkit.training.trainer.train`` for ``--epochs`` epochs
    (loader, SpecAugment, copies, logging; dev evaluation excluded), the last
    epoch's figure;
and (b)/(a): how close the loop comes to keeping the device busy.

``--compare-packing`` times (a) twice, with the recurrent layers on packed sequences (the
peer: torch's usual way, asrkit's CPU path before the padded one) and on asrkit's path for
the device (padded on the CPU), and prints the ratio.

    bash recipes/an4/run.sh --corpus-dir ../shared/corpora/an4 --stop-stage 2   # data and features
    python benchmarks/train_throughput.py                                        # AN4, conf bilstm_1a
    python benchmarks/train_throughput.py --data recipes/fsdd/data/train --config recipes/fsdd/conf/bilstm.yaml
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from pathlib import Path

import torch

import asrkit.model.encoder as encoder_module
from asrkit.config import load_config
from asrkit.data.datadir import DataDir
from asrkit.data.dataset import AsrDataset, BucketBatchSampler, collate
from asrkit.data.featstore import compute_missing
from asrkit.data.features import GlobalCMVN
from asrkit.model import build_model
from asrkit.model.recurrent import run_packed, run_rnn
from asrkit.tokenizer import CharTokenizer
from asrkit.training.loss import autocast, compute_loss, select_trainable
from asrkit.training.trainer import grad_scaler, pick_device, train

ROOT = Path(__file__).resolve().parents[1]


def bare_step_throughput(data_dir: Path, config: Path, device: torch.device, max_batches: int,
                         overrides: list[str] = ()) -> tuple[float, int]:
    cfg = load_config(config, list(overrides))
    data = DataDir.load(data_dir)
    feats = compute_missing(data, cfg.feature)
    tokenizer = CharTokenizer.build(data.text.values())
    cmvn = GlobalCMVN.from_features(feats[u] for u in data.utt_ids())
    frames = {u: feats.num_frames(u) for u in data.utt_ids()}
    ids, tokens, _ = select_trainable(data, frames, tokenizer, cfg, cfg.train.max_duration)
    dataset = AsrDataset(ids, feats, tokens, None, cmvn, frames)
    sampler = BucketBatchSampler([dataset.num_frames(i) for i in range(len(dataset))],
                                 cfg.train.max_frames_per_batch, cfg.train.max_utts_per_batch, seed=0)
    batches = [collate([dataset[i] for i in b]).to(device) for b in sampler.batches()[: max_batches or None]]
    torch.manual_seed(0)
    model = build_model(cfg.feature.dim, len(tokenizer), cfg.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ctc = torch.nn.CTCLoss(blank=0, reduction="sum", zero_infinity=True)
    shift = cfg.feature.frame_shift_ms / 1000
    use_amp = cfg.train.amp and device.type == "cuda"
    scaler = grad_scaler(device, use_amp, cfg.train.amp_dtype)

    def step(batch) -> None:
        with autocast(device, use_amp, cfg.train.amp_dtype):
            loss = compute_loss(model, batch, ctc) / len(batch.utt_ids)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        scaler.step(optimizer)
        scaler.update()

    model.train()
    for batch in batches[:3]:  # warm-up (cuDNN plans, allocator)
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    audio = 0.0
    for batch in batches:
        step(batch)
        audio += float(batch.feat_lens.sum()) * shift
    if device.type == "cuda":
        torch.cuda.synchronize()
    return audio / (time.perf_counter() - started), len(batches)


def loop_throughput(data_dir: Path, config: Path, epochs: int, device: str, overrides: list[str] = ()) -> list[float]:
    cfg = load_config(config, list(overrides) + [f"train.epochs={epochs}", f"train.device={device}"])
    with tempfile.TemporaryDirectory() as tmp:
        train(data_dir, None, Path(tmp) / "exp", cfg)
        rows = [json.loads(line) for line in (Path(tmp) / "exp" / "metrics.jsonl").read_text().splitlines()]
    return [r["audio_seconds_per_second"] for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "recipes/an4/data/train_sp")
    parser.add_argument("--config", type=Path, default=ROOT / "recipes/an4/conf/bilstm_1a.yaml")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--epochs", type=int, default=2,
                        help="training-loop epochs (the last one is reported; 0: bare step only)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="config override for both, e.g. train.amp_dtype=fp16 or train.amp=false (repeatable)")
    parser.add_argument("--batches", type=int, default=0, help="batches timed for the bare step (0: a whole epoch)")
    parser.add_argument("--compare-packing", action="store_true",
                        help="also time the bare step with packed recurrent layers, and print the ratio")
    args = parser.parse_args()
    logging.getLogger("asrkit").setLevel(logging.WARNING)
    device = pick_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    print(f"machine: {name}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"python {platform.python_version()}; data {args.data}, config {args.config} {' '.join(args.overrides)}")
    bare, count = bare_step_throughput(args.data, args.config, device, args.batches, args.overrides)
    print(f"(a) bare model step:  {bare:9.0f} audio-s/s  ({count} device-resident batches)")
    if args.compare_packing:
        encoder_module.run_rnn = run_packed
        packed, _ = bare_step_throughput(args.data, args.config, device, args.batches, args.overrides)
        encoder_module.run_rnn = run_rnn
        print(f"    packed recurrence: {packed:9.0f} audio-s/s; asrkit's path x{bare / packed:.2f} faster")
    if args.epochs < 1:
        return
    loop = loop_throughput(args.data, args.config, args.epochs, device.type, args.overrides)
    print(f"(b) training loop:    {loop[-1]:9.0f} audio-s/s  (epochs: {', '.join(f'{x:.0f}' for x in loop)})")
    print(f"(b)/(a) = {loop[-1] / bare:.2f}")


if __name__ == "__main__":
    main()
