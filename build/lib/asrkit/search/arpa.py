"""Back-off n-gram models in ARPA format, held in compact sorted arrays.

``ArpaLM.load`` reads the ARPA files that KenLM's ``lmplz`` and SRILM's
``ngram-count`` write (log10 probabilities and back-off weights), plain or
gzipped (``.arpa.gz``, recognised by its magic bytes), streaming the file so a
LibriSpeech-size model (millions of n-grams) never sits in memory as text.

Layout (a trie flattened into sorted arrays, as KenLM's and Kaldi's const-arpa
tables do): words get ids in the order of the 1-gram section; a 1-gram's row is
its word id; an n-gram's row is found in order n's table by the key
``row(its first n-1 words) * vocabulary_size + last word``, its keys sorted for
binary search. A row costs 8 bytes of key and two float64 (log10 P, back-off).

An n-gram whose context (its first n-1 words) has no entry of its own can never
be reached by the back-off rule (the history kept after those words is their
longest suffix that *is* an entry), so it is left out and counted in the log.
"""

from __future__ import annotations

import gzip
import logging
from array import array
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from asrkit.errors import LmError

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
OOV_LOG10 = -10.0  # log10 P of a word the LM has never seen, when it has no <unk> entry

log = logging.getLogger("asrkit")


class _Order:
    """The rows of one order above 1: sorted keys and their values."""

    __slots__ = ("keys", "logp", "backoff")

    def __init__(self, keys: np.ndarray, logp: np.ndarray, backoff: np.ndarray) -> None:
        self.keys, self.logp, self.backoff = keys, logp, backoff

    def row(self, key: int) -> int:
        """Row of ``key``, or -1."""
        position = int(self.keys.searchsorted(key))  # the method: np.searchsorted's wrapper costs more than the search
        return position if position < len(self.keys) and int(self.keys[position]) == key else -1


