"""The plain prefix beam search of one utterance, compiled: ``prefix.py``'s frame step as a loop.

One frame of the batched search (asrkit.search.prefix) is a few dozen numpy operations on
(B, beam) arrays: about 90 µs whatever B, cheap per utterance in a batch of 200 and the whole
cost of a stream, which is a batch of one. Here the same step runs as a compiled loop (numba,
which librosa already brings) over one utterance's frames: the same candidates in the same
columns, the same float32 arithmetic (``_logaddexp`` is numpy's), the same merging of equal
prefixes and the same pruning, ties to the lower column, so each utterance's beam (scores, keys,
slots and back-pointers) equals the numpy step's, and so do the n-best (tested in
tests/test_search_kernel.py against it and against the reference search).

It covers the search without side scores (no LM, lexicon or hotwords), with or without a word
separator and token pruning; ``prefix.py`` uses it for those searches, row by row, when numba
imports (``ASRKIT_SEARCH_KERNEL=0`` turns it off: the numpy step is then used, as for the others).
"""

from __future__ import annotations

import math
import os

import numpy as np

from asrkit.search.types import _BASE, _MODULUS, _NO_PARENT, _NO_PREFIX

try:
    from numba import njit
except ImportError:  # pragma: no cover - numba comes with librosa
    njit = None

_LOG2 = np.float32(math.log(2.0))
_NEG_INF = np.float32(-np.inf)


def enabled() -> bool:
    """Whether the compiled step runs (numba imports and ``ASRKIT_SEARCH_KERNEL`` is not 0)."""
    return njit is not None and os.environ.get("ASRKIT_SEARCH_KERNEL", "1") != "0"


def _logaddexp(x, y):
    """numpy's float32 ``logaddexp`` (npy_logaddexpf), operation for operation."""
    if x == y:
        return x + _LOG2  # -inf + -inf, and equal values
    d = x - y
    if d > 0:
        return x + np.float32(math.log1p(math.exp(-d)))
    if d <= 0:
        return y + np.float32(math.log1p(math.exp(d)))
    return d  # NaN


def _quiet(f, vocab, blank, min_logp):
    """(quiet, tokens at or above ``min_logp``): a quiet frame (prefix._quiet_frames) leaves no
    token but the blank, and the blank is possible."""
    loud = 0
    at_least = 0
    for c in range(vocab):
        if f[c] >= min_logp:
            at_least += 1
            if c != blank:
                loud += 1
    return loud == 0 and np.isfinite(f[blank]), at_least


def _stay(f, vocab, blank, pb, pt, last, back_slot, back_token):
    """A quiet frame (prefix._stay): every prefix keeps its slot, its two scores move."""
    for k in range(len(pb)):
        tot = _logaddexp(pb[k], pt[k])
        pt[k] = pt[k] + (f[last[k]] if last[k] < vocab else _NEG_INF)
        pb[k] = tot + f[blank]
        back_slot[k] = k
        back_token[k] = -1


def _keep_best(values, index, filled, k, v, i):
    """Offer ``v`` (of index ``i``) to the ``k`` best so far (``values[:filled]``, descending, ties
    in the order offered; ``index`` beside them); returns how many are held."""
    if filled < k:
        pos = filled
        filled += 1
    elif v > values[k - 1]:
        pos = k - 1
    else:
        return filled
    while pos > 0 and values[pos - 1] < v:  # after the equal ones
        values[pos] = values[pos - 1]
        index[pos] = index[pos - 1]
        pos -= 1
    values[pos] = v
    index[pos] = i
    return filled


def _columns(f, vocab, width, blank, use_min_logp, min_logp, cols, clp):
    """The frame's candidate tokens (candidates.shared_candidates): every token in order when
    ``width`` is the vocabulary, else the ``width`` most probable, best first, ties in token order;
    the blank and (with ``min_logp``) the unlikely ones at -inf."""
    if width == vocab:
        for c in range(vocab):
            cols[c] = c
            clp[c] = f[c]
    else:
        filled = 0
        for c in range(vocab):
            filled = _keep_best(clp, cols, filled, width, f[c], c)
    for i in range(width):
        if cols[i] == blank or (use_min_logp and clp[i] < min_logp):
            clp[i] = _NEG_INF


