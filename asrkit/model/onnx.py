"""The acoustic model as an ONNX graph: features and lengths in, CTC log-probs and lengths out.

The graph is traced from the CPU path of the encoder: torch's recurrent layers
one layer and direction at a time on the padded batch, the backward direction
over each utterance reversed within its own length (``model.recurrent``).
That path has no packing, so a batch with unsorted lengths of any spread runs
as it does in torch (``pack_padded_sequence`` graphs are the classic way to
break an RNN export). Batch and time are dynamic.

The exporter is torch's TorchScript-based one (``dynamo=False``): the dynamo
exporter, the default of recent torch, has been reported to write ``nn.GRU``
with the wrong ``linear_before_reset``, a silent error of up to 14% on the
outputs; the TorchScript exporter writes it right, and the parity test
(tests/test_export.py) holds it to torch's log-probs.

A Jordan layer is a Python loop over time, which a trace would freeze to the
length it saw: it is refused.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from asrkit.errors import CheckpointError
from asrkit.model.asr_model import AsrModel
from asrkit.model.decoder import AttentionDecoder
from asrkit.model.jordan import JordanLayer, JordanRNN

OPSET = 17


class _CtcGraph(nn.Module):
    """forward(feats: (B, T, F), feat_lens: (B,)) -> (log_probs: (B, T', V), out_lens: (B,)[, enc: (B, T', D)]),
    on the CPU path; the encoder output too when the model has a decoder (rescoring reads it)."""

    def __init__(self, model: AsrModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor):
        enc, out_lens = self.model.encode(feats, feat_lens)
        if self.model.decoder is None:
            return self.model.ctc_log_probs(enc), out_lens
        return self.model.ctc_log_probs(enc), out_lens, enc


class _DecoderKeys(nn.Module):
    """forward(enc: (N, T, D)) -> keys: (N, T, A), the attention's projection of the encoder output,
    computed once per batch of hypotheses; with a decoder memory forward(enc, enc_lens) -> (memory
    (N, T, M), keys): the second pass over each utterance, then its projection."""

    def __init__(self, decoder: AttentionDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, enc: torch.Tensor, enc_lens: torch.Tensor | None = None):
        if self.decoder.memory is None:
            return self.decoder.attention.enc_proj(enc)
        memory = self.decoder.memory(enc, enc_lens)
        return memory, self.decoder.attention.enc_proj(memory)


class _DecoderStep(nn.Module):
    """One step of the attention decoder under teacher forcing, as ``AttentionDecoder.forward`` takes
    it: (enc, keys, mask, token, h, c, context, weights) -> (logits (N, V), h, c, context, weights)."""

    def __init__(self, decoder: AttentionDecoder) -> None:
        super().__init__()
        self.decoder = copy.deepcopy(decoder)
        self.decoder.attention.fold_location = False  # the same sums, in a form ONNX holds (no dynamic unfold)

    def forward(self, enc, keys, mask, token, h, c, context, weights):
        decoder = self.decoder
        h, c = decoder.cell(torch.cat([decoder.embed(token), context], -1), (h, c))
        context, weights = decoder.attention(enc, keys, mask, h, weights)
        return decoder.output(torch.cat([h, context], -1)), h, c, context, weights


class _StreamStep(nn.Module):
    """One streaming step of a unidirectional encoder: a window of input frames that the subsampling
    turns into whole output frames (planned by ``model.streaming.subsample_plan``) and the recurrent
    states in; the top layer's frames (before the lookahead) and the new states out. The buffering
    between steps, the lookahead and the CTC head run in the bundle's numpy runtime."""

    def __init__(self, model: AsrModel) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.lstm = isinstance(self.modules_[0], nn.LSTM)

    @property
    def modules_(self) -> list[nn.Module]:
        return [self.encoder.rnn] if self.encoder.rnn is not None else list(self.encoder.layers)

    def forward(self, feats: torch.Tensor, *states: torch.Tensor):
        x, _ = self.encoder.subsampling(feats, torch.full((feats.size(0),), feats.size(1)))
        per = 2 if self.lstm else 1
        out_states: list[torch.Tensor] = []
        for index, module in enumerate(self.modules_):
            hidden = states[per * index:per * index + per]
            x, new = module(x, tuple(hidden) if self.lstm else hidden[0])
            out_states.extend(new if self.lstm else (new,))
            projections = self.encoder.projections
            if projections is not None and index < len(projections):
                x = torch.tanh(projections[index](x))
        return (x, *out_states)


def stream_state_shapes(model: AsrModel) -> list[tuple[int, int]]:
    """(layers, hidden) of each state input of the stream graph, in order (h, then c for an LSTM)."""
    encoder = model.encoder
    modules = [encoder.rnn] if encoder.rnn is not None else list(encoder.layers)
    per = 2 if isinstance(modules[0], nn.LSTM) else 1
    return [(m.num_layers, m.hidden_size) for m in modules for _ in range(per)]


def can_stream_export(model: AsrModel) -> str | None:
    """Why ``model`` has no streaming graph (None: it has one)."""
    encoder = model.encoder
    modules = [encoder.rnn] if encoder.rnn is not None else list(encoder.layers)
    if is_jordan(model) or any(getattr(m, "bidirectional", False) for m in modules):
        return "a bidirectional or Jordan encoder cannot stream"
    if encoder.pyramid_layers:
        return "a pyramid encoder streams from its checkpoint only (its chunk boundaries carry between layers)"
    return None


