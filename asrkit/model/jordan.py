"""Jordan's recurrent network (1986): the recurrence goes through the layer's *output*.

Elman's network (``nn.RNN``) feeds back its hidden state, h_t = tanh(W x_t + U h_{t-1} + b).
Jordan's feeds back what the layer emitted one step before::

    h_t = tanh(W x_t + U y_{t-1} + b)
    y_t = tanh(V h_t + c)

with y_0 = 0. The layer's output sequence is y. cuDNN has no such cell, so it
is a loop over time. The input projection W x_t + b is one matmul for all
frames; each step then does two small matmuls, U y_{t-1} and V h_t.
"""

from __future__ import annotations

import torch
from torch import nn

from asrkit.model.recurrent import reverse_within_length


class JordanDirection(nn.Module):
    """One direction of a Jordan layer: (B, T, F) -> (B, T, H)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input = nn.Linear(input_size, hidden_size)  # W, b
        self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False)  # U
        self.output = nn.Linear(hidden_size, hidden_size)  # V, c

    def steps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output y_t of every step, each (B, H): the recurrence itself, one step at a time."""
        projected = self.input(x)  # W x_t + b for every t at once
        y = x.new_zeros(x.size(0), self.output.out_features)
        outputs = []
        for t in range(x.size(1)):
            h = torch.tanh(projected[:, t] + self.recurrent(y))
            y = torch.tanh(self.output(h))
            outputs.append(y)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.steps(x), 1)


class JordanLayer(nn.Module):
    """forward(x: (B, T, F), lens: (B,)) -> (B, T, H·dirs), zero past each length. With
    ``bidirectional`` a second direction reads each utterance from its own last frame."""

    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool) -> None:
        super().__init__()
        self.forward_direction = JordanDirection(input_size, hidden_size)
        self.backward_direction = JordanDirection(input_size, hidden_size) if bidirectional else None

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(x.size(1), device=x.device)[None, :] < lens.to(x.device)[:, None])[:, :, None]
        out = self.forward_direction(x)
        if self.backward_direction is not None:
            backward = reverse_within_length(self.backward_direction(reverse_within_length(x, lens)), lens)
            out = torch.cat([out, backward], -1)
        return out * mask


class JordanRNN(nn.Module):
    """A stack of Jordan layers with the ``nn.RNN``-like call the encoder uses:
    forward(x: (B, T, F), lens: (B,)) -> (B, T, H·dirs); dropout between layers."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool,
                 dropout: float = 0.0) -> None:
        super().__init__()
        dirs = 2 if bidirectional else 1
        self.layers = nn.ModuleList(JordanLayer(input_size if i == 0 else hidden_size * dirs, hidden_size,
                                                bidirectional) for i in range(num_layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            if index:
                x = self.dropout(x)
            x = layer(x, lens)
        return x


__all__ = ["JordanRNN", "JordanLayer", "JordanDirection"]
