"""``asrkit export``: a trained model as a bundle, the folder that ONNX Runtime runs without PyTorch
(its files are listed, and it is read and run, in ``asrkit.recognize.bundle``).

``export_bundle`` turns a checkpoint into that self-contained folder: the graphs
(``asrkit.model.onnx``; int8 with ``quantize``), the tokenizer, CMVN statistics,
the config and the manifest. It is written in a temporary folder beside ``--out``
and renamed at the end, so an interrupted export leaves no half bundle;
``load_bundle`` checks the manifest before anything runs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from asrkit import __version__
from asrkit.checkpoint import load_checkpoint, resolve_checkpoint
from asrkit.config import ExperimentConfig, config_from_dict, save_config
from asrkit.data.features import GlobalCMVN
from asrkit.digest import file_digest
from asrkit.errors import CheckpointError
from asrkit.model import build_model
from asrkit.model.onnx import OPSET, can_stream_export, export_ctc, export_decoder, export_stream, min_input_frames
from asrkit.recognize.bundle import FORMAT, MANIFEST, VERSION
from asrkit.tokenizer import from_checkpoint

QUANTIZE = ("int8",)


def export_bundle(checkpoint: str | Path, out: str | Path, opset: int = OPSET, quantize: str | None = None) -> Path:
    """Write the bundle of ``checkpoint`` (an exp dir or a .pt file) to ``out`` (which must not exist)."""
    if quantize is not None and quantize not in QUANTIZE:
        raise CheckpointError(f"--quantize must be one of {', '.join(QUANTIZE)}, not {quantize!r}")
    import onnx  # noqa: F401 - torch's exporter needs it (and the manifest ORT): a missing one is the
    import onnxruntime  # noqa: F401 - CLI's one line naming the extra, before anything is written
    out = Path(out)
    if out.exists():
        raise CheckpointError(f"{out} exists; export writes a new folder (remove it or choose another --out)")
    source = resolve_checkpoint(checkpoint)
    record = load_checkpoint(source)
    if record.features_external:
        raise CheckpointError(f"{source} was trained on foreign features (a feats.scp asrkit did not write); a "
                              "bundle computes its features from audio, which this model never saw")
    cfg = config_from_dict(record.config, str(source))
    model = build_model(record.feat_dim, record.vocab_size, cfg.model)
    model.load_state_dict(record.model_state)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        graphs = [export_ctc(model, tmp / "encoder.onnx", opset)]
        if model.decoder is not None:
            graphs += export_decoder(model, tmp, opset)
        stream = _export_stream(model, tmp, opset)
        graphs += [tmp / "encoder_stream.onnx"] if stream else []
        if quantize == "int8":
            for graph in graphs:
                _quantize(graph)
        from_checkpoint(record).save(tmp)
        GlobalCMVN.from_dict(record.cmvn).save(tmp / "cmvn.json")
        save_config(cfg, tmp / "config.yaml")
        _write_manifest(tmp, cfg, record, min_input_frames(model), opset, quantize, source, stream)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _export_stream(model, folder: Path, opset: int) -> dict | None:
    """A unidirectional model's streaming step (``encoder_stream.onnx``) and what the numpy runtime
    adds to it (``stream.npz``: the lookahead's and the CTC head's weights); None when it cannot stream."""
    import numpy as np

    if can_stream_export(model) is not None:
        return None
    from asrkit.model.onnx import stream_state_shapes
    from asrkit.model.streaming import subsampling_spec

    export_stream(model, folder / "encoder_stream.onnx", opset)
    weights = {"ctc_weight": model.ctc_head.weight.detach().numpy(), "ctc_bias": model.ctc_head.bias.detach().numpy()}
    if model.encoder.lookahead is not None:
        weights["lookahead"] = model.encoder.lookahead.weight.detach().numpy()
    np.savez(folder / "stream.npz", **weights)
    spec = subsampling_spec(model.encoder.subsampling)
    return {"factor": spec.factor, "stride": spec.stride, "min_frames": spec.min_frames,
            "states": [list(shape) for shape in stream_state_shapes(model)]}


def _quantize(path: Path) -> None:
    """Dynamic int8 quantization of the graph's matrix products (weights int8, activations on the fly)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = path.with_name(path.stem + ".fp32.onnx")
    path.rename(fp32)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process the graph is for convolutional image models
    try:
        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    fp32.unlink()


def _write_manifest(folder: Path, cfg: ExperimentConfig, record, min_frames: int, opset: int,
                    quantize: str | None, source: Path, stream: dict | None = None) -> None:
    import onnx
    import onnxruntime
    import torch

    files = {p.name: file_digest(p) for p in sorted(folder.iterdir()) if p.is_file()}
    manifest = {
        "format": FORMAT, "version": VERSION, "asrkit": __version__, "torch": torch.__version__,
        "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "opset": opset, "quantize": quantize,
        "source": str(source), "feat_dim": record.feat_dim, "vocab_size": record.vocab_size,
        "seconds_per_frame": cfg.feature.frame_shift_ms / 1000 * cfg.model.time_reduction,
        "min_frames": min_frames, "decoder": "decoder_step.onnx" in files, "stream": stream, "files": files,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


__all__ = ["QUANTIZE", "export_bundle"]