def _extend(f, vocab, width, blank, space_id, cols, clp, pb, pt, last, total, stay_blank, stay_token, ext):
    """Each prefix's stays and its extensions by the columns' tokens (prefix._extensions), with
    the separator's rules (never first, never twice)."""
    for k in range(len(pb)):
        total[k] = _logaddexp(pb[k], pt[k])
        stay_blank[k] = total[k] + f[blank]
        stay_token[k] = pt[k] + (f[last[k]] if last[k] < vocab else _NEG_INF)
        no_space = space_id >= 0 and (last[k] == vocab or last[k] == space_id)
        for i in range(width):
            c = cols[i]
            if no_space and c == space_id:
                ext[k * width + i] = _NEG_INF
            elif c == last[k]:  # a repeat is a new label only after a blank
                ext[k * width + i] = pb[k] + clp[i]
            else:
                ext[k * width + i] = total[k] + clp[i]


def _merge(f, vocab, width, full, kth_prune, use_min_logp, min_logp, cols, pb, total, key, parent, last,
           stay_token, ext):
    """An extension equal to a prefix j already in the beam joins j's stay and loses its column
    (prefix._merge_equal_prefixes)."""
    K = len(pb)
    for j in range(K):
        lj = last[j]
        if lj >= vocab:
            continue
        source = -1
        for k in range(K):
            if key[k] == parent[j]:
                source = k
                break
        if source < 0:
            continue
        if full:
            merged = ext[source * width + lj]
            ext[source * width + lj] = _NEG_INF
        else:  # j's token may have no column: its mass as candidates.token_log_probs gives it
            lp = f[lj]
            if lp < kth_prune or (use_min_logp and lp < min_logp):
                lp = _NEG_INF
            merged = (pb[source] if last[source] == lj else total[source]) + lp
            for i in range(width):
                if cols[i] == lj:
                    ext[source * width + i] = _NEG_INF
                    break
        stay_token[j] = _logaddexp(stay_token[j], merged)


def _candidate(col, stay_blank, stay_token, ext):
    """The score of a column of the pruning: the stays (0..K-1), then the extensions."""
    K = len(stay_blank)
    return _logaddexp(stay_blank[col], stay_token[col]) if col < K else ext[col - K]


def _select(width, stay_blank, stay_token, ext, best, chosen):
    """The K best columns, ties to the lower column, in column order (candidates.top_columns)."""
    K = len(stay_blank)
    size = K + K * width
    filled = 0
    for col in range(size):  # the K best values, descending (``chosen`` as scratch for their columns)
        filled = _keep_best(best, chosen, filled, K, _candidate(col, stay_blank, stay_token, ext), col)
    kth = best[K - 1]
    ties = K
    for s in range(K):
        if best[s] > kth:
            ties -= 1
    n = 0
    for col in range(size):
        v = _candidate(col, stay_blank, stay_token, ext)
        if v > kth or (v == kth and ties > 0):
            if not v > kth:
                ties -= 1
            chosen[n] = col
            n += 1
            if n == K:
                break


def _move(width, chosen, cols, stay_blank, stay_token, ext, pb, pt, key, parent, last, new_pb, new_pt, new_key,
          new_parent, new_last, back_slot, back_token):
    """The chosen columns become the beam (prefix._prune), their back-pointers written."""
    K = len(pb)
    for s in range(K):
        col = chosen[s]
        if col < K:
            src, tok = col, -1
            new_pb[s], new_pt[s] = stay_blank[src], stay_token[src]
            value = _logaddexp(stay_blank[src], stay_token[src])
            new_key[s], new_parent[s], new_last[s] = key[src], parent[src], last[src]
        else:
            e = col - K
            src, tok = e // width, cols[e % width]
            new_pb[s], new_pt[s] = _NEG_INF, ext[e]
            value = ext[e]
            new_key[s] = (key[src] * _BASE + (tok + 1)) % _MODULUS
            new_parent[s], new_last[s] = key[src], tok
        if not value > _NEG_INF:
            new_key[s], new_parent[s] = _NO_PREFIX, _NO_PARENT
        back_slot[s], back_token[s] = src, tok
    pb[:], pt[:], key[:], parent[:], last[:] = new_pb, new_pt, new_key, new_parent, new_last


