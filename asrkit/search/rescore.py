"""Attention rescoring: the CTC n-best reranked by the attention decoder trained jointly with CTC."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from asrkit.search.types import Hypothesis


class SequenceScorer(Protocol):
    """What rescoring asks of an attention decoder: the torch module
    (``asrkit.model.decoder.AttentionDecoder``) or an export bundle's graphs
    (``asrkit.recognize.bundle.OnnxDecoder``), each reading the encoder output it was given."""

    def score_sequences(self, enc, enc_lens, rows: list[int], tokens: list[list[int]]) -> np.ndarray:
        """log P(tokens[i] + <eos> | enc[rows[i]]) for every i."""


def attention_rescore(decoder: SequenceScorer, enc, enc_lens, nbest: list[list[Hypothesis]],
                      ctc_weight: float = 0.5, max_rows: int = 256) -> list[list[Hypothesis]]:
    """Rerank each utterance's CTC n-best with the attention decoder (as WeNet's attention_rescoring).

    enc: (B, T, D) and enc_lens: (B,), the encoder output computed once, in the form the decoder
    reads (a torch tensor for the torch decoder, a numpy array for a bundle's); nbest[b] the
    hypotheses of utterance b. Every hypothesis is scored under teacher forcing, ``max_rows``
    at a time: ``score = log P_att(tokens + <eos>) + ctc_weight * ctc_score + lm_score + context_score``.
    """
    rows = [(b, hyp) for b, hyps in enumerate(nbest) for hyp in hyps]
    att_scores: list[float] = []
    for start in range(0, len(rows), max_rows):
        chunk = rows[start:start + max_rows]
        scores = decoder.score_sequences(enc, enc_lens, [b for b, _ in chunk], [h.tokens for _, h in chunk])
        att_scores.extend(np.asarray(scores, dtype=np.float64).tolist())
    results: list[list[Hypothesis]] = [[] for _ in nbest]
    for (b, hyp), att in zip(rows, att_scores):
        ctc = hyp.ctc_score if hyp.ctc_score is not None else hyp.score
        total = att + ctc_weight * ctc + (hyp.lm_score or 0.0) + (hyp.context_score or 0.0)
        results[b].append(Hypothesis(hyp.tokens, total, hyp.timesteps, ctc, hyp.lm_score, att, hyp.context_score))
    for hyps in results:
        hyps.sort(key=lambda h: h.score, reverse=True)
    return results


__all__ = ["SequenceScorer", "attention_rescore"]
