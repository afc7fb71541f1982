import logging

import numpy as np
import pytest
import soundfile

from asrkit.data.audio import load_audio, read_audio
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
    assert np.allclose(samples, 0.5, atol=1e-3)  # the silent channel is left out, not averaged in
    soundfile.write(path, np.stack([left, left * 0.5], axis=1), 16000)
    samples, _ = read_audio(path)
    assert np.allclose(samples, 0.375, atol=1e-3)  # two live channels: their mean


def test_channels_in_anti_phase_do_not_cancel_to_silence(tmp_path):
    """A phase-inverted channel (a miswired balanced cable) used to cancel the downmix to silence,
    and the transcript to nothing; now the louder channel is taken. Channels that merely differ
    (two microphones, independent noise) are still averaged."""
    path = tmp_path / "a.wav"
    voice = (0.3 * np.sin(np.arange(16000) / 7.0)).astype(np.float32)
    soundfile.write(path, np.stack([voice, -0.9 * voice], axis=1), 16000, subtype="FLOAT")
    samples, _ = read_audio(path)
    assert np.allclose(samples, voice, atol=1e-6)
    rng = np.random.default_rng(0)
    left, right = (rng.normal(0, 0.1, 16000).astype(np.float32) for _ in range(2))
    soundfile.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    samples, _ = read_audio(path)
    assert np.allclose(samples, (left + right) / 2, atol=1e-6)


def test_resample_is_logged(tmp_path, caplog, monkeypatch):
    import asrkit.data.audio as audio

    monkeypatch.setattr(audio, "_reported_rates", set())  # said once per process: an earlier test may have
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


# ---------------------------------------------------------------- Kaldi pipes in wav.scp

def _pipe_copy(tone_corpus, tmp_path, make_entry, name="piped"):
    """The dev data dir with every wav.scp entry rewritten by ``make_entry(path)``."""
    from asrkit.data.datadir import DataDir

    data = DataDir.load(tone_corpus["dev"])
    data.wav_scp = {k: make_entry(v) for k, v in data.wav_scp.items()}
    out = tmp_path / name
    data.save(out)
    return out


