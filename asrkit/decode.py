"""CTC search: pure functions from log-probabilities to hypotheses.

``greedy_search`` (best path), ``prefix_beam_search`` (batched, tensorised CTC
prefix beam search with optional word n-gram LM fusion) and
``prefix_beam_search_reference`` (the plain pure-Python version it is tested
against; both agree with brute-force enumeration on tiny inputs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from asrkit.errors import DecodeError


@dataclass
class Hypothesis:
    tokens: list[int]
    score: float  # log-probability of the path (greedy) or of the prefix (beam), plus LM terms when fused
    timesteps: list[int] = field(default_factory=list)  # encoder frame of each token
    ctc_score: float | None = None  # the CTC part of ``score`` (beam search)
    lm_score: float | None = None  # the LM part: weight * ln P_lm + bonus * words (beam search with an LM)
    att_score: float | None = None  # log P(tokens + <eos>) under the attention decoder (rescoring)


def check_log_probs(log_probs: torch.Tensor, lengths: torch.Tensor) -> None:
    if log_probs.dim() != 3 or lengths.dim() != 1 or lengths.numel() != log_probs.size(0):
        raise DecodeError(f"log-probabilities must be (B, T, V) with (B,) lengths, got {tuple(log_probs.shape)} "
                          f"and {tuple(lengths.shape)}")
    if torch.isnan(log_probs).any():
        raise DecodeError("log-probabilities contain NaN")
    if lengths.numel() and (int(lengths.max()) > log_probs.size(1) or int(lengths.min()) < 0):
        raise DecodeError(f"lengths must lie in [0, {log_probs.size(1)}]")


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


# Prefixes are identified by a polynomial hash of their tokens modulo a prime
# near 2**43, in int64 arithmetic that never overflows (key * P + token < 2**63),
# so it is the same on every device. Two different prefixes in one beam share a
# key with probability ~1e-13 per pair.
_MODULUS = 9223344365791
_BASE = 1000003
_NO_PREFIX, _NO_PARENT, _ROOT_PARENT = -1, -2, -3


def extend_key(key, token):
    """Key of a token sequence with ``token`` appended (ints or int64 tensors); the empty sequence is 0."""
    return (key * _BASE + (token + 1)) % _MODULUS


def sequence_key(tokens) -> int:
    key = 0
    for token in tokens:
        key = extend_key(key, int(token))
    return key


class WordConstraint(Protocol):
    """What ``prefix_beam_search`` needs from a lexicon (see ``asrkit.lexicon.Lexicon``): a trie
    of token ids, one node per prefix's word being spelt (node 0: no letter yet)."""

    pad_token: int  # the token id that pads ``children`` rows (the vocabulary size)

    def children(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens, next nodes) of shape ``nodes.shape + (C,)``: what may follow each node."""

    def is_word(self, nodes: torch.Tensor) -> torch.Tensor:
        """Whether each node ends an allowed word."""


class WordScorer(Protocol):
    """What ``prefix_beam_search`` needs from a word LM (see ``asrkit.lm.LmFusion``)."""

    space_id: int | None  # the token that ends a word (None: one word per utterance)
    start_state: int

    def word_scores(self, states: torch.Tensor, word_keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For 1-D ``states`` and ``word_keys`` (nonzero): (weight * ln P(word | state) + bonus, next states)."""

    def final_scores(self, states: torch.Tensor, word_keys: torch.Tensor) -> torch.Tensor:
        """Score of ending the sentence: the pending word (key 0: none) and then </s>."""


def _prune_frame(frame: torch.Tensor, blank_id: int, token_prune: int | None,
                 token_min_logp: float | None) -> torch.Tensor:
    """A frame's token log-probs with -inf where a token may not extend a prefix: the blank, tokens
    outside the ``token_prune`` most probable, tokens below ``token_min_logp``."""
    allowed = frame.clone()
    if token_prune is not None and token_prune < frame.size(1):
        allowed.masked_fill_(frame < frame.topk(token_prune, dim=1).values[:, -1:], -math.inf)
    if token_min_logp is not None:
        allowed.masked_fill_(frame < token_min_logp, -math.inf)
    allowed[:, blank_id] = -math.inf
    return allowed