def export_stream(model: AsrModel, path: str | Path, opset: int = OPSET) -> Path:
    """Write the streaming step of a unidirectional encoder (``_StreamStep``) at ``path``: inputs
    ``feats`` (B, t, F) and ``state_0``.., outputs ``top`` (B, t', D) and ``state_0_out``..."""
    model = model.cpu().eval()
    frames = max(4 * min_input_frames(model), 40)
    shapes = stream_state_shapes(model)
    states = tuple(torch.randn(layers, 2, hidden) * 0.1 for layers, hidden in shapes)
    names = [f"state_{i}" for i in range(len(shapes))]
    axes = {"feats": {0: "batch", 1: "frames"}, "top": {0: "batch", 1: "out_frames"},
            **{name: {1: "batch"} for name in names}, **{f"{name}_out": {1: "batch"} for name in names}}
    _export(_StreamStep(model), (torch.randn(2, frames, model.feat_dim), *states), Path(path), ["feats", *names],
            ["top", *(f"{name}_out" for name in names)], axes, opset)
    return Path(path)


def min_input_frames(model: AsrModel) -> int:
    """The shortest input the graph takes: the eager encoder pads shorter inputs itself, with a branch
    a trace cannot keep, so the runtime pads them to this length before it calls the graph."""
    subsampling = model.encoder.subsampling
    return getattr(subsampling, "min_frames", getattr(subsampling, "factor", 1))


def is_jordan(model: AsrModel) -> bool:
    encoder = model.encoder
    return isinstance(encoder.rnn, JordanRNN) or any(isinstance(layer, JordanLayer) for layer in encoder.layers or [])


def export_ctc(model: AsrModel, path: str | Path, opset: int = OPSET) -> Path:
    """Write ``model``'s encoder and CTC head as one ONNX graph at ``path`` (inputs ``feats`` float32
    (B, T, F) and ``feat_lens`` int64 (B,); outputs ``log_probs`` (B, T', V) and ``out_lens`` (B,))."""
    if is_jordan(model):
        raise CheckpointError("a Jordan encoder cannot be exported: its recurrence is a Python loop over time, "
                              "which an ONNX trace would freeze to one input length")
    model = model.cpu().eval()
    frames = max(4 * min_input_frames(model), 40)
    feats = torch.randn(2, frames, model.feat_dim)
    feat_lens = torch.tensor([frames, frames // 2])
    path = Path(path)
    outputs = ["log_probs", "out_lens"] + (["enc"] if model.decoder is not None else [])
    axes = {"feats": {0: "batch", 1: "frames"}, "feat_lens": {0: "batch"}, "log_probs": {0: "batch", 1: "out_frames"},
            "out_lens": {0: "batch"}, "enc": {0: "batch", 1: "out_frames"}}
    _export(_CtcGraph(model), (feats, feat_lens), path, ["feats", "feat_lens"], outputs, axes, opset)
    return path


def export_decoder(model: AsrModel, folder: str | Path, opset: int = OPSET) -> list[Path]:
    """Write the attention decoder as two graphs in ``folder``: ``decoder_keys.onnx`` (enc -> keys; with
    a decoder memory, enc and its lengths -> memory and keys) and
    ``decoder_step.onnx`` (one teacher-forced step); the runtime loops over the steps
    (``asrkit.recognize.bundle.OnnxDecoder``), so hypotheses of any length run on one graph."""
    decoder = model.decoder.cpu().eval()
    folder = Path(folder)
    hypotheses, frames = 3, 11
    enc = torch.randn(hypotheses, frames, model.encoder.output_dim)
    enc_lens = torch.tensor([11, 7, 3])
    by_frames = {0: "hypotheses", 1: "frames"}
    if decoder.memory is None:
        _export(_DecoderKeys(decoder), (enc,), folder / "decoder_keys.onnx", ["enc"], ["keys"],
                {"enc": by_frames, "keys": by_frames}, opset)
    else:  # the step reads the memory where it would read the encoder output
        _export(_DecoderKeys(decoder), (enc, enc_lens), folder / "decoder_keys.onnx", ["enc", "enc_lens"],
                ["memory", "keys"], {"enc": by_frames, "enc_lens": {0: "hypotheses"}, "memory": by_frames,
                                     "keys": by_frames}, opset)
        with torch.no_grad():
            enc = decoder.memory(enc, enc_lens)
    enc_dim = enc.size(2)
    keys = decoder.attention.enc_proj(enc).detach()
    mask = torch.arange(frames)[None, :] < enc_lens[:, None]
    hidden = decoder.cell.hidden_size
    state = (torch.zeros(hypotheses, hidden), torch.zeros(hypotheses, hidden), torch.zeros(hypotheses, enc_dim),
             mask.float() / mask.sum(1, keepdim=True))
    step_inputs = ["enc", "keys", "mask", "token", "h", "c", "context", "weights"]
    step_outputs = ["logits", "h_out", "c_out", "context_out", "weights_out"]
    by_hypothesis = {name: {0: "hypotheses"} for name in step_inputs + step_outputs}
    for name in ("enc", "keys", "mask", "weights", "weights_out"):
        by_hypothesis[name] = {0: "hypotheses", 1: "frames"}
    _export(_DecoderStep(decoder), (enc, keys, mask, torch.zeros(hypotheses, dtype=torch.long), *state),
            folder / "decoder_step.onnx", step_inputs, step_outputs, by_hypothesis, opset)
    return [folder / "decoder_keys.onnx", folder / "decoder_step.onnx"]


def _export(module: nn.Module, inputs: tuple, path: Path, input_names: list[str], output_names: list[str],
            axes: dict, opset: int) -> None:
    axes = {name: value for name, value in axes.items() if name in input_names + output_names}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on traced shapes and its own deprecation
        torch.onnx.export(module, inputs, str(path), dynamo=False, opset_version=opset, input_names=input_names,
                          output_names=output_names, dynamic_axes=axes)


__all__ = ["OPSET", "can_stream_export", "export_ctc", "export_decoder", "export_stream", "min_input_frames",
           "stream_state_shapes"]
