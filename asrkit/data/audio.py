"""Reading audio: any format libsndfile knows (wav, flac, sph, ogg...), mono, resampled.

Resampling to the model's rate is done with librosa (soxr backend) and said
once per source rate in the log, so that an 8 kHz corpus fed to a 16 kHz
model never goes unnoticed.

A ``wav.scp`` entry may also be a Kaldi command pipe (``flac -c -d -s x.flac |``,
``sox x.wav -t wav - |``): the command runs in a shell and its standard output
is read as an audio file. Since a data dir may come from someone else, pipes
run only after ``allow_pipes()`` (``--allow-pipes`` on the command line, or
``ASRKIT_ALLOW_PIPES=1`` in the environment, e.g. for recipes and torchrun); the same
rule holds for the pipes of a foreign ``feats.scp`` (``asrkit.data.featstore``).
"""

from __future__ import annotations

import functools
import io
import logging
import os
import subprocess
from pathlib import Path

import numpy as np
import soundfile

from asrkit.errors import AudioError, ConfigError

log = logging.getLogger("asrkit")
_reported_rates: set[tuple[int, int]] = set()
_notices = True  # False in a feature job: its parent says the notices
_pipes_allowed = False
PIPE_OPTION = "--allow-pipes"


def allow_pipes(allowed: bool = True) -> None:
    """Let ``wav.scp`` command pipes run in this process (they run in a shell: only for trusted data)."""
    global _pipes_allowed
    _pipes_allowed = allowed


PIPES_VARIABLE = "ASRKIT_ALLOW_PIPES"
_YES, _NO = ("1", "true", "yes"), ("", "0", "false", "no")


def pipes_allowed() -> bool:
    """Whether command pipes (in wav.scp or feats.scp) may run: ``allow_pipes()`` (--allow-pipes)
    or ``ASRKIT_ALLOW_PIPES`` set to 1/true/yes (0/false/no or unset: not). Another value of the
    variable is an error: a misspelt 'yes' must not decide whether a shell runs."""
    if _pipes_allowed:
        return True
    value = os.environ.get(PIPES_VARIABLE, "").strip()
    if value.lower() in _YES:
        return True
    if value.lower() in _NO:
        return False
    raise ConfigError(f"{PIPES_VARIABLE}={value!r} is neither yes (1, true, yes) nor no (0, false, no)")


def is_pipe(entry: str | Path) -> bool:
    """Whether a ``wav.scp`` entry is a command whose output is the audio (it ends with ``|``)."""
    return isinstance(entry, str) and entry.rstrip().endswith("|")


def run_pipe(command: str) -> bytes:
    """The standard output of a ``wav.scp`` pipe command (AudioError naming it and its stderr)."""
    if not pipes_allowed():
        raise AudioError(f"'{command}' is a command pipe; asrkit runs these only with {PIPE_OPTION} "
                         "(they run in a shell: use it for data you trust)")
    return _pipe_output(command.rstrip()[:-1].strip())


