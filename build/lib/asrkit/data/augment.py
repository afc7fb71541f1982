"""Waveform augmentation in training: noise, gain with clipping, telephone band, reverberation.

Real recordings are quieter, louder, noisier and narrower than a read-speech
corpus. As in Kaldi's and ESPnet's recipes (MUSAN noise, simulated room
impulse responses) and SpeechBrain's environmental corruption, training sees
altered copies of its utterances, drawn anew every time an utterance is used
(``train.augment``). Each kind fires with its own probability:

- reverberation: the utterance convolved with a room impulse response from
  ``rir_dir`` (aligned on its direct path, so the labels keep their times);
- additive noise at an SNR drawn uniformly in [snr_min_db, snr_max_db]: a
  random stretch of a file from ``noise_dir`` (any audio format and rate),
  or, without one, generated coloured noise (a spectral slope drawn between
  white and brown);
- the telephone band: down to 8 kHz and back, nothing above 4 kHz;
- a gain drawn in [gain_min_db, gain_max_db]; samples beyond +-1 are clipped,
  as a hot microphone input does.

An utterance that draws none of them is read from the feature store as it is,
so clean training costs nothing more; one that draws any is read from its
audio, altered and analysed like any audio (``features.compute_features``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile

from asrkit.config import AugmentConfig
from asrkit.data.audio import read_audio, resample
from asrkit.errors import ConfigError

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".sph", ".mp3", ".opus", ".aiff", ".aif", ".au"}
TELEPHONE_RATE = 8000


class AudioFolder:
    """The audio files under a folder (recursively), checked once: a missing or empty folder, or an
    unreadable file, is a one-line ``ConfigError`` naming it and the config key."""

    def __init__(self, folder: str | Path, key: str) -> None:
        root = Path(folder).expanduser()
        if not root.exists():
            raise ConfigError(f"{key}: the folder {root} does not exist")
        if not root.is_dir():
            raise ConfigError(f"{key}: {root} is a file, not a folder")
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if not paths:
            raise ConfigError(f"{key}: {root} holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
        self.paths, self.durations = [], []
        for path in paths:
            try:
                info = soundfile.info(str(path))
            except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
                reason = str(exc).split(":")[-1].strip() or "unreadable"
                raise ConfigError(f"{key}: {path} is not readable audio ({reason})") from None
            if info.frames == 0:
                raise ConfigError(f"{key}: {path} is empty (0 samples)")
            self.paths.append(path)
            self.durations.append(info.frames / info.samplerate)
        self.root = root

    def __len__(self) -> int:
        return len(self.paths)

    def excerpt(self, rng: np.random.Generator, seconds: float | None, rate: int) -> np.ndarray:
        """A random file (``seconds``: a random stretch of that length, from one point on; None: all of
        it), mono at ``rate``."""

        index = int(rng.integers(len(self.paths)))
        duration = self.durations[index]
        start = 0.0
        if seconds is not None and duration > seconds:
            start = float(rng.uniform(0.0, duration - seconds))
        end = None if seconds is None else min(duration, start + seconds)
        samples, file_rate = read_audio(self.paths[index], start, end)
        return resample(samples, file_rate, rate)


def coloured_noise(rng: np.random.Generator, length: int) -> np.ndarray:
    """Gaussian noise whose power falls as 1/f^beta, beta drawn in [0, 2] (white, pink, brown)."""
    beta = float(rng.uniform(0.0, 2.0))
    spectrum = np.fft.rfft(rng.standard_normal(length))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = 1.0
    noise = np.fft.irfft(spectrum / freqs ** (beta / 2), n=length)
    return noise.astype(np.float32)


def _fit(noise: np.ndarray, length: int) -> np.ndarray:
    """Noise cut or tiled to ``length`` samples."""
    if len(noise) >= length:
        return noise[:length]
    return np.tile(noise, math.ceil(length / max(len(noise), 1)))[:length]


def _cut_or_pad(samples: np.ndarray, length: int) -> np.ndarray:
    """A signal cut or zero-padded to ``length`` samples (float32)."""
    out = samples[:length] if len(samples) >= length else np.pad(samples, (0, length - len(samples)))
    return out.astype(np.float32, copy=False)


def add_noise(samples: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``samples`` plus ``noise`` (tiled or cut to length) scaled to ``snr_db`` (mean powers)."""
    noise = _fit(noise, len(samples))
    signal_power = float(np.mean(np.square(samples, dtype=np.float64)))
    noise_power = float(np.mean(np.square(noise, dtype=np.float64)))
    if signal_power <= 0.0 or noise_power <= 0.0:
        return samples
    scale = math.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return (samples + scale * noise).astype(np.float32)


