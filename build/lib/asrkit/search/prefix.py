"""Batched CTC prefix beam search: every utterance and prefix of a batch as (B, beam) tensors.

``prefix_beam_search`` runs frame by frame through four named steps:
``_extensions`` (the candidate tokens of every prefix, with the word rules and
the lexicon: asrkit.search.candidates), ``_merge_equal_prefixes``, ``_add_lm`` (shallow fusion) and
``_prune``; ``_final_scores`` and ``_backtrack`` finish. The pure-Python
``prefix_beam_search_reference`` in tests/reference_search.py is its specification (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from asrkit.errors import DecodeError
from asrkit.search.candidates import lexicon_candidates, shared_candidates, split_candidates, token_log_probs
from asrkit.search.options import check_beam
from asrkit.search.types import (
    _NO_PARENT,
    _NO_PREFIX,
    _ROOT_PARENT,
    Hypothesis,
    WordConstraint,
    WordScorer,
    check_log_probs,
    extend_key,
)


def resolve_boundary(space_id: int | None, word_starts, lm: WordScorer | None, vocab: int):
    """(separator, word-start tuple): as given, else the LM's; one kind of boundary at most."""
    if space_id is None and word_starts is None and lm is not None:
        space_id, word_starts = lm.space_id, getattr(lm, "word_starts", None)
    if space_id is not None and word_starts is not None:
        raise DecodeError("a word boundary is either a separator token or a set of word-start tokens, not both")
    if word_starts is not None:
        word_starts = tuple(bool(x) for x in word_starts)
        if len(word_starts) != vocab:
            raise DecodeError(f"word_starts has {len(word_starts)} entries for {vocab} tokens")
    return space_id, word_starts


@dataclass
class _Options:
    """What every frame's steps need to know about the search."""

    vocab: int
    beam: int
    blank_id: int
    token_prune: int | None
    token_min_logp: float | None
    space_id: int | None
    starts: torch.Tensor | None  # (V + 1,) bool: tokens that begin a word (the padding column: False)
    num_starts: int  # how many tokens begin a word
    lm: WordScorer | None
    lexicon: WordConstraint | None
    all_tokens: torch.Tensor  # (B, V): 0..V-1 on every row

    @property
    def limit(self) -> int:
        """Candidate tokens per prefix that can matter (see ``shared_candidates``)."""
        return 2 * self.beam + 2


@dataclass
class _Beams:
    """Every utterance's beam as (B, K) tensors; rows [:n] are the utterances still running at a frame."""

    p_blank: torch.Tensor  # log p(the prefix's alignments ending in blank)
    p_token: torch.Tensor  # log p(... ending in its last token)
    key: torch.Tensor  # hash of the prefix (_NO_PREFIX: empty slot)
    parent: torch.Tensor  # key of the prefix minus its last token
    last: torch.Tensor  # its last token (vocab: none yet)
    lm_total: torch.Tensor  # LM score of the words it has ended
    lm_state: torch.Tensor | None = None
    word_key: torch.Tensor | None = None  # key of the word being spelt (with an LM)
    node: torch.Tensor | None = None  # trie node of the word being spelt (with a lexicon)

    @classmethod
    def start(cls, batch: int, opts: _Options, device) -> "_Beams":
        size, vocab = (batch, opts.beam), opts.vocab
        beams = cls(torch.full(size, -math.inf, device=device), torch.full(size, -math.inf, device=device),
                    torch.full(size, _NO_PREFIX, dtype=torch.long, device=device),
                    torch.full(size, _NO_PARENT, dtype=torch.long, device=device),
                    torch.full(size, vocab, dtype=torch.long, device=device), torch.zeros(size, device=device))
        beams.p_blank[:, 0], beams.key[:, 0], beams.parent[:, 0] = 0.0, 0, _ROOT_PARENT  # the empty prefix
        if opts.lm is not None:
            beams.lm_state = torch.full(size, opts.lm.start_state, dtype=torch.long, device=device)
            beams.word_key = torch.zeros(size, dtype=torch.long, device=device)
        if opts.lexicon is not None:
            beams.node = torch.zeros(size, dtype=torch.long, device=device)
        return beams