@functools.lru_cache(maxsize=1)
def _pipe_output(shell: str) -> bytes:
    """Run once per recording: the segments of one recording (Kaldi's ``segments``), read one
    after another, share its output instead of running the command again for each."""
    try:
        done = subprocess.run(shell, shell=True, capture_output=True, timeout=3600)
    except subprocess.TimeoutExpired:
        raise AudioError(f"command '{shell}' ran for more than an hour") from None
    if done.returncode != 0:
        errors = [line for line in done.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        reason = errors[-1].strip() if errors else "no message"
        raise AudioError(f"command '{shell}' failed (exit code {done.returncode}): {reason[:200]}")
    if not done.stdout:
        raise AudioError(f"command '{shell}' wrote no audio to its output")
    return done.stdout


def _source(path: str | Path):
    """What soundfile opens for ``path``: the file's name, or the bytes a pipe command wrote."""
    if is_pipe(path):
        return io.BytesIO(run_pipe(str(path))), str(path).rstrip()[:-1].strip()
    path = _existing_file(path)
    return str(path), path


def read_audio(path: str | Path, start: float = 0.0, end: float | None = None) -> tuple[np.ndarray, int]:
    """Read ``path`` (a file or a ``wav.scp`` pipe; optionally the [start, end) seconds) as float32 mono
    and its rate."""
    source, path = _source(path)
    return _read(source, path, start, end)


def read_audio_bytes(data: bytes, name: str) -> tuple[np.ndarray, int]:
    """Audio sent as bytes (an upload; ``name`` in messages) as float32 mono and its rate: any
    format ``read_audio`` reads, never a path or a command."""
    if not data:
        raise AudioError(f"{name}: the file is empty (0 bytes)")
    return _read(io.BytesIO(data), name, 0.0, None, strict=True)


def _truncation(handle: soundfile.SoundFile) -> str | None:
    """What a file's header promised and its bytes hold, when its audio was cut short (libsndfile
    notes ``data : 32000 (should be 15978)`` in its log, and reads what is there)."""
    for line in handle.extra_info.splitlines():
        name, _, rest = line.partition(":")
        if name.strip().lower() in ("data", "ssnd") and "(should be" in rest:
            said, _, held = rest.partition("(should be")
            return f"its header announces {said.strip()} bytes of audio, it holds {held.strip(' )')}"
    return None


def _read(source, path, start: float, end: float | None, strict: bool = False) -> tuple[np.ndarray, int]:
    """``strict``: a truncated file is an error (an upload), else a warning (a file on disk: its
    audio is what was recorded before the cut)."""
    try:
        with soundfile.SoundFile(source) as handle:
            cut = _truncation(handle)
            if cut is not None and strict:
                raise AudioError(f"{path}: truncated audio file ({cut})")
            if cut is not None:
                log.warning("%s: truncated audio file (%s); transcribing what it holds", path, cut)
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
    mono = downmix(samples)
    if not np.isfinite(mono).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(mono, dtype=np.float32), rate


SILENT_CHANNEL_DB = 30.0  # a channel this far below the loudest one is left out of the downmix
CANCELLED_DB = 10.0  # a mean this far below its channels' mean power has cancelled them out


def downmix(samples: np.ndarray) -> np.ndarray:
    """(N, C) -> (N,): the mean of the channels that carry the signal. A channel more than 30 dB
    below the loudest (a silent or unplugged one) is left out, so that it neither halves the level
    nor adds its hiss; channels of a real stereo recording are averaged as usual. Where the mean
    is more than 10 dB below the channels themselves, they cancel (a channel in anti-phase, as a
    miswired cable gives): the loudest channel is taken alone instead."""
    if samples.shape[1] == 1:
        return samples[:, 0]
    power = np.mean(np.square(samples, dtype=np.float64), axis=0)
    live = power >= power.max() * 10 ** (-SILENT_CHANNEL_DB / 10)
    mixed = samples[:, live].mean(axis=1) if not live.all() else samples.mean(axis=1)
    if np.mean(np.square(mixed, dtype=np.float64)) < power[live].mean() * 10 ** (-CANCELLED_DB / 10):
        return samples[:, int(np.argmax(power))]
    return mixed


def active_level(samples: np.ndarray, frame: int = 160) -> float:
    """RMS of the loud part of a signal: the 95th percentile of its ``frame``-sample frame RMS
    levels (frames of 10 ms at 16 kHz), so that pauses and leading silence do not count."""
    usable = len(samples) // frame * frame
    if usable == 0:
        return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    levels = np.sqrt(np.mean(np.square(samples[:usable].reshape(-1, frame), dtype=np.float64), axis=1))
    return float(np.percentile(levels, 95))


CLIPPED_SHARE = 1e-3  # more than 0.1% of the samples at full scale: clipped
LOW_LEVEL_DBFS = -45.0  # where speech is; AN4 clean test: -34 to -18 dBFS
LOW_RATE_RATIO = 0.75  # a file below 3/4 of the model's rate lacks the top of the model's band


def leading_zeros(samples: np.ndarray) -> int:
    """How many samples at the start are exactly zero: digital silence, which a device sends while
    it opens (a browser's microphone: its first 10-20 ms) and padding tools write, and which carries
    no sound. ``len(samples)`` when all are. Recognition from audio (``transcribe``, the server,
    streams) starts at the first other sample and keeps times on the input's clock, so that a live
    stream and the file it plays are heard from the same sample (see ``recognize.stream``)."""
    nonzero = np.flatnonzero(samples)
    return int(nonzero[0]) if len(nonzero) else len(samples)


def input_warnings(samples: np.ndarray, rate: int, model_rate: int) -> list[str]:
    """How a recording (mono samples at its own rate) is far from what a model hears in training:
    clipped samples, a very low level, a rate far below the model's. Empty when nothing is."""
    found = []
    if len(samples) == 0:
        return found
    clipped = float(np.mean(np.abs(samples) >= 0.99))
    if clipped > CLIPPED_SHARE:
        found.append(f"{100 * clipped:.1f}% of the samples are at full scale (clipped)")
    level = active_level(samples, max(1, rate // 100))
    if level > 0 and 20 * np.log10(level) < LOW_LEVEL_DBFS:
        found.append(f"the level is very low ({20 * np.log10(level):.0f} dBFS where speech is)")
    elif level == 0:
        found.append("the audio is digital silence")
    if rate < LOW_RATE_RATIO * model_rate:
        found.append(f"it is sampled at {rate} Hz, so it has nothing above {rate // 2} Hz, and the model was "
                     f"trained on {model_rate} Hz audio")
    return found


def quiet_notices() -> None:
    """This process keeps its once-per-process notices (resampling) to itself: a feature job,
    whose parent says them (``resampled_rates``, ``note_resampling``), so that ``--nj N`` says
    each thing once, not N times."""
    global _notices
    _notices = False


def note_resampling(rate: int, target_rate: int) -> None:
    """Say once per process that audio at ``rate`` is resampled."""
    if (rate, target_rate) not in _reported_rates:
        _reported_rates.add((rate, target_rate))
        if _notices:
            log.info("resampling audio from %d Hz to the model's %d Hz", rate, target_rate)


def resampled_rates() -> list[tuple[int, int]]:
    return sorted(_reported_rates)


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    if rate == target_rate:
        return samples
    note_resampling(rate, target_rate)
    import librosa

    return librosa.resample(samples, orig_sr=rate, target_sr=target_rate, res_type="soxr_hq").astype(np.float32)


class StreamResampler:
    """Audio at ``rate`` to ``target``, chunk by chunk, the filter's state carried over: soxr's
    streaming resampler at the quality ``resample`` uses (librosa's ``soxr_hq``), whose output is
    sample for sample that of resampling the whole signal at once, however it is cut into chunks."""

    def __init__(self, rate: int, target: int) -> None:
        self.stream = None
        if rate != target:
            import soxr

            note_resampling(rate, target)
            self.stream = soxr.ResampleStream(rate, target, 1, dtype="float32", quality="HQ")

    def __call__(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        return samples if self.stream is None else self.stream.resample_chunk(samples, last=last)


def load_audio(path: str | Path, target_rate: int, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """Read, downmix and resample to ``target_rate``: float32 samples in [-1, 1]."""
    samples, rate = read_audio(path, start, end)
    return resample(samples, rate, target_rate)



def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header (no decoding; a pipe is run); AudioError if unreadable."""
    source, path = _source(path)
    try:
        info = soundfile.info(source)
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
