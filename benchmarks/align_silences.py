"""Do aligned word boundaries fall in the silences between words? (issue 5's check on yesno)

For a CTM from ``asrkit align`` and its data dir: for each pair of consecutive
words, the quietest 10 ms between the end of one and the start of the next,
in dB over the recording's noise floor (10th percentile of its 10 ms frame
energies); and the loudest 10 ms inside each word.

    asrkit align recipes/yesno/exp/bilstm/avg_10.pt recipes/yesno/data/test --out /tmp/yesno.ctm
    python benchmarks/align_silences.py /tmp/yesno.ctm recipes/yesno/data/test
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from asrkit.data.audio import read_audio
from asrkit.data.datadir import DataDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ctm", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--floor-margin", type=float, default=6.0, help="dB over the floor that still counts as silence")
    args = parser.parse_args()
    data = DataDir.load(args.data)
    words: dict[str, list[tuple[float, float]]] = {}
    for line in args.ctm.read_text().splitlines():
        utt, _, start, duration, _word, _conf = line.split()
        words.setdefault(utt, []).append((float(start), float(start) + float(duration)))
    gaps, peaks = [], []
    for utt, spans in sorted(words.items()):
        audio, rate = read_audio(data.wav_scp[utt])
        hop = rate // 100
        frames = len(audio) // hop
        db = 10 * np.log10(np.square(audio[: frames * hop].reshape(frames, hop)).mean(1) + 1e-10)
        floor = np.percentile(db, 10)
        for (_, end), (start, _) in zip(spans, spans[1:]):
            lo, hi = int(round(end * 100)), max(int(round(start * 100)), int(round(end * 100)) + 1)
            gaps.append(db[lo:hi].min() - floor)
        peaks.extend(db[int(s * 100):max(int(e * 100), int(s * 100) + 1)].max() - floor for s, e in spans)
    gaps_a, peaks_a = np.array(gaps), np.array(peaks)
    print(f"{len(words)} utterances, {len(peaks_a)} words, {len(gaps_a)} boundaries between consecutive words")
    print(f"quietest 10 ms between two words, dB over the floor: median {np.median(gaps_a):.1f}, "
          f"95th percentile {np.percentile(gaps_a, 95):.1f}, max {gaps_a.max():.1f}; "
          f"silence (within {args.floor_margin:g} dB of the floor) in {(gaps_a < args.floor_margin).sum()} "
          f"of {len(gaps_a)} gaps")
    print(f"loudest 10 ms inside each word, dB over the floor: median {np.median(peaks_a):.1f}, "
          f"min {peaks_a.min():.1f}")


if __name__ == "__main__":
    main()
