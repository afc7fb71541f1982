"""Encoder: subsampling front-end, then a stacked (bi)directional recurrent network."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asrkit.config import ModelConfig
from asrkit.model.jordan import JordanRNN


class Conv2dSubsampling(nn.Module):
    """log2(factor) conv layers (kernel 3, stride 2, no padding) over time and frequency.

    forward(feats: (B, T, F), feat_lens: (B,)) -> ((B, T', D), (B,)) with
    T' = (T - 1) // 2 applied log2(factor) times. Without time padding every
    valid output frame sees only valid input frames, so outputs do not depend
    on how much a batch is padded.
    """

    def __init__(self, feat_dim: int, out_dim: int, factor: int, channels: int) -> None:
        super().__init__()
        self.num_layers = factor.bit_length() - 1
        layers: list[nn.Module] = []
        in_ch, freq = 1, feat_dim
        for _ in range(self.num_layers):
            layers += [nn.Conv2d(in_ch, channels, kernel_size=3, stride=2), nn.ReLU()]
            in_ch, freq = channels, (freq - 1) // 2
        self.conv = nn.Sequential(*layers)
        self.out = nn.Linear(in_ch * freq, out_dim)
        self.min_frames = 2 ** (self.num_layers + 1) - 1  # shortest input giving one frame

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if feats.size(1) < self.min_frames:
            feats = nn.functional.pad(feats, (0, 0, 0, self.min_frames - feats.size(1)))
        x = self.conv(feats.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        lens = feat_lens
        for _ in range(self.num_layers):
            lens = torch.div(lens - 1, 2, rounding_mode="floor")
        return x, lens.clamp(min=1)


class FrameStacking(nn.Module):
    """Stack ``factor`` consecutive frames (dropping the remainder), then project."""

    def __init__(self, feat_dim: int, out_dim: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.out = nn.Linear(feat_dim * factor, out_dim)

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, f = feats.shape
        if t < self.factor:
            feats = nn.functional.pad(feats, (0, 0, 0, self.factor - t))
            t = self.factor
        t_out = t // self.factor
        x = feats[:, : t_out * self.factor].reshape(b, t_out, f * self.factor)
        return self.out(x), torch.div(feat_lens, self.factor, rounding_mode="floor").clamp(min=1)


class RNNEncoder(nn.Module):
    """forward(feats: (B, T, F), feat_lens: (B,)) -> (enc: (B, T', H·dirs), enc_lens: (B,))."""

    RNN_TYPES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}  # cuDNN's; "jordan" is asrkit's own

    def __init__(self, feat_dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.subsampling == "conv2d":
            self.subsampling: nn.Module = Conv2dSubsampling(feat_dim, cfg.hidden_size, cfg.subsampling_factor,
                                                            cfg.conv_channels)
        else:
            self.subsampling = FrameStacking(feat_dim, cfg.hidden_size, cfg.subsampling_factor)
        if cfg.rnn_type == "jordan":
            self.rnn: nn.Module = JordanRNN(cfg.hidden_size, cfg.hidden_size, cfg.num_layers, cfg.bidirectional,
                                            cfg.dropout if cfg.num_layers > 1 else 0.0)
        else:
            self.rnn = self.RNN_TYPES[cfg.rnn_type](
                input_size=cfg.hidden_size, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
                batch_first=True, bidirectional=cfg.bidirectional,
                dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
            )
        self.dropout = nn.Dropout(cfg.dropout)
        self.output_dim = cfg.hidden_size * (2 if cfg.bidirectional else 1)

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, lens = self.subsampling(feats, feat_lens)
        lens = lens.clamp(max=x.size(1))
        if isinstance(self.rnn, JordanRNN):
            return self.dropout(self.rnn(x, lens)), lens
        # Packing keeps padded frames out of the recurrence: the backward
        # direction starts at each utterance's own last frame.
        packed = pack_padded_sequence(x, lens.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return self.dropout(out), lens
