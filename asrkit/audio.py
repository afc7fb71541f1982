"""Reading audio: any format libsndfile knows (wav, flac, sph, ogg...), mono, resampled.

Resampling to the model's rate is done with librosa (soxr backend) and said
once per source rate in the log, so that an 8 kHz corpus fed to a 16 kHz
model never goes unnoticed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile

from asrkit.errors import AudioError

log = logging.getLogger("asrkit")
_reported_rates: set[tuple[int, int]] = set()


def read_audio(path: str | Path, start: float = 0.0, end: float | None = None) -> tuple[np.ndarray, int]:
    """Read ``path`` (optionally the [start, end) seconds) as float32 mono and its rate."""
    path = _existing_file(path)
    try:
        with soundfile.SoundFile(str(path)) as handle:
            rate = handle.samplerate
            first = int(round(start * rate))
            if first > handle.frames:
                raise AudioError(f"{path}: segment start {start:.2f}s is past the end ({handle.frames / rate:.2f}s)")
            handle.seek(first)
            count = -1 if end is None else max(0, int(round(end * rate)) - first)
            samples = handle.read(frames=count, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: audio is empty (0 samples)")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if not np.isfinite(mono).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(mono, dtype=np.float32), rate


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    if rate == target_rate:
        return samples
    if (rate, target_rate) not in _reported_rates:
        _reported_rates.add((rate, target_rate))
        log.info("resampling audio from %d Hz to the model's %d Hz", rate, target_rate)
    import librosa

    return librosa.resample(samples, orig_sr=rate, target_sr=target_rate, res_type="soxr_hq").astype(np.float32)


def load_audio(path: str | Path, target_rate: int, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """Read, downmix and resample to ``target_rate``: float32 samples in [-1, 1]."""
    samples, rate = read_audio(path, start, end)
    return resample(samples, rate, target_rate)



def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header (no decoding); AudioError if unreadable."""
    path = _existing_file(path)
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    return info.frames / info.samplerate


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioError(f"audio file {path} does not exist")
    if path.is_dir():
        raise AudioError(f"{path} is a directory, not an audio file")
    return path


def _unreadable(path: Path, exc: Exception) -> AudioError:
    reason = str(exc).split(":")[-1].strip() or "unreadable"
    return AudioError(f"{path}: cannot read audio ({reason})")
