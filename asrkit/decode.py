"""CTC search: pure functions from log-probabilities to hypotheses.

``greedy_search`` (best path), ``prefix_beam_search`` (batched, tensorised CTC
prefix beam search with optional word n-gram LM fusion) and
``prefix_beam_search_reference`` (the plain pure-Python version it is tested
against; both agree with brute-force enumeration on tiny inputs). The batched
search lives in ``asrkit.prefix_search``, the result type and prefix keys in
``asrkit.hypothesis``; all are importable from here.
"""

from __future__ import annotations

import math

import torch

from asrkit.errors import DecodeError
from asrkit.hypothesis import Hypothesis, check_log_probs, extend_key, sequence_key
from asrkit.prefix_search import WordConstraint, WordScorer, prefix_beam_search, resolve_boundary


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


@torch.no_grad()
def attention_rescore(decoder: torch.nn.Module, enc: torch.Tensor, enc_lens: torch.Tensor,
                      nbest: list[list[Hypothesis]], ctc_weight: float = 0.5,
                      max_rows: int = 256) -> list[list[Hypothesis]]:
    """Rerank each utterance's CTC n-best with the attention decoder (as WeNet's attention_rescoring).

    enc: (B, T, D) and enc_lens: (B,), the encoder output computed once; nbest[b]
    the hypotheses of utterance b. Every hypothesis is scored under teacher
    forcing, all of them in one batch (``max_rows`` at a time):
    ``score = log P_att(tokens + <eos>) + ctc_weight * ctc_score + lm_score``.
    """
    from asrkit.model.decoder import decoder_io, sequence_log_probs

    rows = [(b, hyp) for b, hyps in enumerate(nbest) for hyp in hyps]
    att_scores: list[float] = []
    for start in range(0, len(rows), max_rows):
        chunk = rows[start:start + max_rows]
        index = torch.tensor([b for b, _ in chunk], device=enc.device)
        lens = torch.tensor([len(h.tokens) for _, h in chunk], device=enc.device)
        targets = torch.zeros((len(chunk), max(int(lens.max()), 1)), dtype=torch.long, device=enc.device)
        for i, (_, hyp) in enumerate(chunk):
            targets[i, :len(hyp.tokens)] = torch.tensor(hyp.tokens, dtype=torch.long)
        ys_in, ys_out = decoder_io(targets, lens)
        logits = decoder(enc.index_select(0, index), enc_lens.index_select(0, index), ys_in)
        att_scores.extend(sequence_log_probs(logits, ys_out).tolist())
    results: list[list[Hypothesis]] = [[] for _ in nbest]
    for (b, hyp), att in zip(rows, att_scores):
        ctc = hyp.ctc_score if hyp.ctc_score is not None else hyp.score
        total = att + ctc_weight * ctc + (hyp.lm_score or 0.0)
        results[b].append(Hypothesis(hyp.tokens, total, hyp.timesteps, ctc, hyp.lm_score, att))
    for hyps in results:
        hyps.sort(key=lambda h: h.score, reverse=True)
    return results


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
                                 word_starts=None) -> list[list[Hypothesis]]:
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

    results = []
    for b in range(lp_all.size(0)):
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
            ranked = sorted(nxt.items(), key=lambda kv: _logaddexp(kv[1][0], kv[1][1]) + lm_of(kv[0])[0],
                            reverse=True)
            beams = dict(ranked[:beam])
        scored = [(p, v, _logaddexp(v[0], v[1]), final_lm(p)) for p, v in beams.items()]
        scored.sort(key=lambda item: item[2] + item[3], reverse=True)
        if space_id is not None and any(not p or p[-1] != space_id for p, *_ in scored):
            scored = [item for item in scored if not item[0] or item[0][-1] != space_id]
        if lexicon is not None and any(not last_word(p) or last_word(p) in words for p, *_ in scored):
            scored = [item for item in scored if not last_word(item[0]) or last_word(item[0]) in words]
        results.append([Hypothesis(list(prefix), ctc + lm_score, list(v[2]), ctc,
                                   None if lm is None else lm_score)
                        for prefix, v, ctc, lm_score in scored[:nbest]])
    return results


__all__ = ["Hypothesis", "WordConstraint", "WordScorer", "attention_rescore", "check_log_probs", "extend_key",
           "greedy_search", "prefix_beam_search", "prefix_beam_search_reference", "sequence_key"]