@dataclass
class _Frame:
    """What one frame offers the running beams: staying on a prefix (K columns) and extending it
    (K · width columns, the candidate row after the stays)."""

    stay_blank: torch.Tensor  # (n, K)
    stay_token: torch.Tensor  # (n, K)
    candidates: torch.Tensor  # (n, K + K·width): scores the pruning ranks (CTC + LM)
    ext_ctc: torch.Tensor  # (n, K·width): the extensions' CTC scores
    tokens: torch.Tensor  # (n, 1 or K, width): the token of each extension column
    next_node: torch.Tensor | None = None  # (n, K, width) with a lexicon
    word_delta: torch.Tensor | None = None  # (n, K): LM score of ending the pending word (with an LM)
    word_next: torch.Tensor | None = None


def _extensions(beams: _Beams, n: int, frame_pad: torch.Tensor, opts: _Options) -> _Frame:
    """Candidate extensions and stays of the running prefixes at one frame, with the word rules:
    no separator first or twice, and with a lexicon only its words (``lexicon_candidates``).

    frame_pad: (n, V + 1), the last column -inf (the "last token" of the empty prefix).
    """
    vocab, beam = opts.vocab, opts.beam
    frame = frame_pad[:, :vocab]
    pb, pt, lst = beams.p_blank[:n], beams.p_token[:n], beams.last[:n]
    total = torch.logaddexp(pb, pt)
    stay_blank = total + frame[:, opts.blank_id, None]  # staying through a blank,
    stay_token = pt + frame_pad.gather(1, lst)  # or by repeating the last token
    next_node = None
    if opts.lexicon is None and opts.lm is not None and opts.starts is not None:
        tokens, token_lp, full = split_candidates(frame, opts.limit, opts.blank_id, opts.token_prune,
                                                   opts.token_min_logp, opts.starts, opts.num_starts)
    elif opts.lexicon is None:
        keep_id = opts.space_id if opts.lm is not None else None
        tokens, token_lp, full = shared_candidates(frame, opts.limit, opts.blank_id, opts.token_prune,
                                                    opts.token_min_logp, keep_id, opts.all_tokens)
    else:
        tokens, token_lp, next_node = lexicon_candidates(frame, opts.lexicon, beams.node[:n], opts.limit,
                                                          opts.blank_id, opts.token_prune, opts.token_min_logp,
                                                          opts.space_id, opts.starts)
        full = False
    width = tokens.size(2)
    candidates = torch.empty((n, beam + beam * width), device=frame.device)
    ext = candidates[:, beam:]
    ext3 = ext.view(n, beam, width)
    is_repeat = tokens == lst[:, :, None]  # a repeat is a new label only after a blank
    torch.where(is_repeat, pb[:, :, None], total[:, :, None], out=ext3)
    ext3.add_(token_lp)
    if opts.space_id is not None and opts.lexicon is None:  # (with a lexicon: node 0 is no word)
        no_space = (lst == vocab) | (lst == opts.space_id)
        ext3.masked_fill_((tokens == opts.space_id) & no_space[:, :, None], -math.inf)
    stay_token = _merge_equal_prefixes(beams, n, frame_pad, ext, tokens, is_repeat, total, stay_token, full, opts)
    torch.logaddexp(stay_blank, stay_token, out=candidates[:, :beam])
    return _Frame(stay_blank, stay_token, candidates, ext, tokens, next_node)


