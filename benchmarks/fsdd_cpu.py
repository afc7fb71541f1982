"""FSDD speed on this machine: training throughput and transcription real-time factor.

Prints, for the recipe's model and config:
  (a) the bare model step: forward + CTC + backward + AdamW over one epoch of
      batches collated in advance (no SpecAugment, no loader), in seconds of
      audio per second;
  (b) the real training loop (`asrkit.train.train`, 2 epochs, dev evaluation
      excluded), in seconds of audio per second, and (b)/(a);
  (c) `transcribe` one file at a time (read, resample, features, model, search)
      on the 300 test files: real-time factor = wall time / audio duration.

Run the FSDD recipe up to stage 2 first (data dirs, features, a trained model):
    bash recipes/fsdd/run.sh --corpus-dir ../shared/corpora/fsdd
    python benchmarks/fsdd_cpu.py
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from pathlib import Path

import soundfile
import torch

from asrkit.config import load_config
from asrkit.datadir import DataDir
from asrkit.dataset import AsrDataset, BucketBatchSampler, collate
from asrkit.features import GlobalCMVN, get_features
from asrkit.inference import Recognizer
from asrkit.model import build_model
from asrkit.tokenizer import CharTokenizer
from asrkit.train import select_trainable, train

ROOT = Path(__file__).resolve().parents[1]


def bare_step_throughput(data_dir: Path, config: Path, num_batches: int) -> float:
    cfg = load_config(config)
    data = DataDir.load(data_dir)
    feats = get_features(data, cfg.feature)
    tokenizer = CharTokenizer.build(data.text.values())
    cmvn = GlobalCMVN.from_features(list(feats.values()))
    ids, tokens, _ = select_trainable(data, feats, tokenizer, cfg, cfg.train.max_duration)
    dataset = AsrDataset(ids, {u: cmvn(feats[u]) for u in ids}, tokens)
    sampler = BucketBatchSampler([dataset.num_frames(i) for i in range(len(dataset))],
                                 cfg.train.max_frames_per_batch, cfg.train.max_utts_per_batch, seed=0)
    batches = [collate([dataset[i] for i in b]) for b in sampler.batches()[: num_batches or None]]
    torch.manual_seed(0)
    model = build_model(cfg.feature.dim, len(tokenizer), cfg.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ctc = torch.nn.CTCLoss(zero_infinity=True, reduction="sum")
    shift = cfg.feature.frame_shift_ms / 1000

    def step(batch):
        log_probs, out_lens = model(batch.feats, batch.feat_lens)
        loss = ctc(log_probs.transpose(0, 1), batch.targets, out_lens, batch.target_lens) / len(batch.utt_ids)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    model.train()
    step(batches[0])  # warm-up
    started = time.perf_counter()
    audio = 0.0
    for batch in batches:
        step(batch)
        audio += float(batch.feat_lens.sum()) * shift
    return audio / (time.perf_counter() - started)


def loop_throughput(data_dir: Path, config: Path) -> float:
    cfg = load_config(config, ["train.epochs=2"])
    with tempfile.TemporaryDirectory() as tmp:
        train(data_dir, None, Path(tmp) / "exp", cfg)
        rows = [json.loads(line) for line in (Path(tmp) / "exp" / "metrics.jsonl").read_text().splitlines()]
    return sum(r["audio_seconds_per_second"] for r in rows) / len(rows)


def transcribe_rtf(exp: Path, test_dir: Path) -> tuple[float, float, int]:
    recognizer = Recognizer(exp)
    paths = [u.audio_path for u in DataDir.load(test_dir).utterances()]
    recognizer.transcribe_files(paths[:5])  # warm-up
    audio = sum(soundfile.info(p).duration for p in paths)
    started = time.perf_counter()
    for path in paths:
        recognizer.transcribe_files([path])
    wall = time.perf_counter() - started
    return wall / audio, audio, len(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "recipes/fsdd/data")
    parser.add_argument("--exp", type=Path, default=ROOT / "recipes/fsdd/exp/bilstm")
    parser.add_argument("--config", type=Path, default=ROOT / "recipes/fsdd/conf/bilstm.yaml")
    parser.add_argument("--batches", type=int, default=0, help="batches timed for the bare model step (0: a whole epoch)")
    args = parser.parse_args()
    logging.getLogger("asrkit").setLevel(logging.WARNING)

    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, python {platform.python_version()}")
    bare = bare_step_throughput(args.data / "train", args.config, args.batches)
    print(f"(a) bare model step:       {bare:8.0f} audio-s/s")
    loop = loop_throughput(args.data / "train", args.config)
    print(f"(b) training loop:         {loop:8.0f} audio-s/s   (b)/(a) = {loop / bare:.2f}")
    rtf, audio, count = transcribe_rtf(args.exp, args.data / "test")
    print(f"(c) transcribe, one file at a time: RTF {rtf:.4f} ({count} files, {audio:.1f} s of audio, "
          f"{1 / rtf:.0f}x faster than real time)")


if __name__ == "__main__":
    main()
