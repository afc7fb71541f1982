"""Transcribing a 30-minute recording: peak memory, real-time factor, and WER against the pieces.

Builds one long recording from a data dir's utterances (in turn, repeated until
``--minutes``, with 0.3 s of near-silence between them), then runs
``asrkit transcribe`` on it in a child process (peak resident memory of that
process, ru_maxrss) and compares:
  - WER of the long transcript against the concatenated references;
  - WER of the same utterances decoded one by one (``asrkit decode`` on the
    data dir, once per distinct utterance, repeated as in the long file).
Bars (issue 5): peak memory < 2 GB, long WER within 1 point of the pieces.

    bash recipes/digits/run.sh          # a model with word separators and its test set
    python benchmarks/long_audio.py
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from asrkit.data.audio import load_audio
from asrkit.data.datadir import DataDir
from asrkit.recognize.recognizer import Recognizer
from asrkit.scoring import align

ROOT = Path(__file__).resolve().parents[1]
# The child reports VmHWM, the peak resident memory of its own address space: ru_maxrss would
# carry over the parent's peak through fork/vfork + exec.
CHILD = ("import re, sys\nfrom asrkit.cli import main\ncode = main(sys.argv[1:])\n"
         "hwm = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)\n"
         "print('peak_kb', hwm, file=sys.stderr)\nsys.exit(code)")


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word error rate of one long transcript (asrkit.scoring aligns long strings in one byte per cell)."""
    return align(reference.split(), hypothesis.split()).counts().rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, default=ROOT / "recipes/digits/exp/bilstm/avg_10.pt")
    parser.add_argument("--data", type=Path, default=ROOT / "recipes/digits/data/test")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--max-seconds", type=float, default=20.0)
    args = parser.parse_args()

    recognizer = Recognizer(args.exp)
    rate = recognizer.sample_rate
    data = DataDir.load(args.data)
    utts = data.utt_ids()
    audio = {u.utt_id: load_audio(u.audio_path, rate, u.start, u.end) for u in data.utterances()}
    gap = np.random.default_rng(0).normal(0, 1e-4, int(0.3 * rate)).astype(np.float32)
    order, pieces, total = [], [], 0
    while total < args.minutes * 60 * rate:
        utt = utts[len(order) % len(utts)]
        order.append(utt)
        pieces.extend([audio[utt], gap])
        total += len(audio[utt]) + len(gap)
    seconds = total / rate
    reference = " ".join(data.text[u] for u in order)

    started = time.perf_counter()
    single = {r.key: r.text for r in recognizer.transcribe_files([u.audio_path for u in data.utterances()])}
    by_utt = {u.utt_id: single[u.audio_path] for u in data.utterances()}
    pieces_wer = word_error_rate(reference, " ".join(by_utt[u] for u in order))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.flac"
        soundfile.write(path, np.concatenate(pieces), rate, subtype="PCM_16")
        del pieces
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", CHILD, "-q", "transcribe", str(args.exp), str(path),
                               "--max-seconds", str(args.max_seconds)], capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(done.stderr)
    peak_mb = int(done.stderr.split("peak_kb")[-1]) / 1024  # kB on Linux
    long_wer = word_error_rate(reference, done.stdout.strip())
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}; "
          f"model {args.exp}")
    print(f"recording: {seconds / 60:.1f} min ({len(order)} utterances of {args.data}, 0.3 s pauses), "
          f"segments <= {args.max_seconds} s")
    print(f"asrkit transcribe (greedy): {wall:.1f} s wall incl. start-up, RTF {wall / seconds:.4f}, "
          f"peak RSS of that process {peak_mb:.0f} MB")
    print(f"WER long file {100 * long_wer:.2f}%, pieces one by one {100 * pieces_wer:.2f}%, "
          f"difference {100 * (long_wer - pieces_wer):+.2f} points")


if __name__ == "__main__":
    main()
