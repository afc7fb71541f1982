"""Waveform augmentation in training: noise, gain with clipping, telephone band, reverberation.

Real recordings are quieter, louder, noisier and narrower than a read-speech
corpus. As in Kaldi's and ESPnet's recipes (MUSAN noise, simulated room
impulse responses) and SpeechBrain's environmental corruption, training sees
altered copies of its utterances, drawn anew every time an utterance is used
(``train.augment``). Each kind fires with its own probability:

- tempo: the same words faster or slower (``tempo_min``..``tempo_max``),
  pitch kept (a phase vocoder, librosa's ``time_stretch``); CTC needs no
  times, so the labels stay as they are;
- reverberation: the utterance convolved with a room impulse response from
  ``rir_dir``, or without one from ``simulated_rirs`` rooms made once per
  training run (``asrkit.data.rooms``; RT60 and talker distance drawn in
  their ranges, cached in the experiment dir as ``rirs.npz``), aligned on
  its direct path, so the labels keep their times;
- competing talkers: one to ``babble_talkers`` other utterances of the
  training set (never the utterance's own speaker) or of ``babble_dir``,
  mixed at an SNR drawn in [babble_snr_min_db, babble_snr_max_db];
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

import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import soundfile

from asrkit.config import AugmentConfig
from asrkit.data.audio import read_audio, resample
from asrkit.data.rooms import random_room, simulate_rir
from asrkit.errors import ConfigError

log = logging.getLogger("asrkit")

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


def reverberate(samples: np.ndarray, rir: np.ndarray, onset: int | None = None) -> np.ndarray:
    """``samples`` convolved with a room impulse response, cut to length from its direct path on (at
    ``onset``; None: the response's peak, for measured ones), at the level it had."""
    from scipy.signal import fftconvolve

    if len(rir) == 0 or not np.any(rir):
        return samples
    peak = int(np.argmax(np.abs(rir))) if onset is None else onset
    wet = _cut_or_pad(fftconvolve(samples, rir)[peak:], len(samples))
    before = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    after = float(np.sqrt(np.mean(np.square(wet, dtype=np.float64))))
    return (wet * (before / after if after > 0 else 1.0)).astype(np.float32)


def change_tempo(samples: np.ndarray, factor: float) -> np.ndarray:
    """The same sound ``factor`` times as fast (shorter above 1), pitch kept: librosa's phase vocoder."""
    import librosa

    if factor == 1.0 or len(samples) < 2048:
        return samples
    return librosa.effects.time_stretch(samples, rate=factor).astype(np.float32)


class SimulatedRooms:
    """``simulated_rirs`` room impulse responses (asrkit.data.rooms), made once per training run and
    kept in ``cache`` (the experiment dir's ``rirs.npz``), so that a resumed run reverberates with
    the same rooms; a cache made with other settings is made again, a damaged one too, with a warning."""

    def __init__(self, cfg: AugmentConfig, rate: int, cache: Path | None, seed: int = 0) -> None:
        settings = {"rate": rate, "count": cfg.simulated_rirs, "rt60": [cfg.rt60_min, cfg.rt60_max],
                    "distance": [cfg.rir_distance_min, cfg.rir_distance_max], "seed": seed, "version": 1}
        self.responses = self._load(cache, settings) if cache is not None else None
        if self.responses is None:
            rng = np.random.default_rng(seed)
            self.responses = [simulate_rir(random_room(rng, (cfg.rt60_min, cfg.rt60_max),
                                                       (cfg.rir_distance_min, cfg.rir_distance_max)), rate, rng)
                              for _ in range(cfg.simulated_rirs)]
            if cache is not None:
                self._save(cache, settings)
        self.root = cache

    def __len__(self) -> int:
        return len(self.responses)

    def _load(self, cache: Path, settings: dict) -> list[np.ndarray] | None:
        if not cache.exists():
            return None
        try:
            with np.load(cache) as blob:
                if json.loads(str(blob["settings"])) != settings:
                    return None  # other settings: made again, silently
                flat, ends = blob["samples"], blob["ends"]
                return [flat[a:b] for a, b in zip(np.concatenate([[0], ends[:-1]]), ends)]
        except (OSError, ValueError, KeyError, EOFError) as exc:
            log.warning("%s is damaged (%s); simulating the rooms again", cache, str(exc).splitlines()[0][:80])
            return None

    def _save(self, cache: Path, settings: dict) -> None:
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.npz")
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, samples=np.concatenate(self.responses), ends=np.cumsum([len(r) for r in self.responses]),
                 settings=np.array(json.dumps(settings)))
        tmp.replace(cache)

    def pick(self, rng: np.random.Generator) -> np.ndarray:
        return self.responses[int(rng.integers(len(self.responses)))]


class TalkerPool:
    """Competing talkers from a data dir's utterances (the training set): a draw never takes the
    given speaker's. Fewer than two speakers' worth of usable utterances is a ``ConfigError``."""

    def __init__(self, utterances, rate: int) -> None:
        self.rate = rate
        self.items = [(u.audio_path, u.start, u.end, u.speaker) for u in utterances]
        if len({speaker for *_, speaker in self.items}) < 2 or len(self.items) < 2:
            raise ConfigError(f"train.augment.babble_prob: competing talkers need utterances of at least two "
                              f"speakers in the training set (it has {len(self.items)} utterances of "
                              f"{len({s for *_, s in self.items})} speakers); set babble_dir or babble_prob: 0")

    def __len__(self) -> int:
        return len(self.items)

    def excerpt(self, rng: np.random.Generator, seconds: float, speaker: str | None) -> np.ndarray:
        for _ in range(20):  # a few tries to miss the speaker (one speaker's share is small)
            path, start, end, who = self.items[int(rng.integers(len(self.items)))]
            if who != speaker:
                break
        samples, file_rate = read_audio(path, start, end)
        return resample(samples, file_rate, self.rate)


