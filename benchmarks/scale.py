"""Corpora of any size: feature extraction speed with --nj, and training memory flat in corpus size.

Makes its own synthetic data dirs (16 kHz WAV files of tone "words" in noise, 1-7 s
each, random transcripts over a 20-letter alphabet) of ``--small`` and ``--large``
hours, then prints:
  - extraction speed on the large set with ``asrkit features --nj 1`` and ``--nj 2``,
    in x real time, and the speed-up (target on 2 cores: >= 1.7);
  - the peak resident memory (VmHWM) of ``asrkit train`` on each set with a small
    model and ``train.max_steps`` fixed, for the main process and the largest
    DataLoader worker (``num_workers: 2``) (target: large <= 1.15 x small, for both);
  - training steps/s with ``num_workers`` 0 and 2 (from ``steps.jsonl``'s times).

    python benchmarks/scale.py                       # 0.5 h and 5 h under /tmp/asrkit-scale16k
    python benchmarks/scale.py --small 0.05 --large 0.5 --steps 10    # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile

RATE = 16000  # LibriSpeech's rate and feature size: 16 kHz, 80-dim fbank
LETTERS = "abcdefghijklmnopqrst"
CONFIG = """
feature: {sample_rate: 16000, num_mel_bins: 80}
model: {num_layers: 1, hidden_size: 64, dropout: 0.0}
train: {epochs: 100, lr: 0.002, warmup_steps: 10, max_frames_per_batch: 12000, seed: 0, device: cpu,
        spec_augment: {enabled: true}}
"""


def make_data_dir(root: Path, hours: float, seed: int) -> Path:
    """Synthetic utterances until ``hours`` of audio: WAV files, text, utt2spk, spk2utt."""
    from asrkit.data.datadir import DataDir

    if (root / "text").is_file():
        return root
    rng = np.random.default_rng(seed)
    audio_dir = root / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    data, total, index = DataDir(), 0.0, 0
    freqs = {ch: 300.0 + 150.0 * i for i, ch in enumerate(LETTERS)}
    while total < hours * 3600:
        words = ["".join(rng.choice(list(LETTERS), size=int(rng.integers(2, 6)))) for _ in range(int(rng.integers(3, 9)))]
        pieces = []
        for word in words:
            for ch in word:
                t = np.arange(int(rng.uniform(0.08, 0.15) * RATE)) / RATE
                pieces.append(0.3 * np.sin(2 * np.pi * freqs[ch] * t))
            pieces.append(np.zeros(int(rng.uniform(0.1, 0.3) * RATE)))
        audio = np.concatenate(pieces)
        audio = (audio + rng.normal(0, 0.01, audio.shape)).astype(np.float32)
        utt = f"spk{index % 20:02d}-{index:06d}"
        path = audio_dir / f"{utt}.wav"
        soundfile.write(path, audio, RATE, subtype="PCM_16")
        data.wav_scp[utt], data.text[utt], data.utt2spk[utt] = str(path), " ".join(words), f"spk{index % 20:02d}"
        total += len(audio) / RATE
        index += 1
    data.save(root)
    return root


def hours_of(data_dir: Path) -> float:
    return sum(soundfile.info(line.split(" ", 1)[1].strip()).duration
               for line in (data_dir / "wav.scp").read_text().splitlines()) / 3600


def asrkit(*args: str, env=None) -> list[str]:
    return [sys.executable, "-m", "asrkit", "-q", *args]


def extraction(data_dir: Path, nj: int, config: Path) -> float:
    for path in list(data_dir.glob("feats.*")) + [data_dir / "utt2num_frames"]:
        path.unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run(asrkit("features", str(data_dir), "--config", str(config), "--nj", str(nj)), check=True)
    return time.perf_counter() - start


def _hwm_kb(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(found.group(1)) if found else None


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def train_peaks(train_dir: Path, config: Path, out: Path, steps: int, workers: int) -> dict:
    """Run a training of ``steps`` steps; peaks (MB) of the main process and its largest worker,
    and steps/s from steps.jsonl's times."""
    shutil.rmtree(out, ignore_errors=True)
    command = asrkit("train", "--train", str(train_dir), "--config", str(config), "--out", str(out),
                     "--set", f"train.max_steps={steps}", "--set", f"train.num_workers={workers}")
    process = subprocess.Popen(command)
    main_peak, worker_peak = 0, 0
    while process.poll() is None:
        main_peak = max(main_peak, _hwm_kb(process.pid) or 0)
        for kid in _children(process.pid):
            worker_peak = max(worker_peak, _hwm_kb(kid) or 0)
        time.sleep(0.05)
    if process.returncode != 0:
        raise SystemExit(f"training failed with exit code {process.returncode}")
    rows = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    rate = (len(rows) - 1) / max(rows[-1]["time"] - rows[0]["time"], 1e-9)
    return {"main_mb": main_peak / 1024, "worker_mb": worker_peak / 1024, "steps_per_s": rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/asrkit-scale16k"))
    parser.add_argument("--small", type=float, default=0.5, help="hours of the small set")
    parser.add_argument("--large", type=float, default=5.0, help="hours of the large set")
    parser.add_argument("--steps", type=int, default=40, help="train.max_steps of each training")
    parser.add_argument("--repeats", type=int, default=3, help="extraction runs per --nj, alternating")
    parser.add_argument("--skip-train", action="store_true", help="extraction only")
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    config = args.root / "scale.yaml"
    config.write_text(CONFIG)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    small = make_data_dir(args.root / f"small_{args.small:g}h", args.small, seed=1)
    large = make_data_dir(args.root / f"large_{args.large:g}h", args.large, seed=2)
    hours = {"small": hours_of(small), "large": hours_of(large)}
    print(f"data: small {hours['small']:.2f} h ({len((small / 'text').read_text().splitlines())} utterances), "
          f"large {hours['large']:.2f} h ({len((large / 'text').read_text().splitlines())} utterances)")

    runs: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):  # alternating: a shared machine drifts
        for nj in (1, 2):
            runs[nj].append(extraction(large, nj, config))
    for nj, took in runs.items():
        print(f"features --nj {nj}: {', '.join(f'{t:.1f}' for t in took)} s (whole command), best "
              f"{hours['large'] * 3600 / min(took):.0f} x real time")
    print(f"speed-up --nj 2 / --nj 1: best {min(runs[1]) / min(runs[2]):.2f}, median "
          f"{float(np.median(runs[1])) / float(np.median(runs[2])):.2f} (target >= 1.7 on 2 cores)")
    extraction(small, 2, config)
    if args.skip_train:
        return

    peaks = {}
    for name, data_dir in (("small", small), ("large", large)):
        for workers in (0, 2):
            peaks[name, workers] = train_peaks(data_dir, config, args.root / f"exp_{name}_{workers}", args.steps, workers)
            p = peaks[name, workers]
            print(f"train {name} ({hours[name]:.2f} h), num_workers {workers}: main peak {p['main_mb']:.0f} MB, "
                  f"largest worker {p['worker_mb']:.0f} MB, {p['steps_per_s']:.2f} steps/s")
    for workers in (0, 2):
        ratio = peaks["large", workers]["main_mb"] / peaks["small", workers]["main_mb"]
        print(f"num_workers {workers}: main peak large / small = {ratio:.3f} (target <= 1.15)")
    ratio = peaks["large", 2]["worker_mb"] / max(peaks["small", 2]["worker_mb"], 1e-9)
    print(f"num_workers 2: worker peak large / small = {ratio:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
