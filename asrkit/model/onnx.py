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

import warnings
from pathlib import Path

import torch
from torch import nn

from asrkit.errors import CheckpointError
from asrkit.model.asr_model import AsrModel
from asrkit.model.jordan import JordanLayer, JordanRNN

OPSET = 17


class _CtcGraph(nn.Module):
    """forward(feats: (B, T, F), feat_lens: (B,)) -> (log_probs: (B, T', V), out_lens: (B,)), on the CPU path."""

    def __init__(self, model: AsrModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_probs, out_lens = self.model(feats, feat_lens)
        return log_probs, out_lens


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
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on traced shapes and its own deprecation
        torch.onnx.export(_CtcGraph(model), (feats, feat_lens), str(path), dynamo=False, opset_version=opset,
                          input_names=["feats", "feat_lens"], output_names=["log_probs", "out_lens"],
                          dynamic_axes={"feats": {0: "batch", 1: "frames"}, "feat_lens": {0: "batch"},
                                        "log_probs": {0: "batch", 1: "out_frames"}, "out_lens": {0: "batch"}})
    return path


__all__ = ["OPSET", "export_ctc", "min_input_frames"]
