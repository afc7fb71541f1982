"""The search package's types: what every search returns, what it asks of a lexicon and an LM,
and the keys that identify a token sequence.

``Hypothesis`` is the result of every search (greedy, prefix beam, rescoring);
``as_array`` takes their input (numpy arrays, or a model's torch tensors) and
``check_log_probs`` validates it; ``WordConstraint`` (a lexicon
trie, ``asrkit.search.lexicon.Lexicon``) and ``WordScorer`` (a word LM,
``asrkit.search.lm.LmFusion``) are what the prefix beam search needs from the
word-level parts; ``extend_key`` and ``sequence_key`` hash a token sequence the
way the batched search keeps its prefixes (and a lexicon or LM its words).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from asrkit.errors import DecodeError


@dataclass
class Hypothesis:
    tokens: list[int]
    score: float  # log-probability of the path (greedy) or of the prefix (beam), plus LM terms when fused
    timesteps: list[int] = field(default_factory=list)  # encoder frame of each token
    ctc_score: float | None = None  # the CTC part of ``score`` (beam search)
    lm_score: float | None = None  # the LM part: weight * ln P_lm + bonus * words (beam search with an LM)
    att_score: float | None = None  # log P(tokens + <eos>) under the attention decoder (rescoring)
    context_score: float | None = None  # the hotwords' bonus, part of ``score`` (beam search with a context graph)


def as_array(values, dtype=None) -> np.ndarray:
    """``values`` as a numpy array: a numpy array or a list as it is, a torch tensor detached and
    copied to the CPU (floats as float32), so that a model's output goes straight into a search.
    Tensors are recognised by their methods: this package never imports torch."""
    if hasattr(values, "detach") and hasattr(values, "is_floating_point"):
        values = values.detach()
        if values.is_floating_point():
            values = values.float()
        values = values.cpu().numpy()
    return np.asarray(values, dtype=dtype)


def check_log_probs(log_probs: np.ndarray, lengths: np.ndarray) -> None:
    if log_probs.ndim != 3 or lengths.ndim != 1 or lengths.size != log_probs.shape[0]:
        raise DecodeError(f"log-probabilities must be (B, T, V) with (B,) lengths, got {tuple(log_probs.shape)} "
                          f"and {tuple(lengths.shape)}")
    if np.isnan(log_probs).any():
        raise DecodeError("log-probabilities contain NaN")
    if lengths.size and (int(lengths.max()) > log_probs.shape[1] or int(lengths.min()) < 0):
        raise DecodeError(f"lengths must lie in [0, {log_probs.shape[1]}]")


# Prefixes are identified by a polynomial hash of their tokens modulo a prime
# near 2**43, in int64 arithmetic that never overflows (key * P + token < 2**63),
# so it is the same on every device. Two different prefixes in one beam share a
# key with probability ~1e-13 per pair.
_MODULUS = 9223344365791
_BASE = 1000003
_NO_PREFIX, _NO_PARENT, _ROOT_PARENT = -1, -2, -3


def extend_key(key, token):
    """Key of a token sequence with ``token`` appended (ints or int64 arrays); the empty sequence is 0."""
    return (key * _BASE + (token + 1)) % _MODULUS


def sequence_key(tokens) -> int:
    key = 0
    for token in tokens:
        key = extend_key(key, int(token))
    return key


class WordConstraint(Protocol):
    """What ``prefix_beam_search`` needs from a lexicon (see ``asrkit.search.lexicon.Lexicon``): a trie
    of token ids, one node per prefix's word being spelt (node 0: no letter yet); numpy int64 arrays."""

    pad_token: int  # the token id that pads ``children`` rows (the vocabulary size)

    def children(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, next nodes) of shape ``nodes.shape + (C,)``: what may follow each node."""

    def is_word(self, nodes: np.ndarray) -> np.ndarray:
        """Whether each node ends an allowed word."""


class WordScorer(Protocol):
    """What ``prefix_beam_search`` needs from a word LM (see ``asrkit.search.lm.LmFusion``)."""

    space_id: int | None  # the token between words (characters), or
    word_starts: tuple[bool, ...] | None  # per token, whether it begins a word (sentencepiece); neither: one word
    start_state: int

    def word_scores(self, states: np.ndarray, word_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For 1-D int64 ``states`` and ``word_keys`` (nonzero): (weight * ln P(word | state) + bonus, next states)."""

    def final_scores(self, states: np.ndarray, word_keys: np.ndarray) -> np.ndarray:
        """Score of ending the sentence: the pending word (key 0: none) and then </s>."""
