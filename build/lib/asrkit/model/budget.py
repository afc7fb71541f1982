"""Parameter budgets: compare recurrent types at equal size, not equal width.

An LSTM layer has four gates' worth of weights, a GRU three, Elman's and
Jordan's networks one or two, so at one width they differ several-fold in
size. ``width_for_budget`` finds the hidden size that brings a model
config's encoder + CTC head closest to a given number of parameters.
"""

from __future__ import annotations

import dataclasses

from asrkit.config import ModelConfig
from asrkit.model.asr_model import build_model


def acoustic_parameters(cfg: ModelConfig, feat_dim: int, vocab_size: int) -> int:
    """Parameters of the encoder plus the CTC head (the attention decoder, if any, not counted)."""
    model = build_model(feat_dim, vocab_size, dataclasses.replace(cfg, ctc_weight=1.0))
    return sum(p.numel() for p in model.parameters())


def width_for_budget(cfg: ModelConfig, feat_dim: int, vocab_size: int, budget: int,
                     low: int = 4, high: int = 4096) -> int:
    """The ``hidden_size`` whose encoder + CTC head is closest to ``budget`` parameters
    (the count grows with the width, so a bisection finds it)."""
    def size(width: int) -> int:
        return acoustic_parameters(dataclasses.replace(cfg, hidden_size=width), feat_dim, vocab_size)

    while high - low > 1:
        middle = (low + high) // 2
        if size(middle) < budget:
            low = middle
        else:
            high = middle
    return min((low, high), key=lambda w: abs(size(w) - budget))


__all__ = ["acoustic_parameters", "width_for_budget"]
