"""Character tokens: ``<blank>`` = 0, ``<unk>`` = 1, ``<space>`` between words.

``tokens.txt`` has one ``symbol id`` per line, as in Kaldi/WeNet/icefall.
Characters outside the table map to ``<unk>``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable

from asrkit.errors import DataDirError

BLANK = "<blank>"
UNK = "<unk>"
SPACE = "<space>"


class CharTokenizer:
    def __init__(self, symbols: list[str]) -> None:
        if len(symbols) < 2 or symbols[0] != BLANK or symbols[1] != UNK:
            raise DataDirError(f"a token table must start with {BLANK} 0 and {UNK} 1")
        self.symbols = list(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.blank_id = 0
        self.unk_id = 1

    def __len__(self) -> int:
        return len(self.symbols)

    @classmethod
    def build(cls, texts: Iterable[str]) -> "CharTokenizer":
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(cls._units(text))
        units = sorted(u for u in counts if u not in (BLANK, UNK))
        return cls([BLANK, UNK] + units)

    def extended(self, texts: Iterable[str]) -> "CharTokenizer":
        """This table with the characters of ``texts`` it lacks appended (old ids unchanged)."""
        seen = {u for text in texts for u in self._units(text)}
        return CharTokenizer(self.symbols + sorted(seen - set(self.index)))

    @staticmethod
    def _units(text: str) -> list[str]:
        return [SPACE if ch == " " else ch for ch in " ".join(text.split())]

    def encode(self, text: str) -> list[int]:
        return [self.index.get(u, self.unk_id) for u in self._units(text)]

    def count_unknown(self, text: str) -> int:
        return sum(1 for u in self._units(text) if u not in self.index)

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            sym = self.symbols[i]
            if sym == BLANK:
                continue
            out.append(" " if sym == SPACE else sym)
        return " ".join("".join(out).split())

    def save(self, path: str | Path) -> None:
        Path(path).write_text("".join(f"{s} {i}\n" for i, s in enumerate(self.symbols)), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "CharTokenizer":
        path = Path(path)
        if not path.is_file():
            raise DataDirError(f"token table {path} does not exist")
        symbols: list[str] = []
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) != len(symbols):
                raise DataDirError(f"{path} line {line_no}: expected '<symbol> {len(symbols)}'")
            symbols.append(parts[0])
        return cls(symbols)