def _merge_equal_prefixes(beams: _Beams, n: int, frame_pad: torch.Tensor, ext: torch.Tensor, tokens: torch.Tensor,
                          is_repeat: torch.Tensor, total: torch.Tensor, stay_token: torch.Tensor, full: bool,
                          opts: _Options) -> torch.Tensor:
    """An extension k + c equal to a prefix j already in the beam is merged into j (j keeps its
    history): its mass joins j's stay, and its column, if it has one, is dropped. Returns the stays."""
    vocab, width = opts.vocab, tokens.size(2)
    pb, ky, par, lst = beams.p_blank[:n], beams.key[:n], beams.parent[:n], beams.last[:n]
    has_source, source = (par[:, :, None] == ky[:, None, :]).max(-1)  # (n, j): the slot k of j's parent
    merge = has_source & (lst < vocab)
    if full:  # every token is a column: j's last token is its own column
        flat = source * width + lst.clamp(max=vocab - 1)
        merged = ext.gather(1, flat)
        ext.scatter_(1, torch.where(merge, flat, opts.blank_id), -math.inf)  # the others: slot 0's blank column
    else:
        # j's token may be outside the columns (not among the best of the frame, or of its
        # parent's legal ones): its mass is computed here, and the column, if any, dropped
        source_last = lst.gather(1, source)
        merged = torch.where(source_last == lst, pb.gather(1, source), total.gather(1, source)) + \
            token_log_probs(frame_pad, lst, opts.token_prune, opts.token_min_logp)
        source_tokens = is_repeat if tokens.size(1) == 1 else \
            tokens.gather(1, source[:, :, None].expand(n, opts.beam, width)) == lst[:, :, None]
        has_column, column = source_tokens.max(-1)
        rows, slots = (merge & has_column).nonzero(as_tuple=True)
        ext[rows, (source * width + column)[rows, slots]] = -math.inf
    return torch.logaddexp(stay_token, merged.masked_fill_(~merge, -math.inf))


def _add_lm(beams: _Beams, n: int, frm: _Frame, opts: _Options) -> None:
    """Shallow fusion: every candidate carries its prefix's LM score, and an extension by the
    separator the score of the word it ends (the extensions' CTC scores are kept apart)."""
    frm.ext_ctc = frm.candidates[:, opts.beam:].clone()
    lm_n = beams.lm_total[:n]
    frm.candidates[:, :opts.beam].add_(lm_n)
    width = frm.tokens.size(2)
    ext3 = frm.candidates[:, opts.beam:].view(n, opts.beam, width)
    ext3.add_(lm_n[:, :, None])
    if opts.space_id is not None or opts.starts is not None:
        frm.word_delta, frm.word_next = _score_words(opts.lm, beams.lm_state[:n], beams.word_key[:n],
                                                     beams.key[:n] != _NO_PREFIX)
        ends = frm.tokens == opts.space_id if opts.space_id is not None else opts.starts[frm.tokens]
        ext3.add_(torch.where(ends, frm.word_delta[:, :, None], 0.0))


