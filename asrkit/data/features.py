"""Acoustic features (librosa): log-mel fbank and MFCC; global CMVN (numpy: no torch here, so that an
export bundle computes them without PyTorch; SpecAugment, which training alone runs, is in ``dataset``).

Features are (num_frames, dim) float32 arrays at one frame per
``frame_shift_ms``. Two steps make them independent of the recording level
(``feature.level_norm`` and ``feature.utterance_cmn``): the waveform's active
level (the 95th percentile of its 10 ms frame levels, so silence and pauses do
not count) is brought to -20 dBFS before the mel analysis, which also keeps the
log floor at one distance below the speech whatever the microphone gain; then
each utterance's own mean is subtracted from its log-mel frames, which removes
what is left of a constant gain and a fixed channel colouring (a microphone's
or a telephone line's frequency response). CMVN statistics are accumulated over the training set and
stored with the model, so decoding normalises exactly as training did. Where
a data dir's features are stored is ``asrkit.data.featstore``'s business.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np

from asrkit.config import FeatureConfig
from asrkit.data.audio import active_level, load_audio
from asrkit.data.datadir import Utterance
from asrkit.errors import AudioError, ConfigError, DataDirError

LOG_FLOOR = 1e-6
TARGET_LEVEL = 0.1  # active level after level_norm: -20 dBFS
MAX_LEVEL_GAIN = 1000.0  # at most +60 dB: digital silence is left as it is


def normalize_level(samples: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """``feature.level_norm: active``: the waveform scaled so that its active level is -20 dBFS."""
    if cfg.level_norm != "active":
        return samples
    level = active_level(samples, max(1, int(round(cfg.frame_shift_ms * cfg.sample_rate / 1000))))
    if level <= 0.0:
        return samples
    gain = min(TARGET_LEVEL / level, MAX_LEVEL_GAIN)
    return (samples * np.float32(gain)).astype(np.float32, copy=False)


LEVEL_RELEASE = 300  # frames: the running level's peak decays by e^-1 (4.3 dB) in this many (3 s at 10 ms)
TARGET_FRAME_POWER = 0.2  # a frame's mean mel power at the running peak: where "active" puts AN4's peaks
MIN_RUNNING_FLOOR = 1e-14  # the running floor's own floor: below 16-bit audio's quietest noise


def running_level(power: np.ndarray, peak: float = -math.inf, start: int = 0) -> tuple[np.ndarray, float, int]:
    """``feature.level_norm: running``, the causal form of "active": the log floor of each frame
    follows the level of the frames up to it, so that it stays one distance below the speech
    whatever the gain (``causal_cmn`` then removes the gain itself, an offset on every log-mel
    bin). The level is the highest mean mel power (of the bands above ``LEVEL_FMIN``) so far,
    decaying by e^-1 every ``LEVEL_RELEASE`` frames (L_t = max(p_t, L_{t-1} e^(-1/R))): a pause
    does not drop it at once, a louder talker lifts it at once. Scaling the input by c scales every
    L_t, the floor and the frames' powers alike: the log-mel frames move by 2 log c, which the
    running mean takes away. Computed as a running maximum in the log domain
    (log L_t = max_s≤t (log p_s + s/R) - t/R), so a stream carries (peak, start): the maximum so
    far and the frames so far. Returns (levels, peak, start + frames)."""
    steps = (start + np.arange(len(power))) / LEVEL_RELEASE
    with np.errstate(divide="ignore"):
        lifted = np.log(power.astype(np.float64)) + steps
    running = np.maximum.accumulate(np.concatenate([[peak], lifted]))[1:]
    return np.exp(running - steps), float(running[-1]) if len(running) else peak, start + len(power)


LEVEL_FMIN = 300.0  # Hz: the running level is measured on mel bands centred above this


def _speech_bins(cfg: FeatureConfig) -> np.ndarray:
    """(num_mel_bins,) bool: the mel bands centred at ``LEVEL_FMIN`` or above (all, if none is)."""
    return _bands_above(cfg.num_mel_bins, cfg.fmin, cfg.sample_rate / 2)


@functools.lru_cache(maxsize=16)
def _bands_above(count: int, fmin: float, fmax: float) -> np.ndarray:
    import librosa

    centres = librosa.mel_frequencies(count + 2, fmin=fmin, fmax=fmax)[1:-1]
    above = centres >= LEVEL_FMIN
    return above if above.any() else np.ones_like(above)


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
    _check_length(len(samples), cfg)
    feats, _ = _log_mel(normalize_level(samples, cfg), cfg, center=True, cmn=cfg.utterance_cmn)
    return running_mean(feats)[0] if cfg.causal_cmn else feats


CMN_WINDOW = 300  # frames: the running mean's memory once it has that many (3 s at 10 ms)


def running_mean(feats: np.ndarray, mean: np.ndarray | None = None, count: int = 0):
    """``feature.causal_cmn``: each frame minus the mean of the frames up to it, the mean of all of
    them for the first ``CMN_WINDOW`` frames and then an exponential average of time constant
    ``CMN_WINDOW`` (m_t = m_{t-1} + (x_t - m_{t-1}) / min(t + 1, CMN_WINDOW)): causal, so a stream
    computes it chunk by chunk, carrying (mean, count). Returns (normalised, mean, count)."""
    from scipy.signal import lfilter

    out = np.empty_like(feats)
    mean = np.zeros(feats.shape[1], np.float64) if mean is None else mean
    warm = min(max(CMN_WINDOW - count, 0), len(feats))
    if warm:  # the cumulative mean while fewer than CMN_WINDOW frames are in
        steps = count + np.arange(1, warm + 1)[:, None]
        sums = np.cumsum(feats[:warm], axis=0, dtype=np.float64) + mean * count
        means = sums / steps
        out[:warm] = feats[:warm] - means
        mean, count = means[-1], count + warm
    if warm < len(feats):  # then m_t = (1 - a) m_{t-1} + a x_t, a = 1 / CMN_WINDOW: a first-order filter
        alpha = 1.0 / CMN_WINDOW
        rest = feats[warm:].astype(np.float64)
        means, _ = lfilter([alpha], [1.0, alpha - 1.0], rest, axis=0, zi=((1 - alpha) * mean)[None, :])
        out[warm:] = rest - means
        mean, count = means[-1], count + len(rest)
    return out.astype(np.float32, copy=False), mean, count


def _check_length(count: int, cfg: FeatureConfig) -> None:
    if count < frame_sizes(cfg)[1]:
        raise AudioError(f"audio is {1000 * count / cfg.sample_rate:.1f} ms long; features need at least "
                         f"{cfg.frame_length_ms:g} ms (one {cfg.frame_length_ms:g} ms frame)")


def _log_mel(samples: np.ndarray, cfg: FeatureConfig, center: bool, cmn: bool = False,
             level: tuple[float, int] = (-math.inf, 0)) -> tuple[np.ndarray, tuple[float, int]]:
    """(frames, dim) float32: log-mel (or MFCC) frames, centred (zero padding of half a window at both
    ends, as the whole-utterance features are) or not (frames of ``samples`` as they come: streaming);
    ``cmn``: each dimension's mean over the frames subtracted. With ``level_norm: running`` each
    frame's mel powers are scaled by its running level (``running_level``, carried in ``level``:
    (peak, frames so far), returned updated)."""
    import librosa

    n_fft, win, hop = frame_sizes(cfg)
    with warnings.catch_warnings(), _one_blas_thread():
        # between one frame and n_fft samples (25-32 ms) librosa warns although the centred,
        # zero-padded frames are fine; the user never sees a library's warning
        warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
        mel = librosa.feature.melspectrogram(
            y=samples, sr=cfg.sample_rate, n_fft=n_fft, win_length=win, hop_length=hop,
            n_mels=cfg.num_mel_bins, fmin=cfg.fmin, fmax=cfg.sample_rate / 2, power=2.0, center=center,
        )
    floor = LOG_FLOOR
    if cfg.level_norm == "running":  # the floor follows the speech band's level (hum and DC left out)
        levels, *level = running_level(mel[_speech_bins(cfg)].mean(axis=0), *level)
        floor = np.maximum(levels * (LOG_FLOOR / TARGET_FRAME_POWER), MIN_RUNNING_FLOOR).astype(np.float32)
    if cfg.kind == "fbank":
        feats = np.log(mel + floor)
    else:
        feats = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=cfg.num_ceps)
    if cmn:
        feats = feats - feats.mean(axis=1, keepdims=True)
    return np.ascontiguousarray(feats.T, dtype=np.float32), tuple(level)


class StreamingFeatures:
    """The features of audio that arrives in pieces: ``accept(samples)`` returns the frames the new
    samples complete, ``finish()`` the last ones; together, ``compute_features`` of the whole
    signal (the same frames; tested). Only local features can stream: whole-utterance level
    normalisation, utterance CMN and MFCC's clipping at the utterance's loudest frame
    (``power_to_db``'s ``top_db``) are refused in one line."""

    def __init__(self, cfg: FeatureConfig) -> None:
        if cfg.level_norm == "active" or cfg.utterance_cmn or cfg.kind != "fbank":
            raise ConfigError("these features cannot stream: they are normalised over the whole utterance "
                              "(a streaming model trains with feature.kind: fbank, feature.level_norm: running "
                              "or none and feature.utterance_cmn: false, or causal_cmn: true; global CMVN "
                              "streams as it is)")
        self.cfg = cfg
        self.n_fft, _, self.hop = frame_sizes(cfg)
        self.buffer = np.zeros(self.n_fft // 2, dtype=np.float32)  # the centred first frame's padding
        self.emitted = 0  # frames returned so far; the buffer starts at frame ``emitted``'s first sample
        self.seen = 0  # samples accepted so far
        self.mean, self.count = None, 0  # the running mean (causal_cmn)
        self.level = (-math.inf, 0)  # the running level (level_norm: running)

    def accept(self, samples: np.ndarray) -> np.ndarray:
        self.buffer = np.concatenate([self.buffer, np.asarray(samples, dtype=np.float32)])
        self.seen += len(samples)
        return self._frames(max(0, (len(self.buffer) - self.n_fft) // self.hop + 1))

    def finish(self) -> np.ndarray:
        """The last frames (the end padded with half a window of zeros, as the whole signal's)."""
        _check_length(self.seen, self.cfg)
        self.buffer = np.concatenate([self.buffer, np.zeros(self.n_fft // 2, dtype=np.float32)])
        return self._frames(1 + self.seen // self.hop - self.emitted)

    def _frames(self, count: int) -> np.ndarray:
        if count <= 0:
            return np.zeros((0, self.cfg.dim), dtype=np.float32)
        feats, self.level = _log_mel(self.buffer[:(count - 1) * self.hop + self.n_fft], self.cfg, center=False,
                                     level=self.level)
        feats = feats[:count]
        self.buffer = self.buffer[count * self.hop:]
        self.emitted += count
        if self.cfg.causal_cmn:
            feats, self.mean, self.count = running_mean(feats, self.mean, self.count)
        return feats


def _one_blas_thread():
    """The mel projection summed by one BLAS thread: features are then bit-equal whatever the
    thread count, in this process or in ``--nj`` workers (threads change the summation order)."""
    global _blas_controller
    if _blas_controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - librosa brings it (through scikit-learn)
            return contextlib.nullcontext()
        _blas_controller = ThreadpoolController()  # finding the libraries is the slow part: once
    return _blas_controller.limit(limits=1, user_api="blas")


_blas_controller = None


def utterance_features(utt: Utterance, cfg: FeatureConfig) -> np.ndarray:
    return compute_features(load_audio(utt.audio_path, cfg.sample_rate, utt.start, utt.end), cfg)


log = logging.getLogger("asrkit")


class GlobalCMVN:
    """Global mean and variance normalisation: (x - mean) / std per dimension."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    @classmethod
    def from_features(cls, feats: Iterable[np.ndarray]) -> "GlobalCMVN":
        """Statistics accumulated over an iterable of (T, F) matrices, one at a time (a store's
        utterances are streamed, never all in memory)."""
        total = total_sq = None
        count = 0
        for f in feats:
            if total is None:
                total = np.zeros(f.shape[1], dtype=np.float64)
                total_sq = np.zeros_like(total)
            total += f.sum(axis=0)  # (float32 sums per utterance: the statistics of every model so far)
            total_sq += np.square(f, dtype=np.float64).sum(axis=0)
            count += f.shape[0]
        if total is None or count == 0:
            raise DataDirError("cannot compute CMVN statistics from zero utterances")
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
