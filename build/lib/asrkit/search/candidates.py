"""The candidate tokens of one frame of the batched CTC prefix beam search (asrkit.search.prefix).

Only a few tokens of a frame can extend a prefix into the next beam (the
``limit``, 2·beam+2, most probable; see ``shared_candidates``). Which ones
depends on the search: the same for every prefix of an utterance without a
lexicon (``shared_candidates``), split into word-start and other tokens under
LM fusion with sentencepiece units (``split_candidates``), or the children of
each prefix's lexicon trie node (``lexicon_candidates``, with the root's
children chosen once per utterance by ``root_candidates``). Token pruning
(``token_prune``, ``token_min_logp``) is applied by ``pruned``.
"""

from __future__ import annotations

import math

import torch

from asrkit.search.types import WordConstraint


def pruned(values: torch.Tensor, frame: torch.Tensor, token_prune: int | None,
            token_min_logp: float | None) -> torch.Tensor:
    """``values`` (log-probs taken from ``frame`` (n, V), any shape (n, ...)) with -inf where the
    frame's pruning drops the token: outside its ``token_prune`` most probable, below ``token_min_logp``."""
    if token_prune is not None and token_prune < frame.size(1):
        values = values.masked_fill(values < frame.topk(token_prune, dim=1).values[:, -1:], -math.inf)
    if token_min_logp is not None:
        values = values.masked_fill(values < token_min_logp, -math.inf)
    return values


def prune_frame(frame: torch.Tensor, blank_id: int, token_prune: int | None,
                 token_min_logp: float | None) -> torch.Tensor:
    """A frame's token log-probs with -inf where a token may not extend a prefix: the blank and
    what pruning drops."""
    allowed = pruned(frame.clone(), frame, token_prune, token_min_logp)
    allowed[:, blank_id] = -math.inf
    return allowed


def token_log_probs(frame_pad: torch.Tensor, tokens: torch.Tensor, token_prune: int | None,
                     token_min_logp: float | None) -> torch.Tensor:
    """Log-probs of ``tokens`` (n, K) in a padded frame (n, V + 1), -inf where pruning drops them."""
    return pruned(frame_pad.gather(1, tokens), frame_pad[:, :-1], token_prune, token_min_logp)


def split_candidates(frame: torch.Tensor, limit: int, blank_id: int, token_prune: int | None,
                      token_min_logp: float | None, starts: torch.Tensor, num_starts: int):
    """Under LM fusion with word-start tokens: the ``limit`` best word-start tokens and the
    ``limit`` best others. A word-start token adds the score of the word it ends, the same for
    every such token of a prefix, so each class ranks as in ``shared_candidates``."""
    allowed = prune_frame(frame, blank_id, token_prune, token_min_logp)
    tokens, token_lp = [], []
    vocab = frame.size(1)
    for mask, size in ((starts[:-1], num_starts), (~starts[:-1], vocab - num_starts)):
        count = min(size, limit)  # sizes known up front: no device sync per frame
        if count:
            lp, tok = allowed.masked_fill(~mask, -math.inf).topk(count, dim=1)
            tokens.append(tok)
            token_lp.append(lp)
    return torch.cat(tokens, 1)[:, None], torch.cat(token_lp, 1)[:, None], False


def shared_candidates(frame: torch.Tensor, limit: int, blank_id: int, token_prune: int | None,
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
        allowed = prune_frame(frame, blank_id, token_prune, token_min_logp)
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


def lexicon_candidates(frame: torch.Tensor, lexicon: WordConstraint, nodes: torch.Tensor, limit: int,
                        blank_id: int, token_prune: int | None, token_min_logp: float | None,
                        space_id: int | None, starts: torch.Tensor | None):
    """Tokens that may legally extend each prefix: the children of its trie node (the ``limit``
    most probable of them, as in ``shared_candidates``), and the separator when the node ends a
    word; with word-start tokens, the children of the root (the first tokens of the words) where
    the node ends a word or no word has begun. frame: (n, V); nodes: (n, K). Returns tokens,
    log-probs and next nodes, each (n, K, w)."""
    n, beam = nodes.shape
    allowed = torch.nn.functional.pad(prune_frame(frame, blank_id, token_prune, token_min_logp), (0, 1),
                                      value=-math.inf)  # the last column is the padding token's

    def legal(at: torch.Tensor, closed: torch.Tensor | None):
        tokens, next_nodes = lexicon.children(at)
        token_lp = allowed.gather(1, tokens.view(n, -1)).view(tokens.shape)
        if closed is not None:  # a padding column, so that no row holds a token twice (merging finds one)
            token_lp = token_lp.masked_fill(closed[:, :, None], -math.inf)
            tokens = tokens.masked_fill(closed[:, :, None], lexicon.pad_token)
            next_nodes = next_nodes.masked_fill(closed[:, :, None], 0)
        if tokens.size(2) > limit:
            token_lp, column = token_lp.topk(limit, dim=2)
            tokens, next_nodes = tokens.gather(2, column), next_nodes.gather(2, column)
        return tokens, token_lp, next_nodes

    if starts is None:
        tokens, token_lp, next_nodes = legal(nodes, None)
    else:  # inside a word its children, at a word's end (or before the first) a new word
        at_root = nodes == 0
        inner = legal(nodes, at_root)
        fresh = root_candidates(allowed, lexicon, nodes, ~(at_root | lexicon.is_word(nodes)), limit)
        tokens, token_lp, next_nodes = (torch.cat([a, b], 2) for a, b in zip(inner, fresh))
    if space_id is not None:
        space_lp = allowed[:, space_id, None].expand(n, beam).masked_fill(~lexicon.is_word(nodes), -math.inf)
        tokens = torch.cat([tokens, torch.full((n, beam, 1), space_id, dtype=tokens.dtype, device=tokens.device)], 2)
        token_lp = torch.cat([token_lp, space_lp[:, :, None]], 2)
        next_nodes = torch.cat([next_nodes, torch.zeros_like(next_nodes[:, :, :1])], 2)
    return tokens, token_lp, next_nodes


def root_candidates(allowed: torch.Tensor, lexicon: WordConstraint, nodes: torch.Tensor, closed: torch.Tensor,
                     limit: int):
    """The first tokens of the lexicon's words, the ``limit`` best of each utterance's frame, for
    every prefix (padding where ``closed``): the same for all the prefixes of an utterance, so
    chosen once per utterance, not per prefix (a large lexicon has thousands of first pieces)."""
    n, beam = nodes.shape
    tokens, next_nodes = lexicon.children(torch.zeros(1, dtype=torch.long, device=nodes.device))
    tokens, next_nodes = tokens.expand(n, -1), next_nodes.expand(n, -1)
    token_lp = allowed.gather(1, tokens)
    if tokens.size(1) > limit:
        token_lp, column = token_lp.topk(limit, dim=1)
        tokens, next_nodes = tokens.gather(1, column), next_nodes.gather(1, column)
    shape = (n, beam, tokens.size(1))
    shut = closed[:, :, None]
    return (tokens[:, None].expand(shape).masked_fill(shut, lexicon.pad_token),
            token_lp[:, None].expand(shape).masked_fill(shut, -math.inf),
            next_nodes[:, None].expand(shape).masked_fill(shut, 0))


__all__ = ["lexicon_candidates", "prune_frame", "pruned", "root_candidates", "shared_candidates",
           "split_candidates", "token_log_probs"]