def _frames(frames, vocab, beam, blank, limit, token_prune, use_min_logp, min_logp, space_id,
            pb, pt, key, parent, last, back_slot, back_token):
    """Advance one utterance's beam (``pb``, ``pt``, ``key``, ``parent``, ``last``: (K,), in place)
    over ``frames`` (T, V) float32, writing each frame's back-pointers into ``back_slot`` and
    ``back_token`` (T, K). ``token_prune`` 0 and ``space_id`` -1: none."""
    K = beam
    cap = min(vocab if token_prune <= 0 else min(vocab, token_prune), limit)
    cols, clp = np.empty(vocab, np.int64), np.empty(vocab, np.float32)
    total, stay_blank, stay_token = np.empty(K, np.float32), np.empty(K, np.float32), np.empty(K, np.float32)
    ext = np.empty(K * vocab, np.float32)
    best, chosen = np.empty(K, np.float32), np.empty(K, np.int64)
    new_pb, new_pt = np.empty(K, np.float32), np.empty(K, np.float32)
    new_key, new_parent, new_last = np.empty(K, np.int64), np.empty(K, np.int64), np.empty(K, np.int64)
    sorted_frame = np.empty(vocab, np.float32)
    for t in range(frames.shape[0]):
        f = frames[t]
        width = cap
        if use_min_logp:
            quiet, at_least = _quiet(f, vocab, blank, min_logp)
            if quiet:
                _stay(f, vocab, blank, pb, pt, last, back_slot[t], back_token[t])
                continue
            width = max(1, min(width, at_least))
        full = width == vocab
        _columns(f, vocab, width, blank, use_min_logp, min_logp, cols, clp)
        kth_prune = _NEG_INF  # token_log_probs' pruning of a merged prefix's token
        if not full and 0 < token_prune < vocab:
            sorted_frame[:] = f
            sorted_frame.sort()
            kth_prune = sorted_frame[vocab - token_prune]
        _extend(f, vocab, width, blank, space_id, cols, clp, pb, pt, last, total, stay_blank, stay_token, ext)
        _merge(f, vocab, width, full, kth_prune, use_min_logp, min_logp, cols, pb, total, key, parent, last,
               stay_token, ext)
        _select(width, stay_blank, stay_token, ext, best, chosen)
        _move(width, chosen, cols, stay_blank, stay_token, ext, pb, pt, key, parent, last, new_pb, new_pt, new_key,
              new_parent, new_last, back_slot[t], back_token[t])


def _compile(function, **options):
    """numba's compiled ``function``, cached on disk beside this file (compiling takes a few seconds
    once), or compiled in each process where no cache folder can be written."""
    try:
        return njit(cache=True, nogil=True, **options)(function)
    except RuntimeError:  # numba found no writable cache location
        return njit(nogil=True, **options)(function)


if njit is not None:
    _logaddexp = _compile(_logaddexp, inline="always")
    _candidate = _compile(_candidate, inline="always")
    _keep_best = _compile(_keep_best, inline="always")
    _quiet, _stay, _columns, _extend, _merge, _select, _move, _frames = (
        _compile(f) for f in (_quiet, _stay, _columns, _extend, _merge, _select, _move, _frames))


def run_frames(frames: np.ndarray, vocab: int, beam: int, blank_id: int, limit: int, token_prune: int | None,
               token_min_logp: float | None, space_id: int | None, p_blank: np.ndarray, p_token: np.ndarray,
               key: np.ndarray, parent: np.ndarray, last: np.ndarray, back_slot: np.ndarray,
               back_token: np.ndarray) -> None:
    """One utterance's frames (T, V) through the plain search step (see the module's docstring);
    the beam's arrays (K,) in place, back-pointers into (T, K) arrays."""
    _frames(np.ascontiguousarray(frames, np.float32), vocab, beam, blank_id, limit, token_prune or 0,
            token_min_logp is not None, np.float32(0.0 if token_min_logp is None else token_min_logp),
            -1 if space_id is None else space_id, p_blank, p_token, key, parent, last, back_slot, back_token)


__all__ = ["enabled", "run_frames"]
