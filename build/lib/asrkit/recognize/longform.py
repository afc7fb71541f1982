"""Long recordings: cut at pauses into utterance-sized segments the model handles well.

A BiLSTM trained on utterances of a few seconds decodes best on inputs of that
kind, and memory grows with the input. ``split_on_silence`` is an energy-based
segmenter: 10 ms frame energies, a threshold between the recording's noise
floor and its loud frames, and a cut in the middle of every pause of at least
``min_pause`` seconds (in recordings longer than ``max_seconds``; shorter ones
stay whole), so that each segment is an utterance between pauses; a
stretch longer than ``max_seconds`` without such a pause is cut at its
quietest 100 ms between ``min_seconds`` and ``max_seconds`` (no overlap).
Segments are decoded as utterances of their own; word times are shifted back
to the recording's clock.
"""

from __future__ import annotations

import numpy as np


def split_on_silence(samples: np.ndarray, rate: int, max_seconds: float = 20.0, min_seconds: float = 5.0,
                     min_pause: float = 0.25, window_seconds: float = 0.1) -> list[tuple[int, int]]:
    """[start, end) sample ranges covering ``samples``, each at most ``max_seconds`` long.

    A recording of at most ``max_seconds`` is one segment, whole: it is decoded as
    ``asrkit decode`` decodes an utterance. A longer one is cut at every pause.
    """
    total = len(samples)
    if total <= max_seconds * rate:
        return [(0, total)]
    hop = max(int(0.01 * rate), 1)
    frames = total // hop
    if frames < 2:
        return [(0, total)]
    energy = np.square(samples[: frames * hop].reshape(frames, hop).astype(np.float32)).mean(1, dtype=np.float64)
    level = 10 * np.log10(energy + 1e-12)
    floor, loud = np.percentile(level, 10), np.percentile(level, 90)
    silent = level < floor + max(6.0, 0.25 * (loud - floor))
    cuts = [0]
    run_start = None
    for index, quiet in enumerate(np.append(silent, False)):
        if quiet and run_start is None:
            run_start = index
        elif not quiet and run_start is not None:
            if index - run_start >= min_pause * 100 and run_start > 0 and index < frames:
                cuts.append((run_start + index) // 2 * hop)
            run_start = None
    cuts.append(total)
    segments = []
    for start, end in zip(cuts, cuts[1:]):
        segments.extend((start + a, start + b) for a, b in _split_long(samples[start:end], rate, max_seconds,
                                                                      min_seconds, window_seconds))
    return segments


def _split_long(samples: np.ndarray, rate: int, max_seconds: float, min_seconds: float,
                window_seconds: float) -> list[tuple[int, int]]:
    """Cut a stretch without pauses at its quietest moments into pieces of at most ``max_seconds``."""
    total = len(samples)
    max_len = int(max_seconds * rate)
    if total <= max_len:
        return [(0, total)]
    min_len = min(int(min_seconds * rate), max_len // 2)
    hop = max(int(0.01 * rate), 1)
    frames = len(samples) // hop
    energy = np.square(samples[: frames * hop].reshape(frames, hop).astype(np.float64)).mean(1)
    width = max(int(window_seconds * rate / hop), 1)
    # mean energy of the window starting at each hop (a cut goes to the window's middle)
    cumulative = np.concatenate([[0.0], np.cumsum(energy)])
    windowed = (cumulative[width:] - cumulative[:-width]) / width if frames >= width else energy
    segments, start = [], 0
    while total - start > max_len:
        lo = (start + min_len) // hop
        hi = min((start + max_len) // hop - width, len(windowed) - 1)
        if hi <= lo:
            cut = start + max_len
        else:
            best = lo + int(np.argmin(windowed[lo:hi + 1]))
            cut = (best + width // 2) * hop
        segments.append((start, cut))
        start = cut
    segments.append((start, total))
    return segments


__all__ = ["split_on_silence"]
