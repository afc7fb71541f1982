"""CTC search: pure functions from log-probabilities to hypotheses."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


@dataclass
class Hypothesis:
    tokens: list[int]
    score: float  # log-probability of the path (greedy) or of the prefix (beam)
    timesteps: list[int] = field(default_factory=list)  # encoder frame of each token


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


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    if a < b:
        a, b = b, a
    return a + math.log1p(math.exp(b - a))


def prefix_beam_search(log_probs: torch.Tensor, lengths: torch.Tensor, beam: int = 10, nbest: int = 1,
                       token_prune: int | None = None, blank_id: int = 0) -> list[list[Hypothesis]]:
    """CTC prefix beam search: for each utterance, the ``nbest`` most probable label sequences.

    log_probs: (B, T, V); lengths: (B,). Each prefix carries two log-probabilities,
    of its alignments ending in blank and ending in its last token, so that a
    repeated token is handled exactly: "a a" collapses to one "a", "a - a" is two.
    ``token_prune`` keeps only the most probable tokens of each frame; ``beam``
    keeps the best prefixes after each frame. A Hypothesis' score is the log of
    the total probability of its prefix (summed over alignments), and its
    timesteps are the frames where each token was emitted on the best path
    into the prefix.

    This is the plain reference implementation (pure Python, one utterance at a
    time); its results are what a faster implementation must reproduce.
    """
    if beam < 1 or nbest < 1:
        raise ValueError(f"beam and nbest must be >= 1 (beam={beam}, nbest={nbest})")
    if torch.isnan(log_probs).any():
        raise ValueError("log-probabilities contain NaN")
    lp_all = log_probs.detach().float().cpu()
    num_tokens = lp_all.size(-1)
    keep_tokens = num_tokens if token_prune is None else min(token_prune, num_tokens)
    results = []
    for b in range(lp_all.size(0)):
        length = int(lengths[b])
        # prefix -> [log p(ends in blank), log p(ends in token), best-path score, timesteps]
        beams: dict[tuple[int, ...], list] = {(): [0.0, -math.inf, 0.0, []]}
        for t in range(length):
            frame = lp_all[b, t]
            if keep_tokens < num_tokens:
                top = torch.topk(frame, keep_tokens).indices.tolist()
                candidates = [c for c in top if c != blank_id]
            else:
                candidates = [c for c in range(num_tokens) if c != blank_id]
            frame_list = frame.tolist()
            blank_lp = frame_list[blank_id]
            nxt: dict[tuple[int, ...], list] = {}

            def entry(prefix, timesteps, best):
                item = nxt.get(prefix)
                if item is None:
                    item = nxt[prefix] = [-math.inf, -math.inf, -math.inf, timesteps]
                if best > item[2]:
                    item[2], item[3] = best, timesteps
                return item

            for prefix, (p_blank, p_token, best, steps) in beams.items():
                total = _logaddexp(p_blank, p_token)
                item = entry(prefix, steps, best + blank_lp)  # stay on the prefix through a blank
                item[0] = _logaddexp(item[0], total + blank_lp)
                for c in candidates:
                    lp = frame_list[c]
                    if prefix and c == prefix[-1]:
                        item = entry(prefix, steps, best + lp)  # the token repeats: no new label
                        item[1] = _logaddexp(item[1], p_token + lp)
                        if p_blank > -math.inf:  # after a blank, the same token is a new label
                            new = entry(prefix + (c,), steps + [t], best + lp)
                            new[1] = _logaddexp(new[1], p_blank + lp)
                    else:
                        new = entry(prefix + (c,), steps + [t], best + lp)
                        new[1] = _logaddexp(new[1], total + lp)
            ranked = sorted(nxt.items(), key=lambda kv: _logaddexp(kv[1][0], kv[1][1]), reverse=True)
            beams = dict(ranked[:beam])
        ranked = sorted(beams.items(), key=lambda kv: _logaddexp(kv[1][0], kv[1][1]), reverse=True)
        results.append([Hypothesis(list(prefix), _logaddexp(v[0], v[1]), list(v[3])) for prefix, v in ranked[:nbest]])
    return results
