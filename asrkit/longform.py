"""Long recordings: cut at the quietest moments into segments the model handles well.

A BiLSTM trained on utterances of a few seconds decodes best on inputs of that
size, and memory grows with the input. ``split_on_silence`` walks through the
recording and ends each segment at the lowest-energy 100 ms between
``min_seconds`` and ``max_seconds`` after its start (energy-based segmentation,
no overlap): in speech with pauses the cuts land in the pauses, so no word is
split and each segment is decoded as an utterance of its own. Word times are
shifted back to the recording's clock.
"""

from __future__ import annotations

import numpy as np


def split_on_silence(samples: np.ndarray, rate: int, max_seconds: float = 20.0, min_seconds: float = 5.0,
                     window_seconds: float = 0.1) -> list[tuple[int, int]]:
    """[start, end) sample ranges covering ``samples``, each at most ``max_seconds`` long."""
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
