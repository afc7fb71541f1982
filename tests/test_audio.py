import logging

import numpy as np
import pytest
import soundfile

from asrkit.audio import load_audio, read_audio
from asrkit.errors import AudioError


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        read_audio(tmp_path / "nope.wav")


def test_directory(tmp_path):
    with pytest.raises(AudioError, match="is a directory"):
        read_audio(tmp_path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "bad.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(AudioError, match="bad.wav: cannot read audio"):
        read_audio(path)


def test_empty_audio(tmp_path):
    path = tmp_path / "empty.wav"
    soundfile.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="audio is empty"):
        read_audio(path)


def test_nan_samples(tmp_path):
    path = tmp_path / "nan.wav"
    soundfile.write(path, np.array([0.1, np.nan, 0.2] * 100, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        read_audio(path)


def test_stereo_flac_downmix(tmp_path):
    path = tmp_path / "s.flac"
    left = np.full(1600, 0.5, np.float32)
    soundfile.write(path, np.stack([left, -left * 0.0], axis=1), 16000)
    samples, rate = read_audio(path)
    assert rate == 16000 and samples.ndim == 1
    assert np.allclose(samples, 0.25, atol=1e-3)


def test_resample_is_logged(tmp_path, caplog):
    path = tmp_path / "eight.wav"
    soundfile.write(path, np.sin(np.arange(8000) / 10).astype(np.float32) * 0.3, 8000)
    logger = logging.getLogger("asrkit")
    logger.propagate = True
    with caplog.at_level(logging.INFO, logger="asrkit"):
        out = load_audio(path, 16000)
    assert abs(len(out) - 16000) <= 2
    assert "resampling audio from 8000 Hz to the model's 16000 Hz" in caplog.text


def test_segment_read(tmp_path):
    path = tmp_path / "r.wav"
    soundfile.write(path, np.arange(16000, dtype=np.float32) / 16000, 16000)
    samples = load_audio(path, 16000, start=0.5, end=0.75)
    assert len(samples) == 4000 and abs(samples[0] - 0.5) < 1e-3
    with pytest.raises(AudioError, match="past the end"):
        load_audio(path, 16000, start=3.0, end=4.0)


def test_ogg_vorbis(tmp_path):
    path = tmp_path / "a.ogg"
    soundfile.write(path, (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32), 16000, format="OGG",
                    subtype="VORBIS")
    samples, rate = read_audio(path)
    assert rate == 16000 and abs(len(samples) - 16000) < 100


def test_nist_sphere_from_an4():
    from conftest import SHARED_CORPORA

    files = sorted((SHARED_CORPORA / "an4" / "wav").rglob("*.sph"))[:1] if SHARED_CORPORA.is_dir() else []
    if not files:
        pytest.skip("../shared/corpora/an4 not present")
    samples, rate = read_audio(files[0])
    assert rate == 16000 and len(samples) > 16000 * 0.5 and np.abs(samples).max() <= 1.0


@pytest.mark.parametrize("subtype", ["PCM_24", "PCM_32", "FLOAT", "DOUBLE", "PCM_U8", "PCM_16"])
def test_sample_formats_read_as_float_in_range(tmp_path, subtype):
    rate = 8000
    t = np.arange(rate // 2) / rate
    wave = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float64)
    path = tmp_path / f"tone_{subtype}.wav"
    soundfile.write(path, wave, rate, subtype=subtype)
    samples, got_rate = read_audio(path)
    assert got_rate == rate and samples.dtype == np.float32 and samples.shape == wave.shape
    tolerance = 1 / 64 if subtype == "PCM_U8" else 1e-3
    assert np.abs(samples - wave).max() < tolerance


def test_three_or_more_channels_are_averaged(tmp_path):
    rate = 8000
    channels = np.stack([np.full(800, 0.3), np.full(800, -0.3), np.full(800, 0.6)], axis=1)
    path = tmp_path / "three.wav"
    soundfile.write(path, channels, rate, subtype="FLOAT")
    samples, _ = read_audio(path)
    assert samples.shape == (800,) and np.allclose(samples, 0.2, atol=1e-6)


@pytest.mark.parametrize("suffix,fmt", [(".flac", "FLAC"), (".wav", "WAV"), (".sph", "NIST")])
def test_truncated_file_is_one_clear_error_or_its_readable_part(tmp_path, suffix, fmt):
    """A file cut short: libsndfile either refuses it (one-line AudioError) or gives the part that is there."""
    path = tmp_path / f"cut{suffix}"
    rate = 16000
    soundfile.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, rate * 2), rate, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    try:
        samples, _ = read_audio(path)
    except AudioError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
    else:
        assert 0 < samples.shape[0] < rate * 2 and np.isfinite(samples).all()
