"""What a search is asked to do: one ``SearchOptions``, checked once, from the caller to the search.

The command line (``decode``, ``transcribe``; later the server) builds one
``SearchOptions`` from its options, a Python caller builds one by hand, and it
is checked when it is made: a bad combination (``--lm`` with greedy search,
``--nbest`` above ``--beam``) fails before a model or any audio is loaded.
``asrkit.search.ctc.search_batch`` then runs the search it names on a batch of
CTC log-probs;
the word-level parts it needs (an LM scorer, a lexicon trie) are loaded from
the options' paths by whoever holds the model's tokenizer (the recognizer).
Attention rescoring needs the model's decoder, so the recognizer applies it to
the beam that ``search_batch`` returns for ``mode == "rescore"``. This module
imports no torch: the command line checks its options before loading any.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from asrkit.errors import DecodeError

MODES = ("greedy", "beam", "rescore")


def check_beam(beam: int, nbest: int, token_prune: int | None = None) -> None:
    """The sizes a prefix beam search accepts (the one home of this rule: ``SearchOptions`` and
    ``prefix_beam_search`` both apply it)."""
    if beam < 1 or nbest < 1:
        raise DecodeError(f"--beam and --nbest must be at least 1 (got {beam} and {nbest})")
    if token_prune is not None and token_prune < 1:
        raise DecodeError(f"token_prune must be >= 1, not {token_prune}")


@dataclass(frozen=True)
class SearchOptions:
    """How to search: checked when made (``DecodeError`` naming the option)."""

    mode: str = "greedy"  # greedy | beam | rescore (the beam reranked by the attention decoder)
    beam: int = 10  # prefixes kept per frame
    nbest: int = 1  # hypotheses returned per utterance
    lm: str | Path | None = None  # ARPA word n-gram fused into the beam search
    lm_weight: float = 0.5
    word_bonus: float = 0.0
    ctc_weight: float = 0.5  # rescore: score = attention + ctc_weight * CTC
    token_min_logp: float | None = None  # tokens less likely than this do not extend prefixes
    lexicon: str | Path | None = None  # word list / pronunciation dictionary: hypotheses use only its words
    hotwords: str | Path | None = None  # phrases to bias the search towards (one per line, optionally <TAB>weight)
    hotword_score: float = 1.0  # bonus per token of a completed hotword phrase (a line's own weight wins)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise DecodeError(f"--mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        check_beam(self.beam, self.nbest)
        if self.nbest > self.beam:
            raise DecodeError(f"--nbest {self.nbest} cannot exceed --beam {self.beam}")
        if self.lm is not None and self.mode == "greedy":
            raise DecodeError("--lm needs --mode beam or rescore (greedy search has no word hypotheses to score)")
        if self.lexicon is not None and self.mode == "greedy":
            raise DecodeError("--lexicon needs --mode beam or rescore (greedy search cannot be constrained)")
        if self.hotwords is not None and self.mode == "greedy":
            raise DecodeError("--hotwords needs --mode beam or rescore (greedy search takes each frame's best "
                              "token and has no hypotheses to bias)")
        for name in ("lm_weight", "word_bonus", "ctc_weight", "hotword_score"):
            if not math.isfinite(getattr(self, name)):
                raise DecodeError(f"--{name.replace('_', '-')} must be a finite number")

    @property
    def beam_keeps(self) -> int:
        """Hypotheses the beam search hands on: all of the beam when rescoring reranks it (as
        WeNet's attention_rescoring does), else the n-best."""
        return self.beam if self.mode == "rescore" else self.nbest


__all__ = ["MODES", "SearchOptions", "check_beam"]
