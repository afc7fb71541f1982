"""Greedy CTC search (best path): the argmax of each frame, repeats collapsed, blanks dropped."""

from __future__ import annotations

import numpy as np

from asrkit.search.types import Hypothesis, as_array


def greedy_search(log_probs, lengths, blank_id: int = 0) -> list[Hypothesis]:
    """Best path: argmax per frame, collapse repeats, drop blanks.

    log_probs: (B, T, V); lengths: (B,) (numpy arrays or torch tensors). A blank
    between two equal tokens keeps both ("a - a" -> "a a"), which is how CTC
    spells doubled letters.
    """
    log_probs = as_array(log_probs, np.float32)
    lengths = as_array(lengths, np.int64)
    best_ids = log_probs.argmax(-1)  # (B, T)
    best_scores = np.take_along_axis(log_probs, best_ids[..., None], -1)[..., 0]
    hyps = []
    for b in range(log_probs.shape[0]):
        length = int(lengths[b])
        ids = best_ids[b, :length]
        if length == 0:
            hyps.append(Hypothesis([], 0.0, []))
            continue
        # Keep frame t when its token differs from frame t-1 and is not blank.
        changed = np.ones(length, dtype=bool)
        changed[1:] = ids[1:] != ids[:-1]
        frames = np.nonzero(changed & (ids != blank_id))[0]
        hyps.append(Hypothesis(ids[frames].tolist(), float(best_scores[b, :length].sum()), frames.tolist()))
    return hyps


__all__ = ["greedy_search"]
