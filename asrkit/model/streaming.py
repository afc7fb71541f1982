"""Streaming: a unidirectional encoder run chunk by chunk with an explicit state, to the same output
as one forward pass over the whole utterance.

``RNNEncoder.init_state(batch)`` makes a ``StreamState``; ``forward_chunk(x, state, final)``
takes the next input frames of every stream (the same number for each) and returns the encoder
frames they complete. What a chunk cannot finish waits in the state:

- the subsampling's input frames short of a whole output frame (frame stacking: fewer than
  ``factor``; conv2d: the frames the next output's window still needs);
- each recurrent layer's hidden state (h, and c for an LSTM);
- a pyramid layer's odd frame, waiting for its pair;
- the lookahead's last ``k`` top-layer frames, waiting for the ``k`` that follow them.

``final=True`` ends the utterance: the lookahead is flushed with zeros (what the full forward
sees past the end) and what the full forward would drop (an incomplete stack, an unpaired
pyramid frame) is dropped. A bidirectional or Jordan encoder cannot stream (a one-line error).
"""

from __future__ import annotations

import torch
from torch import nn

from asrkit.errors import ConfigError
from asrkit.model.stream_plan import StreamState, Subsampling, lookahead_ready, subsample_plan


class Lookahead(nn.Module):
    """DeepSpeech 2's lookahead ("row") convolution over the top layer: each output frame is a
    per-channel weighted sum of that frame and the ``frames`` after it, so a unidirectional
    model hears a little of the future at a fixed cost in latency. Starts as the identity."""

    def __init__(self, dim: int, frames: int) -> None:
        super().__init__()
        self.frames = frames
        weight = torch.zeros(dim, frames + 1)
        weight[:, 0] = 1.0
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D); frames past the end (or past an utterance's length: the recurrent
        layers leave those at zero) count as zeros."""
        padded = nn.functional.pad(x.transpose(1, 2), (0, self.frames))
        return nn.functional.conv1d(padded, self.weight[:, None, :], groups=x.size(2)).transpose(1, 2)


def check_streamable(encoder) -> None:
    from asrkit.model.jordan import JordanLayer, JordanRNN

    modules = [encoder.rnn] if encoder.rnn is not None else list(encoder.layers)
    if any(isinstance(m, (JordanRNN, JordanLayer)) for m in modules):
        raise ConfigError("a Jordan encoder cannot stream here (its recurrence runs through its own loop); "
                          "use rnn_type lstm, gru or rnn with bidirectional: false")
    if any(getattr(m, "bidirectional", False) for m in modules):
        raise ConfigError("a bidirectional encoder cannot stream: its backward direction needs the end of the "
                          "utterance; train one with model.bidirectional: false (and model.lookahead for context)")


def run_recurrent(module: nn.Module, x: torch.Tensor, hidden):
    """A unidirectional torch RNN module over (B, t, D) from ``hidden`` (None: zeros): (out, hidden)."""
    if x.size(1) == 0:
        return x.new_zeros(x.size(0), 0, module.hidden_size), hidden
    return module(x, hidden)


def subsampling_spec(subsampling: nn.Module) -> Subsampling:
    factor = getattr(subsampling, "factor", None)
    if factor is not None:
        return Subsampling(factor=factor)
    return Subsampling(stride=2 ** subsampling.num_layers, min_frames=subsampling.min_frames)


def subsample_chunk(subsampling: nn.Module, state: StreamState, x: torch.Tensor, final: bool) -> torch.Tensor:
    """The subsampled frames that ``x`` completes, given what waits in ``state``."""
    frames = torch.cat([state.pending, x], 1)
    ready, window, keep = subsample_plan(subsampling_spec(subsampling), state, frames.size(1), final)
    state.pending, state.consumed, state.emitted = frames[:, keep:], state.consumed + keep, state.emitted + ready
    if ready == 0:
        return frames.new_zeros(frames.size(0), 0, subsampling.out.out_features)
    window_frames = frames[:, :window]
    if window_frames.size(1) < window:
        window_frames = nn.functional.pad(window_frames, (0, 0, 0, window - window_frames.size(1)))
    return subsampling(window_frames, torch.full((frames.size(0),), window))[0][:, :ready]


def pyramid_chunk(state: StreamState, index: int, x: torch.Tensor, final: bool) -> torch.Tensor:
    """Pairs of consecutive frames concatenated (the pyramid), an odd one kept for the next chunk."""
    if state.paired[index] is not None:
        x = torch.cat([state.paired[index], x], 1)
    if final and x.size(1) == 1 and state.emitted_pairs[index] == 0:
        x = nn.functional.pad(x, (0, 0, 0, 1))  # as the full pass pads a one-frame input
    half = x.size(1) // 2
    state.paired[index] = x[:, 2 * half:] if x.size(1) % 2 and not final else None
    state.emitted_pairs[index] += half
    b, _, d = x.shape
    return x[:, :2 * half].reshape(b, half, 2 * d)


def lookahead_chunk(lookahead: Lookahead, state: StreamState, x: torch.Tensor, final: bool) -> torch.Tensor:
    """The top-layer frames whose ``k`` following frames have arrived (all of them when ``final``)."""
    held = x if state.held is None else torch.cat([state.held, x], 1)
    ready = lookahead_ready(held.size(1), lookahead.frames, final)
    state.held = held[:, ready:]
    if ready == 0:
        return held[:, :0]
    return lookahead(held)[:, :ready]  # frames < ready have their successors in ``held`` (zeros past the end)


__all__ = ["Lookahead", "StreamState", "check_streamable", "lookahead_chunk", "pyramid_chunk", "run_recurrent",
           "subsample_chunk", "subsampling_spec"]
