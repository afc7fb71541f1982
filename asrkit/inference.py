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
from asrkit.decode import Hypothesis, greedy_search, prefix_beam_search
from asrkit.errors import AsrkitError, CheckpointError
from asrkit.features import GlobalCMVN, compute_features, get_features
from asrkit.model import build_model
from asrkit.progress import track
from asrkit.tokenizer import CharTokenizer


@dataclass
class Result:
    key: str
    text: str
    hypothesis: Hypothesis


@dataclass
class SearchOptions:
    mode: str = "greedy"  # greedy | beam
    beam: int = 10
    nbest: int = 1

    def check(self) -> None:
        if self.mode not in ("greedy", "beam"):
            raise AsrkitError(f"--mode must be greedy or beam, not {self.mode!r}")
        if self.beam < 1 or self.nbest < 1:
            raise AsrkitError(f"--beam and --nbest must be at least 1 (got {self.beam} and {self.nbest})")
        if self.nbest > self.beam:
            raise AsrkitError(f"--nbest {self.nbest} cannot exceed --beam {self.beam}")


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
    def decode_features(self, feats: list[np.ndarray], search: SearchOptions | None = None,
                        batch_size: int = 32) -> list[list[Hypothesis]]:
        """n-best hypotheses (best first) for raw (un-normalised) feature matrices, in input order."""
        search = search or SearchOptions()
        search.check()
        order = sorted(range(len(feats)), key=lambda i: feats[i].shape[0])
        hyps: list[list[Hypothesis] | None] = [None] * len(feats)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            tensors = [torch.from_numpy(self.cmvn(feats[i]).astype(np.float32)) for i in idx]
            padded = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True).to(self.device)
            lens = torch.tensor([t.shape[0] for t in tensors], device=self.device)
            log_probs, out_lens = self.model(padded, lens)
            if search.mode == "greedy":
                found = [[h] for h in greedy_search(log_probs, out_lens, self.tokenizer.blank_id)]
            else:
                found = prefix_beam_search(log_probs, out_lens, search.beam, search.nbest,
                                           blank_id=self.tokenizer.blank_id)
            for i, nbest in zip(idx, found):
                hyps[i] = nbest
        return hyps  # type: ignore[return-value]

    def transcribe_files(self, paths: list[str | Path], search: SearchOptions | None = None) -> list[Result]:
        feats = []
        for path in paths:
            samples = load_audio(path, self.sample_rate)
            feats.append(compute_features(samples, self.config.feature))
        hyps = self.decode_features(feats, search)
        return [Result(str(p), self.tokenizer.decode(h[0].tokens), h[0]) for p, h in zip(paths, hyps)]

    def decode_data_dir(self, data_dir: str | Path, search: SearchOptions | None = None) -> dict[str, list[Hypothesis]]:
        """n-best hypotheses for every utterance of a data dir."""
        data = DataDir.load(data_dir)
        feats = get_features(data, self.config.feature, "features")
        ids = data.utt_ids()
        hyps: list[list[Hypothesis]] = []
        chunk = 256
        for start in track(range(0, len(ids), chunk), "decoding"):
            hyps.extend(self.decode_features([feats[u] for u in ids[start:start + chunk]], search))
        return dict(zip(ids, hyps))


def write_hyp(hyps: dict[str, str], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{u} {t}".rstrip() + "\n" for u, t in sorted(hyps.items())), encoding="utf-8")


def write_nbest(nbest: dict[str, list[Hypothesis]], tokenizer: CharTokenizer, path: str | Path) -> None:
    """One line per hypothesis: ``<utt> <rank> <log-score> <text>``, best first."""
    lines = []
    for utt in sorted(nbest):
        for rank, hyp in enumerate(nbest[utt], start=1):
            lines.append(f"{utt} {rank} {hyp.score:.4f} {tokenizer.decode(hyp.tokens)}".rstrip())
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


__all__ = ["Recognizer", "Result", "SearchOptions", "write_hyp", "write_nbest"]
