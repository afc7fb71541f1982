"""Running torch's recurrent modules (nn.LSTM, nn.GRU, nn.RNN) over a padded batch.

A padded batch must keep the padding out of the recurrence, so that the backward direction
of each utterance starts at its own last frame. Two ways give the same outputs:

- packing (``pack_padded_sequence``): what cuDNN is built for, used on the GPU;
- on the CPU, one direction of one layer at a time on padded tensors: the forward direction
  runs over the padded batch as it is (padding comes after every valid frame, so it cannot
  reach them), the backward direction over each utterance reversed within its own length.
  Packed input takes torch's generic per-step CPU kernel, padded input its fused one
  (oneDNN's, for the LSTM): 2-3x faster for training on the CPU
  (``benchmarks/rnn_cost.py``), with the same weights, so any checkpoint runs either way.

Padded positions of the output are zero, as ``pad_packed_sequence`` leaves them.
"""

from __future__ import annotations

import torch
from torch import _VF, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def run_packed(rnn: nn.Module, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """``rnn`` over (B, T, D) with the padding packed away (cuDNN's way)."""
    packed = pack_padded_sequence(x, lens.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    return out


def reverse_within_length(x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """(B, T, D): each row's first lens[b] frames in reverse order; padded frames stay put."""
    steps = torch.arange(x.size(1), device=x.device).unsqueeze(0)
    source = lens.to(x.device).unsqueeze(1) - 1 - steps
    source = torch.where(source >= 0, source, steps)
    return x.gather(1, source.unsqueeze(2).expand(-1, -1, x.size(2)))


def _one_direction(rnn: nn.Module, x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    """One layer, one direction of ``rnn``'s kind with the given weights, over padded (B, T, D)."""
    h0 = x.new_zeros(1, x.size(0), rnn.hidden_size)
    if isinstance(rnn, nn.LSTM):
        return _VF.lstm(x, (h0, torch.zeros_like(h0)), weights, rnn.bias, 1, 0.0, rnn.training, False, True)[0]
    if isinstance(rnn, nn.GRU):
        return _VF.gru(x, h0, weights, rnn.bias, 1, 0.0, rnn.training, False, True)[0]
    step = _VF.rnn_tanh if rnn.nonlinearity == "tanh" else _VF.rnn_relu
    return step(x, h0, weights, rnn.bias, 1, 0.0, rnn.training, False, True)[0]


def run_padded(rnn: nn.Module, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """``rnn`` over (B, T, D) one layer and direction at a time, without packing (the CPU's way).
    Dropout between layers as the module itself applies it (training only)."""
    dirs = 2 if rnn.bidirectional else 1
    weights = rnn._flat_weights
    per = len(weights) // (rnn.num_layers * dirs)
    lens = lens.to(x.device)
    out = x
    for layer in range(rnn.num_layers):
        if layer > 0 and rnn.dropout and rnn.training:
            out = nn.functional.dropout(out, rnn.dropout, True)
        first = layer * dirs * per
        forward = _one_direction(rnn, out, weights[first:first + per])
        if dirs == 1:
            out = forward
            continue
        backward = _one_direction(rnn, reverse_within_length(out, lens), weights[first + per:first + 2 * per])
        out = torch.cat([forward, reverse_within_length(backward, lens)], dim=2)
    valid = torch.arange(x.size(1), device=x.device).unsqueeze(0) < lens.unsqueeze(1)
    return out * valid.unsqueeze(2).to(out.dtype)


def run_rnn(rnn: nn.Module, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """``rnn`` over padded (B, T, D) with lengths (B,): packed on the GPU, padded on the CPU."""
    if x.device.type == "cpu" and getattr(rnn, "proj_size", 0) == 0:
        return run_padded(rnn, x, lens)
    return run_packed(rnn, x, lens)
