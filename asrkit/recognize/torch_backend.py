"""A checkpoint's acoustic model in PyTorch: the recognizer's backend when it is given a checkpoint
(an export bundle gets ``asrkit.recognize.bundle.OnnxBackend`` instead; both turn features into
log-probs, and the recognizer does everything else the same way for both)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from asrkit.checkpoint import load_checkpoint, resolve_checkpoint
from asrkit.config import config_from_dict
from asrkit.data.features import GlobalCMVN
from asrkit.errors import CheckpointError, DataDirError
from asrkit.model import build_model
from asrkit.tokenizer import from_checkpoint


class TorchBackend:
    """The model, tokenizer and CMVN of one checkpoint (an exp dir or a .pt file) on ``device``:
    ``run(feats (B, T, F), feat_lens (B,))`` -> (log_probs (B, T', V) and out_lens (B,) as numpy
    arrays, the encoder output as a tensor on the device, for the attention ``decoder``)."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu", threads: int = 0) -> None:
        if threads > 0:  # torch's are per process: a server process runs one model
            torch.set_num_threads(threads)
        self.path = resolve_checkpoint(checkpoint)
        record = load_checkpoint(self.path)
        try:
            self.config = config_from_dict(record.config, str(self.path))
            self.tokenizer = from_checkpoint(record)
            self.cmvn = GlobalCMVN.from_dict(record.cmvn)
            self.model = build_model(record.feat_dim, record.vocab_size, self.config.model)
            self.model.load_state_dict(record.model_state)
        except (DataDirError, CheckpointError) as exc:
            raise CheckpointError(f"{self.path}: {exc}") from None
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{self.path}: incomplete or mismatched checkpoint "
                                  f"({str(exc).splitlines()[0][:160]})") from None
        # trained on a feats.scp asrkit did not write (e.g. Kaldi's): it cannot make them from audio
        self.external_features = record.features_external
        if len(self.tokenizer) != self.model.vocab_size:
            raise CheckpointError(f"{self.path}: token table has {len(self.tokenizer)} entries, "
                                  f"model {self.model.vocab_size}")
        self.device = torch.device(device)
        self.model.to(self.device).eval()

    @property
    def decoder(self):
        return self.model.decoder

    @torch.no_grad()
    def run(self, feats: np.ndarray, feat_lens: np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).to(self.device)
        enc, out_lens = self.model.encode(x, torch.as_tensor(np.asarray(feat_lens), device=self.device))
        log_probs = self.model.ctc_log_probs(enc)
        return log_probs.float().cpu().numpy(), out_lens.cpu().numpy(), enc


    # ------------------------------------------------------------------ streaming (as OnnxBackend's)
    def stream_start(self):
        return self.model.init_state(1)

    def stream_step(self, feats: np.ndarray, state, final: bool):
        """(log_probs (t', V), encoder frames (1, t', D), state) of the frames ``feats`` (t, F) complete."""
        log_probs, enc, state = self.stream_step_many(np.asarray(feats)[None], state, final)
        return log_probs[0], enc, state

    @torch.no_grad()
    def stream_step_many(self, feats: np.ndarray, state, final: bool):
        """``stream_step`` for B streams in one state (``stream_plan.merge_states``): feats (B, t, F);
        log_probs (B, t', V)."""
        x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).to(self.device)
        enc, state = self.model.encoder.forward_chunk(x, state, final)
        return self.model.ctc_log_probs(enc).float().cpu().numpy(), enc, state

    @property
    def absolute_position(self) -> bool:
        """Whether a stream's chunks depend on its position (strided convolutions), not only its buffers."""
        return getattr(self.model.encoder.subsampling, "factor", None) is None

    @staticmethod
    def cat(parts: list, axis: int):
        return torch.cat(parts, axis)

    @staticmethod
    def concat_enc(parts: list):
        return torch.cat(parts, 1)


__all__ = ["TorchBackend"]
