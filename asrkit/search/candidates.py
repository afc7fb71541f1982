"""The candidate tokens of one frame of the batched CTC prefix beam search (asrkit.search.prefix).

Only a few tokens of a frame can extend a prefix into the next beam (the
``limit``, 2·beam+2, most probable; see ``shared_candidates``). Which ones
depends on the search: the same for every prefix of an utterance without a
lexicon (``shared_candidates``), split into word-start and other tokens under
LM fusion with sentencepiece units (``split_candidates``), or the children of
each prefix's lexicon trie node (``lexicon_candidates``, with the root's
children chosen once per utterance by ``root_candidates``). Token pruning
(``token_prune``, ``token_min_logp``) is applied by ``pruned``. Arrays are
numpy's; ``topk`` is the one selection they all use.
"""

from __future__ import annotations

import math

import numpy as np

from asrkit.search.types import WordConstraint


def topk(values: np.ndarray, k: int, axis: int = -1, ordered: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(values, indices) of the ``k`` largest entries along ``axis``, best first when ``ordered``
    (ties in index order); in any order otherwise (a partition, cheaper)."""
    size = values.shape[axis]
    if k >= size:
        index = np.argsort(-values, axis=axis, kind="stable") if ordered else \
            np.broadcast_to(np.arange(size).reshape([-1 if a == axis % values.ndim else 1
                                                     for a in range(values.ndim)]), values.shape)
    else:
        index = np.argpartition(-values, k - 1, axis=axis)
        index = np.take(index, np.arange(k), axis=axis)
        if ordered:
            inner = np.argsort(-np.take_along_axis(values, index, axis), axis=axis, kind="stable")
            index = np.take_along_axis(index, inner, axis)
    return np.take_along_axis(values, index, axis), index


def top_columns(values: np.ndarray, k: int) -> np.ndarray:
    """Column indices (n, k) of the ``k`` largest entries of each row of ``values`` (n, C), in any
    order: the beam's pruning. Each row's k-th value comes from numpy's sort of float32 rows
    (SIMD): 0.20 against ``argpartition``'s 0.37 ms for 200 x 190 (the digits search at beam 10),
    and no slower on rows full of -inf, where selection degenerates (a row of 950 with 90% -inf:
    0.7 against 18 ms). The entries above that value, and as many of those equal to it as are
    needed (ties: a row with fewer than k finite candidates), in column order, are the k."""
    n, size = values.shape
    if k >= size:
        return np.broadcast_to(np.arange(size), (n, size))
    kth = np.sort(values, axis=1)[:, size - k, None]
    above = values >= kth
    columns = np.nonzero(above)[1]
    if columns.size == n * k:
        return columns.reshape(n, k)
    strict = values > kth
    ties = above & ~strict
    chosen = strict | (ties & (np.cumsum(ties, 1) <= k - strict.sum(1, keepdims=True)))
    return np.nonzero(chosen)[1].reshape(n, k)


def pruned(values: np.ndarray, frame: np.ndarray, token_prune: int | None,
           token_min_logp: float | None) -> np.ndarray:
    """``values`` (log-probs taken from ``frame`` (n, V), shape (n, ...)) with -inf where the
    frame's pruning drops the token: outside its ``token_prune`` most probable, below ``token_min_logp``."""
    if token_prune is not None and token_prune < frame.shape[1]:
        kth = -np.partition(-frame, token_prune - 1, axis=1)[:, token_prune - 1:token_prune]
        values = np.where(values < kth, -math.inf, values)
    if token_min_logp is not None:
        values = np.where(values < token_min_logp, -math.inf, values)
    return values


def prune_frame(frame: np.ndarray, blank_id: int, token_prune: int | None,
                token_min_logp: float | None) -> np.ndarray:
    """A frame's token log-probs with -inf where a token may not extend a prefix: the blank and
    what pruning drops."""
    allowed = np.array(pruned(frame, frame, token_prune, token_min_logp))  # a copy
    allowed[:, blank_id] = -math.inf
    return allowed


def token_log_probs(frame_pad: np.ndarray, tokens: np.ndarray, token_prune: int | None,
                    token_min_logp: float | None) -> np.ndarray:
    """Log-probs of ``tokens`` (n, K) in a padded frame (n, V + 1), -inf where pruning drops them."""
    return pruned(np.take_along_axis(frame_pad, tokens, 1), frame_pad[:, :-1], token_prune, token_min_logp)


def split_candidates(frame: np.ndarray, limit: int, blank_id: int, token_prune: int | None,
                     token_min_logp: float | None, starts: np.ndarray, num_starts: int):
    """Under LM fusion with word-start tokens: the ``limit`` best word-start tokens and the
    ``limit`` best others. A word-start token adds the score of the word it ends, the same for
    every such token of a prefix, so each class ranks as in ``shared_candidates``."""
    allowed = prune_frame(frame, blank_id, token_prune, token_min_logp)
    tokens, token_lp = [], []
    vocab = frame.shape[1]
    for mask, size in ((starts[:-1], num_starts), (~starts[:-1], vocab - num_starts)):
        count = min(size, limit)
        if count:
            lp, tok = topk(np.where(mask, allowed, -math.inf), count, axis=1)
            tokens.append(tok)
            token_lp.append(lp)
    return np.concatenate(tokens, 1)[:, None], np.concatenate(token_lp, 1)[:, None], False


def class_candidates(frame: np.ndarray, groups: list[tuple[np.ndarray, int]], blank_id: int,
                     token_prune: int | None, token_min_logp: float | None):
    """Candidates drawn per class of tokens: each ``(mask, count)`` gives the ``count`` most probable
    tokens of the class ``mask`` ((V,) bool). With contextual biasing every phrase token is a class
    of its own and the other classes (tokens outside the phrases, inside or starting a word, and the
    separator) share one bonus per prefix, so that within a class the frame's ranking is each
    prefix's ranking and ``shared_candidates``' argument holds. Returns tokens and log-probs, each
    (n, 1, w)."""
    allowed = prune_frame(frame, blank_id, token_prune, token_min_logp)
    tokens, token_lp = [], []
    for mask, count in groups:
        count = min(int(mask.sum()), count)
        if count:
            lp, tok = topk(np.where(mask, allowed, -math.inf), count, axis=1)
            tokens.append(tok)
            token_lp.append(lp)
    return np.concatenate(tokens, 1)[:, None], np.concatenate(token_lp, 1)[:, None], False


def shared_candidates(frame: np.ndarray, limit: int, blank_id: int, token_prune: int | None,
                      token_min_logp: float | None, keep_id: int | None):
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
        allowed = prune_frame(frame, blank_id, token_prune, token_min_logp)
        others = np.concatenate([allowed[:, :keep_id], allowed[:, keep_id + 1:]], 1)  # no column twice
        token_lp, tokens = topk(others, min(vocab - 1, limit), axis=1)
        tokens = tokens + (tokens >= keep_id)
        tokens = np.concatenate([tokens, np.full((n, 1), keep_id, dtype=tokens.dtype)], 1)
        token_lp = np.concatenate([token_lp, allowed[:, keep_id, None]], 1)
        return tokens[:, None], token_lp[:, None], False
    width = min(vocab, token_prune or vocab, limit)
    if token_min_logp is not None:  # on peaky CTC output most frames keep a token or two
        width = max(1, min(width, int((frame >= token_min_logp).sum(1).max())))
    if width < vocab:  # best first, ties to the lower token (as the compiled step picks them)
        tokens = top_columns(frame, width)
        token_lp = np.take_along_axis(frame, tokens, 1)
        inner = np.argsort(-token_lp, axis=1, kind="stable")
        tokens, token_lp = np.take_along_axis(tokens, inner, 1), np.take_along_axis(token_lp, inner, 1)
    else:
        tokens, token_lp = np.broadcast_to(np.arange(vocab), (n, vocab)), frame
    token_lp = np.where(tokens == blank_id, -math.inf, token_lp)
    if token_min_logp is not None:
        token_lp = np.where(token_lp < token_min_logp, -math.inf, token_lp)
    return tokens[:, None], token_lp[:, None], width == vocab


def lexicon_candidates(frame: np.ndarray, lexicon: WordConstraint, nodes: np.ndarray, limit: int,
                       blank_id: int, token_prune: int | None, token_min_logp: float | None,
                       space_id: int | None, starts: np.ndarray | None):
    """Tokens that may legally extend each prefix: the children of its trie node (the ``limit``
    most probable of them, as in ``shared_candidates``), and the separator when the node ends a
    word; with word-start tokens, the children of the root (the first tokens of the words) where
    the node ends a word or no word has begun. frame: (n, V); nodes: (n, K). Returns tokens,
    log-probs and next nodes, each (n, K, w)."""
    n, beam = nodes.shape
    allowed = np.pad(prune_frame(frame, blank_id, token_prune, token_min_logp), ((0, 0), (0, 1)),
                     constant_values=-math.inf)  # the last column is the padding token's

    def legal(at: np.ndarray, closed: np.ndarray | None):
        tokens, next_nodes = lexicon.children(at)
        token_lp = np.take_along_axis(allowed, tokens.reshape(n, -1), 1).reshape(tokens.shape)
        if closed is not None:  # a padding column, so that no row holds a token twice (merging finds one)
            shut = closed[:, :, None]
            token_lp = np.where(shut, -math.inf, token_lp)
            tokens = np.where(shut, lexicon.pad_token, tokens)
            next_nodes = np.where(shut, 0, next_nodes)
        if tokens.shape[2] > limit:
            token_lp, column = topk(token_lp, limit, axis=2)
            tokens, next_nodes = np.take_along_axis(tokens, column, 2), np.take_along_axis(next_nodes, column, 2)
        return tokens, token_lp, next_nodes

    if starts is None:
        tokens, token_lp, next_nodes = legal(nodes, None)
    else:  # inside a word its children, at a word's end (or before the first) a new word
        at_root = nodes == 0
        inner = legal(nodes, at_root)
        fresh = root_candidates(allowed, lexicon, nodes, ~(at_root | lexicon.is_word(nodes)), limit)
        tokens, token_lp, next_nodes = (np.concatenate([a, b], 2) for a, b in zip(inner, fresh))
    if space_id is not None:
        space_lp = np.where(lexicon.is_word(nodes), allowed[:, space_id, None], -math.inf)
        tokens = np.concatenate([tokens, np.full((n, beam, 1), space_id, dtype=tokens.dtype)], 2)
        token_lp = np.concatenate([token_lp, space_lp[:, :, None]], 2)
        next_nodes = np.concatenate([next_nodes, np.zeros_like(next_nodes[:, :, :1])], 2)
    return tokens, token_lp, next_nodes


def root_candidates(allowed: np.ndarray, lexicon: WordConstraint, nodes: np.ndarray, closed: np.ndarray,
                    limit: int):
    """The first tokens of the lexicon's words, the ``limit`` best of each utterance's frame, for
    every prefix (padding where ``closed``): the same for all the prefixes of an utterance, so
    chosen once per utterance, not per prefix (a large lexicon has thousands of first pieces)."""
    n, beam = nodes.shape
    tokens, next_nodes = lexicon.children(np.zeros(1, dtype=np.int64))
    tokens, next_nodes = np.broadcast_to(tokens, (n, tokens.shape[1])), np.broadcast_to(next_nodes, (n, tokens.shape[1]))
    token_lp = np.take_along_axis(allowed, tokens, 1)
    if tokens.shape[1] > limit:
        token_lp, column = topk(token_lp, limit, axis=1)
        tokens, next_nodes = np.take_along_axis(tokens, column, 1), np.take_along_axis(next_nodes, column, 1)
    shut = closed[:, :, None]
    return (np.where(shut, lexicon.pad_token, tokens[:, None]), np.where(shut, -math.inf, token_lp[:, None]),
            np.where(shut, 0, next_nodes[:, None]))


__all__ = ["class_candidates", "lexicon_candidates", "prune_frame", "pruned", "root_candidates", "shared_candidates",
           "split_candidates", "token_log_probs", "top_columns", "topk"]
