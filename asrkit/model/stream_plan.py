"""The integer side of streaming, without torch: what a stream carries between chunks, and how many
input frames the subsampling can turn into output frames now. ``model.streaming`` (the torch model)
and a bundle's numpy runtime (``recognize.bundle``) plan their chunks with these same functions."""

from __future__ import annotations

from dataclasses import dataclass, field


def conv_frames(lens, factor: int):
    """Frames out of ``log2(factor)`` convolutions of kernel 3 and stride 2 without padding, for
    ``lens`` frames in (an int or a tensor): (T - 1) // 2 per layer, before any "at least one"
    (the rule of ``encoder.Conv2dSubsampling``, which uses it too)."""
    for _ in range(factor.bit_length() - 1):
        lens = (lens - 1) // 2
    return lens


@dataclass(frozen=True)
class Subsampling:
    """What planning needs of the subsampling: frame stacking (``factor``) or strided convolutions
    (``stride`` = 2^layers, output t reading inputs stride*t .. stride*t + min_frames - 1)."""

    factor: int | None = None  # frame stacking
    stride: int = 1  # conv2d
    min_frames: int = 1

    def output_frames(self, total: int) -> int:
        """Output frames of ``total`` input frames (conv2d: (T - 1) // 2 per layer, at least 1)."""
        if self.factor is not None:
            return max(total // self.factor, 1)
        return max(conv_frames(total, self.stride), 1)


@dataclass
class StreamState:
    """Everything a stream carries from one chunk to the next (arrays of the caller's kind)."""

    pending: object  # (B, P, F) input frames the subsampling has not turned into output yet
    consumed: int = 0  # input frames before ``pending`` (conv2d: where the next window starts)
    emitted: int = 0  # subsampled frames produced so far
    hidden: list = field(default_factory=list)  # per recurrent module: its state; None before the first
    paired: list = field(default_factory=list)  # per pyramid layer: its odd frame (B, 1, D), or None
    emitted_pairs: list = field(default_factory=list)  # per pyramid layer: frames it has produced
    held: object = None  # the top layer's last frames, waiting for the lookahead's future


def subsample_plan(spec: Subsampling, state: StreamState, waiting: int, final: bool) -> tuple[int, int, int]:
    """(ready, window, keep) for ``waiting`` frames in the buffer: how many output frames they
    complete, how many of them (from the first) to feed the subsampling (padded with zeros to that
    length where the full pass pads a short utterance), and how many the next chunk no longer needs."""
    total = state.consumed + waiting  # input frames seen in all
    if spec.factor is not None:  # frame stacking: whole groups of ``factor``
        ready = waiting // spec.factor
        if final and state.emitted == 0 and ready == 0 and waiting > 0:
            return 1, spec.factor, waiting  # as the full pass pads a short utterance
        return ready, ready * spec.factor, ready * spec.factor
    available = spec.output_frames(total) if total >= spec.min_frames else 0
    if final and state.emitted == 0 and available == 0 and total > 0:
        return 1, spec.min_frames, waiting  # the full pass pads a short utterance to one output frame
    ready = max(available - state.emitted, 0)
    if ready == 0:
        return 0, 0, 0
    return ready, spec.stride * (ready - 1) + spec.min_frames, spec.stride * ready


def lookahead_ready(held: int, frames: int, final: bool) -> int:
    """How many of ``held`` top-layer frames have their ``frames`` successors (all at the end)."""
    return held if final else max(held - frames, 0)


__all__ = ["StreamState", "Subsampling", "conv_frames", "lookahead_ready", "subsample_plan"]