def apply_gain(samples: np.ndarray, gain_db: float) -> np.ndarray:
    """``samples`` times the gain, clipped to [-1, 1] as a fixed-point input would be."""
    return np.clip(samples * np.float32(10 ** (gain_db / 20)), -1.0, 1.0).astype(np.float32)


def telephone(samples: np.ndarray, rate: int) -> np.ndarray:
    """Through an 8 kHz channel and back: the same length, nothing above 4 kHz."""
    if rate <= TELEPHONE_RATE:
        return samples
    import librosa

    narrow = librosa.resample(samples, orig_sr=rate, target_sr=TELEPHONE_RATE, res_type="soxr_hq")
    wide = librosa.resample(narrow, orig_sr=TELEPHONE_RATE, target_sr=rate, res_type="soxr_hq")
    return _cut_or_pad(wide, len(samples))


def reverberate(samples: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``samples`` convolved with a room impulse response, cut to length from its direct path (the
    response's peak) on, at the level it had."""
    from scipy.signal import fftconvolve

    if len(rir) == 0 or not np.any(rir):
        return samples
    peak = int(np.argmax(np.abs(rir)))
    wet = _cut_or_pad(fftconvolve(samples, rir)[peak:], len(samples))
    before = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    after = float(np.sqrt(np.mean(np.square(wet, dtype=np.float64))))
    return (wet * (before / after if after > 0 else 1.0)).astype(np.float32)


class Augmenter:
    """Draws and applies ``train.augment`` (see the module's docstring); the folders are checked when
    it is built, i.e. when training starts."""

    def __init__(self, cfg: AugmentConfig, rate: int) -> None:
        self.cfg, self.rate = cfg, rate
        self.noises = AudioFolder(cfg.noise_dir, "train.augment.noise_dir") \
            if cfg.noise_dir and cfg.noise_prob > 0 else None
        self.rirs = AudioFolder(cfg.rir_dir, "train.augment.rir_dir") if cfg.reverb_active else None

    def describe(self) -> str:
        cfg, parts = self.cfg, []
        if self.rirs is not None:
            parts.append(f"reverb {cfg.reverb_prob:g} ({len(self.rirs)} responses in {self.rirs.root})")
        if cfg.noise_prob > 0:
            source = f"{len(self.noises)} files in {self.noises.root}" if self.noises else "coloured noise"
            parts.append(f"noise {cfg.noise_prob:g} at {cfg.snr_min_db:g}-{cfg.snr_max_db:g} dB SNR ({source})")
        if cfg.telephone_prob > 0:
            parts.append(f"telephone band {cfg.telephone_prob:g}")
        if cfg.gain_prob > 0:
            parts.append(f"gain {cfg.gain_prob:g} in {cfg.gain_min_db:g}..{cfg.gain_max_db:g} dB, clipped")
        return ", ".join(parts)

    def draw(self, rng: np.random.Generator) -> list[str]:
        """The kinds this use of an utterance gets (often none)."""
        cfg = self.cfg
        chances = (("reverb", cfg.reverb_prob if self.rirs is not None else 0.0), ("noise", cfg.noise_prob),
                   ("telephone", cfg.telephone_prob), ("gain", cfg.gain_prob))
        draws = rng.random(len(chances))
        return [kind for (kind, p), u in zip(chances, draws) if u < p]

    def apply(self, samples: np.ndarray, kinds: list[str], rng: np.random.Generator) -> np.ndarray:
        """``samples`` (mono, at the model's rate) altered by ``kinds``, in a fixed order; the length is kept."""
        cfg = self.cfg
        if "reverb" in kinds and self.rirs is not None:
            samples = reverberate(samples, self.rirs.excerpt(rng, None, self.rate))
        if "noise" in kinds:
            seconds = len(samples) / self.rate
            noise = self.noises.excerpt(rng, seconds, self.rate) if self.noises is not None \
                else coloured_noise(rng, len(samples))
            samples = add_noise(samples, noise, float(rng.uniform(cfg.snr_min_db, cfg.snr_max_db)))
        if "telephone" in kinds:
            samples = telephone(samples, self.rate)
        if "gain" in kinds:
            samples = apply_gain(samples, float(rng.uniform(cfg.gain_min_db, cfg.gain_max_db)))
        return samples


__all__ = ["AudioFolder", "Augmenter", "add_noise", "apply_gain", "coloured_noise", "reverberate", "telephone"]
