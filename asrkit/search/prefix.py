"""Batched CTC prefix beam search: every utterance and prefix of a batch as (B, beam) numpy arrays.

``prefix_beam_search`` runs frame by frame through four named steps:
``_extensions`` (the candidate tokens of every prefix, with the word rules and
the lexicon: asrkit.search.candidates), ``_merge_equal_prefixes``, ``_add_side_scores`` (shallow fusion, hotwords) and
``_prune``; ``_final_scores`` and ``_backtrack`` finish. The pure-Python
``prefix_beam_search_reference`` in tests/reference_search.py is its specification (tested).

It is written in numpy, not torch, so that an exported model runs with the same
search and no PyTorch installed (asrkit.recognize.bundle); a torch model's
log-probs are copied to the CPU first (``as_array``). On the CPU numpy's
per-operation cost is a fraction of torch's, which is what a frame of small
(B, beam) operations pays.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from asrkit.errors import DecodeError
from asrkit.search import kernel
from asrkit.search.candidates import (
    class_candidates,
    lexicon_candidates,
    shared_candidates,
    split_candidates,
    token_log_probs,
    top_columns,
    topk,
)
from asrkit.search.context import ContextGraph
from asrkit.search.options import check_beam
from asrkit.search.types import (
    _NO_PARENT,
    _NO_PREFIX,
    _ROOT_PARENT,
    Hypothesis,
    WordConstraint,
    WordScorer,
    as_array,
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
    starts: np.ndarray | None  # (V + 1,) bool: tokens that begin a word (the padding column: False)
    num_starts: int  # how many tokens begin a word
    lm: WordScorer | None
    lexicon: WordConstraint | None
    context: ContextGraph | None = None
    context_groups: list | None = None  # the candidate classes under biasing (``class_candidates``)

    @property
    def limit(self) -> int:
        """Candidate tokens per prefix that can matter (see ``shared_candidates``); with a lexicon
        under biasing every legal child (their bonuses differ per prefix)."""
        if self.context is not None and self.lexicon is not None:
            return self.vocab + 1
        return 2 * self.beam + 2


@dataclass
class _Beams:
    """Every utterance's beam as (B, K) arrays; rows [:n] are the utterances still running at a frame."""

    p_blank: np.ndarray  # log p(the prefix's alignments ending in blank)
    p_token: np.ndarray  # log p(... ending in its last token)
    key: np.ndarray  # hash of the prefix (_NO_PREFIX: empty slot)
    parent: np.ndarray  # key of the prefix minus its last token
    last: np.ndarray  # its last token (vocab: none yet)
    lm_total: np.ndarray  # LM score of the words it has ended
    lm_state: np.ndarray | None = None
    word_key: np.ndarray | None = None  # key of the word being spelt (with an LM)
    node: np.ndarray | None = None  # trie node of the word being spelt (with a lexicon)
    ctx_node: np.ndarray | None = None  # context-graph state (with hotwords)
    ctx_score: np.ndarray | None = None  # its context score: completed phrases and the match in progress

    @classmethod
    def start(cls, batch: int, opts: _Options, roots: np.ndarray | None = None) -> "_Beams":
        size, vocab = (batch, opts.beam), opts.vocab
        beams = cls(np.full(size, -math.inf, np.float32), np.full(size, -math.inf, np.float32),
                    np.full(size, _NO_PREFIX, np.int64), np.full(size, _NO_PARENT, np.int64),
                    np.full(size, vocab, np.int64), np.zeros(size, np.float32))
        beams.p_blank[:, 0], beams.key[:, 0], beams.parent[:, 0] = 0.0, 0, _ROOT_PARENT  # the empty prefix
        if opts.lm is not None:
            beams.lm_state = np.full(size, opts.lm.start_state, np.int64)
            beams.word_key = np.zeros(size, np.int64)
        if opts.lexicon is not None:
            beams.node = np.zeros(size, np.int64)
        if opts.context is not None:
            beams.ctx_node = np.repeat(np.asarray(roots, np.int64)[:, None], opts.beam, 1)  # each row its graph
            beams.ctx_score = np.zeros(size, np.float32)  # a root's match in progress is empty
        return beams

    def context(self, n: int) -> np.ndarray | None:
        """Each running prefix's context score: its completed phrases and its match in progress."""
        return None if self.ctx_score is None else self.ctx_score[:n]


