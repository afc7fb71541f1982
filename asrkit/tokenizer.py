"""Tokens, and the one place that knows how a word boundary looks.

Two tokenizers share one interface: ``CharTokenizer`` (characters, with a
``<space>`` token *between* words) and ``SentencePieceTokenizer`` (BPE or
unigram pieces, where a piece starting with ``▁`` *begins* a word). Both put
``<blank>`` at id 0 and ``<unk>`` at id 1. Nothing outside this module spells
``<space>`` or ``▁``: the search, the lexicon, LM fusion, alignment and
transcript joining ask the tokenizer:

- ``boundary``: the ``WordBoundary`` of the table (a separator token, or the
  set of tokens that start a word) for the search;
- ``spell(word)``: the tokens of one word, or None when the table cannot spell it;
- ``split_words(ids)``: the token positions of each word of a token sequence;
- ``join(a, b)``: two token sequences as one transcript, a word boundary between;
- ``display(id)``: a printable form of a token (plots).

``tokens.txt`` has one ``symbol id`` per line, as in Kaldi/WeNet/icefall; a
sentencepiece model is also saved as ``tokenizer.model`` and kept in the
checkpoint, so ``transcribe`` needs nothing else.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from asrkit.errors import CheckpointError, ConfigError, DataDirError

BLANK = "<blank>"
SOS_EOS = 0  # the attention decoder's start and end symbol: the blank's id (never a label)
UNK = "<unk>"
SPACE = "<space>"
WORD_START = "\u2581"  # sentencepiece's "▁", which marks a piece that begins a word


@dataclass(frozen=True)
class WordBoundary:
    """How the search sees words: ``separator`` is a token between words that belongs to none
    (characters' ``<space>``); ``starts`` marks, per token id, the tokens that begin a word
    (sentencepiece's ``▁`` pieces). At most one of the two is set; neither: one word per utterance."""

    separator: int | None = None
    starts: tuple[bool, ...] | None = None


class Tokenizer:
    """The shared interface; see the module docstring."""

    kind = "base"

    def __init__(self, symbols: list[str]) -> None:
        if len(symbols) < 2 or symbols[0] != BLANK or symbols[1] != UNK:
            raise DataDirError(f"a token table must start with {BLANK} 0 and {UNK} 1")
        self.symbols = list(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.blank_id = 0
        self.unk_id = 1

    def __len__(self) -> int:
        return len(self.symbols)

    # -- what subclasses define ---------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    @property
    def boundary(self) -> WordBoundary:
        raise NotImplementedError

    def spell(self, word: str) -> list[int] | None:
        raise NotImplementedError

    def split_words(self, ids: list[int]) -> list[list[int]]:
        raise NotImplementedError

    def join(self, first: list[int], second: list[int]) -> list[int]:
        raise NotImplementedError

    def display(self, token: int) -> str:
        return self.symbols[token]

    def checkpoint_entries(self) -> dict:
        """What a checkpoint keeps to rebuild this tokenizer (``from_checkpoint``)."""
        return {"tokens": self.symbols}

    # -- shared ------------------------------------------------------------------------------
    def count_unknown(self, text: str) -> int:
        return sum(1 for i in self.encode(text) if i == self.unk_id)

    def save(self, out_dir: str | Path) -> None:
        """``tokens.txt`` (and what else the tokenizer needs) in ``out_dir``."""
        Path(out_dir, "tokens.txt").write_text("".join(f"{s} {i}\n" for i, s in enumerate(self.symbols)),
                                               encoding="utf-8")


class CharTokenizer(Tokenizer):
    """Characters; ``<space>`` separates words. Characters outside the table map to ``<unk>``."""

    kind = "char"

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

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            sym = self.symbols[i]
            if sym == BLANK:
                continue
            out.append(" " if sym == SPACE else sym)
        return " ".join("".join(out).split())

    @property
    def boundary(self) -> WordBoundary:
        return WordBoundary(separator=self.index.get(SPACE))

    def spell(self, word: str) -> list[int] | None:
        if not word or any(ch not in self.index or ch.isspace() for ch in word):
            return None
        return [self.index[ch] for ch in word]

    def split_words(self, ids: list[int]) -> list[list[int]]:
        space = self.index.get(SPACE)
        words: list[list[int]] = [[]]
        for position, token in enumerate(ids):
            if token == space:
                words.append([])
            elif token != self.blank_id:
                words[-1].append(position)
        return [w for w in words if w]

    def join(self, first: list[int], second: list[int]) -> list[int]:
        if first and second and SPACE in self.index:
            return first + [self.index[SPACE]] + second
        return first + second

    def display(self, token: int) -> str:
        return "\u2423" if self.symbols[token] == SPACE else self.symbols[token]  # ␣

    @classmethod
    def load(cls, path: str | Path) -> "CharTokenizer":
        return cls(read_token_table(path))


class SentencePieceTokenizer(Tokenizer):
    """sentencepiece pieces (BPE or unigram), ids as the model's: ``<blank>`` 0 (its pad piece),
    ``<unk>`` 1, no ``<s>``/``</s>``. A piece starting with ``▁`` begins a word."""

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes) -> None:
        spm = _sentencepiece()
        self.proto = bytes(model_proto)
        self.processor = spm.SentencePieceProcessor()
        try:
            self.processor.LoadFromSerializedProto(self.proto)
        except (RuntimeError, OSError) as exc:
            raise DataDirError(f"not a sentencepiece model ({exc})") from None
        symbols = [self.processor.IdToPiece(i) for i in range(self.processor.GetPieceSize())]
        if symbols[:2] != [BLANK, UNK] or self.processor.bos_id() >= 0 or self.processor.eos_id() >= 0:
            raise DataDirError(f"a sentencepiece model for asrkit has {BLANK} (pad) at 0, {UNK} at 1 and no <s>/</s> "
                               f"(asrkit tokenizer train makes one); this one starts {symbols[:3]}")
        super().__init__(symbols)
        self._starts = tuple(s.startswith(WORD_START) for s in symbols)

    @classmethod
    def load(cls, path: str | Path) -> "SentencePieceTokenizer":
        path = Path(path)
        if not path.is_file():
            raise DataDirError(f"sentencepiece model {path} does not exist")
        try:
            return cls(path.read_bytes())
        except DataDirError as exc:
            raise DataDirError(f"{path}: {exc}") from None

    def encode(self, text: str) -> list[int]:
        return list(self.processor.EncodeAsIds(" ".join(text.split())))

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.processor.DecodeIds([i for i in ids if i != self.blank_id]).split())

    @property
    def boundary(self) -> WordBoundary:
        return WordBoundary(starts=self._starts)

    def spell(self, word: str) -> list[int] | None:
        if not word or any(ch.isspace() for ch in word):
            return None
        ids = self.encode(word)
        return ids if ids and self.unk_id not in ids else None

    def split_words(self, ids: list[int]) -> list[list[int]]:
        words: list[list[int]] = []
        for position, token in enumerate(ids):
            if token == self.blank_id:
                continue
            if self._starts[token] or not words:
                words.append([])
            words[-1].append(position)
        # a lone "▁" piece starts a word that its next pieces spell
        return [w for w in words if any(self.symbols[ids[p]] != WORD_START for p in w)]

    def join(self, first: list[int], second: list[int]) -> list[int]:
        if first and second and not self._starts[second[0]] and WORD_START in self.index:
            return first + [self.index[WORD_START]] + second
        return first + second

    def display(self, token: int) -> str:
        return self.symbols[token].replace(WORD_START, "_")

    def checkpoint_entries(self) -> dict:
        return {"tokens": self.symbols, "sentencepiece": self.proto}

    def save(self, out_dir: str | Path) -> None:
        super().save(out_dir)
        Path(out_dir, "tokenizer.model").write_bytes(self.proto)


def _sentencepiece():
    try:
        import sentencepiece
    except ImportError:
        raise ConfigError("sentencepiece units need the sentencepiece package: pip install sentencepiece "
                          "(or pip install 'asrkit[bpe]')") from None
    return sentencepiece


def train_sentencepiece(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 500,
                        model_type: str = "bpe", character_coverage: float = 1.0) -> SentencePieceTokenizer:
    """Train a sentencepiece model on transcripts (training text only) and save it in ``out_dir``
    (``tokenizer.model`` and ``tokens.txt``). The vocabulary counts ``<blank>`` and ``<unk>``."""
    spm = _sentencepiece()
    if model_type not in ("bpe", "unigram"):
        raise ConfigError(f"tokenizer.model_type must be bpe or unigram, not {model_type!r}")
    sentences = [" ".join(t.split()) for t in texts if t.strip()]
    if not sentences:
        raise DataDirError("no training text for the sentencepiece model")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.Train(
            sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size, model_type=model_type,
            character_coverage=character_coverage, pad_id=0, pad_piece=BLANK, unk_id=1, unk_piece=UNK,
            bos_id=-1, eos_id=-1, hard_vocab_limit=True, minloglevel=2, num_threads=1,
            input_sentence_size=2_000_000, shuffle_input_sentence=True, seed_sentencepiece_size=1_000_000)
    except RuntimeError as exc:  # e.g. a vocabulary larger than the text allows
        reason = str(exc).strip().splitlines()[-1]
        reason = reason.split("] ", 1)[-1]  # sentencepiece prefixes its source location
        raise ConfigError(f"sentencepiece training failed: {reason} (tokenizer.vocab_size counts <blank> and "
                          "<unk>)") from None
    tokenizer = SentencePieceTokenizer(model.getvalue())
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    tokenizer.save(out_dir)
    return tokenizer


def read_token_table(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"token table {path} does not exist")
    symbols: list[str] = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) != len(symbols):
            raise DataDirError(f"{path} line {line_no}: expected '<symbol> {len(symbols)}'")
        symbols.append(parts[0])
    return symbols