def babble(talkers: list[np.ndarray], length: int, rng: np.random.Generator) -> np.ndarray:
    """Talkers summed at equal level, each from a random point, looped or cut to ``length``."""
    out = np.zeros(length, dtype=np.float32)
    for talker in talkers:
        start = int(rng.integers(0, max(1, len(talker) - length + 1)))
        piece = np.resize(talker[start:], length) if len(talker) else np.zeros(length, np.float32)
        level = float(np.sqrt(np.mean(np.square(piece, dtype=np.float64))))
        if level > 0:
            out += piece / level
    return out


class Augmenter:
    """Draws and applies ``train.augment`` (see the module's docstring); the folders are checked when
    it is built, i.e. when training starts."""

    def __init__(self, cfg: AugmentConfig, rate: int, cache_dir: str | Path | None = None, seed: int = 0) -> None:
        self.cfg, self.rate = cfg, rate
        self.noises = AudioFolder(cfg.noise_dir, "train.augment.noise_dir") \
            if cfg.noise_dir and cfg.noise_prob > 0 else None
        self.rirs = None
        if cfg.reverb_active:
            self.rirs = AudioFolder(cfg.rir_dir, "train.augment.rir_dir") if cfg.rir_dir else \
                SimulatedRooms(cfg, rate, Path(cache_dir) / "rirs.npz" if cache_dir else None, seed)
        self.talkers = AudioFolder(cfg.babble_dir, "train.augment.babble_dir") \
            if cfg.babble_dir and cfg.babble_prob > 0 else None

    def use_training_talkers(self, utterances) -> None:
        """The training set as the competing talkers' source (when babble is on and no babble_dir)."""
        if self.cfg.babble_prob > 0 and self.talkers is None:
            self.talkers = TalkerPool(utterances, self.rate)

    def describe(self) -> str:
        cfg, parts = self.cfg, []
        if cfg.tempo_prob > 0:
            parts.append(f"tempo {cfg.tempo_prob:g} in {cfg.tempo_min:g}..{cfg.tempo_max:g}")
        if isinstance(self.rirs, SimulatedRooms):
            parts.append(f"reverb {cfg.reverb_prob:g} ({len(self.rirs)} simulated rooms, RT60 {cfg.rt60_min:g}-"
                         f"{cfg.rt60_max:g} s, talker at {cfg.rir_distance_min:g}-{cfg.rir_distance_max:g} m)")
        elif self.rirs is not None:
            parts.append(f"reverb {cfg.reverb_prob:g} ({len(self.rirs)} responses in {self.rirs.root})")
        if cfg.babble_prob > 0:
            source = f"{len(self.talkers)} files in {self.talkers.root}" if isinstance(self.talkers, AudioFolder) \
                else "the training set"
            parts.append(f"babble {cfg.babble_prob:g}, 1-{cfg.babble_talkers} talkers at {cfg.babble_snr_min_db:g}-"
                         f"{cfg.babble_snr_max_db:g} dB ({source})")
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
        kinds = [kind for (kind, p), u in zip(chances, draws) if u < p]
        # drawn after the original four, so that their draws (and runs that do not use these) stay as they were
        extra = (("tempo", cfg.tempo_prob), ("babble", cfg.babble_prob if self.talkers is not None else 0.0))
        return kinds + [kind for kind, p in extra if p > 0 and rng.random() < p]

    def apply(self, samples: np.ndarray, kinds: list[str], rng: np.random.Generator,
              speaker: str | None = None) -> np.ndarray:
        """``samples`` (mono, at the model's rate) altered by ``kinds``, in a fixed order: tempo (which
        changes the length), reverberation, competing talkers (never ``speaker``), noise, the
        telephone band, gain."""
        cfg = self.cfg
        if "tempo" in kinds:
            samples = change_tempo(samples, float(rng.uniform(cfg.tempo_min, cfg.tempo_max)))
        if "reverb" in kinds and self.rirs is not None:
            if isinstance(self.rirs, SimulatedRooms):  # its direct path is its first sample
                samples = reverberate(samples, self.rirs.pick(rng), onset=0)
            else:
                samples = reverberate(samples, self.rirs.excerpt(rng, None, self.rate))
        if "babble" in kinds and self.talkers is not None:
            samples = self._babble(samples, rng, speaker)
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

    def _babble(self, samples: np.ndarray, rng: np.random.Generator, speaker: str | None) -> np.ndarray:
        cfg, seconds = self.cfg, len(samples) / self.rate
        count = int(rng.integers(1, cfg.babble_talkers + 1))
        if isinstance(self.talkers, TalkerPool):
            voices = [self.talkers.excerpt(rng, seconds, speaker) for _ in range(count)]
        else:
            voices = [self.talkers.excerpt(rng, seconds, self.rate) for _ in range(count)]
        mixed = babble(voices, len(samples), rng)
        return add_noise(samples, mixed, float(rng.uniform(cfg.babble_snr_min_db, cfg.babble_snr_max_db)))


__all__ = ["AudioFolder", "Augmenter", "SimulatedRooms", "TalkerPool", "add_noise", "apply_gain", "babble",
           "change_tempo", "coloured_noise", "reverberate", "telephone"]
