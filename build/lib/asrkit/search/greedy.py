"""Greedy CTC search (best path): the argmax of each frame, repeats collapsed, blanks dropped."""

from __future__ import annotations

import torch

from asrkit.search.types import Hypothesis


def greedy_search(log_probs: torch.Tensor, lengths: torch.Tensor, blank_id: int = 0) -> list[Hypothesis]:
    """Best path: argmax per frame, collapse repeats, drop blanks.

    log_probs: (B, T, V); lengths: (B,). A blank between two equal tokens keeps
    both ("a - a" -> "a a"), which is how CTC spells doubled letters.
    """
    best_scores, best_ids = log_probs.detach().max(dim=-1)  # (B, T)
    best_ids = best_ids.cpu()
    best_scores = best_scores.float().cpu()
    hyps = []
    for b in range(log_probs.size(0)):
        length = int(lengths[b])
        ids = best_ids[b, :length]
        if length == 0:
            hyps.append(Hypothesis([], 0.0, []))
            continue
        # Keep frame t when its token differs from frame t-1 and is not blank.
        changed = torch.ones_like(ids, dtype=torch.bool)
        changed[1:] = ids[1:] != ids[:-1]
        keep = changed & (ids != blank_id)
        frames = torch.nonzero(keep).flatten()
        hyps.append(Hypothesis(ids[frames].tolist(), float(best_scores[b, :length].sum()), frames.tolist()))
    return hyps


__all__ = ["greedy_search"]
