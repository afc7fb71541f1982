"""Loading a trained model from its checkpoint alone, and running it on audio or data dirs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asrkit.audio import load_audio
from asrkit.checkpoint import load_checkpoint, resolve_checkpoint
from asrkit.config import config_from_dict
from asrkit.datadir import DataDir
from asrkit.decode import Hypothesis, greedy_search
from asrkit.errors import CheckpointError
from asrkit.features import GlobalCMVN, compute_features, get_features
from asrkit.model import build_model
from asrkit.progress import track
from asrkit.tokenizer import CharTokenizer


@dataclass
class Result:
    key: str
    text: str
    hypothesis: Hypothesis


class Recognizer:
    """Everything needed to decode, rebuilt from one checkpoint: no model flags repeated."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu") -> None:
        self.path = resolve_checkpoint(checkpoint)
        blob = load_checkpoint(self.path)
        try:
            self.config = config_from_dict(blob["config"], str(self.path))
            self.tokenizer = CharTokenizer(list(blob["tokens"]))
            self.cmvn = GlobalCMVN.from_dict(blob["cmvn"])
            self.model = build_model(int(blob["feat_dim"]), int(blob["vocab_size"]), self.config.model)
            self.model.load_state_dict(blob["model_state"])
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{self.path}: incomplete or mismatched checkpoint ({str(exc).splitlines()[0][:160]})") from None
        if len(self.tokenizer) != self.model.vocab_size:
            raise CheckpointError(f"{self.path}: token table has {len(self.tokenizer)} entries, model {self.model.vocab_size}")
        self.device = torch.device(device)
        self.model.to(self.device).eval()

    @property
    def sample_rate(self) -> int:
        return self.config.feature.sample_rate

    @torch.no_grad()
    def decode_features(self, feats: list[np.ndarray], batch_size: int = 32) -> list[Hypothesis]:
        """Greedy hypotheses for raw (un-normalised) feature matrices, in input order."""
        order = sorted(range(len(feats)), key=lambda i: feats[i].shape[0])
        hyps: list[Hypothesis | None] = [None] * len(feats)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            tensors = [torch.from_numpy(self.cmvn(feats[i]).astype(np.float32)) for i in idx]
            padded = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True).to(self.device)
            lens = torch.tensor([t.shape[0] for t in tensors], device=self.device)
            log_probs, out_lens = self.model(padded, lens)
            for i, hyp in zip(idx, greedy_search(log_probs, out_lens, self.tokenizer.blank_id)):
                hyps[i] = hyp
        return hyps  # type: ignore[return-value]

    def transcribe_files(self, paths: list[str | Path]) -> list[Result]:
        feats = []
        for path in paths:
            samples = load_audio(path, self.sample_rate)
            feats.append(compute_features(samples, self.config.feature))
        hyps = self.decode_features(feats)
        return [Result(str(p), self.tokenizer.decode(h.tokens), h) for p, h in zip(paths, hyps)]

    def decode_data_dir(self, data_dir: str | Path) -> dict[str, str]:
        data = DataDir.load(data_dir)
        feats = get_features(data, self.config.feature, "features")
        ids = data.utt_ids()
        hyps: list[Hypothesis] = []
        chunk = 256
        for start in track(range(0, len(ids), chunk), "decoding"):
            hyps.extend(self.decode_features([feats[u] for u in ids[start:start + chunk]]))
        return {u: self.tokenizer.decode(h.tokens) for u, h in zip(ids, hyps)}


def write_hyp(hyps: dict[str, str], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{u} {t}".rstrip() + "\n" for u, t in sorted(hyps.items())), encoding="utf-8")


__all__ = ["Recognizer", "Result", "write_hyp"]
