"""The plain reference CTC prefix beam search: the specification the batched search is tested against.

Pure Python, one utterance at a time, every token considered for every prefix.
It lives with the tests (and benchmarks/beam.py and lexicon.py import it from
here): the package ships only the batched search, ``asrkit.search.prefix_beam_search``.
"""

from __future__ import annotations

import math

import torch

from asrkit.errors import DecodeError
from asrkit.search.context import context_score
from asrkit.search.prefix import resolve_boundary
from asrkit.search.types import Hypothesis, WordScorer, extend_key


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    if a < b:
        a, b = b, a
    return a + math.log1p(math.exp(b - a))


def prefix_beam_search_reference(log_probs: torch.Tensor, lengths: torch.Tensor, beam: int = 10, nbest: int = 1,
                                 token_prune: int | None = None, blank_id: int = 0,
                                 token_min_logp: float | None = None,
                                 space_id: int | None = None,
                                 lexicon: list[list[int]] | None = None,
                                 lm: WordScorer | None = None,
                                 word_starts=None, context=None) -> list[list[Hypothesis]]:
    """CTC prefix beam search: for each utterance, the ``nbest`` most probable label sequences.

    log_probs: (B, T, V); lengths: (B,). Each prefix carries two log-probabilities,
    of its alignments ending in blank and ending in its last token, so that a
    repeated token is handled exactly: "a a" collapses to one "a", "a - a" is two.
    ``token_prune`` keeps only the most probable tokens of each frame; ``beam``
    keeps the best prefixes after each frame. A Hypothesis' score is the log of
    the total probability of its prefix (summed over alignments), and its
    timesteps are the frames where each token was appended (a prefix already
    in the beam keeps its history when an extension merges into it).

    Words end at ``space_id`` (a separator token, part of no word) or, with
    ``word_starts`` (one bool per token), before each word-start token.
    ``lexicon`` (words as token lists): every word of a hypothesis must be one of them
    (with word-start tokens, each word a word-start token and then others).
    ``lm``: each word adds its LM score when it ends, the last word
    and </s> add theirs at the end, and prefixes are ranked by CTC + LM.
    ``context`` (a ``ContextGraph`` of hotwords, or a list of one per utterance): its definition, ``context_score`` of the
    prefix's tokens (completed phrases and the match in progress; at the end the completed
    ones), joins the ranking and the score.

    This is the plain reference implementation (pure Python, one utterance at a
    time, every token considered): the specification that ``prefix_beam_search``
    must reproduce (tested).
    """
    if beam < 1 or nbest < 1:
        raise DecodeError(f"beam and nbest must be >= 1 (beam={beam}, nbest={nbest})")
    if torch.isnan(log_probs).any():
        raise DecodeError("log-probabilities contain NaN")
    lp_all = log_probs.detach().float().cpu()
    num_tokens = lp_all.size(-1)
    space_id, starts = resolve_boundary(space_id, word_starts, lm, num_tokens)
    keep_tokens = num_tokens if token_prune is None else min(token_prune, num_tokens)
    words = {tuple(w) for w in lexicon} if lexicon is not None else set()
    word_prefixes = {w[:i] for w in words for i in range(1, len(w) + 1)}

    def last_word(prefix: tuple[int, ...]) -> tuple[int, ...]:
        if starts is not None:
            return prefix[max((i for i, tok in enumerate(prefix) if starts[tok]), default=0):]
        cut = max((i + 1 for i, tok in enumerate(prefix) if tok == space_id), default=0)
        return prefix[cut:]

    def ends_word(prefix: tuple[int, ...], token: int) -> bool:
        """Whether appending ``token`` to ``prefix`` ends its pending word."""
        return token == space_id if starts is None else (starts[token] and bool(last_word(prefix)))

    lm_memo: dict[tuple[int, ...], tuple[float, int, int]] = {}

    def lm_of(prefix: tuple[int, ...]) -> tuple[float, int, int]:
        """(LM score of the words the prefix has ended, LM state, key of the word being spelt)."""
        if lm is None:
            return 0.0, 0, 0
        if prefix not in lm_memo:
            if not prefix:
                lm_memo[prefix] = (0.0, lm.start_state, 0)
            else:
                total, state, word = lm_of(prefix[:-1])
                fresh = 0 if starts is None else extend_key(0, prefix[-1])
                if ends_word(prefix[:-1], prefix[-1]) and word != 0:
                    delta, nxt = lm.word_scores(torch.tensor([state]), torch.tensor([word]))
                    lm_memo[prefix] = (total + float(delta[0]), int(nxt[0]), fresh)
                elif ends_word(prefix[:-1], prefix[-1]) or (starts is not None and starts[prefix[-1]]):
                    lm_memo[prefix] = (total, state, fresh)
                else:
                    lm_memo[prefix] = (total, state, extend_key(word, prefix[-1]))
        return lm_memo[prefix]

    def final_lm(prefix: tuple[int, ...]) -> float:
        if lm is None:
            return 0.0
        total, state, word = lm_of(prefix)
        return total + float(lm.final_scores(torch.tensor([state]), torch.tensor([word]))[0])

    graph = context

    def bias(prefix: tuple[int, ...], final: bool) -> float:
        return 0.0 if graph is None else context_score(list(prefix), graph, final)

    results = []
    for b in range(lp_all.size(0)):
        if isinstance(context, list):  # each utterance its own hotwords
            graph = context[b]
        length = int(lengths[b])
        # prefix -> [log p(ends in blank), log p(ends in token), timesteps]
        beams: dict[tuple[int, ...], list] = {(): [0.0, -math.inf, []]}
        for t in range(length):
            frame = lp_all[b, t]
            if keep_tokens < num_tokens:
                top = torch.topk(frame, keep_tokens).indices.tolist()
                candidates = [c for c in top if c != blank_id]
            else:
                candidates = [c for c in range(num_tokens) if c != blank_id]
            if token_min_logp is not None:
                candidates = [c for c in candidates if frame[c] >= token_min_logp]
            frame_list = frame.tolist()
            blank_lp = frame_list[blank_id]
            nxt: dict[tuple[int, ...], list] = {}

            def entry(prefix, timesteps):
                item = nxt.get(prefix)
                if item is None:  # a prefix already in the beam keeps its own history
                    item = nxt[prefix] = [-math.inf, -math.inf, beams[prefix][2] if prefix in beams else timesteps]
                return item

            for prefix, (p_blank, p_token, steps) in beams.items():
                total = _logaddexp(p_blank, p_token)
                item = entry(prefix, steps)  # stay on the prefix through a blank
                item[0] = _logaddexp(item[0], total + blank_lp)
                if prefix:  # the last token repeats: no new label (kept even if pruned: it is no new branch)
                    item[1] = _logaddexp(item[1], p_token + frame_list[prefix[-1]])
                for c in candidates:
                    lp = frame_list[c]
                    if c == space_id and (not prefix or prefix[-1] == space_id):
                        continue  # a separator never starts a prefix nor follows itself
                    if lexicon is not None and starts is not None:  # a new word only after a whole one
                        if starts[c] and ((last_word(prefix) and last_word(prefix) not in words)
                                          or (c,) not in word_prefixes):
                            continue
                        if not starts[c] and last_word(prefix) + (c,) not in word_prefixes:
                            continue
                    elif lexicon is not None:  # spell lexicon words only, end whole ones only
                        if c == space_id and last_word(prefix) not in words:
                            continue
                        if c != space_id and last_word(prefix) + (c,) not in word_prefixes:
                            continue
                    if prefix and c == prefix[-1]:
                        if p_blank > -math.inf:  # after a blank, the same token is a new label
                            new = entry(prefix + (c,), steps + [t])
                            new[1] = _logaddexp(new[1], p_blank + lp)
                    else:
                        new = entry(prefix + (c,), steps + [t])
                        new[1] = _logaddexp(new[1], total + lp)
            ranked = sorted(nxt.items(), key=lambda kv: _logaddexp(kv[1][0], kv[1][1]) + lm_of(kv[0])[0]
                            + bias(kv[0], False), reverse=True)
            beams = dict(ranked[:beam])
        scored = [(p, v, _logaddexp(v[0], v[1]), final_lm(p), bias(p, True)) for p, v in beams.items()]
        scored.sort(key=lambda item: item[2] + item[3] + item[4], reverse=True)
        if space_id is not None and any(not p or p[-1] != space_id for p, *_ in scored):
            scored = [item for item in scored if not item[0] or item[0][-1] != space_id]
        if lexicon is not None and any(not last_word(p) or last_word(p) in words for p, *_ in scored):
            scored = [item for item in scored if not last_word(item[0]) or last_word(item[0]) in words]
        results.append([Hypothesis(list(prefix), ctc + lm_score + ctx, list(v[2]), ctc,
                                   None if lm is None else lm_score,
                                   context_score=None if context is None or (
                                       isinstance(context, list) and all(g is None for g in context)) else ctx)
                        for prefix, v, ctc, lm_score, ctx in scored[:nbest]])
    return results
