"""Closed-vocabulary decoding: a word list that the beam search may only spell from.

A lexicon file has one word per line, the word first and anything after it
ignored, so a pronunciation dictionary works as it is: CMU/Sphinx ``.dic``
(``WORD(2)`` alternative pronunciations count once), Kaldi ``lexicon.txt``, or a
plain word list. ``Lexicon`` turns the spellable words into a trie of token ids
kept as arrays: the search follows one trie node per prefix, and the tokens
that may extend a prefix are that node's children (plus the word separator,
or the first tokens of the words, when the node ends a word). Each word is
spelt by the model's tokenizer (``spell``): its characters, or the pieces the
model's own sentencepiece gives it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from asrkit.errors import DecodeError
from asrkit.tokenizer import Tokenizer

_VARIANT = re.compile(r"\(\d+\)$")  # WORD(2): Sphinx/CMUdict's second pronunciation of WORD


def read_lexicon(path: str | Path) -> list[str]:
    """The distinct words of a lexicon file, in file order (one-line ``DecodeError`` when unreadable)."""
    path = Path(path)
    if not path.exists():
        raise DecodeError(f"lexicon {path} does not exist")
    if not path.is_file():
        raise DecodeError(f"lexicon {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"lexicon {path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DecodeError(f"lexicon {path}: cannot read ({exc.strerror})") from None
    words: dict[str, None] = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";;")):
            continue
        word = _VARIANT.sub("", fields[0])
        if word:
            words[word] = None
    if not words:
        raise DecodeError(f"lexicon {path} has no words")
    return list(words)


class Lexicon:
    """The words a hypothesis may contain, as a trie of token ids held in numpy arrays.

    Node 0 is the empty word. ``children(nodes)`` gives, for a batch of nodes,
    the tokens that may follow (padded with ``pad_token``, the vocabulary size)
    and the nodes they lead to; ``is_word(nodes)`` whether a node ends a word.
    The search keeps one node per prefix, so the legal extensions of every
    prefix are one gather, whatever the vocabulary. Words with a character
    outside the token table cannot be spelt and are left out (``skipped``); so
    are filler words such as ``<sil>``.
    """

    start_node = 0

    def __init__(self, words: list[str], tokenizer: Tokenizer, source: str = "lexicon") -> None:
        starts = tokenizer.boundary.starts
        children: list[dict[int, int]] = [{}]
        ends: set[int] = set()
        self.skipped: list[str] = []
        for word in words:
            spelt = None if word.startswith("<") else tokenizer.spell(word)
            if spelt is not None and starts is not None and (not starts[spelt[0]] or any(starts[t] for t in spelt[1:])):
                spelt = None  # a word must begin, and only begin, at its first piece
            if spelt is None:
                self.skipped.append(word)
                continue
            node = 0
            for token in spelt:
                if token not in children[node]:
                    children[node][token] = len(children)
                    children.append({})
                node = children[node][token]
            ends.add(node)
        if not ends:
            raise DecodeError(f"{source}: none of its {len(words)} words can be spelt with the model's "
                              f"{len(tokenizer)} tokens (another language or letter case?)")
        self.size = len(ends)
        self.pad_token = len(tokenizer)
        width = max(len(c) for c in children)
        self._tokens = np.full((len(children), width), self.pad_token, dtype=np.int64)
        self._nodes = np.zeros((len(children), width), dtype=np.int64)
        for node, table in enumerate(children):
            for column, (token, child) in enumerate(sorted(table.items())):
                self._tokens[node, column], self._nodes[node, column] = token, child
        self._ends = np.array([n in ends for n in range(len(children))], dtype=bool)

    @classmethod
    def load(cls, path: str | Path, tokenizer: Tokenizer) -> "Lexicon":
        return cls(read_lexicon(path), tokenizer, f"lexicon {path}")

    def children(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, next nodes), each ``nodes.shape + (C,)``: what may follow each node (padding:
        ``pad_token`` leading to node 0)."""
        return self._tokens[nodes], self._nodes[nodes]

    def has(self, tokens) -> bool:
        """Whether the token sequence ``tokens`` spells one of the words."""
        node = 0
        for token in tokens:
            column = np.nonzero(self._tokens[node] == token)[0]
            if not len(column):
                return False
            node = int(self._nodes[node, column[0]])
        return bool(self._ends[node])

    def is_word(self, nodes: np.ndarray) -> np.ndarray:
        """Whether each node ends a lexicon word."""
        return self._ends[nodes]