def _prune(beams: _Beams, n: int, frm: _Frame, opts: _Options, back_slot: torch.Tensor,
           back_token: torch.Tensor) -> None:
    """Keep the ``beam`` best candidates of each running utterance and write them into its beam
    (and their back-pointers into this frame's rows of ``back_slot``/``back_token``)."""
    K, width = opts.beam, frm.tokens.size(2)
    top, index = frm.candidates.topk(K, dim=1, sorted=False)  # the order inside a beam does not matter
    is_stay = index < K
    ext_index = (index - K).clamp_(min=0)
    src = torch.where(is_stay, index, ext_index // width)
    chosen = frm.tokens[:, 0].gather(1, ext_index % width) if frm.tokens.size(1) == 1 else \
        frm.tokens.reshape(n, K * width).gather(1, ext_index)
    token = torch.where(is_stay, -1, chosen)
    ky, par, lst = beams.key[:n], beams.parent[:n], beams.last[:n]
    src_key = ky.gather(1, src)
    valid = top > -math.inf
    back_slot[:n] = src
    back_token[:n] = token
    beams.p_blank[:n] = torch.where(is_stay, frm.stay_blank.gather(1, src), -math.inf)
    beams.p_token[:n] = torch.where(is_stay, frm.stay_token.gather(1, src), frm.ext_ctc.gather(1, ext_index))
    beams.key[:n] = torch.where(valid, torch.where(is_stay, src_key, extend_key(src_key, token)), _NO_PREFIX)
    beams.parent[:n] = torch.where(valid, torch.where(is_stay, par.gather(1, src), src_key), _NO_PARENT)
    beams.last[:n] = torch.where(is_stay, lst.gather(1, src), token)
    if beams.node is not None:
        beams.node[:n] = torch.where(is_stay, beams.node[:n].gather(1, src),
                                     frm.next_node.reshape(n, K * width).gather(1, ext_index))
    if beams.word_key is not None:
        word_src = beams.word_key[:n].gather(1, src)
        if opts.space_id is not None:  # the separator ends the word and begins none
            ended, fresh = ~is_stay & (token == opts.space_id), torch.zeros_like(word_src)
        elif opts.starts is not None:  # a word-start token ends the pending word (if any) and begins one
            ended, fresh = ~is_stay & opts.starts[token.clamp(min=0)], extend_key(torch.zeros_like(word_src), token)
        else:
            ended, fresh = torch.zeros_like(is_stay), word_src
        beams.word_key[:n] = torch.where(is_stay, word_src, torch.where(ended, fresh, extend_key(word_src, token)))
        lm_src = beams.lm_total[:n].gather(1, src)
        state_src = beams.lm_state[:n].gather(1, src)
        if opts.space_id is not None or opts.starts is not None:
            beams.lm_total[:n] = torch.where(ended, lm_src + frm.word_delta.gather(1, src), lm_src)
            beams.lm_state[:n] = torch.where(ended, frm.word_next.gather(1, src), state_src)
        else:
            beams.lm_total[:n], beams.lm_state[:n] = lm_src, state_src


def _final_scores(beams: _Beams, opts: _Options) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(score, CTC, LM) of every slot at the end: the LM's pending word and </s> added; a trailing
    separator or (with a lexicon) an unfinished word drops a hypothesis unless nothing else is left."""
    ctc = torch.logaddexp(beams.p_blank, beams.p_token)
    lm_total = beams.lm_total
    if opts.lm is not None:
        valid = beams.key != _NO_PREFIX
        final = torch.zeros_like(lm_total)
        if valid.any():
            final[valid] = opts.lm.final_scores(beams.lm_state[valid], beams.word_key[valid]).to(final)
        lm_total = lm_total + final
    score = ctc + lm_total
    if opts.space_id is not None:
        trailing = beams.last == opts.space_id
        others = ((beams.key != _NO_PREFIX) & ~trailing).any(1, keepdim=True)
        score = score.masked_fill(trailing & others, -math.inf)
    if opts.lexicon is not None:
        unfinished = (beams.node != 0) & ~opts.lexicon.is_word(beams.node)
        others = ((beams.key != _NO_PREFIX) & ~unfinished & (score > -math.inf)).any(1, keepdim=True)
        score = score.masked_fill(unfinished & others, -math.inf)
    return score, ctc, lm_total


def prefix_beam_search(log_probs: torch.Tensor, lengths: torch.Tensor, beam: int = 10, nbest: int = 1,
                       token_prune: int | None = None, blank_id: int = 0,
                       lm: WordScorer | None = None, token_min_logp: float | None = None,
                       space_id: int | None = None,
                       lexicon: WordConstraint | None = None,
                       word_starts=None) -> list[list[Hypothesis]]:
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
    ``word_starts`` (one bool per token; ``lm.word_starts`` with an LM) is the
    other kind of boundary, sentencepiece's: a word-start token ends the
    pending word and begins the next. The tokenizer's ``boundary`` gives one.

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
    check_beam(beam, nbest, token_prune)
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
    space_id, word_starts = resolve_boundary(space_id, word_starts, lm, vocab)
    starts = None if word_starts is None else torch.tensor(word_starts + (False,), device=device)
    opts = _Options(vocab, beam, blank_id, token_prune, token_min_logp, space_id, starts,
                    sum(word_starts) if word_starts is not None else 0, lm, lexicon,
                    torch.arange(vocab, device=device).expand(batch, vocab))
    beams = _Beams.start(batch, opts, device)
    back_slot = torch.arange(beam, dtype=torch.long, device=device).repeat(max_frames, batch, 1)
    back_token = torch.full((max_frames, batch, beam), -1, dtype=torch.long, device=device)
    for t in range(max_frames):
        n = running[t]
        frm = _extensions(beams, n, lp[:n, t], opts)
        if lm is not None:
            _add_lm(beams, n, frm, opts)
        _prune(beams, n, frm, opts, back_slot[t], back_token[t])
    score, ctc, lm_total = _final_scores(beams, opts)
    ranked = score.topk(min(nbest, beam), dim=1).indices  # (B, N)
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


__all__ = ["prefix_beam_search", "resolve_boundary"]