def test_pipes_are_refused_without_the_opt_in_and_decode_like_files_with_it(trained_exp, tone_corpus, tmp_path,
                                                                           capsys, monkeypatch):
    from conftest import run_cli

    monkeypatch.delenv("ASRKIT_ALLOW_PIPES", raising=False)
    piped = _pipe_copy(tone_corpus, tmp_path, lambda path: f"cat {path} |")
    code, _, err = run_cli(["decode", trained_exp, piped, "--out", tmp_path / "refused"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err
    assert f"{piped / 'wav.scp'} line 1:" in lines[0] and "--allow-pipes" in lines[0]
    assert not (tmp_path / "refused").exists() and not (piped / "feats.scp").exists()
    code, _, err = run_cli(["-q", "decode", trained_exp, piped, "--out", tmp_path / "piped", "--allow-pipes"], capsys)
    assert code == 0, err
    assert run_cli(["-q", "decode", trained_exp, tone_corpus["dev"], "--out", tmp_path / "files"], capsys)[0] == 0
    assert (tmp_path / "piped" / "hyp").read_text() == (tmp_path / "files" / "hyp").read_text()
    # the opt-in does not leak into the next command
    code, _, err = run_cli(["data", "validate", piped], capsys)
    assert code == 1 and "--allow-pipes" in err
    code, out, err = run_cli(["data", "validate", piped, "--allow-pipes"], capsys)
    assert code == 0 and "OK" in out


def test_a_streamed_wav_from_a_command_and_the_environment_opt_in(tmp_path, monkeypatch):
    """sox and flac write WAV headers with unknown sizes to a pipe; ASRKIT_ALLOW_PIPES=1 opts in too."""
    import sys

    from asrkit.data.audio import audio_duration, read_audio

    tone = (0.3 * np.sin(np.arange(4000) / 3)).astype(np.float32)
    source = tmp_path / "a.flac"
    soundfile.write(source, tone, 8000)
    script = tmp_path / "stream.py"
    script.write_text(
        "import io, struct, sys, soundfile\n"
        f"data, rate = soundfile.read({str(source)!r}, dtype='int16')\n"
        "buf = io.BytesIO(); soundfile.write(buf, data, rate, format='WAV', subtype='PCM_16')\n"
        "b = bytearray(buf.getvalue()); i = b.find(b'data')\n"
        "b[4:8] = b[i + 4:i + 8] = struct.pack('<I', 0xFFFFFFFF)\n"
        "sys.stdout.buffer.write(bytes(b))\n")
    entry = f"{sys.executable} {script} |"
    monkeypatch.setenv("ASRKIT_ALLOW_PIPES", "1")
    samples, rate = read_audio(entry)
    assert rate == 8000 and len(samples) == 4000 and np.allclose(samples, tone, atol=1e-4)
    assert audio_duration(entry) == 0.5  # libsndfile counts the samples when the header does not say
    part, _ = read_audio(entry, 0.1, 0.2)
    assert len(part) == 800


def test_a_failing_pipe_names_the_utterance_and_the_command_error(trained_exp, tone_corpus, tmp_path, capsys):
    from conftest import run_cli

    piped = _pipe_copy(tone_corpus, tmp_path, lambda path: "sh -c 'echo no such recording >&2; exit 3' |")
    code, _, err = run_cli(["decode", trained_exp, piped, "--allow-pipes", "--out", tmp_path / "d"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err
    assert "utterance 'spk0-02000'" in lines[0] and "exit code 3" in lines[0] and "no such recording" in lines[0]
    empty = _pipe_copy(tone_corpus, tmp_path, lambda path: "true |", "empty")
    code, _, err = run_cli(["features", empty, "--allow-pipes"], capsys)
    assert code == 1 and "wrote no audio" in err


def test_pipes_survive_fix_subset_and_segments(tone_corpus, tmp_path, capsys):
    from asrkit.data.datadir import DataDir

    from conftest import run_cli

    piped = _pipe_copy(tone_corpus, tmp_path, lambda path: f"cat {path} |")
    code, _, _ = run_cli(["data", "subset", piped, tmp_path / "sub", "--num-utts", "3"], capsys)
    assert code == 0 and all(v.endswith("|") for v in DataDir.load(tmp_path / "sub").wav_scp.values())
    data = DataDir.load(piped)
    rec = data.utt_ids()[0]
    data.text = {f"{rec}-seg": data.text[rec]}
    data.utt2spk = {f"{rec}-seg": data.utt2spk[rec]}
    data.wav_scp = {rec: data.wav_scp[rec]}
    data.segments = {f"{rec}-seg": (rec, 0.05, 0.3)}
    data.save(tmp_path / "seg")
    code, _, err = run_cli(["features", tmp_path / "seg", "--allow-pipes", "--set", "feature.sample_rate=8000",
                            "--set", "feature.num_mel_bins=23"], capsys)
    assert code == 0, err


def test_segments_of_one_piped_recording_run_its_command_once(tmp_path, monkeypatch):
    from asrkit.data.audio import read_audio

    monkeypatch.setenv("ASRKIT_ALLOW_PIPES", "1")
    source = tmp_path / "a.wav"
    soundfile.write(source, (0.3 * np.sin(np.arange(8000) / 3)).astype(np.float32), 8000)
    counter = tmp_path / "runs"
    entry = f"sh -c 'echo x >> {counter}; cat {source}' |"
    parts = [read_audio(entry, start, start + 0.2)[0] for start in (0.0, 0.3, 0.6)]
    assert [len(p) for p in parts] == [1600, 1600, 1600]
    assert counter.read_text().count("x") == 1


def test_a_truncated_file_on_disk_is_read_with_a_warning_and_an_upload_is_refused(tmp_path, caplog):
    import io

    from asrkit.data.audio import read_audio, read_audio_bytes
    from asrkit.errors import AudioError

    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(16000, np.float32), 16000, format="WAV", subtype="PCM_16")
    cut = buf.getvalue()[:20044]  # the header says 32000 bytes of audio; 20000 are there
    path = tmp_path / "cut.wav"
    path.write_bytes(cut)
    samples, rate = read_audio(path)
    assert len(samples) == 10000 and rate == 16000
    assert "cut.wav: truncated audio file (its header announces 32000 bytes of audio, it holds 20000)" in caplog.text
    with pytest.raises(AudioError, match="up.wav: truncated audio file"):
        read_audio_bytes(cut, "up.wav")
