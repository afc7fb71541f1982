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


def state_signature(state: StreamState, absolute: bool) -> tuple:
    """What streams must share to be stepped as one batch: their buffers' lengths, which states are
    still unset, whether they have emitted yet, and (``absolute``: strided convolutions, whose
    windows depend on the position) their positions. Frame stacking only needs the lengths."""
    def length(x):
        return -1 if x is None else x.shape[1]

    position = (state.consumed, state.emitted) if absolute else (state.emitted == 0,)
    return (length(state.pending), length(state.held), tuple(h is None for h in state.hidden),
            tuple(length(p) for p in state.paired), tuple(state.emitted_pairs) if state.paired else (), *position)


def _hidden_map(hidden, function):
    """``function`` over a recurrent module's state: an array, or a tuple of them (an LSTM's h and c)."""
    if hidden is None:
        return None
    return tuple(function(h) for h in hidden) if isinstance(hidden, tuple) else function(hidden)


def merge_states(states: list[StreamState], cat) -> StreamState:
    """One state for streams with equal ``state_signature``s: buffers joined on the batch axis (0;
    recurrent states: axis 1, (layers, B, H)); ``cat(arrays, axis)`` joins (numpy's or torch's)."""
    first = states[0]

    def join(items, axis):
        return None if items[0] is None else cat(list(items), axis)

    hidden = []
    for index, h in enumerate(first.hidden):
        parts = [s.hidden[index] for s in states]
        hidden.append(None if h is None else tuple(cat([p[k] for p in parts], 1) for k in range(len(h)))
                      if isinstance(h, tuple) else cat(parts, 1))
    return StreamState(join([s.pending for s in states], 0), first.consumed, first.emitted, hidden,
                       [join([s.paired[i] for s in states], 0) for i in range(len(first.paired))],
                       list(first.emitted_pairs), join([s.held for s in states], 0))


def split_state(merged: StreamState, before: list[StreamState]) -> list[StreamState]:
    """``merged`` (stepped) back into one state per stream; each stream's counters move as the
    merged ones did from ``before[0]``'s."""
    consumed, emitted = merged.consumed - before[0].consumed, merged.emitted - before[0].emitted
    pairs = [m - b for m, b in zip(merged.emitted_pairs, before[0].emitted_pairs)]
    out = []
    for row, old in enumerate(before):
        def take(x, axis=0):
            return None if x is None else (x[row:row + 1] if axis == 0 else x[:, row:row + 1])

        out.append(StreamState(take(merged.pending), old.consumed + consumed, old.emitted + emitted,
                               [_hidden_map(h, lambda a: take(a, 1)) for h in merged.hidden],
                               [take(p) for p in merged.paired],
                               [e + d for e, d in zip(old.emitted_pairs, pairs)], take(merged.held)))
    return out


def lookahead_ready(held: int, frames: int, final: bool) -> int:
    """How many of ``held`` top-layer frames have their ``frames`` successors (all at the end)."""
    return held if final else max(held - frames, 0)


__all__ = ["StreamState", "Subsampling", "conv_frames", "lookahead_ready", "merge_states", "split_state",
           "state_signature", "subsample_plan"]
