"""Export bundles: the folder ``asrkit export`` writes (``asrkit.recognize.export``), loaded and run
on ONNX Runtime without PyTorch::

    encoder.onnx    features and lengths in, CTC log-probs and lengths out (asrkit.model.onnx), and
                    the encoder output where the model has an attention decoder
    decoder_keys.onnx, decoder_step.onnx
                    the attention decoder (one teacher-forced step; ``OnnxDecoder`` loops), if any
    tokens.txt      the token table (and tokenizer.model for sentencepiece units)
    cmvn.json       global CMVN statistics
    config.yaml     the run's config (the feature config is what audio goes through)
    manifest.json   format and version, the versions that wrote it, the sha256 of every file,
                    the frame rate, the shortest input the graph takes

``load_bundle`` checks the manifest (format, version, every file and its
sha256) before anything runs. ``OnnxBackend`` is the bundle's acoustic
backend: features in, log-probs out, as ``asrkit.recognize.torch_backend``'s
``TorchBackend`` is a checkpoint's; the recognizer does the rest the same way
for both. Nothing here imports torch (a test runs it with torch unimportable).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asrkit.config import ExperimentConfig, load_config
from asrkit.data.features import GlobalCMVN
from asrkit.digest import file_digest
from asrkit.errors import CheckpointError, DecodeError
from asrkit.model.stream_plan import StreamState, Subsampling, lookahead_ready, subsample_plan
from asrkit.tokenizer import SOS_EOS, Tokenizer, load_tokenizer

FORMAT = "asrkit-bundle"
VERSION = 1
MANIFEST = "manifest.json"


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis (the runtime's CTC head and decoder steps)."""
    top = logits.max(-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))


