"""Closed-vocabulary decoding: a word list that the beam search may only spell from.

A lexicon file has one word per line, the word first and anything after it
ignored, so a pronunciation dictionary works as it is: CMU/Sphinx ``.dic``
(``WORD(2)`` alternative pronunciations count once), Kaldi ``lexicon.txt``, or a
plain word list. ``Lexicon`` turns the spellable words into the hash keys the
search keeps for the word being spelt (``asrkit.decode.sequence_key``), so that
"is this a prefix of a word" and "is this a word" are two ``searchsorted``
look-ups on a batch of keys.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from asrkit.decode import extend_key
from asrkit.errors import DecodeError
from asrkit.tokenizer import CharTokenizer

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
    """The words a hypothesis may contain, as sorted tensors of token-sequence keys.

    Words with a character outside the token table cannot be spelt and are
    left out (``skipped``); so are filler words such as ``<sil>``.
    """

    def __init__(self, words: list[str], tokenizer: CharTokenizer, source: str = "lexicon") -> None:
        index = tokenizer.index
        word_keys, prefix_keys = set(), set()
        self.skipped: list[str] = []
        for word in words:
            if word.startswith("<") or any(ch not in index for ch in word):
                self.skipped.append(word)
                continue
            key = 0
            for ch in word:
                key = extend_key(key, index[ch])
                prefix_keys.add(key)
            word_keys.add(key)
        if not word_keys:
            raise DecodeError(f"{source}: none of its {len(words)} words can be spelt with the model's "
                              f"{len(tokenizer)} tokens (another language or letter case?)")
        self.size = len(word_keys)
        self._words = torch.tensor(sorted(word_keys), dtype=torch.long)
        self._prefixes = torch.tensor(sorted(prefix_keys), dtype=torch.long)
        self._on_device: dict[tuple[str, torch.device], torch.Tensor] = {}

    @classmethod
    def load(cls, path: str | Path, tokenizer: CharTokenizer) -> "Lexicon":
        return cls(read_lexicon(path), tokenizer, f"lexicon {path}")

    def _member(self, name: str, keys: torch.Tensor) -> torch.Tensor:
        table = self._on_device.get((name, keys.device))
        if table is None:  # copied to the search's device once, not at every frame
            table = self._on_device[(name, keys.device)] = getattr(self, name).to(keys.device)
        position = torch.searchsorted(table, keys).clamp_(max=len(table) - 1)
        return table[position] == keys

    def is_prefix(self, keys: torch.Tensor) -> torch.Tensor:
        """Whether each key is a non-empty prefix of a lexicon word (a word included)."""
        return self._member("_prefixes", keys)

    def is_word(self, keys: torch.Tensor) -> torch.Tensor:
        """Whether each key is a lexicon word."""
        return self._member("_words", keys)