def _token_log_probs(frame_pad: torch.Tensor, tokens: torch.Tensor, token_prune: int | None,
                     token_min_logp: float | None) -> torch.Tensor:
    """Log-probs of ``tokens`` (n, K) in a padded frame (n, V + 1), -inf where pruning drops them."""
    token_lp = frame_pad.gather(1, tokens)
    if token_prune is not None and token_prune < frame_pad.size(1) - 1:
        token_lp.masked_fill_(token_lp < frame_pad.topk(token_prune, dim=1).values[:, -1:], -math.inf)
    if token_min_logp is not None:
        token_lp.masked_fill_(token_lp < token_min_logp, -math.inf)
    return token_lp


def _shared_candidates(frame: torch.Tensor, limit: int, blank_id: int, token_prune: int | None,
                       token_min_logp: float | None, keep_id: int | None, all_tokens: torch.Tensor):
    """Tokens that may extend the prefixes of each utterance at this frame, the same for all of them.

    frame: (n, V). Only the ``limit`` (2·beam+2) most probable tokens can extend a prefix into
    the next beam: a better token loses only by being the blank, the prefix's last token, or an
    extension merged into a prefix already in the beam, so at least ``beam`` of them beat any
    token further down. ``keep_id`` (the separator under LM fusion, whose word score may lift it)
    is a candidate whatever its rank. Returns tokens and log-probs, each (n, 1, w), and whether
    the tokens are the whole vocabulary in order.
    """
    n, vocab = frame.shape
    if keep_id is not None:  # the others by rank, the separator in a column of its own
        allowed = _prune_frame(frame, blank_id, token_prune, token_min_logp)
        others = torch.cat([allowed[:, :keep_id], allowed[:, keep_id + 1:]], 1)  # no column twice
        token_lp, tokens = others.topk(min(vocab - 1, limit), dim=1)
        tokens += tokens >= keep_id
        tokens = torch.cat([tokens, torch.full((n, 1), keep_id, dtype=tokens.dtype, device=tokens.device)], 1)
        token_lp = torch.cat([token_lp, allowed[:, keep_id, None]], 1)
        return tokens[:, None], token_lp[:, None], False
    width = min(vocab, token_prune or vocab, limit)
    if token_min_logp is not None:  # on peaky CTC output most frames keep a token or two
        width = max(1, min(width, int((frame >= token_min_logp).sum(1).max())))
    if width < vocab:
        token_lp, tokens = frame.topk(width, dim=1)
    else:
        tokens, token_lp = all_tokens[:n], frame
    token_lp = token_lp.masked_fill(tokens == blank_id, -math.inf)
    if token_min_logp is not None:
        token_lp.masked_fill_(token_lp < token_min_logp, -math.inf)
    return tokens[:, None], token_lp[:, None], width == vocab


def _lexicon_candidates(frame: torch.Tensor, lexicon: WordConstraint, nodes: torch.Tensor, limit: int,
                        blank_id: int, token_prune: int | None, token_min_logp: float | None,
                        space_id: int | None):
    """Tokens that may legally extend each prefix: the children of its trie node (the ``limit``
    most probable of them, as in ``_shared_candidates``), and the separator when the node ends a
    word. frame: (n, V); nodes: (n, K). Returns tokens, log-probs and next nodes, each (n, K, w)."""
    n, beam = nodes.shape
    allowed = torch.nn.functional.pad(_prune_frame(frame, blank_id, token_prune, token_min_logp), (0, 1),
                                      value=-math.inf)  # the last column is the padding token's
    tokens, next_nodes = lexicon.children(nodes)
    token_lp = allowed.gather(1, tokens.view(n, -1)).view(tokens.shape)
    if tokens.size(2) > limit:
        token_lp, column = token_lp.topk(limit, dim=2)
        tokens, next_nodes = tokens.gather(2, column), next_nodes.gather(2, column)
    if space_id is not None:
        space_lp = allowed[:, space_id, None].expand(n, beam).masked_fill(~lexicon.is_word(nodes), -math.inf)
        tokens = torch.cat([tokens, torch.full((n, beam, 1), space_id, dtype=tokens.dtype, device=tokens.device)], 2)
        token_lp = torch.cat([token_lp, space_lp[:, :, None]], 2)
        next_nodes = torch.cat([next_nodes, torch.zeros_like(next_nodes[:, :, :1])], 2)
    return tokens, token_lp, next_nodes


