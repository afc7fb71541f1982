"""Word n-gram language models in ARPA format: building, and fusion into CTC beam search.

``ArpaLM`` (``asrkit.search.arpa``) reads the back-off ARPA files that KenLM's ``lmplz``
and SRILM's ``ngram-count`` write, plain or gzipped. ``build_arpa`` writes one from training text with interpolated Kneser-Ney
smoothing (one absolute discount per order, D = n1 / (n1 + 2 n2), continuation
counts for the lower orders), for users without KenLM. ``LmFusion`` scores
words for ``asrkit.search.prefix.prefix_beam_search``: at each word end it adds
``weight * ln P(word | history) + bonus``, and ``weight * ln P(</s> | history)``
at the end of the utterance.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np

from asrkit.errors import LmError
from asrkit.search.arpa import BOS, EOS, UNK, ArpaLM
from asrkit.search.types import sequence_key
from asrkit.tokenizer import Tokenizer

LN10 = math.log(10.0)


class LmFusion:
    """Shallow fusion of an ``ArpaLM`` into ``prefix_beam_search`` (the ``WordScorer`` protocol).

    Words are spelt by the model's tokenizer (``spell``: characters, or the
    word's sentencepiece pieces); a word's key is the hash of its tokens, as the
    search keeps it. The word boundary is the tokenizer's. Histories become
    integer states.
    """

    def __init__(self, lm: ArpaLM, tokenizer: Tokenizer, weight: float = 0.5, bonus: float = 0.0) -> None:
        self.lm = lm
        self.weight = weight
        self.bonus = bonus
        boundary = tokenizer.boundary
        self.space_id, self.word_starts = boundary.separator, boundary.starts
        keys, ids = [], []
        for word, word_id in lm.index.items():
            tokens = None if word in (BOS, EOS, UNK) else tokenizer.spell(word)
            if tokens is None:
                continue  # the model cannot spell it
            keys.append(sequence_key(tokens))
            ids.append(word_id)
        order = sorted(range(len(keys)), key=keys.__getitem__)
        self._keys = np.array([keys[i] for i in order] or [-1], dtype=np.int64)
        self._ids = np.array([ids[i] for i in order] or [-1], dtype=np.int64)
        self._states: list[tuple[int, ...]] = []
        self._state_ids: dict[tuple[int, ...], int] = {}
        self._memo: dict[tuple[int, int], tuple[float, int]] = {}
        self.start_state = self._state(lm.start())
        self.spellable = len(keys)

    def _state(self, history: tuple[int, ...]) -> int:
        state = self._state_ids.get(history)
        if state is None:
            state = self._state_ids[history] = len(self._states)
            self._states.append(history)
        return state

    def _word_ids(self, word_keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(word_keys, dtype=np.int64)
        position = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        found = self._keys[position] == keys
        unknown = self.lm.unk if self.lm.unk is not None else -1
        return np.where(found, self._ids[position], unknown)

    def _step(self, state: int, word: int) -> tuple[float, int]:
        item = self._memo.get((state, word))
        if item is None:
            logp, history = self.lm.score(self._states[state], word)
            item = self._memo[(state, word)] = (self.weight * LN10 * logp + self.bonus, self._state(history))
        return item

    def word_scores(self, states: np.ndarray, word_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        words = self._word_ids(word_keys).tolist()
        scored = [self._step(s, w) for s, w in zip(np.asarray(states).tolist(), words)]  # memoised: a dict lookup
        delta = np.array([d for d, _ in scored], dtype=np.float32)
        nxt = np.array([n for _, n in scored], dtype=np.int64)
        return delta, nxt

    def final_scores(self, states: np.ndarray, word_keys: np.ndarray) -> np.ndarray:
        words = self._word_ids(word_keys).tolist()
        out = []
        eos = self.lm.eos if self.lm.eos is not None else -1
        for state, key, word in zip(np.asarray(states).tolist(), np.asarray(word_keys).tolist(), words):
            total = 0.0
            if key != 0:
                delta, state = self._step(state, word)
                total += delta
            if eos >= 0:
                logp, _ = self.lm.score(self._states[state], eos)
                total += self.weight * LN10 * logp
            out.append(total)
        return np.array(out, dtype=np.float32)


def build_arpa(sentences: Iterable[list[str]], order: int = 3) -> str:
    """An interpolated Kneser-Ney ARPA model of ``order`` from tokenised sentences.

    Highest order: raw counts; lower orders: continuation counts (how many
    different words precede the n-gram; raw counts for n-grams starting with
    <s>). One discount per order, D = n1 / (n1 + 2 n2) over those counts (0.5
    when undefined). A context's back-off weight is the mass its discounts freed,
    so the written probabilities sum to one in every context. <unk> takes a share
    of the uniform floor of the 1-grams.
    """
    if order < 1:
        raise LmError(f"n-gram order must be >= 1, not {order}")
    adjusted = _adjusted_counts(sentences, order)
    discounts = [0.0] * (order + 1)
    for n in range(1, order + 1):
        n1 = sum(1 for c in adjusted[n].values() if c == 1)
        n2 = sum(1 for c in adjusted[n].values() if c == 2)
        discounts[n] = n1 / (n1 + 2 * n2) if n1 and n2 else 0.5
    totals: list[dict[tuple[str, ...], float]] = [defaultdict(float) for _ in range(order + 1)]
    types: list[dict[tuple[str, ...], int]] = [defaultdict(int) for _ in range(order + 1)]
    for n in range(1, order + 1):
        for ngram, count in adjusted[n].items():
            totals[n][ngram[:-1]] += count
            types[n][ngram[:-1]] += 1
    vocab = sorted({w for (w,) in adjusted[1]} | {UNK, EOS})
    probs: list[dict[tuple[str, ...], float]] = [dict() for _ in range(order + 1)]

    def prob(n: int, ngram: tuple[str, ...]) -> float:
        """Interpolated P(w | h) of order n (n = len(ngram)), for any w."""
        if n == 0:
            return 1.0 / len(vocab)
        context = ngram[:-1]
        total = totals[n].get(context, 0.0)
        if not total:
            return prob(n - 1, ngram[1:])
        gamma = discounts[n] * types[n][context] / total
        return max(adjusted[n].get(ngram, 0) - discounts[n], 0.0) / total + gamma * prob(n - 1, ngram[1:])

    for n in range(1, order + 1):
        for ngram in adjusted[n]:
            probs[n][ngram] = prob(n, ngram)
    for word in vocab:  # <unk> and anything seen only after <s>... get their floor share
        probs[1].setdefault((word,), prob(1, (word,)))
    return _arpa_text(probs, discounts, totals, types, order)


def _adjusted_counts(sentences: Iterable[list[str]], order: int) -> list[Counter[tuple[str, ...]]]:
    """Kneser-Ney's counts per order (index n, 1..order): raw counts for the top order and for
    n-grams that start with <s>, continuation counts (distinct left neighbours) otherwise."""
    raw: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order + 1)]
    num_sentences = 0
    for words in sentences:
        padded = [BOS] + list(words) + [EOS]
        num_sentences += 1
        for n in range(1, order + 1):
            for i in range(len(padded) - n + 1):
                raw[n][tuple(padded[i:i + n])] += 1
    if not num_sentences:
        raise LmError("no sentences to build a language model from")
    adjusted: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order + 1)]
    adjusted[order] = Counter(raw[order])
    for n in range(order - 1, 0, -1):
        for ngram in raw[n + 1]:
            adjusted[n][ngram[1:]] += 1
        for ngram, count in raw[n].items():
            if ngram[0] == BOS:
                adjusted[n][ngram] = count
    adjusted[1].pop((BOS,), None)
    return adjusted


def _arpa_text(probs: list[dict[tuple[str, ...], float]], discounts: list[float],
               totals: list[dict[tuple[str, ...], float]], types: list[dict[tuple[str, ...], int]],
               order: int) -> str:
    """The ARPA file: per order its n-grams' log10 P and, where the n-gram is a context of the next
    order, the log10 of the back-off weight (the mass that order's discount freed there)."""
    lines = ["\\data\\"]
    sections = []
    for n in range(1, order + 1):
        entries = dict(probs[n])
        if n == 1:
            entries[(BOS,)] = 0.0
        body = []
        for ngram in sorted(entries):
            logp = -99.0 if ngram == (BOS,) else math.log10(entries[ngram])
            line = f"{logp:.6f}\t{' '.join(ngram)}"
            if n < order and totals[n + 1].get(ngram):
                gamma = discounts[n + 1] * types[n + 1][ngram] / totals[n + 1][ngram]
                line += f"\t{math.log10(gamma):.6f}"
            body.append(line)
        lines.append(f"ngram {n}={len(body)}")
        sections.append([f"\\{n}-grams:"] + body + [""])
    lines.append("")
    for section in sections:
        lines.extend(section)
    lines.append("\\end\\")
    return "\n".join(lines) + "\n"


def read_sentences(path: str | Path, with_ids: bool = True) -> list[list[str]]:
    """Word lists from a Kaldi ``text`` file (first field = utterance id) or plain text."""
    path = Path(path)
    if path.is_dir():
        path = path / "text"
    if not path.is_file():
        raise LmError(f"{path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise LmError(f"{path}: not UTF-8 text") from None
    sentences = []
    for line in lines:
        words = line.split()
        if with_ids:
            words = words[1:]
        if words:
            sentences.append(words)
    return sentences


__all__ = ["ArpaLM", "LmFusion", "build_arpa", "read_sentences"]
