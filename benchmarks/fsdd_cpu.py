"""FSDD speed on this machine: training throughput and transcription real-time factor.

Prints, for the recipe's model and config:
  (a) the bare model step: forward + CTC + backward + AdamW over one epoch of
      batches collated in advance (no SpecAugment, no loader), in seconds of
      audio per second (benchmarks/train_throughput.py's, on the CPU);
  (b) the real training loop (`asrkit.training.trainer.train`, 2 epochs, dev evaluation
      excluded), in seconds of audio per second, and (b)/(a);
  (c) `transcribe` one file at a time (read, resample, features, model, search)
      on the 300 test files: real-time factor = wall time / audio duration.

Run the FSDD recipe up to stage 2 first (data dirs, features, a trained model):
    bash recipes/fsdd/run.sh --corpus-dir ../shared/corpora/fsdd
    python benchmarks/fsdd_cpu.py
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
from pathlib import Path

import soundfile
import torch
from train_throughput import bare_step_throughput, loop_throughput  # this folder

from asrkit.data.datadir import DataDir
from asrkit.recognize.recognizer import Recognizer

ROOT = Path(__file__).resolve().parents[1]


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
    bare, _ = bare_step_throughput(args.data / "train", args.config, torch.device("cpu"), args.batches)
    print(f"(a) bare model step:       {bare:8.0f} audio-s/s")
    loop = loop_throughput(args.data / "train", args.config, 2, "cpu")[-1]
    print(f"(b) training loop:         {loop:8.0f} audio-s/s   (b)/(a) = {loop / bare:.2f}")
    rtf, audio, count = transcribe_rtf(args.exp, args.data / "test")
    print(f"(c) transcribe, one file at a time: RTF {rtf:.4f} ({count} files, {audio:.1f} s of audio, "
          f"{1 / rtf:.0f}x faster than real time)")


if __name__ == "__main__":
    main()