@dataclass
class _Frame:
    """What one frame offers the running beams: staying on a prefix (K slots) and extending it
    (K · width columns, slot-major)."""

    stay_blank: np.ndarray  # (n, K)
    stay_token: np.ndarray  # (n, K)
    ext_ctc: np.ndarray  # (n, K·width): the extensions' CTC scores
    tokens: np.ndarray  # (n, 1 or K, width): the token of each extension column
    next_node: np.ndarray | None = None  # (n, K, width) with a lexicon
    word_delta: np.ndarray | None = None  # (n, K): LM score of ending the pending word (with an LM)
    word_next: np.ndarray | None = None
    ranked_ctc: np.ndarray | None = None  # (n, K + K·width): stays, then extensions (ext_ctc is a view)
    ranked_lm: np.ndarray | None = None  # (n, K + K·width): the same with their LM and context scores

    def ranked(self) -> np.ndarray:
        """(n, K + K·width): the scores the pruning ranks, stays first."""
        return self.ranked_ctc if self.ranked_lm is None else self.ranked_lm


@functools.lru_cache(maxsize=64)
def _rows(n: int) -> np.ndarray:
    return np.arange(n)[:, None]


def _take(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values[r, index[r, j]]`` for (n, ·) arrays (``take_along_axis`` on axis 1, with less overhead)."""
    return values[_rows(len(values)), index]


def _extensions(beams: _Beams, n: int, frame_pad: np.ndarray, opts: _Options) -> _Frame:
    """Candidate extensions and stays of the running prefixes at one frame, with the word rules:
    no separator first or twice, and with a lexicon only its words (``lexicon_candidates``).

    frame_pad: (n, V + 1), the last column -inf (the "last token" of the empty prefix).
    """
    vocab, beam = opts.vocab, opts.beam
    frame = frame_pad[:, :vocab]
    pb, pt, lst = beams.p_blank[:n], beams.p_token[:n], beams.last[:n]
    total = np.logaddexp(pb, pt)
    stay_blank = total + frame[:, opts.blank_id, None]  # staying through a blank,
    stay_token = pt + _take(frame_pad, lst)  # or by repeating the last token
    next_node = None
    if opts.lexicon is None and opts.context is not None and opts.context_groups:
        tokens, token_lp, full = class_candidates(frame, opts.context_groups, opts.blank_id, opts.token_prune,
                                                  opts.token_min_logp)
    elif opts.lexicon is None and opts.context is not None:  # the classes would take every token anyway
        tokens, token_lp, full = shared_candidates(frame, opts.vocab, opts.blank_id, None, None, None)
    elif opts.lexicon is None and opts.lm is not None and opts.starts is not None:
        tokens, token_lp, full = split_candidates(frame, opts.limit, opts.blank_id, opts.token_prune,
                                                  opts.token_min_logp, opts.starts, opts.num_starts)
    elif opts.lexicon is None:
        keep_id = opts.space_id if opts.lm is not None else None
        tokens, token_lp, full = shared_candidates(frame, opts.limit, opts.blank_id, opts.token_prune,
                                                   opts.token_min_logp, keep_id)
    else:
        tokens, token_lp, next_node = lexicon_candidates(frame, opts.lexicon, beams.node[:n], opts.limit,
                                                         opts.blank_id, opts.token_prune, opts.token_min_logp,
                                                         opts.space_id, opts.starts)
        full = False
    width = tokens.shape[2]
    ranked = np.empty((n, beam + beam * width), np.float32)  # what the pruning ranks: stays, then extensions
    ext3 = ranked[:, beam:].reshape(n, beam, width)  # a view: written in place, merging too
    if full:  # every token a column, in order: a prefix's repeat is the column of its last token
        np.add(total[:, :, None], token_lp, out=ext3)
        rows, slots = np.nonzero(lst < vocab)
        ext3[rows, slots, lst[rows, slots]] = pb[rows, slots] + token_lp[rows, 0, lst[rows, slots]]
        is_repeat = None
    else:
        is_repeat = tokens == lst[:, :, None]  # a repeat is a new label only after a blank
        np.add(np.where(is_repeat, pb[:, :, None], total[:, :, None]), token_lp, out=ext3)
    if opts.space_id is not None and opts.lexicon is None:  # (with a lexicon: node 0 is no word)
        no_space = (lst == vocab) | (lst == opts.space_id)
        if full:
            ext3[:, :, opts.space_id][no_space] = -math.inf
        else:
            ext3[np.broadcast_to((tokens == opts.space_id) & no_space[:, :, None], ext3.shape)] = -math.inf
    ext = ranked[:, beam:]
    stay_token = _merge_equal_prefixes(beams, n, frame_pad, ext, tokens, is_repeat, total, stay_token, full, opts)
    np.logaddexp(stay_blank, stay_token, out=ranked[:, :beam])
    return _Frame(stay_blank, stay_token, ext, tokens, next_node, ranked_ctc=ranked)


def _merge_equal_prefixes(beams: _Beams, n: int, frame_pad: np.ndarray, ext: np.ndarray, tokens: np.ndarray,
                          is_repeat: np.ndarray, total: np.ndarray, stay_token: np.ndarray, full: bool,
                          opts: _Options) -> np.ndarray:
    """An extension k + c equal to a prefix j already in the beam is merged into j (j keeps its
    history): its mass joins j's stay, and its column, if it has one, is dropped. Returns the stays."""
    vocab, width = opts.vocab, tokens.shape[2]
    pb, ky, par, lst = beams.p_blank[:n], beams.key[:n], beams.parent[:n], beams.last[:n]
    same = par[:, :, None] == ky[:, None, :]  # (n, j, k): k is j's parent
    has_source, source = same.any(-1), same.argmax(-1)
    merge = has_source & (lst < vocab)
    if full:  # every token is a column: j's last token is its own column
        flat = source * width + np.minimum(lst, vocab - 1)
        merged = _take(ext, flat)
        np.put_along_axis(ext, np.where(merge, flat, opts.blank_id), -math.inf, 1)  # the others: slot 0's blank
    else:
        # j's token may be outside the columns (not among the best of the frame, or of its
        # parent's legal ones): its mass is computed here, and the column, if any, dropped
        merged = np.where(_take(lst, source) == lst, _take(pb, source), _take(total, source)) + \
            token_log_probs(frame_pad, lst, opts.token_prune, opts.token_min_logp)
        source_tokens = is_repeat if tokens.shape[1] == 1 else \
            np.take_along_axis(tokens, source[:, :, None], 1) == lst[:, :, None]
        has_column, column = source_tokens.any(-1), source_tokens.argmax(-1)
        rows, slots = np.nonzero(merge & has_column)
        ext[rows, (source * width + column)[rows, slots]] = -math.inf
    return np.logaddexp(stay_token, np.where(merge, merged, -math.inf))


def _add_side_scores(beams: _Beams, n: int, frm: _Frame, opts: _Options) -> None:
    """Shallow fusion and biasing: every candidate carries its prefix's LM and context scores, an
    extension by the separator the score of the word it ends, and every extension its context
    score after the token (the extensions' CTC scores are kept apart)."""
    context = beams.context(n)
    if context is None:
        side = beams.lm_total[:n]
    else:
        side = context if opts.lm is None else beams.lm_total[:n] + context
    K = opts.beam
    frm.ranked_lm = ranked = np.empty_like(frm.ranked_ctc)
    np.add(frm.ranked_ctc[:, :K], side, out=ranked[:, :K])  # the stays,
    ext3 = ranked[:, K:].reshape(n, K, -1)  # and the extensions (a view, written in place)
    np.add(frm.ext_ctc.reshape(n, K, -1), side[:, :, None], out=ext3)
    if context is not None:  # each extension's change of context score, one lookup (the kept ones'
        # states follow in ``_prune``)
        ext3 += opts.context.delta[beams.ctx_node[:n, :, None], opts.context.token_class[frm.tokens]]
    if opts.lm is not None and (opts.space_id is not None or opts.starts is not None):
        frm.word_delta, frm.word_next = _score_words(opts.lm, beams.lm_state[:n], beams.word_key[:n],
                                                     beams.key[:n] != _NO_PREFIX)
        ends = frm.tokens == opts.space_id if opts.space_id is not None else opts.starts[frm.tokens]
        ext3 += np.where(ends, frm.word_delta[:, :, None], np.float32(0.0))


def _prune(beams: _Beams, n: int, frm: _Frame, opts: _Options, back_slot: np.ndarray,
           back_token: np.ndarray) -> None:
    """Keep the ``beam`` best candidates of each running utterance and write them into its beam
    (and their back-pointers into this frame's rows of ``back_slot``/``back_token``)."""
    K, width = opts.beam, frm.tokens.shape[2]
    ranked = frm.ranked()
    index = top_columns(ranked, K)  # the order inside a beam does not matter
    top = _take(ranked, index)
    is_stay = index < K
    ext_index = np.maximum(index - K, 0)
    src = np.where(is_stay, index, ext_index // width)
    chosen = _take(frm.tokens[:, 0], ext_index % width) if frm.tokens.shape[1] == 1 else \
        _take(frm.tokens.reshape(n, K * width), ext_index)
    token = np.where(is_stay, -1, chosen)
    ky, par, lst = beams.key[:n], beams.parent[:n], beams.last[:n]
    src_key = _take(ky, src)
    valid = top > -math.inf
    back_slot[:n] = src
    back_token[:n] = token
    beams.p_blank[:n] = np.where(is_stay, _take(frm.stay_blank, src), -math.inf)
    beams.p_token[:n] = np.where(is_stay, _take(frm.stay_token, src), _take(frm.ext_ctc, ext_index))
    beams.key[:n] = np.where(valid, np.where(is_stay, src_key, extend_key(src_key, token)), _NO_PREFIX)
    beams.parent[:n] = np.where(valid, np.where(is_stay, _take(par, src), src_key), _NO_PARENT)
    beams.last[:n] = np.where(is_stay, _take(lst, src), token)
    if beams.node is not None:
        beams.node[:n] = np.where(is_stay, _take(beams.node[:n], src),
                                  _take(frm.next_node.reshape(n, K * width), ext_index))
    if beams.word_key is not None:
        _carry_words(beams, n, frm, opts, src, token, is_stay)
    if beams.ctx_node is not None:  # the hotwords' state of each kept prefix
        node_src, score_src = _take(beams.ctx_node[:n], src), _take(beams.ctx_score[:n], src)
        moved, change = opts.context.move(node_src, token)  # a stay's -1: not used
        beams.ctx_node[:n] = np.where(is_stay, node_src, moved)
        beams.ctx_score[:n] = np.where(is_stay, score_src, score_src + change)


def _carry_words(beams: _Beams, n: int, frm: _Frame, opts: _Options, src: np.ndarray, token: np.ndarray,
                 is_stay: np.ndarray) -> None:
    """The LM side of the pruning: each kept prefix's pending word, LM score and state."""
    word_src = _take(beams.word_key[:n], src)
    if opts.space_id is not None:  # the separator ends the word and begins none
        ended, fresh = ~is_stay & (token == opts.space_id), np.zeros_like(word_src)
    elif opts.starts is not None:  # a word-start token ends the pending word (if any) and begins one
        ended, fresh = ~is_stay & opts.starts[np.maximum(token, 0)], extend_key(np.zeros_like(word_src), token)
    else:
        ended, fresh = np.zeros_like(is_stay), word_src
    beams.word_key[:n] = np.where(is_stay, word_src, np.where(ended, fresh, extend_key(word_src, token)))
    lm_src = _take(beams.lm_total[:n], src)
    state_src = _take(beams.lm_state[:n], src)
    if opts.space_id is not None or opts.starts is not None:
        beams.lm_total[:n] = np.where(ended, lm_src + _take(frm.word_delta, src), lm_src)
        beams.lm_state[:n] = np.where(ended, _take(frm.word_next, src), state_src)
    else:
        beams.lm_total[:n], beams.lm_state[:n] = lm_src, state_src


def _final_scores(beams: _Beams, opts: _Options):
    """(score, CTC, LM, context) of every slot at the end: the LM's pending word and </s> added, the
    phrases its last word completes added and the match in progress given back; a trailing
    separator or (with a lexicon) an unfinished word drops a hypothesis unless nothing else is left."""
    ctc = np.logaddexp(beams.p_blank, beams.p_token)
    lm_total = beams.lm_total
    valid = beams.key != _NO_PREFIX
    if opts.lm is not None:
        final = np.zeros_like(lm_total)
        if valid.any():
            final[valid] = opts.lm.final_scores(beams.lm_state[valid], beams.word_key[valid])
        lm_total = lm_total + final
    score = ctc + lm_total
    context = None
    if opts.context is not None:
        context = beams.ctx_score + opts.context.closing[beams.ctx_node]  # the match in progress given back
        score = score + context
    if opts.space_id is not None:
        trailing = beams.last == opts.space_id
        others = (valid & ~trailing).any(1, keepdims=True)
        score = np.where(trailing & others, -math.inf, score)
    if opts.lexicon is not None:
        unfinished = (beams.node != 0) & ~opts.lexicon.is_word(beams.node)
        others = (valid & ~unfinished & (score > -math.inf)).any(1, keepdims=True)
        score = np.where(unfinished & others, -math.inf, score)
    return score, ctc, lm_total, context


def prefix_beam_search(log_probs, lengths, beam: int = 10, nbest: int = 1,
                       token_prune: int | None = None, blank_id: int = 0,
                       lm: WordScorer | None = None, token_min_logp: float | None = None,
                       space_id: int | None = None,
                       lexicon: WordConstraint | None = None,
                       word_starts=None, context: ContextGraph | list | None = None) -> list[list[Hypothesis]]:
    """CTC prefix beam search over a batch at once: the ``nbest`` best label sequences per utterance.

    log_probs: (B, T, V); lengths: (B,) (numpy arrays or torch tensors). Per prefix it keeps the log-probability
    of its alignments ending in blank and ending in its last token (so "a a"
    collapses and "a - a" does not), extends every prefix by every token kept by
    ``token_prune`` (the most probable tokens of each frame; None keeps all)
    whose log-probability is at least ``token_min_logp`` (None: any), merges an
    extension with the equal prefix already in the beam, and keeps the
    ``beam`` best prefixes per frame. All utterances and prefixes move together
    as (B, beam) arrays: one frame is a few dozen array operations whatever
    the batch size.

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

    With ``context`` (hotwords: an ``asrkit.search.context.ContextGraph`` built for the
    same tokens and word boundary, or a list of one per utterance), each prefix carries its context score, the
    bonus of the phrases it has completed and of its match in progress, which
    steers the pruning too; at the end a match in progress is given back, so that
    a hypothesis keeps the bonus of its completed phrases only (``context_score``).

    Returns, per utterance, ``Hypothesis(tokens, score, timesteps, ctc_score,
    lm_score)`` best first; ``score`` = ``ctc_score`` (log of the summed
    probability of the prefix's alignments) + ``lm_score``; ``timesteps`` are the
    frames where each token was appended, on the history the prefix kept (a
    prefix already in the beam keeps its own when an extension merges into it).
    Results equal ``prefix_beam_search_reference`` (tested), with a lexicon and an LM too.
    """
    check_beam(beam, nbest, token_prune)
    log_probs, lengths = as_array(log_probs, np.float32), as_array(lengths, np.int64)
    check_log_probs(log_probs, lengths)
    batch, _, vocab = log_probs.shape
    _check_tokens(vocab, blank_id, lexicon)
    if batch == 0:
        return []
    context, roots = context_of(context, batch)
    opts = _options(vocab, beam, blank_id, token_prune, token_min_logp, space_id, word_starts, lm, lexicon, context)
    order = np.argsort(-lengths, kind="stable")  # longest first (as _longest_first orders them)
    max_frames = int(lengths.max())
    beams = _Beams.start(batch, opts, None if roots is None else roots[order])
    back_slot = np.tile(np.arange(beam, dtype=np.int64), (max_frames, batch, 1))
    back_token = np.full((max_frames, batch, beam), -1, dtype=np.int64)
    _run_frames(beams, log_probs, lengths, order, opts, back_slot, back_token)
    score, ctc, lm_total, context = _final_scores(beams, opts)
    _, ranked = topk(score, min(nbest, beam), axis=1)  # (B, N), best first
    found = _backtrack(ranked, score, ctc, lm_total if lm is not None else None, back_slot, back_token, context)
    results: list[list[Hypothesis]] = [[] for _ in range(batch)]
    for row, utt in enumerate(order.tolist()):
        results[utt] = found[row]
    return results


def _run_frames(beams: _Beams, log_probs: np.ndarray, lengths: np.ndarray, order: np.ndarray, opts: _Options,
                back_slot: np.ndarray, back_token: np.ndarray) -> None:
    """Every utterance's frames through the search, its beam in row ``order.index(utt)``: compiled,
    row by row through its own frames (no time-major copy), or the numpy step frame by frame over
    the rows still running."""
    if _compiled(opts):
        for row, utt in enumerate(order.tolist()):
            frames = int(lengths[utt])
            _compiled_frames(beams, row, log_probs[utt, :frames], opts, back_slot[:frames, row],
                             back_token[:frames, row])
        return
    _, lp, running = _longest_first(log_probs, lengths)
    quiet = _quiet_frames(lp, opts)
    for t in range(len(running)):
        _step(beams, running[t], lp[t, :running[t]], opts, back_slot[t], back_token[t],
              quiet is not None and bool(quiet[t, :running[t]].all()))


class PrefixSearch:
    """The prefix beam search of ``prefix_beam_search``, advanced chunk by chunk: ``batch`` streams
    move together, ``advance(log_probs)`` takes each stream's next frames (B, t, V), ``partial()``
    gives each stream's best prefix so far, and ``finish()`` its n-best, which equal
    ``prefix_beam_search`` on the concatenated log-probs (the same steps run on the same state;
    property-tested). Timesteps count from the stream's first frame. Options as
    ``prefix_beam_search``'s."""

    def __init__(self, batch: int, vocab: int, beam: int = 10, nbest: int = 1, token_prune: int | None = None,
                 blank_id: int = 0, lm: WordScorer | None = None, token_min_logp: float | None = None,
                 space_id: int | None = None, lexicon: WordConstraint | None = None, word_starts=None,
                 context: ContextGraph | list | None = None) -> None:
        check_beam(beam, nbest, token_prune)
        _check_tokens(vocab, blank_id, lexicon)
        context, roots = context_of(context, batch)
        self.opts = _options(vocab, beam, blank_id, token_prune, token_min_logp, space_id, word_starts, lm, lexicon,
                             context)
        self.batch, self.nbest = batch, nbest
        self.beams = _Beams.start(batch, self.opts, roots)
        self.back_slot: list[np.ndarray] = []  # per frame (B, K)
        self.back_token: list[np.ndarray] = []

    @property
    def frames(self) -> int:
        return len(self.back_slot)

    def advance(self, log_probs) -> None:
        """Take the next frames of every stream: (B, t, V), numpy or torch, t may be 0."""
        log_probs = as_array(log_probs, np.float32)
        if log_probs.ndim != 3 or log_probs.shape[0] != self.batch or log_probs.shape[2] != self.opts.vocab:
            raise DecodeError(f"a chunk must be ({self.batch}, frames, {self.opts.vocab}) log-probabilities, got "
                              f"{tuple(log_probs.shape)}")
        if np.isnan(log_probs).any():
            raise DecodeError("log-probabilities contain NaN")
        n, opts, beam = self.batch, self.opts, self.opts.beam
        if _compiled(opts):  # each stream through the chunk's frames as given
            frames = log_probs.shape[1]
            slots = np.tile(np.arange(beam, dtype=np.int64), (frames, n, 1))
            tokens = np.full((frames, n, beam), -1, np.int64)
            for row in range(n):
                _compiled_frames(self.beams, row, log_probs[row], opts, slots[:, row], tokens[:, row])
            self.back_slot.extend(slots)
            self.back_token.extend(tokens)
            return
        padded = np.full((log_probs.shape[1], self.batch, self.opts.vocab + 1), -math.inf, np.float32)
        padded[:, :, :self.opts.vocab] = log_probs.transpose(1, 0, 2)
        quiet = _quiet_frames(padded, opts)
        for t, frame in enumerate(padded):
            slots, tokens = np.arange(beam, dtype=np.int64)[None].repeat(n, 0), np.full((n, beam), -1, np.int64)
            _step(self.beams, n, frame, opts, slots, tokens, quiet is not None and bool(quiet[t].all()))
            self.back_slot.append(slots)
            self.back_token.append(tokens)

    def _ranked(self, score, ctc, lm_total, context, count: int) -> list[list[Hypothesis]]:
        _, ranked = topk(score, min(count, self.opts.beam), axis=1)
        empty = np.zeros((0, self.batch, self.opts.beam), np.int64)
        slots = np.stack(self.back_slot) if self.back_slot else empty
        tokens = np.stack(self.back_token) if self.back_token else empty
        return _backtrack(ranked, score, ctc, lm_total if self.opts.lm is not None else None, slots, tokens,
                          context)

    def partial(self) -> list[Hypothesis]:
        """Each stream's best prefix so far (CTC + the LM of its finished words + its context score,
        the match in progress included; nothing is dropped)."""
        ctc = np.logaddexp(self.beams.p_blank, self.beams.p_token)
        context = self.beams.context(self.batch)
        score = ctc + self.beams.lm_total + (0 if context is None else context)
        return [hyps[0] for hyps in self._ranked(score, ctc, self.beams.lm_total, context, 1)]

    def finish(self) -> list[list[Hypothesis]]:
        """Each stream's n-best at its end (the LM's last word and </s> added): ``prefix_beam_search``'s."""
        return self._ranked(*_final_scores(self.beams, self.opts), self.nbest)


def _check_tokens(vocab: int, blank_id: int, lexicon: WordConstraint | None) -> None:
    if not 0 <= blank_id < vocab:
        raise DecodeError(f"blank id {blank_id} outside the {vocab} tokens")
    if lexicon is not None and lexicon.pad_token != vocab:
        raise DecodeError(f"the lexicon was built for {lexicon.pad_token} tokens, the log-probabilities have {vocab}")


def _options(vocab: int, beam: int, blank_id: int, token_prune, token_min_logp, space_id, word_starts,
             lm: WordScorer | None, lexicon: WordConstraint | None, context: ContextGraph | None = None) -> _Options:
    """The search's options, its word boundary resolved (``resolve_boundary``)."""
    space_id, word_starts = resolve_boundary(space_id, word_starts, lm, vocab)
    starts = None if word_starts is None else np.array(word_starts + (False,))
    opts = _Options(vocab, beam, blank_id, token_prune, token_min_logp, space_id, starts,
                    sum(word_starts) if word_starts is not None else 0, lm, lexicon, context)
    if context is not None:
        opts.context_groups = _context_groups(context, opts)
        taken = sum(min(int(mask.sum()), count) for mask, count in opts.context_groups)
        if taken >= vocab - 1 and token_prune is None and token_min_logp is None:
            opts.context_groups = []  # every token a column, in order: the cheaper full frame
    return opts


def context_of(context, batch: int) -> tuple[ContextGraph | None, np.ndarray | None]:
    """(graph, each utterance's root) of a search's ``context``: one graph for every utterance, or a
    list with each utterance's own (None: no hotwords for it), joined by ``ContextGraph.union``."""
    if context is None:
        return None, None
    if isinstance(context, ContextGraph):
        return context, np.full(batch, context.roots[0], np.int64)
    if len(context) != batch:
        raise DecodeError(f"{len(context)} hotword graphs for {batch} utterances")
    given = [g for g in context if g is not None]
    if not given:
        return None, None
    if len(given) == len(context) and all(g is given[0] for g in given):  # one graph for all
        return given[0], np.full(batch, given[0].roots[0], np.int64)
    first, empty = given[0], None
    if len(given) < len(context):
        empty = ContextGraph([], first.vocab, first.space_id,
                             None if first.starts is None else tuple(bool(x) for x in first.starts[:-1]))
    union = ContextGraph.union([g if g is not None else empty for g in context])
    return union, union.roots


def _context_groups(context: ContextGraph, opts: _Options) -> list[tuple[np.ndarray, int]]:
    """The candidate classes under biasing: every phrase token; then the separator; the other
    word-start tokens and the other tokens, ``limit`` of each (``class_candidates``)."""
    same_starts = (context.starts is None) == (opts.starts is None) and (
        opts.starts is None or bool((context.starts == opts.starts).all()))
    if context.vocab != opts.vocab or context.space_id != opts.space_id or not same_starts:
        raise DecodeError("the hotwords' graph was built for another token table or word boundary than the search's")
    phrase = context.phrase_tokens()
    groups = [(phrase, int(phrase.sum()))]
    rest = ~phrase
    rest[opts.blank_id] = False
    if opts.space_id is not None:
        groups.append((np.arange(opts.vocab) == opts.space_id, 1))
        rest[opts.space_id] = False
    if opts.starts is not None:
        groups.append((rest & opts.starts[:-1], opts.limit))
        rest &= ~opts.starts[:-1]
    groups.append((rest, opts.limit))
    return groups


def _quiet_frames(frames: np.ndarray, opts: _Options) -> np.ndarray | None:
    """(T, B) bool: where token pruning by ``token_min_logp`` leaves no token but the blank, and the
    blank is possible. None without ``token_min_logp``. frames: (T, B, V + 1)."""
    if opts.token_min_logp is None:
        return None
    tokens = frames[:, :, :opts.vocab]
    blank = tokens[:, :, opts.blank_id]
    loud = (tokens >= opts.token_min_logp).sum(-1) - (blank >= opts.token_min_logp)
    return (loud == 0) & np.isfinite(blank)


def _stay(beams: _Beams, n: int, frame_pad: np.ndarray, opts: _Options) -> None:
    """A quiet frame (``_quiet_frames``): no prefix can be extended, so the pruning keeps every
    prefix in its slot and only their two scores move: through the blank, or repeating the last
    token. The same arithmetic, bit for bit, as the full step would do on that frame (its extension
    columns are all -inf and merge nothing), at a tenth of its cost: most frames of a peaky CTC
    model's output are quiet at pyctcdecode's default pruning (-5)."""
    pb, pt = beams.p_blank[:n], beams.p_token[:n]
    total = np.logaddexp(pb, pt)
    beams.p_token[:n] = pt + _take(frame_pad, beams.last[:n])
    beams.p_blank[:n] = total + frame_pad[:, opts.blank_id, None]


def _compiled(opts: _Options) -> bool:
    """Whether the compiled step (asrkit.search.kernel) runs this search: no side scores (LM,
    lexicon, hotwords) and numba present."""
    return opts.lm is None and opts.lexicon is None and opts.context is None and kernel.enabled()


def _compiled_frames(beams: _Beams, row: int, frames: np.ndarray, opts: _Options, back_slot: np.ndarray,
                     back_token: np.ndarray) -> None:
    """One row's frames (T, V) through ``kernel.run_frames``: the same beam, bit for bit, as
    ``_step`` on each of its frames; its back-pointers into the (T, K) views given."""
    slots, tokens = np.empty(back_slot.shape, np.int64), np.empty(back_token.shape, np.int64)
    kernel.run_frames(frames, opts.vocab, opts.beam, opts.blank_id, opts.limit, opts.token_prune,
                      opts.token_min_logp, opts.space_id, beams.p_blank[row], beams.p_token[row], beams.key[row],
                      beams.parent[row], beams.last[row], slots, tokens)
    back_slot[...] = slots
    back_token[...] = tokens


def _step(beams: _Beams, n: int, frame_pad: np.ndarray, opts: _Options, back_slot: np.ndarray,
          back_token: np.ndarray, quiet: bool = False) -> None:
    """One frame for the running rows [:n]: extensions, shallow fusion, pruning (back-pointers into
    ``back_slot``/``back_token``); the batched and the incremental search both run it. A
    ``quiet`` frame (``_quiet_frames``) moves the scores only: its back-pointers stay as given
    (each slot its own, no token)."""
    if quiet:
        _stay(beams, n, frame_pad, opts)
        return
    frm = _extensions(beams, n, frame_pad, opts)
    if opts.lm is not None or opts.context is not None:
        _add_side_scores(beams, n, frm, opts)
    _prune(beams, n, frm, opts, back_slot, back_token)


def _longest_first(log_probs: np.ndarray, lengths: np.ndarray):
    """(order, frames, running): the utterances longest first, so that those still running at
    frame t are rows [:running[t]]; their log-probs time-major (T, B, V + 1), so that a frame's rows
    are contiguous, with a -inf column (the "last token" of the empty prefix)."""
    order = np.argsort(-lengths, kind="stable")
    batch, _, vocab = log_probs.shape
    frames = np.full((log_probs.shape[1], batch, vocab + 1), -math.inf, np.float32)
    frames[:, :, :vocab] = log_probs[order].transpose(1, 0, 2)
    sorted_lengths = lengths[order]
    running = np.searchsorted(-sorted_lengths, -np.arange(int(sorted_lengths[0])), side="left").tolist()
    return order, frames, running


def _score_words(lm: WordScorer, states: np.ndarray, word_keys: np.ndarray, valid: np.ndarray):
    """LM delta and next state for ending each prefix's pending word now (0 and unchanged when none)."""
    delta = np.zeros(states.shape, dtype=np.float32)
    nxt = states.copy()
    pending = valid & (word_keys != 0)
    if pending.any():
        d, following = lm.word_scores(states[pending], word_keys[pending])
        delta[pending] = d
        nxt[pending] = following
    return delta, nxt


def _backtrack(order, score, ctc, lm_total, back_slot, back_token, context=None) -> list[list[Hypothesis]]:
    slots_bt, tokens_bt, order_np, score_np, ctc_np, lm_np = back_slot, back_token, order, score, ctc, lm_total
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
                                   float(ctc_np[b, slot]), None if lm_np is None else float(lm_np[b, slot]),
                                   context_score=None if context is None else float(context[b, slot])))
        results.append(hyps)
    return results


__all__ = ["PrefixSearch", "prefix_beam_search", "resolve_boundary"]
