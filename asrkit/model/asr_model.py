"""``AsrModel``: the encoder, the CTC head and the optional attention decoder, made by ``build_model``."""


from __future__ import annotations

import torch
from torch import nn

from asrkit.config import ModelConfig
from asrkit.model.decoder import AttentionDecoder
from asrkit.model.encoder import RNNEncoder


class AsrModel(nn.Module):
    """forward(feats: (B, T, F), feat_lens: (B,)) -> (log_probs: (B, T', V), out_lens: (B,)).

    With ``ctc_weight < 1`` it also holds an attention decoder over the same
    encoder output (``encode`` once, then ``ctc_log_probs`` and ``decoder``).
    """

    def __init__(self, feat_dim: int, vocab_size: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.feat_dim = feat_dim
        self.vocab_size = vocab_size
        self.ctc_weight = cfg.ctc_weight
        self.label_smoothing = cfg.label_smoothing
        self.encoder = RNNEncoder(feat_dim, cfg)
        self.ctc_head = nn.Linear(self.encoder.output_dim, vocab_size)
        self.decoder = AttentionDecoder(self.encoder.output_dim, vocab_size, cfg) if cfg.has_decoder else None

    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(feats, feat_lens)

    def init_state(self, batch: int = 1):
        """A streaming state for ``batch`` streams (a unidirectional encoder; ``asrkit.model.streaming``)."""
        return self.encoder.init_state(batch)

    def forward_chunk(self, feats: torch.Tensor, state, final: bool = False):
        """(CTC log-probs (B, t', V) of the encoder frames the chunk completes, state)."""
        enc, state = self.encoder.forward_chunk(feats, state, final)
        return self.ctc_log_probs(enc), state

    def ctc_log_probs(self, enc: torch.Tensor) -> torch.Tensor:
        return self.ctc_head(enc).float().log_softmax(dim=-1)  # CTC wants fp32 even under autocast

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor, ys_in: torch.Tensor | None = None):
        """(log_probs, out_lens); with decoder inputs ``ys_in`` (B, L) also the decoder's logits (B, L, V).

        Training goes through here (not through ``encode``/``decoder`` directly) so
        that DistributedDataParallel sees the whole forward pass.
        """
        enc, enc_lens = self.encoder(feats, feat_lens)
        if ys_in is None:
            return self.ctc_log_probs(enc), enc_lens
        return self.ctc_log_probs(enc), enc_lens, self.decoder(enc, enc_lens, ys_in)


def build_model(feat_dim: int, vocab_size: int, cfg: ModelConfig) -> AsrModel:
    cfg.check()
    return AsrModel(feat_dim, vocab_size, cfg)


def output_length(num_frames: int, cfg: ModelConfig) -> int:
    """Encoder frames for an input of ``num_frames`` (to drop untrainable utterances), by the
    encoder's own arithmetic (``RNNEncoder.output_lengths``)."""
    return RNNEncoder.output_lengths(num_frames, cfg)


__all__ = ["AsrModel", "build_model", "output_length"]
