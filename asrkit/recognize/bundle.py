"""Export bundles: a trained model as a folder that ONNX Runtime runs, and its acoustic backend.

``export_bundle`` turns a checkpoint into a self-contained folder::

    encoder.onnx    features and lengths in, CTC log-probs and lengths out (asrkit.model.onnx), and
                    the encoder output where the model has an attention decoder
    decoder_keys.onnx, decoder_step.onnx
                    the attention decoder (one teacher-forced step; ``OnnxDecoder`` loops), if any
    tokens.txt      the token table (and tokenizer.model for sentencepiece units)
    cmvn.json       global CMVN statistics
    config.yaml     the run's config (the feature config is what audio goes through)
    manifest.json   format and version, the versions that wrote it, the sha256 of every file,
                    the frame rate, the shortest input the graph takes

It is written in a temporary folder beside ``--out`` and renamed at the end, so
an interrupted export leaves no half bundle. ``load_bundle`` checks the
manifest (format, version, every file and its sha256) before anything runs.
``OnnxBackend`` is the bundle's acoustic backend: features in, log-probs out;
the recognizer does the rest as it does for a checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asrkit import __version__
from asrkit.checkpoint import load_checkpoint, resolve_checkpoint
from asrkit.config import ExperimentConfig, config_from_dict, load_config, save_config
from asrkit.data.features import GlobalCMVN
from asrkit.digest import file_digest
from asrkit.errors import CheckpointError
from asrkit.model import build_model
from asrkit.model.onnx import OPSET, export_ctc, export_decoder, min_input_frames
from asrkit.tokenizer import Tokenizer, from_checkpoint, load_tokenizer

FORMAT = "asrkit-bundle"
VERSION = 1
MANIFEST = "manifest.json"
QUANTIZE = ("int8",)


def is_bundle(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def export_bundle(checkpoint: str | Path, out: str | Path, opset: int = OPSET, quantize: str | None = None) -> Path:
    """Write the bundle of ``checkpoint`` (an exp dir or a .pt file) to ``out`` (which must not exist)."""
    if quantize is not None and quantize not in QUANTIZE:
        raise CheckpointError(f"--quantize must be one of {', '.join(QUANTIZE)}, not {quantize!r}")
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
        if quantize == "int8":
            for graph in graphs:
                _quantize(graph)
        from_checkpoint(record).save(tmp)
        GlobalCMVN.from_dict(record.cmvn).save(tmp / "cmvn.json")
        save_config(cfg, tmp / "config.yaml")
        _write_manifest(tmp, cfg, record, min_input_frames(model), opset, quantize, source)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


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
                    quantize: str | None, source: Path) -> None:
    import onnx
    import onnxruntime
    import torch

    files = {p.name: file_digest(p) for p in sorted(folder.iterdir()) if p.is_file()}
    manifest = {
        "format": FORMAT, "version": VERSION, "asrkit": __version__, "torch": torch.__version__,
        "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "opset": opset, "quantize": quantize,
        "source": str(source), "feat_dim": record.feat_dim, "vocab_size": record.vocab_size,
        "seconds_per_frame": cfg.feature.frame_shift_ms / 1000 * cfg.model.time_reduction,
        "min_frames": min_frames, "decoder": "decoder_step.onnx" in files, "files": files,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


@dataclass
class Bundle:
    path: Path
    manifest: dict
    config: ExperimentConfig
    tokenizer: Tokenizer
    cmvn: GlobalCMVN


def load_bundle(path: str | Path) -> Bundle:
    """A bundle, checked: its manifest's format and version, and every file it lists, with its sha256
    (a one-line ``CheckpointError`` naming what is wrong)."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path / MANIFEST}: not a readable bundle manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path / MANIFEST}: not an asrkit bundle (no '{FORMAT}' format)")
    version = manifest.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path} is a bundle of format version {version}; this asrkit reads up to {VERSION} "
                              "(upgrade asrkit)")
    for name, digest in manifest.get("files", {}).items():
        if not (path / name).is_file():
            raise CheckpointError(f"{path}: {name} is missing (the manifest lists it)")
        if file_digest(path / name) != digest:
            raise CheckpointError(f"{path / name}: its sha256 is not the manifest's (changed or damaged)")
    return Bundle(path, manifest, load_config(path / "config.yaml", saved=True), load_tokenizer(path),
                  GlobalCMVN.load(path / "cmvn.json"))


def _session(path: Path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
    # its worker threads sleep between calls instead of spinning: the features and the search run in
    # between on the same cores, and spinning threads took them (2 threads on 2 cores: 0.6x torch)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxBackend:
    """A bundle's acoustic model on ONNX Runtime: ``run(feats (B, T, F), feat_lens (B,))`` ->
    (log_probs (B, T', V), out_lens (B,)) as numpy arrays, the CMVN-normalised features in."""

    def __init__(self, bundle: Bundle, threads: int = 0) -> None:
        self.session = _session(bundle.path / "encoder.onnx", threads)
        self.min_frames = int(bundle.manifest["min_frames"])

    def run(self, feats: np.ndarray, feat_lens: np.ndarray):
        """(log_probs, out_lens, enc or None): enc, the encoder output, where the bundle has a decoder."""
        if feats.shape[1] < self.min_frames:  # what the eager encoder does for itself
            feats = np.pad(feats, ((0, 0), (0, self.min_frames - feats.shape[1]), (0, 0)))
        outputs = self.session.run(None, {"feats": np.ascontiguousarray(feats, dtype=np.float32),
                                          "feat_lens": np.asarray(feat_lens, dtype=np.int64)})
        return outputs[0], outputs[1], outputs[2] if len(outputs) > 2 else None


class OnnxDecoder:
    """A bundle's attention decoder with ``AttentionDecoder``'s teacher-forcing call:
    ``(enc (N, T, D), enc_lens (N,), ys_in (N, L)) -> logits (N, L, V)`` (torch tensors), the
    steps looped over here, so that ``asrkit.search.rescore.attention_rescore`` takes it as it is."""

    def __init__(self, bundle: Bundle, threads: int = 0) -> None:
        self.keys = _session(bundle.path / "decoder_keys.onnx", threads)
        self.step = _session(bundle.path / "decoder_step.onnx", threads)
        self.hidden = next(i.shape[1] for i in self.step.get_inputs() if i.name == "h")

    def __call__(self, enc, enc_lens, ys_in):
        import torch

        enc_np = enc.detach().float().cpu().numpy()
        lens = enc_lens.cpu().numpy()
        count, frames, dim = enc_np.shape
        (keys,) = self.keys.run(None, {"enc": enc_np})
        mask = np.arange(frames)[None, :] < lens[:, None]
        state = {"h": np.zeros((count, self.hidden), np.float32), "c": np.zeros((count, self.hidden), np.float32),
                 "context": np.zeros((count, dim), np.float32),
                 "weights": (mask / np.maximum(lens, 1)[:, None]).astype(np.float32)}  # uniform start, as in torch
        tokens = ys_in.cpu().numpy().astype(np.int64)
        logits = []
        for step in range(tokens.shape[1]):
            out, state["h"], state["c"], state["context"], state["weights"] = self.step.run(
                None, {"enc": enc_np, "keys": keys, "mask": mask, "token": tokens[:, step], **state})
            logits.append(out)
        return torch.from_numpy(np.stack(logits, 1))


__all__ = ["Bundle", "OnnxBackend", "OnnxDecoder", "export_bundle", "is_bundle", "load_bundle"]