def from_checkpoint(record) -> Tokenizer:
    """The tokenizer a checkpoint (``asrkit.checkpoint.Checkpoint``: its ``tokens`` and
    ``sentencepiece``) was trained with; character checkpoints hold only the table."""
    if record.sentencepiece is not None:
        tokenizer = SentencePieceTokenizer(record.sentencepiece)
        if tokenizer.symbols != list(record.tokens):
            raise CheckpointError(f"its sentencepiece model ({len(tokenizer)} pieces) does not match its token table "
                                  f"({len(record.tokens)} entries): the model and the checkpoint belong to "
                                  "different runs")
        return tokenizer
    return CharTokenizer(list(record.tokens))


def load_tokenizer(folder: str | Path) -> Tokenizer:
    """The tokenizer saved in ``folder`` (an exp dir or ``asrkit tokenizer train``'s output)."""
    folder = Path(folder)
    if (folder / "tokenizer.model").is_file():
        return SentencePieceTokenizer.load(folder / "tokenizer.model")
    return CharTokenizer.load(folder / "tokens.txt")


__all__ = ["BLANK", "UNK", "CharTokenizer", "SentencePieceTokenizer", "Tokenizer", "WordBoundary", "from_checkpoint",
           "load_tokenizer", "train_sentencepiece"]
