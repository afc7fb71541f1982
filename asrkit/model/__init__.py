"""The acoustic model: RNN encoder + linear CTC head, built by ``build_model``."""

from __future__ import annotations

import torch
from torch import nn

from asrkit.config import ModelConfig
from asrkit.model.encoder import RNNEncoder


class AsrModel(nn.Module):
    """forward(feats: (B, T, F), feat_lens: (B,)) -> (log_probs: (B, T', V), out_lens: (B,))."""

    def __init__(self, feat_dim: int, vocab_size: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.feat_dim = feat_dim
        self.vocab_size = vocab_size
        self.encoder = RNNEncoder(feat_dim, cfg)
        self.ctc_head = nn.Linear(self.encoder.output_dim, vocab_size)

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        enc, enc_lens = self.encoder(feats, feat_lens)
        logits = self.ctc_head(enc).float()  # CTC wants fp32 even under autocast
        return logits.log_softmax(dim=-1), enc_lens


def build_model(feat_dim: int, vocab_size: int, cfg: ModelConfig) -> AsrModel:
    cfg.check()
    return AsrModel(feat_dim, vocab_size, cfg)


def output_length(num_frames: int, cfg: ModelConfig) -> int:
    """Encoder frames for an input of ``num_frames`` (to drop untrainable utterances)."""
    if cfg.subsampling == "stack":
        return max(num_frames // cfg.subsampling_factor, 1)
    length = num_frames
    for _ in range(cfg.subsampling_factor.bit_length() - 1):
        length = (length - 1) // 2
    return max(length, 1)


__all__ = ["AsrModel", "build_model", "output_length"]