def is_bundle(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


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
    (log_probs (B, T', V), out_lens (B,), enc) as numpy arrays, the CMVN-normalised features in;
    with what the recognizer needs besides (config, tokenizer, CMVN, the attention ``decoder``)."""

    external_features = False  # a bundle computes its features from audio
    model = None  # no torch model

    def __init__(self, bundle: Bundle, threads: int = 0) -> None:
        self.path, self.config, self.tokenizer, self.cmvn = bundle.path, bundle.config, bundle.tokenizer, bundle.cmvn
        self.session = _session(bundle.path / "encoder.onnx", threads)
        self.min_frames = int(bundle.manifest["min_frames"])
        self.decoder = OnnxDecoder(bundle, threads) if bundle.manifest.get("decoder") else None
        self.stream = OnnxStream(bundle, threads) if bundle.manifest.get("stream") else None
        if len(self.tokenizer) != int(bundle.manifest["vocab_size"]):
            raise CheckpointError(f"{bundle.path}: token table has {len(self.tokenizer)} entries, the graph "
                                  f"{bundle.manifest['vocab_size']}")

    @classmethod
    def open(cls, path: str | Path, threads: int = 0) -> "OnnxBackend":
        return cls(load_bundle(path), threads)

    def run(self, feats: np.ndarray, feat_lens: np.ndarray):
        """(log_probs, out_lens, enc or None): enc, the encoder output, where the bundle has a decoder."""
        if feats.shape[1] < self.min_frames:  # what the eager encoder does for itself
            feats = np.pad(feats, ((0, 0), (0, self.min_frames - feats.shape[1]), (0, 0)))
        outputs = self.session.run(None, {"feats": np.ascontiguousarray(feats, dtype=np.float32),
                                          "feat_lens": np.asarray(feat_lens, dtype=np.int64)})
        return outputs[0], outputs[1], outputs[2] if len(outputs) > 2 else None


    # ------------------------------------------------------------------ streaming (as TorchBackend's)
    def stream_start(self) -> StreamState:
        if self.stream is None:
            raise DecodeError(f"{self.path} has no streaming graph: its encoder is bidirectional, Jordan's or a "
                              "pyramid, or it was exported before streaming bundles")
        return self.stream.start()

    def stream_step(self, feats: np.ndarray, state: StreamState, final: bool):
        """(log_probs (t', V), encoder frames (1, t', D), state) of the frames ``feats`` (t, F) complete."""
        log_probs, top, state = self.stream.step(np.asarray(feats, np.float32)[None], state, final)
        return log_probs[0], top, state

    def stream_step_many(self, feats: np.ndarray, state: StreamState, final: bool):
        """``stream_step`` for B streams in one state: feats (B, t, F); log_probs (B, t', V)."""
        return self.stream.step(np.asarray(feats, np.float32), state, final)

    @property
    def absolute_position(self) -> bool:
        return self.stream is not None and self.stream.spec.factor is None

    @staticmethod
    def cat(parts: list, axis: int):
        return np.concatenate(parts, axis)

    @staticmethod
    def concat_enc(parts: list) -> np.ndarray:
        return np.concatenate(parts, 1)


class OnnxStream:
    """A bundle's streaming encoder: ``encoder_stream.onnx`` (subsampling and recurrent layers, the
    states in and out) between numpy steps planned as the torch model plans them
    (``model.stream_plan``): the subsampling's buffer, the lookahead and the CTC head."""

    def __init__(self, bundle: Bundle, threads: int = 0) -> None:
        info = bundle.manifest["stream"]
        self.session = _session(bundle.path / "encoder_stream.onnx", threads)
        self.spec = Subsampling(info["factor"], info["stride"], info["min_frames"])
        self.states = [tuple(shape) for shape in info["states"]]
        with np.load(bundle.path / "stream.npz") as weights:
            self.ctc_weight, self.ctc_bias = weights["ctc_weight"], weights["ctc_bias"]
            self.lookahead = weights["lookahead"] if "lookahead" in weights else None
        self.feat_dim = int(bundle.manifest["feat_dim"])

    def start(self) -> StreamState:
        return StreamState(np.zeros((1, 0, self.feat_dim), np.float32),
                           hidden=[np.zeros((layers, 1, hidden), np.float32) for layers, hidden in self.states])

    def step(self, feats: np.ndarray, state: StreamState, final: bool):
        """feats (B, t, F) of the B streams of ``state``: (log_probs (B, t', V), top frames, state)."""
        frames = np.concatenate([state.pending, feats], 1)
        ready, window, keep = subsample_plan(self.spec, state, frames.shape[1], final)
        state.pending, state.consumed, state.emitted = frames[:, keep:], state.consumed + keep, state.emitted + ready
        top = np.zeros((len(frames), 0, self.ctc_weight.shape[1]), np.float32)
        if ready:
            window_frames = frames[:, :window]
            if window_frames.shape[1] < window:
                window_frames = np.pad(window_frames, ((0, 0), (0, window - window_frames.shape[1]), (0, 0)))
            inputs = {"feats": np.ascontiguousarray(window_frames)}
            inputs.update({f"state_{i}": h for i, h in enumerate(state.hidden)})
            top, *state.hidden = self.session.run(None, inputs)
            top = top[:, :ready]
        if self.lookahead is not None:
            top = self._lookahead(top, state, final)
        logits = top @ self.ctc_weight.T + self.ctc_bias
        return log_softmax(logits).astype(np.float32), top, state

    def _lookahead(self, top: np.ndarray, state: StreamState, final: bool) -> np.ndarray:
        """DeepSpeech 2's lookahead over the held top-layer frames (``model.streaming.Lookahead``)."""
        held = top if state.held is None else np.concatenate([state.held, top], 1)
        k = self.lookahead.shape[1] - 1
        ready = lookahead_ready(held.shape[1], k, final)
        state.held = held[:, ready:]
        padded = np.pad(held, ((0, 0), (0, k), (0, 0)))  # zeros past the end, as the full pass sees
        return sum(padded[:, j:j + ready] * self.lookahead[:, j] for j in range(k + 1)).astype(np.float32)


class OnnxDecoder:
    """A bundle's attention decoder: ``score_sequences`` as ``AttentionDecoder``'s (the
    ``SequenceScorer`` rescoring calls), the teacher-forced steps looped over here in numpy, so
    that hypotheses of any length run on one graph."""

    def __init__(self, bundle: Bundle, threads: int = 0) -> None:
        self.keys = _session(bundle.path / "decoder_keys.onnx", threads)
        self.step = _session(bundle.path / "decoder_step.onnx", threads)
        self.hidden = next(i.shape[1] for i in self.step.get_inputs() if i.name == "h")
        self.memory = any(i.name == "enc_lens" for i in self.keys.get_inputs())  # model.decoder_memory_layers

    def score_sequences(self, enc: np.ndarray, enc_lens: np.ndarray, rows: list[int],
                        tokens: list[list[int]]) -> np.ndarray:
        """log P(tokens[i] + <eos> | enc[rows[i]]) for every i."""
        enc_all = np.ascontiguousarray(np.asarray(enc), dtype=np.float32)
        lens_all = np.asarray(enc_lens, dtype=np.int64)
        if self.memory:  # the second pass, once per utterance: what the steps read, and its keys
            memory, keys = self.keys.run(None, {"enc": enc_all, "enc_lens": np.maximum(lens_all, 1)})
        else:
            memory, (keys,) = enc_all, self.keys.run(None, {"enc": enc_all})
        enc_np, keys, lens = memory[rows], keys[rows], lens_all[rows]
        count, frames, dim = enc_np.shape
        longest = max(len(t) for t in tokens)
        ys_in = np.full((count, longest + 1), SOS_EOS, dtype=np.int64)  # <sos> + y (then <sos> padding)
        ys_out = np.full((count, longest + 1), -1, dtype=np.int64)  # y + <eos> (then -1: not scored)
        for i, seq in enumerate(tokens):
            ys_in[i, 1:len(seq) + 1] = seq
            ys_out[i, :len(seq)] = seq
            ys_out[i, len(seq)] = SOS_EOS
        mask = np.arange(frames)[None, :] < lens[:, None]
        state = {"h": np.zeros((count, self.hidden), np.float32), "c": np.zeros((count, self.hidden), np.float32),
                 "context": np.zeros((count, dim), np.float32),
                 "weights": (mask / np.maximum(lens, 1)[:, None]).astype(np.float32)}  # uniform start, as in torch
        total = np.zeros(count, dtype=np.float64)
        for step in range(ys_in.shape[1]):
            logits, state["h"], state["c"], state["context"], state["weights"] = self.step.run(
                None, {"enc": enc_np, "keys": keys, "mask": mask, "token": ys_in[:, step], **state})
            log_probs = log_softmax(logits.astype(np.float64))
            target = ys_out[:, step]
            total += np.where(target >= 0, log_probs[np.arange(count), np.maximum(target, 0)], 0.0)
        return total


__all__ = ["FORMAT", "MANIFEST", "VERSION", "Bundle", "OnnxBackend", "OnnxDecoder", "is_bundle", "load_bundle"]