def prefix_beam_search(log_probs: torch.Tensor, lengths: torch.Tensor, beam: int = 10, nbest: int = 1,
                       token_prune: int | None = None, blank_id: int = 0,
                       lm: WordScorer | None = None, token_min_logp: float | None = None,
                       space_id: int | None = None,
                       lexicon: WordConstraint | None = None) -> list[list[Hypothesis]]:
    """CTC prefix beam search over a batch at once: the ``nbest`` best label sequences per utterance.

    log_probs: (B, T, V); lengths: (B,). Per prefix it keeps the log-probability
    of its alignments ending in blank and ending in its last token (so "a a"
    collapses and "a - a" does not), extends every prefix by every token kept by
    ``token_prune`` (the most probable tokens of each frame; None keeps all)
    whose log-probability is at least ``token_min_logp`` (None: any), merges an
    extension with the equal prefix already in the beam, and keeps the
    ``beam`` best prefixes per frame. All utterances and prefixes move together
    as (B, beam) tensors: one frame is a few dozen tensor operations whatever
    the batch size, on the CPU or the GPU.

    ``space_id`` names the word separator (``lm.space_id`` when an LM is given):
    it then never starts a prefix, never follows itself and never ends a
    hypothesis, as in the transcripts the model learnt from, so each
    hypothesis is a distinct text and its score the exact probability of it.

    With ``lexicon``, every word of a hypothesis is a lexicon word: each prefix
    follows a node of the lexicon's trie, only the node's children and (after
    a whole word) the separator may extend it, and at the end the hypotheses
    whose last word is unfinished are dropped (unless no other is left).

    With ``lm``, a word's LM score (weight * ln P + bonus) joins a prefix's score
    when the word ends (the space token; the last word and </s> at the end) and
    steers the pruning (shallow fusion).

    Returns, per utterance, ``Hypothesis(tokens, score, timesteps, ctc_score,
    lm_score)`` best first; ``score`` = ``ctc_score`` (log of the summed
    probability of the prefix's alignments) + ``lm_score``; ``timesteps`` are the
    frames where each token was appended, on the history the prefix kept (a
    prefix already in the beam keeps its own when an extension merges into it).
    Results equal ``prefix_beam_search_reference`` (tested), with a lexicon and an LM too.
    """
    if beam < 1 or nbest < 1:
        raise DecodeError(f"beam and nbest must be >= 1 (beam={beam}, nbest={nbest})")
    if token_prune is not None and token_prune < 1:
        raise DecodeError(f"token_prune must be >= 1, not {token_prune}")
    check_log_probs(log_probs, lengths)
    batch, _, vocab = log_probs.shape
    if not 0 <= blank_id < vocab:
        raise DecodeError(f"blank id {blank_id} outside the {vocab} tokens")
    if lexicon is not None and lexicon.pad_token != vocab:
        raise DecodeError(f"the lexicon was built for {lexicon.pad_token} tokens, the log-probabilities have {vocab}")
    if batch == 0:
        return []
    device = log_probs.device
    # longest first, so that the utterances still running at frame t are rows [:n]
    order = torch.argsort(lengths.to(device), descending=True, stable=True)
    lp = torch.nn.functional.pad(log_probs.detach().float()[order], (0, 1), value=-math.inf)
    sorted_lengths = lengths.to(device)[order].tolist()
    max_frames = sorted_lengths[0]
    # utterances still running at frame t: the lengths (descending) greater than t
    running = np.searchsorted(-np.asarray(sorted_lengths), -np.arange(max_frames), side="left").tolist()
    K = beam
    limit = 2 * beam + 2
    neg_inf = -math.inf

    # per prefix slot: log p(alignments ending in blank), log p(... ending in its last token)
    p_blank = torch.full((batch, K), neg_inf, device=device)
    p_token = torch.full((batch, K), neg_inf, device=device)
    key = torch.full((batch, K), _NO_PREFIX, dtype=torch.long, device=device)
    parent = torch.full((batch, K), _NO_PARENT, dtype=torch.long, device=device)  # key of the prefix minus its last token
    last = torch.full((batch, K), vocab, dtype=torch.long, device=device)  # vocab: no token yet
    p_blank[:, 0] = 0.0
    key[:, 0] = 0
    parent[:, 0] = _ROOT_PARENT
    lm_total = torch.zeros((batch, K), device=device)
    if lm is not None:
        lm_state = torch.full((batch, K), lm.start_state, dtype=torch.long, device=device)
        space_id = lm.space_id if space_id is None else space_id
        word_key = torch.zeros((batch, K), dtype=torch.long, device=device)  # key of the word being spelt
    if lexicon is not None:
        node = torch.zeros((batch, K), dtype=torch.long, device=device)  # trie node of the word being spelt
    keep_id = space_id if lm is not None else None
    back_slot = torch.arange(K, dtype=torch.long, device=device).repeat(max_frames, batch, 1)
    back_token = torch.full((max_frames, batch, K), -1, dtype=torch.long, device=device)
    all_tokens = torch.arange(vocab, device=device).expand(batch, vocab)
    neg_inf_t = torch.tensor(neg_inf, device=device)
    no_prefix = torch.tensor(_NO_PREFIX, device=device)
    no_parent = torch.tensor(_NO_PARENT, device=device)

    for t in range(max_frames):
        n = running[t]
        frame_pad = lp[:n, t]  # (n, V + 1): the extra column (-inf) is the "last token" of the empty prefix
        frame = frame_pad[:, :vocab]
        pb, pt, ky, par, lst = p_blank[:n], p_token[:n], key[:n], parent[:n], last[:n]
        total = torch.logaddexp(pb, pt)
        # staying on a prefix: through a blank, or by repeating its last token
        stay_blank = total + frame[:, blank_id, None]
        stay_token = pt + frame_pad.gather(1, lst)
        # extending a prefix by a token: (n, K, width), written into the candidate row after the K stays
        if lexicon is None:
            tokens, token_lp, full = _shared_candidates(frame, limit, blank_id, token_prune, token_min_logp,
                                                        keep_id, all_tokens)
        else:
            tokens, token_lp, next_node = _lexicon_candidates(frame, lexicon, node[:n], limit, blank_id,
                                                              token_prune, token_min_logp, space_id)
            full = False
        width = tokens.size(2)
        candidates = torch.empty((n, K + K * width), device=device)
        ext = candidates[:, K:]
        ext3 = ext.view(n, K, width)
        is_repeat = tokens == lst[:, :, None]  # a repeat is a new label only after a blank
        torch.where(is_repeat, pb[:, :, None], total[:, :, None], out=ext3)
        ext3.add_(token_lp)
        if space_id is not None and lexicon is None:  # no separator at the start or after a separator
            no_space = (lst == vocab) | (lst == space_id)  # (with a lexicon: node 0 is no word)
            ext3.masked_fill_((tokens == space_id) & no_space[:, :, None], neg_inf)
        # extension k + c equal to prefix j already in the beam: merged into j (j keeps its history)
        has_source, source = (par[:, :, None] == ky[:, None, :]).max(-1)  # (n, j): the slot k of j's parent
        merge = has_source & (lst < vocab)
        if full:  # every token is a column: j's last token is its own column
            flat = source * width + lst.clamp(max=vocab - 1)
            merged = ext.gather(1, flat)
            ext.scatter_(1, torch.where(merge, flat, blank_id), neg_inf)  # the others: slot 0's blank column
        else:
            # j's token may be outside the columns (not among the best of the frame, or of its
            # parent's legal ones): its mass is computed here, and the column, if any, dropped
            source_last = lst.gather(1, source)
            merged = torch.where(source_last == lst, pb.gather(1, source), total.gather(1, source)) + \
                _token_log_probs(frame_pad, lst, token_prune, token_min_logp)
            source_tokens = is_repeat if tokens.size(1) == 1 else \
                tokens.gather(1, source[:, :, None].expand(n, K, width)) == lst[:, :, None]
            has_column, column = source_tokens.max(-1)
            rows, slots = (merge & has_column).nonzero(as_tuple=True)
            ext[rows, (source * width + column)[rows, slots]] = neg_inf
        stay_token = torch.logaddexp(stay_token, merged.masked_fill_(~merge, neg_inf))
        torch.logaddexp(stay_blank, stay_token, out=candidates[:, :K])
        ext_ctc = ext
        if lm is not None:
            ext_ctc = ext.clone()
            lm_n = lm_total[:n]
            candidates[:, :K].add_(lm_n)
            ext3.add_(lm_n[:, :, None])
            if space_id is not None:
                word_delta, word_next = _score_words(lm, lm_state[:n], word_key[:n], ky != _NO_PREFIX)
                ext3.add_(torch.where(tokens == space_id, word_delta[:, :, None], 0.0))
        top, index = candidates.topk(K, dim=1, sorted=False)  # the order inside a beam does not matter
        is_stay = index < K
        ext_index = (index - K).clamp_(min=0)
        src = torch.where(is_stay, index, ext_index // width)
        chosen = tokens[:, 0].gather(1, ext_index % width) if tokens.size(1) == 1 else \
            tokens.reshape(n, K * width).gather(1, ext_index)
        token = torch.where(is_stay, -1, chosen)
        src_key = ky.gather(1, src)
        valid = top > neg_inf
        back_slot[t, :n] = src
        back_token[t, :n] = token
        torch.where(is_stay, stay_blank.gather(1, src), neg_inf_t, out=p_blank[:n])
        torch.where(is_stay, stay_token.gather(1, src), ext_ctc.gather(1, ext_index), out=p_token[:n])
        torch.where(valid, torch.where(is_stay, src_key, extend_key(src_key, token)), no_prefix, out=key[:n])
        torch.where(valid, torch.where(is_stay, par.gather(1, src), src_key), no_parent, out=parent[:n])
        torch.where(is_stay, lst.gather(1, src), token, out=last[:n])
        if lexicon is not None:
            node[:n] = torch.where(is_stay, node[:n].gather(1, src), next_node.reshape(n, K * width).gather(1, ext_index))
        if lm is not None:
            ended = ~is_stay & (token == space_id) if space_id is not None else torch.zeros_like(is_stay)
            word_src = word_key[:n].gather(1, src)
            word_key[:n] = torch.where(is_stay, word_src, torch.where(ended, 0, extend_key(word_src, token)))
            lm_src = lm_n.gather(1, src)
            state_src = lm_state[:n].gather(1, src)
            if space_id is not None:
                lm_total[:n] = torch.where(ended, lm_src + word_delta.gather(1, src), lm_src)
                lm_state[:n] = torch.where(ended, word_next.gather(1, src), state_src)
            else:
                lm_total[:n], lm_state[:n] = lm_src, state_src

    ctc = torch.logaddexp(p_blank, p_token)
    if lm is not None:
        valid = key != _NO_PREFIX
        final = torch.zeros_like(lm_total)
        if valid.any():
            final[valid] = lm.final_scores(lm_state[valid], word_key[valid]).to(final)
        lm_total = lm_total + final
    score = ctc + lm_total
    if space_id is not None:  # a hypothesis does not end in a separator (unless nothing else is left)
        trailing = last == space_id
        others = ((key != _NO_PREFIX) & ~trailing).any(1, keepdim=True)
        score = score.masked_fill(trailing & others, neg_inf)
    if lexicon is not None:  # the last word is a whole lexicon word (unless nothing else is left)
        unfinished = (node != 0) & ~lexicon.is_word(node)
        others = ((key != _NO_PREFIX) & ~unfinished & (score > neg_inf)).any(1, keepdim=True)
        score = score.masked_fill(unfinished & others, neg_inf)
    ranked = score.topk(min(nbest, K), dim=1).indices  # (B, N)
    found = _backtrack(ranked, score, ctc, lm_total if lm is not None else None, back_slot, back_token)
    results: list[list[Hypothesis]] = [[] for _ in range(batch)]
    for row, utt in enumerate(order.tolist()):
        results[utt] = found[row]
    return results


def _score_words(lm: WordScorer, states: torch.Tensor, word_keys: torch.Tensor, valid: torch.Tensor):
    """LM delta and next state for ending each prefix's pending word now (0 and unchanged when none)."""
    delta = torch.zeros(states.shape, dtype=torch.float32, device=states.device)
    nxt = states.clone()
    pending = valid & (word_keys != 0)
    if pending.any():
        d, n = lm.word_scores(states[pending], word_keys[pending])
        delta[pending] = d.to(delta)
        nxt[pending] = n.to(nxt)
    return delta, nxt


def _backtrack(order, score, ctc, lm_total, back_slot, back_token) -> list[list[Hypothesis]]:
    slots_bt = back_slot.cpu().numpy()
    tokens_bt = back_token.cpu().numpy()
    order_np = order.cpu().numpy()
    score_np, ctc_np = score.cpu().numpy(), ctc.cpu().numpy()
    lm_np = lm_total.cpu().numpy() if lm_total is not None else None
    batch, count = order_np.shape
    rows = np.arange(batch)[:, None]
    current = order_np.copy()
    emitted = np.full((len(slots_bt), batch, count), -1, dtype=np.int64)
    for t in range(len(slots_bt) - 1, -1, -1):  # follow the back-pointers of all hypotheses at once
        emitted[t] = tokens_bt[t][rows, current]
        current = slots_bt[t][rows, current]
    results = []
    for b in range(batch):
        hyps = []
        for n in range(count):
            slot = order_np[b, n]
            if not math.isfinite(score_np[b, slot]):
                continue
            frames = np.nonzero(emitted[:, b, n] >= 0)[0]
            hyps.append(Hypothesis(emitted[frames, b, n].tolist(), float(score_np[b, slot]), frames.tolist(),
                                   float(ctc_np[b, slot]), None if lm_np is None else float(lm_np[b, slot])))
        results.append(hyps)
    return results


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
                                 lm: WordScorer | None = None) -> list[list[Hypothesis]]:
    """CTC prefix beam search: for each utterance, the ``nbest`` most probable label sequences.

    log_probs: (B, T, V); lengths: (B,). Each prefix carries two log-probabilities,
    of its alignments ending in blank and ending in its last token, so that a
    repeated token is handled exactly: "a a" collapses to one "a", "a - a" is two.
    ``token_prune`` keeps only the most probable tokens of each frame; ``beam``
    keeps the best prefixes after each frame. A Hypothesis' score is the log of
    the total probability of its prefix (summed over alignments), and its
    timesteps are the frames where each token was appended (a prefix already
    in the beam keeps its history when an extension merges into it).

    ``lexicon`` (words as token lists): every word of a hypothesis must be one of them.
    ``lm``: each word adds its LM score when the separator ends it, the last word
    and </s> add theirs at the end, and prefixes are ranked by CTC + LM.

    This is the plain reference implementation (pure Python, one utterance at a
    time, every token considered): the specification that ``prefix_beam_search``
    must reproduce (tested).
    """
    if beam < 1 or nbest < 1:
        raise DecodeError(f"beam and nbest must be >= 1 (beam={beam}, nbest={nbest})")
    if torch.isnan(log_probs).any():
        raise DecodeError("log-probabilities contain NaN")
    if lm is not None and space_id is None:
        space_id = lm.space_id
    lp_all = log_probs.detach().float().cpu()
    num_tokens = lp_all.size(-1)
    keep_tokens = num_tokens if token_prune is None else min(token_prune, num_tokens)
    words = {tuple(w) for w in lexicon} if lexicon is not None else set()
    word_prefixes = {w[:i] for w in words for i in range(1, len(w) + 1)}

    def last_word(prefix: tuple[int, ...]) -> tuple[int, ...]:
        cut = max((i + 1 for i, tok in enumerate(prefix) if tok == space_id), default=0)
        return prefix[cut:]

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
                if prefix[-1] == space_id:
                    delta, nxt = lm.word_scores(torch.tensor([state]), torch.tensor([word]))
                    lm_memo[prefix] = (total + float(delta[0]), int(nxt[0]), 0)
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
                    if lexicon is not None:  # spell lexicon words only, end whole ones only
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
