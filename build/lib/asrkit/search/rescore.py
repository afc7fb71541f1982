"""Attention rescoring: the CTC n-best reranked by the attention decoder trained jointly with CTC."""

from __future__ import annotations

import torch

from asrkit.model.decoder import decoder_io, sequence_log_probs
from asrkit.search.types import Hypothesis


@torch.no_grad()
def attention_rescore(decoder: torch.nn.Module, enc: torch.Tensor, enc_lens: torch.Tensor,
                      nbest: list[list[Hypothesis]], ctc_weight: float = 0.5,
                      max_rows: int = 256) -> list[list[Hypothesis]]:
    """Rerank each utterance's CTC n-best with the attention decoder (as WeNet's attention_rescoring).

    enc: (B, T, D) and enc_lens: (B,), the encoder output computed once; nbest[b]
    the hypotheses of utterance b. Every hypothesis is scored under teacher
    forcing, all of them in one batch (``max_rows`` at a time):
    ``score = log P_att(tokens + <eos>) + ctc_weight * ctc_score + lm_score``.
    """
    rows = [(b, hyp) for b, hyps in enumerate(nbest) for hyp in hyps]
    att_scores: list[float] = []
    for start in range(0, len(rows), max_rows):
        chunk = rows[start:start + max_rows]
        index = torch.tensor([b for b, _ in chunk], device=enc.device)
        lens = torch.tensor([len(h.tokens) for _, h in chunk], device=enc.device)
        targets = torch.zeros((len(chunk), max(int(lens.max()), 1)), dtype=torch.long, device=enc.device)
        for i, (_, hyp) in enumerate(chunk):
            targets[i, :len(hyp.tokens)] = torch.tensor(hyp.tokens, dtype=torch.long)
        ys_in, ys_out = decoder_io(targets, lens)
        logits = decoder(enc.index_select(0, index), enc_lens.index_select(0, index), ys_in)
        att_scores.extend(sequence_log_probs(logits, ys_out).tolist())
    results: list[list[Hypothesis]] = [[] for _ in nbest]
    for (b, hyp), att in zip(rows, att_scores):
        ctc = hyp.ctc_score if hyp.ctc_score is not None else hyp.score
        total = att + ctc_weight * ctc + (hyp.lm_score or 0.0)
        results[b].append(Hypothesis(hyp.tokens, total, hyp.timesteps, ctc, hyp.lm_score, att))
    for hyps in results:
        hyps.sort(key=lambda h: h.score, reverse=True)
    return results


__all__ = ["attention_rescore"]