class ArpaLM:
    """A back-off n-gram model: ``log10 P(w | h)`` by the ARPA back-off rule.

    Histories and words are word ids (``index``); ``score`` returns the
    probability and the next history, the longest suffix that is an n-gram of
    the model (KenLM's state), so equal states mean equal futures.
    """

    context_cache_size = 200_000  # contexts whose table row is kept; the cache starts afresh when full

    def __init__(self, order: int, words: list[str], unigram_logp: np.ndarray, unigram_backoff: np.ndarray,
                 tables: list[_Order]) -> None:
        self.order = order
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}
        self._unigram_logp = unigram_logp
        self._unigram_backoff = unigram_backoff
        self._tables = {n: table for n, table in enumerate(tables, start=2)}
        self.bos = self.index.get(BOS)
        self.eos = self.index.get(EOS)
        self.unk = self.index.get(UNK)
        self._rows: dict[tuple[int, ...], int] = {}  # context -> row: a search asks about few, many times

    @property
    def num_ngrams(self) -> int:
        return len(self.words) + sum(len(t.keys) for t in self._tables.values())

    # -- reading -------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> "ArpaLM":
        path = Path(path)
        if not path.is_file():
            raise LmError(f"language model {path} does not exist" + (" (it is a directory)" if path.is_dir() else ""))
        with open(path, "rb") as handle:
            magic = handle.read(2)
        opener = gzip.open if magic == b"\x1f\x8b" else open
        read = 0

        def counted(handle):
            nonlocal read
            for line in handle:
                read += 1
                yield line

        try:
            with opener(path, "rt", encoding="utf-8") as handle:
                return cls.parse(counted(handle), str(path))
        except UnicodeDecodeError:
            raise LmError(f"{path}: not an ARPA file (not UTF-8 text; binary KenLM models are not supported)") from None
        except (OSError, EOFError) as exc:  # a truncated or corrupt gzip stream
            raise LmError(f"{path} line {read + 1}: cannot be read, truncated or corrupt ({exc})") from None

    @classmethod
    def parse(cls, lines: Iterable[str], source: str = "ARPA") -> "ArpaLM":
        """An ``ArpaLM`` from the lines of an ARPA file (any iterable, read once)."""
        numbered: Iterator[tuple[int, str]] = enumerate(lines, start=1)
        for line_no, raw in numbered:
            line = raw.strip()
            if line:
                break
        else:
            line = ""
        if line != "\\data\\":
            raise LmError(f"{source}: not an ARPA file (it must start with a \\data\\ line)")
        counts: dict[int, int] = {}
        count_lines: dict[int, int] = {}
        words: list[str] = []
        index: dict[str, int] = {}
        logps = {1: array("d")}
        backoffs = {1: array("d")}
        grams: dict[int, array] = {}
        order = 0
        for line_no, raw in numbered:
            line = raw.strip()
            if not line:
                continue
            if order == 0 and line.startswith("ngram "):
                head, _, value = line[6:].partition("=")
                if not head.strip().isdigit() or not value.strip().isdigit():
                    raise LmError(f"{source} line {line_no}: expected 'ngram N=COUNT'")
                counts[int(head)] = int(value)
                count_lines[int(head)] = line_no
                continue
            if line == "\\end\\":
                break
            if line.startswith("\\") and line.endswith("-grams:"):
                if not counts or sorted(counts) != list(range(1, max(counts) + 1)):
                    raise LmError(f"{source}: the \\data\\ section must list ngram 1=..., ngram 2=... in order")
                order = int(line[1:-7]) if line[1:-7].isdigit() else -1
                if order not in counts:
                    raise LmError(f"{source} line {line_no}: section {line} not announced in \\data\\")
                if order > 1 and order not in grams:
                    grams[order], logps[order], backoffs[order] = array("i"), array("d"), array("d")
                continue
            parts = line.split()
            if order <= 0 or len(parts) not in (order + 1, order + 2):
                raise LmError(f"{source} line {line_no}: expected 'log10-prob {max(order, 1)}-gram [back-off]', "
                              f"got {line[:60]!r}")
            try:
                logp = float(parts[0])
                backoff = float(parts[order + 1]) if len(parts) == order + 2 else 0.0
            except ValueError:
                raise LmError(f"{source} line {line_no}: probabilities must be numbers, got {line[:60]!r}") from None
            if order == 1:
                word = parts[1]
                if word in index:
                    raise LmError(f"{source} line {line_no}: 1-gram {word!r} listed twice")
                index[word] = len(words)
                words.append(word)
            else:
                try:
                    grams[order].extend([index[w] for w in parts[1:order + 1]])
                except KeyError as missing:
                    raise LmError(f"{source} line {line_no}: word {missing.args[0]!r} of n-gram "
                                  f"{' '.join(parts[1:order + 1])!r} has no 1-gram entry") from None
            logps[order].append(logp)
            backoffs[order].append(backoff)
        else:
            raise LmError(f"{source}: no \\end\\ line (truncated file?)")
        if not counts:
            raise LmError(f"{source}: the \\data\\ section must list ngram 1=..., ngram 2=... in order")
        for n, expected in counts.items():
            found = len(logps[n]) if n in logps else 0
            if found != expected:
                raise LmError(f"{source} line {count_lines[n]}: \\data\\ announces {expected} {n}-grams, the file "
                              f"has {found}")
        return cls._build(max(counts), words, logps, backoffs, grams, source)

    @classmethod
    def _build(cls, order: int, words: list[str], logps: dict[int, array], backoffs: dict[int, array],
               grams: dict[int, array], source: str) -> "ArpaLM":
        vocab = max(len(words), 1)
        tables: list[_Order] = []
        for n in range(2, order + 1):
            ids = np.frombuffer(grams[n], dtype=np.int32).reshape(-1, n).astype(np.int64)
            contexts = vocab if n == 2 else len(tables[-1].keys)
            if (contexts + 1) * vocab >= 2 ** 63:
                raise LmError(f"{source}: too many {n - 1}-grams for asrkit's 64-bit keys")
            rows = ids[:, 0]
            valid = np.ones(len(ids), dtype=bool)
            for k in range(1, n - 1):  # the row of the context, one word at a time
                keys = tables[k - 1].keys
                wanted = rows * vocab + ids[:, k]
                position = np.searchsorted(keys, wanted).clip(max=max(len(keys) - 1, 0))
                valid &= (keys[position] == wanted) if len(keys) else False
                rows = position
            keys = rows * vocab + ids[:, n - 1]
            logp = np.frombuffer(logps[n], dtype=np.float64)
            backoff = np.frombuffer(backoffs[n], dtype=np.float64)
            if not valid.all():
                log.warning("%s: %d %d-grams left out: their context has no entry of its own, so the back-off rule "
                            "never reaches them", source, int((~valid).sum()), n)
                keys, logp, backoff = keys[valid], logp[valid], backoff[valid]
            sort = np.argsort(keys, kind="stable")
            keys = keys[sort]
            if len(keys) > 1 and (np.diff(keys) == 0).any():
                raise LmError(f"{source}: a {n}-gram is listed twice")
            tables.append(_Order(keys, logp[sort].copy(), backoff[sort].copy()))
            del grams[n]
        unigram_logp = np.frombuffer(logps[1], dtype=np.float64).copy()
        unigram_backoff = np.frombuffer(backoffs[1], dtype=np.float64).copy()
        return cls(order, words, unigram_logp, unigram_backoff, tables)

    # -- scoring -------------------------------------------------------------------------------

    def _row(self, ngram: tuple[int, ...]) -> int:
        """Row of an n-gram of word ids in its order's table, or -1."""
        if len(ngram) < self.order:  # a possible context: kept
            row = self._rows.get(ngram)
            if row is None:
                if len(self._rows) >= self.context_cache_size:  # a long decode with a big LM: start afresh
                    self._rows.clear()
                row = self._rows[ngram] = self._find(ngram)
            return row
        return self._find(ngram)

    def _find(self, ngram: tuple[int, ...]) -> int:
        row = ngram[0]
        for n, word in enumerate(ngram[1:], start=2):
            row = self._tables[n].row(row * len(self.words) + word)
            if row < 0:
                return -1
        return row

    def _backoff(self, context: tuple[int, ...]) -> float:
        if len(context) == 1:
            return float(self._unigram_backoff[context[0]])
        row = self._row(context)
        return float(self._tables[len(context)].backoff[row]) if row >= 0 else 0.0

    def contains(self, ngram: tuple[int, ...]) -> bool:
        return 0 < len(ngram) <= self.order and (len(ngram) == 1 or self._row(ngram) >= 0)

    def ngrams(self) -> Iterator[tuple[int, ...]]:
        """Every n-gram of the model as word ids, order by order (for inspection and tests)."""
        vocab = len(self.words)
        previous = [(i,) for i in range(vocab)]
        yield from previous
        for n in range(2, self.order + 1):
            current = [previous[key // vocab] + (key % vocab,) for key in self._tables[n].keys.tolist()]
            yield from current
            previous = current

    def word_id(self, word: str) -> int:
        """Id of ``word``; unknown words map to <unk> (or -1 when the LM has none)."""
        return self.index.get(word, self.unk if self.unk is not None else -1)

    def start(self) -> tuple[int, ...]:
        return (self.bos,) if self.bos is not None else ()

    def score(self, history: tuple[int, ...], word: int) -> tuple[float, tuple[int, ...]]:
        """(log10 P(word | history), the next history): backing off to shorter histories as ARPA says."""
        if word < 0:
            return OOV_LOG10, ()
        history = history[-(self.order - 1):] if self.order > 1 else ()
        penalty = 0.0
        logp = float(self._unigram_logp[word])
        for start in range(len(history)):
            context = history[start:]
            row = self._row(context)
            if row < 0:
                continue  # no entry: neither an n-gram nor a back-off weight behind it
            found = self._tables[len(context) + 1].row(row * len(self.words) + word)
            if found >= 0:
                logp = float(self._tables[len(context) + 1].logp[found])
                break
            penalty += self._backoff(context)
        # the next history: its longest suffix that is an n-gram of the model (as KenLM's state);
        # a longer one could neither be extended nor carry a back-off weight
        nxt = (history + (word,))[-(self.order - 1):] if self.order > 1 else ()
        while nxt and not self.contains(nxt):
            nxt = nxt[1:]
        return logp + penalty, nxt

    def sentence_log10(self, words: list[str]) -> float:
        history, total = self.start(), 0.0
        for word in words + [EOS]:
            logp, history = self.score(history, self.word_id(word))
            total += logp
        return total


__all__ = ["ArpaLM", "BOS", "EOS", "UNK", "OOV_LOG10"]
