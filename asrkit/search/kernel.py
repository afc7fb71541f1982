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


def _frames(frames, vocab, beam, blank, limit, token_prune, use_min_logp, min_logp, space_id,
            pb, pt, key, parent, last, back_slot, back_token):
    """Advance one utterance's beam (``pb``, ``pt``, ``key``, ``parent``, ``last``: (K,), in place)
    over ``frames`` (T, V) float32, writing each frame's back-pointers into ``back_slot`` and
    ``back_token`` (T, K). ``token_prune`` 0 and ``space_id`` -1: none."""
    K = beam
    n_frames = frames.shape[0]
    cap = vocab if token_prune <= 0 else min(vocab, token_prune)
    cap = min(cap, limit)
    cols = np.empty(vocab, np.int64)
    clp = np.empty(vocab, np.float32)
    total = np.empty(K, np.float32)
    stay_blank = np.empty(K, np.float32)
    stay_token = np.empty(K, np.float32)
    ext = np.empty(K * vocab, np.float32)
    best = np.empty(K, np.float32)  # the K best candidate values so far, descending
    chosen = np.empty(K, np.int64)
    new_pb = np.empty(K, np.float32)
    new_pt = np.empty(K, np.float32)
    new_key = np.empty(K, np.int64)
    new_parent = np.empty(K, np.int64)
    new_last = np.empty(K, np.int64)
    sorted_frame = np.empty(vocab, np.float32)
    for t in range(n_frames):
        f = frames[t]
        blank_lp = f[blank]
        if use_min_logp:  # a quiet frame (prefix._quiet_frames): the scores move, nothing else
            loud = 0
            at_least = 0
            for c in range(vocab):
                if f[c] >= min_logp:
                    at_least += 1
                    if c != blank:
                        loud += 1
            if loud == 0 and np.isfinite(blank_lp):
                for k in range(K):
                    tot = _logaddexp(pb[k], pt[k])
                    pt[k] = pt[k] + (f[last[k]] if last[k] < vocab else _NEG_INF)
                    pb[k] = tot + blank_lp
                    back_slot[t, k] = k
                    back_token[t, k] = -1
                continue
        width = cap
        if use_min_logp:
            width = max(1, min(width, at_least))
        full = width == vocab
        if full:  # every token a column, in order
            for c in range(vocab):
                cols[c] = c
                clp[c] = f[c]
        else:  # the ``width`` most probable, best first, ties in token order (candidates.topk)
            filled = 0
            for c in range(vocab):
                v = f[c]
                if filled < width:
                    pos = filled
                    filled += 1
                elif v > clp[width - 1]:
                    pos = width - 1
                else:
                    continue
                while pos > 0 and clp[pos - 1] < v:  # after the equal ones: ties in token order
                    clp[pos] = clp[pos - 1]
                    cols[pos] = cols[pos - 1]
                    pos -= 1
                clp[pos] = v
                cols[pos] = c
        for i in range(width):
            if cols[i] == blank or (use_min_logp and clp[i] < min_logp):
                clp[i] = _NEG_INF
        kth_prune = _NEG_INF  # token_log_probs' pruning of a merged prefix's token
        if not full and 0 < token_prune < vocab:
            for c in range(vocab):
                sorted_frame[c] = f[c]
            sorted_frame.sort()
            kth_prune = sorted_frame[vocab - token_prune]
        for k in range(K):
            total[k] = _logaddexp(pb[k], pt[k])
            stay_blank[k] = total[k] + blank_lp
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
        # an extension equal to a prefix j already in the beam joins j's stay (prefix._merge_equal_prefixes)
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
            else:
                lp = f[lj]
                if lp < kth_prune or (use_min_logp and lp < min_logp):
                    lp = _NEG_INF
                merged = (pb[source] if last[source] == lj else total[source]) + lp
                for i in range(width):
                    if cols[i] == lj:
                        ext[source * width + i] = _NEG_INF
                        break
            stay_token[j] = _logaddexp(stay_token[j], merged)
        # the K best of the stays (columns 0..K-1) and the extensions (K + k·width + i), ties to the
        # lower column, kept in column order (candidates.top_columns)
        size = K + K * width
        filled = 0
        for col in range(size):
            v = _logaddexp(stay_blank[col], stay_token[col]) if col < K else ext[col - K]
            if filled < K:
                pos = filled
                filled += 1
            elif v > best[K - 1]:
                pos = K - 1
            else:
                continue
            while pos > 0 and best[pos - 1] < v:
                best[pos] = best[pos - 1]
                pos -= 1
            best[pos] = v
        kth = best[K - 1]
        strict = 0
        for s in range(K):
            if best[s] > kth:
                strict += 1
        ties = K - strict
        n = 0
        for col in range(size):
            v = _logaddexp(stay_blank[col], stay_token[col]) if col < K else ext[col - K]
            if v > kth or (v == kth and ties > 0):
                if v == kth and not v > kth:
                    ties -= 1
                chosen[n] = col
                n += 1
                if n == K:
                    break
        for s in range(K):
            col = chosen[s]
            if col < K:
                src, tok = col, -1
                new_pb[s] = stay_blank[src]
                new_pt[s] = stay_token[src]
                value = _logaddexp(stay_blank[src], stay_token[src])
                new_key[s] = key[src]
                new_parent[s] = parent[src]
                new_last[s] = last[src]
            else:
                e = col - K
                src = e // width
                tok = cols[e % width]
                new_pb[s] = _NEG_INF
                new_pt[s] = ext[e]
                value = ext[e]
                new_key[s] = (key[src] * _BASE + (tok + 1)) % _MODULUS
                new_parent[s] = key[src]
                new_last[s] = tok
            if not value > _NEG_INF:
                new_key[s] = _NO_PREFIX
                new_parent[s] = _NO_PARENT
            back_slot[t, s] = src
            back_token[t, s] = tok
        for s in range(K):
            pb[s] = new_pb[s]
            pt[s] = new_pt[s]
            key[s] = new_key[s]
            parent[s] = new_parent[s]
            last[s] = new_last[s]


def _compile(function, **options):
    """numba's compiled ``function``, cached on disk beside this file (compiling takes a few seconds
    once), or compiled in each process where no cache folder can be written."""
    try:
        return njit(cache=True, nogil=True, **options)(function)
    except RuntimeError:  # numba found no writable cache location
        return njit(nogil=True, **options)(function)


if njit is not None:
    _logaddexp = _compile(_logaddexp, inline="always")
    _frames = _compile(_frames)


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
