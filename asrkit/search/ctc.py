"""Running the search that a ``SearchOptions`` names on a batch of CTC log-probabilities."""

from __future__ import annotations

from asrkit.search.context import ContextGraph
from asrkit.search.greedy import greedy_search
from asrkit.search.options import SearchOptions
from asrkit.search.prefix import prefix_beam_search
from asrkit.search.types import Hypothesis, WordConstraint, WordScorer


def search_batch(log_probs, lengths, options: SearchOptions, *, blank_id: int = 0,
                 boundary=None, lm: WordScorer | None = None,
                 lexicon: WordConstraint | None = None, context: ContextGraph | None = None) -> list[list[Hypothesis]]:
    """The search ``options`` names over log_probs (B, T, V) with lengths (B,) (numpy arrays or torch
    tensors): per utterance its
    hypotheses, best first (one for greedy; ``options.beam_keeps`` for beam and rescore).

    ``boundary`` is the tokenizer's word boundary (``Tokenizer.boundary``: a separator token or
    word-start tokens), needed with an LM or a lexicon; ``lm`` and ``lexicon`` are the loaded
    word-level parts of ``options.lm`` and ``options.lexicon``, ``context`` the hotwords' graph
    of ``options.hotwords``."""
    if options.mode == "greedy":
        return [[hyp] for hyp in greedy_search(log_probs, lengths, blank_id)]
    return prefix_beam_search(log_probs, lengths, options.beam, options.beam_keeps, blank_id=blank_id, lm=lm,
                              token_min_logp=options.token_min_logp, lexicon=lexicon,
                              space_id=boundary.separator if boundary is not None else None,
                              word_starts=boundary.starts if boundary is not None else None, context=context)


__all__ = ["search_batch"]
