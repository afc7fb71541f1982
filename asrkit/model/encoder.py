"""Encoder: subsampling front-end, then a stacked (bi)directional recurrent network.

The encoder owns its time arithmetic: ``RNNEncoder.output_lengths`` is how many
frames come out for a number of input frames (the subsampling's rounding, then
each pyramid halving), and the forward pass computes its lengths with the same
functions. It also owns the walk through its layers (``_stack``: dropout, the
pyramid and projections between layers), which ``forward`` and ``unrolled`` (the
layers run step by step, for gradients through time) share.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from asrkit.config import ModelConfig
from asrkit.model.jordan import JordanLayer, JordanRNN
from asrkit.model.recurrent import run_rnn
from asrkit.model.stream_plan import conv_frames
from asrkit.model.streaming import (
    Lookahead,
    StreamState,
    check_streamable,
    lookahead_chunk,
    pyramid_chunk,
    run_recurrent,
    subsample_chunk,
)


def _at_least_one(lens):
    return lens.clamp(min=1) if isinstance(lens, torch.Tensor) else max(lens, 1)


def halved_lengths(lens):
    """Lengths (an int or a tensor) after a pyramid step: floor(T / 2), at least 1."""
    return _at_least_one(lens // 2)


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

    @staticmethod
    def output_lengths(lens, factor: int):
        """Output frames (int or tensor) for ``lens`` input frames: T' = (T - 1) // 2 per layer, at least 1."""
        return _at_least_one(conv_frames(lens, factor))

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if feats.size(1) < self.min_frames:
            feats = nn.functional.pad(feats, (0, 0, 0, self.min_frames - feats.size(1)))
        x = self.conv(feats.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        return x, self.output_lengths(feat_lens, 2 ** self.num_layers)


class FrameStacking(nn.Module):
    """Stack ``factor`` consecutive frames (dropping the remainder), then project."""

    def __init__(self, feat_dim: int, out_dim: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.out = nn.Linear(feat_dim * factor, out_dim)

    @staticmethod
    def output_lengths(lens, factor: int):
        """Output frames (int or tensor) for ``lens`` input frames: T // factor, at least 1."""
        return _at_least_one(lens // factor)

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, f = feats.shape
        if t < self.factor:
            feats = nn.functional.pad(feats, (0, 0, 0, self.factor - t))
            t = self.factor
        t_out = t // self.factor
        x = feats[:, : t_out * self.factor].reshape(b, t_out, f * self.factor)
        return self.out(x), self.output_lengths(feat_lens, self.factor)


def pyramid_step(x: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Listen, Attend and Spell's pyramid: concatenate pairs of consecutive frames,
    (B, T, D) -> (B, T // 2, 2D) (an odd last frame is dropped), lengths halved."""
    b, t, d = x.shape
    if t < 2:
        x, t = nn.functional.pad(x, (0, 0, 0, 2 - t)), 2
    half = t // 2
    return x[:, :2 * half].reshape(b, half, 2 * d), halved_lengths(lens)


class RNNEncoder(nn.Module):
    """forward(feats: (B, T, F), feat_lens: (B,)) -> (enc: (B, T', H·dirs), enc_lens: (B,)).

    The subsampling front-end, then ``num_layers`` recurrent layers of ``rnn_type``:
    one multi-layer cuDNN module (``rnn``) when the layers are plain, or one module
    per layer (``layers``) when a pyramid (``pyramid_layers``) or projections
    (``projection_size``) sit between them. T' = T / ``cfg.time_reduction``.
    """

    RNN_TYPES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}  # cuDNN's; "jordan" is asrkit's own

    def __init__(self, feat_dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.feat_dim = feat_dim
        if cfg.subsampling == "conv2d":
            self.subsampling: nn.Module = Conv2dSubsampling(feat_dim, cfg.hidden_size, cfg.subsampling_factor,
                                                            cfg.conv_channels)
        else:
            self.subsampling = FrameStacking(feat_dim, cfg.hidden_size, cfg.subsampling_factor)
        dirs = 2 if cfg.bidirectional else 1
        self.pyramid_layers = cfg.pyramid_layers
        self.rnn: nn.Module | None = None
        self.layers: nn.ModuleList | None = None
        self.projections: nn.ModuleList | None = None
        if not cfg.layered:  # one module for all layers: the checkpoints of every earlier version
            if cfg.rnn_type == "jordan":
                self.rnn = JordanRNN(cfg.hidden_size, cfg.hidden_size, cfg.num_layers, cfg.bidirectional,
                                     cfg.dropout if cfg.num_layers > 1 else 0.0)
            else:
                self.rnn = self.RNN_TYPES[cfg.rnn_type](
                    input_size=cfg.hidden_size, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
                    batch_first=True, bidirectional=cfg.bidirectional,
                    dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
                )
            self.output_dim = cfg.hidden_size * dirs
        else:
            self.layers, self.projections = nn.ModuleList(), nn.ModuleList()
            width = cfg.hidden_size
            for index in range(cfg.num_layers):
                if cfg.rnn_type == "jordan":
                    self.layers.append(JordanLayer(width, cfg.hidden_size, cfg.bidirectional))
                else:
                    self.layers.append(self.RNN_TYPES[cfg.rnn_type](input_size=width, hidden_size=cfg.hidden_size,
                                                                    batch_first=True, bidirectional=cfg.bidirectional))
                width = cfg.hidden_size * dirs * (2 if index < cfg.pyramid_layers else 1)
                if cfg.projection_size and index < cfg.num_layers - 1:
                    self.projections.append(nn.Linear(width, cfg.projection_size))
                    width = cfg.projection_size
            self.output_dim = width
        self.lookahead = Lookahead(self.output_dim, cfg.lookahead) if cfg.lookahead else None
        self.dropout = nn.Dropout(cfg.dropout)

    @staticmethod
    def output_lengths(lens, cfg: ModelConfig):
        """Encoder frames (an int or a tensor) for ``lens`` input frames: the subsampling's rule, then
        each pyramid layer's halving (``cfg.time_reduction`` in all, up to rounding)."""
        subsampling = Conv2dSubsampling if cfg.subsampling == "conv2d" else FrameStacking
        lens = subsampling.output_lengths(lens, cfg.subsampling_factor)
        for _ in range(cfg.pyramid_layers):
            lens = halved_lengths(lens)
        return lens

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, lens = self.subsampling(feats, feat_lens)
        lens = lens.clamp(max=x.size(1))
        if self.rnn is not None:
            x = self.rnn(x, lens) if isinstance(self.rnn, JordanRNN) else run_rnn(self.rnn, x, lens)
        else:
            x, lens = self._stack(x, lens, list(self.layers), _run_layer)
        if self.lookahead is not None:  # past each length the layers left zeros: the lookahead hears silence
            x = self.lookahead(x)
        return self.dropout(x), lens

    # ------------------------------------------------------------------ streaming
    def init_state(self, batch: int = 1) -> StreamState:
        """The state of ``batch`` streams before their first chunk (a unidirectional encoder only)."""
        check_streamable(self)
        pending = next(self.parameters()).new_zeros(batch, 0, self.feat_dim)
        modules = 1 if self.rnn is not None else len(self.layers)
        return StreamState(pending, hidden=[None] * modules, paired=[None] * self.pyramid_layers,
                           emitted_pairs=[0] * self.pyramid_layers)

    @torch.no_grad()
    def forward_chunk(self, x: torch.Tensor, state: StreamState, final: bool = False):
        """The encoder frames that ``x`` (B, t, F), the next input frames of each stream, completes:
        ((B, t', D), state). Chunks of any size, ending with ``final=True``, give the frames of one
        forward pass over the whole utterance (eval mode; ``asrkit.model.streaming``)."""
        x = subsample_chunk(self.subsampling, state, x, final)
        if self.rnn is not None:
            x, state.hidden[0] = run_recurrent(self.rnn, x, state.hidden[0])
        else:
            for index, layer in enumerate(self.layers):
                x, state.hidden[index] = run_recurrent(layer, x, state.hidden[index])
                if index == len(self.layers) - 1:
                    break
                if index < self.pyramid_layers:
                    x = pyramid_chunk(state, index, x, final)
                if self.projections is not None and index < len(self.projections):
                    x = torch.tanh(self.projections[index](x))
        if self.lookahead is not None:
            x = lookahead_chunk(self.lookahead, state, x, final)
        return x, state

    def _stack(self, x: torch.Tensor, lens: torch.Tensor, layers: list[nn.Module],
               run: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The recurrent layers over subsampled (B, T, D): ``run(layer, x, lens)`` runs each one, and
        between layers come dropout, the pyramid's halving and the projections."""
        for index, layer in enumerate(layers):
            x = run(layer, x, lens)
            if index == len(layers) - 1:
                break
            x = self.dropout(x)
            if index < self.pyramid_layers:
                x, lens = pyramid_step(x, lens)
            if self.projections is not None and index < len(self.projections):
                x = torch.tanh(self.projections[index](x))
        return x, lens

    def unrolled(self, feats: torch.Tensor) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
        """One utterance (1, T, F) through the encoder with every layer run step by step (eval mode,
        the same output as ``forward``), and each layer's forward-direction outputs h_t, one (1, H)
        tensor per step: graph nodes that are both output and fed-back state, so that a gradient
        reaching h_t has come every way from it (``asrkit.plot.gradients_through_time``)."""
        x, lens = self.subsampling(feats, torch.tensor([feats.size(1)], device=feats.device))
        states: list[list[torch.Tensor]] = []

        def run(layer: nn.Module, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
            out, steps = unroll_layer(layer, x)
            states.append(steps)
            return out

        x, _ = self._stack(x, lens, self.layer_modules(), run)
        return x, states

    # ------------------------------------------------------------------ looking inside
    def layer_modules(self) -> list[nn.Module]:
        """One module per recurrent layer; a multi-layer cuDNN module is split into single-layer
        copies with the same weights."""
        if self.layers is not None:
            return list(self.layers)
        if isinstance(self.rnn, JordanRNN):
            return list(self.rnn.layers)
        rnn = self.rnn
        dirs = 2 if rnn.bidirectional else 1
        extra = {"nonlinearity": rnn.nonlinearity} if isinstance(rnn, nn.RNN) else {}
        layers = []
        for k in range(rnn.num_layers):
            layer = type(rnn)(input_size=rnn.input_size if k == 0 else rnn.hidden_size * dirs,
                              hidden_size=rnn.hidden_size, batch_first=True, bidirectional=rnn.bidirectional, **extra)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                for suffix in ("", "_reverse")[:dirs]:
                    getattr(layer, f"{name}_l0{suffix}").data.copy_(getattr(rnn, f"{name}_l{k}{suffix}").data)
            layers.append(layer.to(next(rnn.parameters()).device))
        return layers


def _run_layer(layer: nn.Module, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    return layer(x, lens) if isinstance(layer, JordanLayer) else run_rnn(layer, x, lens)


def unroll_layer(layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One single-layer recurrent module over x (1, T, F) one step at a time: (its output, the
    forward direction's output at each step). cuDNN's modules are rebuilt as cells with their
    weights; a Jordan layer steps by itself (``JordanDirection.steps``)."""
    if isinstance(layer, JordanLayer):
        states = layer.forward_direction.steps(x)
        backward = layer.backward_direction(x.flip(1)).flip(1) if layer.backward_direction is not None else None
    else:
        kind = {nn.LSTM: nn.LSTMCell, nn.GRU: nn.GRUCell, nn.RNN: nn.RNNCell}[type(layer)]
        extra = {"nonlinearity": layer.nonlinearity} if isinstance(layer, nn.RNN) else {}
        cell = kind(layer.input_size, layer.hidden_size, **extra).to(x.device)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).data.copy_(getattr(layer, f"{name}_l0").data)
        h = c = x.new_zeros(1, layer.hidden_size)
        states = []
        for t in range(x.size(1)):
            if isinstance(layer, nn.LSTM):
                h, c = cell(x[:, t], (h, c))
            else:
                h = cell(x[:, t], h)
            states.append(h)
        backward = None
        if layer.bidirectional:  # the backward direction never sees the forward states
            reverse = type(layer)(layer.input_size, layer.hidden_size, batch_first=True, **extra).to(x.device)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(reverse, f"{name}_l0").data.copy_(getattr(layer, f"{name}_l0_reverse").data)
            backward = reverse(x.flip(1))[0].flip(1)
    forward = torch.stack(states, 1)
    return (forward if backward is None else torch.cat([forward, backward], -1)), states
