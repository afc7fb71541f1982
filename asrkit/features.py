"""Acoustic features (librosa): log-mel fbank and MFCC; global CMVN; SpecAugment.

Features are (num_frames, dim) float32 arrays at one frame per
``frame_shift_ms``. CMVN statistics are accumulated over the training set and
stored with the model, so decoding normalises exactly as training did.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import logging

import numpy as np
import torch

from asrkit.audio import load_audio
from asrkit.config import FeatureConfig, SpecAugmentConfig
from asrkit.datadir import DataDir, Utterance
from asrkit.errors import AsrkitError, AudioError, DataDirError
from asrkit.progress import track

LOG_FLOOR = 1e-6


def frame_sizes(cfg: FeatureConfig) -> tuple[int, int, int]:
    """(n_fft, win_length, hop_length) in samples for the config's rate."""
    win = int(round(cfg.frame_length_ms * cfg.sample_rate / 1000))
    hop = int(round(cfg.frame_shift_ms * cfg.sample_rate / 1000))
    n_fft = 1 << (win - 1).bit_length()
    return n_fft, win, hop


def compute_features(samples: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """samples: (N,) float32 at cfg.sample_rate -> (1 + N // hop, dim) float32.

    Audio shorter than one analysis frame (``frame_length_ms``) has no features: a
    one-line ``AudioError`` says so (the caller adds the file or utterance).
    """
    import librosa

    n_fft, win, hop = frame_sizes(cfg)
    if len(samples) < win:
        raise AudioError(f"audio is {1000 * len(samples) / cfg.sample_rate:.1f} ms long; features need at least "
                         f"{cfg.frame_length_ms:g} ms (one {cfg.frame_length_ms:g} ms frame)")
    with warnings.catch_warnings():
        # between one frame and n_fft samples (25-32 ms) librosa warns although the centred,
        # zero-padded frames are fine; the user never sees a library's warning
        warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
        mel = librosa.feature.melspectrogram(
            y=samples, sr=cfg.sample_rate, n_fft=n_fft, win_length=win, hop_length=hop,
            n_mels=cfg.num_mel_bins, fmin=cfg.fmin, fmax=cfg.sample_rate / 2, power=2.0, center=True,
        )
    if cfg.kind == "fbank":
        feats = np.log(mel + LOG_FLOOR)
    else:
        feats = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=cfg.num_ceps)
    return np.ascontiguousarray(feats.T, dtype=np.float32)


def utterance_features(utt: Utterance, cfg: FeatureConfig) -> np.ndarray:
    return compute_features(load_audio(utt.audio_path, cfg.sample_rate, utt.start, utt.end), cfg)


def _config_key(cfg: FeatureConfig) -> dict:
    return {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}


log = logging.getLogger("asrkit")
FEATS_FILE = "feats.pt"


def compute_data_dir_features(data: DataDir, cfg: FeatureConfig, description: str = "features") -> dict[str, np.ndarray]:
    """Features for every utterance in ``data`` (errors name the utterance)."""
    data.check_pipes()
    feats: dict[str, np.ndarray] = {}
    for utt in track(data.utterances(), description):
        try:
            feats[utt.utt_id] = utterance_features(utt, cfg)
        except AsrkitError as exc:
            raise type(exc)(f"utterance {utt.utt_id!r}: {exc}") from None
    return feats


def save_features(data_dir: str | Path, feats: dict[str, np.ndarray], cfg: FeatureConfig) -> Path:
    path = Path(data_dir) / FEATS_FILE
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"feature_config": _config_key(cfg),
                "feats": {k: torch.from_numpy(v) for k, v in feats.items()}}, tmp)
    tmp.replace(path)
    return path


def load_cached_features(data: DataDir, cfg: FeatureConfig) -> dict[str, np.ndarray] | None:
    """Features from ``<data>/feats.pt`` if they were made with ``cfg`` for these utterances."""
    if data.path is None or not (data.path / FEATS_FILE).is_file():
        return None
    try:
        blob = torch.load(data.path / FEATS_FILE, map_location="cpu", weights_only=True)
    except Exception:  # a damaged cache is recomputed, never trusted
        return None
    if blob.get("feature_config") != _config_key(cfg):
        log.info("%s holds features made with another config (%s); computing %s for this model "
                 "(the cache is left as it is)", data.path / FEATS_FILE, blob.get("feature_config"), _config_key(cfg))
        return None
    if set(blob["feats"]) != set(data.text):
        return None
    return {k: v.numpy() for k, v in blob["feats"].items()}


def get_features(data: DataDir, cfg: FeatureConfig, description: str = "features") -> dict[str, np.ndarray]:
    return load_cached_features(data, cfg) or compute_data_dir_features(data, cfg, description)


class GlobalCMVN:
    """Global mean and variance normalisation: (x - mean) / std per dimension."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    @classmethod
    def from_features(cls, feats: list[np.ndarray]) -> "GlobalCMVN":
        if not feats:
            raise DataDirError("cannot compute CMVN statistics from zero utterances")
        total = np.zeros(feats[0].shape[1], dtype=np.float64)
        total_sq = np.zeros_like(total)
        count = 0
        for f in feats:
            total += f.sum(axis=0)
            total_sq += np.square(f, dtype=np.float64).sum(axis=0)
            count += f.shape[0]
        mean = total / count
        var = np.maximum(total_sq / count - mean**2, 1e-10)
        return cls(mean, np.sqrt(var))

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        return (feats - self.mean) / self.std

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "GlobalCMVN":
        return cls(np.array(data["mean"]), np.array(data["std"]))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "GlobalCMVN":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def spec_augment(feats: torch.Tensor, cfg: SpecAugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Frequency and time masks (Park et al., 2019) on a (T, F) normalised tensor; masks set to 0."""
    if not cfg.enabled:
        return feats
    feats = feats.clone()
    num_frames, dim = feats.shape

    def randint(high: int) -> int:
        return int(torch.randint(0, max(high, 1), (1,), generator=generator))

    for _ in range(cfg.num_freq_masks):
        width = randint(cfg.max_freq_width + 1)
        start = randint(dim - width + 1)
        feats[:, start:start + width] = 0.0
    max_width = int(math.floor(cfg.max_time_ratio * num_frames))
    for _ in range(cfg.num_time_masks):
        width = randint(max_width + 1)
        start = randint(num_frames - width + 1)
        feats[start:start + width, :] = 0.0
    return feats
