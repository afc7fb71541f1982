"""Streaming sessions (asrkit.recognize.stream): a stream's features equal the whole signal's, its
final result equals offline ``transcribe`` of the file (greedy, beam, LM, lexicon, rescoring), partial
results come after every chunk, endpoints cut continuous audio into utterances on the stream's clock,
and what cannot stream says so in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from asrkit.config import FeatureConfig
from asrkit.data.features import StreamingFeatures, compute_features
from asrkit.errors import AsrkitError, ConfigError
from asrkit.search.options import SearchOptions

from conftest import run_cli, tone_words, torch_blocked_env


@pytest.mark.parametrize("causal_cmn,level_norm", [(False, "none"), (True, "none"), (True, "running")])
@pytest.mark.parametrize("piece", [1, 80, 333, 4000])
def test_streamed_features_are_the_whole_signals(piece, causal_cmn, level_norm):
    cfg = FeatureConfig(sample_rate=8000, num_mel_bins=23, level_norm=level_norm, utterance_cmn=False,
                        causal_cmn=causal_cmn)
    samples = np.concatenate([tone_words(["a", "b", "a"], seed=3)] * 3)  # past the running mean's warm-up
    stream = StreamingFeatures(cfg)
    got = np.concatenate([stream.accept(samples[i:i + piece]) for i in range(0, len(samples), piece)]
                         + [stream.finish()])
    want = compute_features(samples, cfg)
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-4


def test_whole_utterance_features_cannot_stream():
    with pytest.raises(ConfigError, match="cannot stream.*level_norm: running or none"):
        StreamingFeatures(FeatureConfig())
    with pytest.raises(ConfigError, match="utterance_cmn and feature.causal_cmn.*choose one"):
        FeatureConfig(causal_cmn=True).check()


def test_the_running_level_is_a_decaying_peak_and_its_floor_takes_the_level_away():
    from asrkit.data.features import LEVEL_RELEASE, running_level

    power = np.random.default_rng(1).exponential(1.0, 900) * np.repeat([1.0, 1e-3, 30.0], 300)
    level, want = -np.inf, np.empty_like(power)
    for t, p in enumerate(power):  # L_t = max(p_t, L_{t-1} e^(-1/R))
        level = max(p, level * np.exp(-1 / LEVEL_RELEASE))
        want[t] = level
    got, peak, count = running_level(power)
    assert count == 900 and np.allclose(got, want, rtol=1e-9)
    first, peak, count = running_level(power[:400])  # in pieces, carrying (peak, frames so far)
    assert np.allclose(np.concatenate([first, running_level(power[400:], peak, count)[0]]), want, rtol=1e-9)
    cfg = FeatureConfig(sample_rate=8000, num_mel_bins=23, level_norm="running", utterance_cmn=False,
                        causal_cmn=True)
    speech = tone_words(["a", "b", "a", "b"], seed=9)
    loud, quiet = compute_features(speech, cfg), compute_features(speech * 10 ** (-45 / 20), cfg)
    assert np.abs(loud - quiet).max() < 1e-3  # 45 dB quieter: the same features (the floor moved with it)
    plain = FeatureConfig(sample_rate=8000, num_mel_bins=23, level_norm="none", utterance_cmn=False,
                          causal_cmn=True)  # the running mean alone: the fixed floor changes them
    assert np.abs(compute_features(speech, plain) - compute_features(speech * 10 ** (-45 / 20), plain)).max() > 1


def test_the_running_mean_is_the_cumulative_mean_then_an_exponential_average():
    from asrkit.data.features import CMN_WINDOW, running_mean

    feats = (np.random.default_rng(0).standard_normal((2 * CMN_WINDOW + 50, 4)) + 3).astype(np.float32)
    mean, want = np.zeros(4), np.empty_like(feats)
    for t, frame in enumerate(feats):  # m_t = m_{t-1} + (x_t - m_{t-1}) / min(t + 1, window)
        mean = mean + (frame - mean) / min(t + 1, CMN_WINDOW)
        want[t] = frame - mean
    got, _, count = running_mean(feats)
    assert count == len(feats) and np.abs(got - want).max() < 1e-5
    assert np.abs(got[:CMN_WINDOW].mean(0)).max() < 0.2 and np.abs(got[-100:].mean(0)).max() < 0.3


def session_text(recognizer, path, search, chunk_ms=160.0, piece=400):
    from asrkit.recognize.stream import StreamingSession

    session = StreamingSession(recognizer, search, chunk_ms=chunk_ms)
    samples, _ = soundfile.read(path, dtype="float32")
    partials = []
    for i in range(0, len(samples), piece):
        partials += session.accept(samples[i:i + piece])
    finals = session.finish()
    assert all(not r.final for r in partials) and [r.final for r in finals] == [True]
    return finals[0], partials


def test_a_streams_final_result_is_offline_transcribes(stream_exp, tone_corpus, tmp_path, capsys):
    from asrkit.recognize.recognizer import Recognizer

    recognizer = Recognizer(stream_exp)
    lm = tmp_path / "lm.arpa"
    assert run_cli(["-q", "lm", "build", tone_corpus["train"], "--out", lm, "--order", "2"], capsys)[0] == 0
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("a\nb\n")
    wavs = sorted((tone_corpus["dev"] / "audio").glob("*.wav"))[:4]
    searches = [SearchOptions("greedy"), SearchOptions("beam", 4), SearchOptions("beam", 4, lm=str(lm)),
                SearchOptions("beam", 4, lexicon=str(lexicon)), SearchOptions("rescore", 4)]
    for search in searches:
        offline = recognizer.transcribe_files(wavs, search)
        for wav, want in zip(wavs, offline):
            final, partials = session_text(recognizer, wav, search)
            assert final.text == want.text, (search, wav.name)
            assert partials and final.start == 0.0
    final, _ = session_text(recognizer, wavs[0], SearchOptions("beam", 4), chunk_ms=80.0, piece=37)
    assert final.text == recognizer.transcribe_files(wavs[:1], SearchOptions("beam", 4))[0].text


def test_endpoints_cut_a_stream_into_utterances_on_its_clock(stream_exp):
    from asrkit.recognize.recognizer import Recognizer
    from asrkit.recognize.stream import EndpointRules, StreamingSession

    recognizer = Recognizer(stream_exp)
    gap = np.zeros(8000 * 2, dtype=np.float32)  # 2 s of silence between two utterances
    first, second = tone_words(["a", "b"], seed=1), tone_words(["b"], seed=2)
    samples = np.concatenate([first, gap, second, gap])
    session = StreamingSession(recognizer, SearchOptions("greedy"), chunk_ms=160.0, with_words=True,
                               endpoint=EndpointRules(silence_after_speech=0.8, silence_alone=1.5))
    results = session.accept(samples) + session.finish()
    finals = [r for r in results if r.final]
    assert len(finals) == 2, [(r.text, r.start, r.end) for r in finals]
    assert finals[1].start >= len(first) / 8000 + 0.8  # the second utterance's times are the stream's
    if finals[1].words:
        assert finals[1].words[0].start >= len(first) / 8000 + len(gap) / 8000 - 0.5


def test_what_cannot_stream_is_refused_in_one_line(stream_exp, trained_exp):
    from asrkit.recognize.recognizer import Recognizer
    from asrkit.recognize.stream import EndpointRules, StreamingSession

    with pytest.raises(AsrkitError, match="not a whole number of the model's 40 ms frames; use e.g. 160"):
        StreamingSession(Recognizer(stream_exp), chunk_ms=100)
    with pytest.raises(AsrkitError, match="bidirectional encoder cannot stream"):
        StreamingSession(Recognizer(trained_exp))
    with pytest.raises(ConfigError, match="endpoint.silence_alone"):
        EndpointRules(silence_alone=0)


def test_transcribe_stream_prints_what_offline_transcribe_prints(stream_exp, tone_corpus, tmp_path, capsys):
    wavs = sorted((tone_corpus["dev"] / "audio").glob("*.wav"))[:3]
    for fmt in ("txt", "json"):
        for mode in (["--mode", "greedy"], ["--mode", "rescore", "--beam", "4"]):
            code, offline, err = run_cli(["transcribe", stream_exp, *wavs, "--format", fmt, *mode], capsys)
            assert code == 0, err
            code, streamed, err = run_cli(["transcribe", stream_exp, *wavs, "--format", fmt, "--stream",
                                           "--chunk-ms", "160", *mode], capsys)
            assert code == 0, err
            assert streamed == offline, (fmt, mode)
    long = tmp_path / "long.wav"  # two utterances and silence: --endpoint gives each its own line
    soundfile.write(long, np.concatenate([tone_words(["a", "b"], seed=1), np.zeros(8000 * 2, np.float32),
                                          tone_words(["b"], seed=2), np.zeros(8000 * 3, np.float32)]), 8000)
    code, out, err = run_cli(["transcribe", stream_exp, long, "--stream", "--endpoint"], capsys)
    assert code == 0, err
    assert len(out.splitlines()) == 2 and all(line.startswith(f"{long}\t") for line in out.splitlines())
    short, missing = tmp_path / "short.wav", tmp_path / "missing.wav"  # bad files: a line each, the rest go on
    soundfile.write(short, np.full(40, 0.01, np.float32), 8000)
    code, out, err = run_cli(["transcribe", stream_exp, short, missing, long, "--stream"], capsys)
    assert code == 1 and out.startswith(f"{long}\t") and f"{short}: audio is 5.0 ms long" in err
    assert str(missing) in err and len(err.strip().splitlines()) == 2
    code, _, err = run_cli(["transcribe", stream_exp, long, "--endpoint"], capsys)
    assert code == 1 and "--chunk-ms and --endpoint go with --stream" in err
    code, _, err = run_cli(["transcribe", stream_exp, long, "--stream", "--chunk-ms", "100"], capsys)
    assert code == 1 and err.strip().splitlines()[-1].startswith("error: --chunk-ms 100 is not a whole number")


def test_the_streaming_benchmark_prints_every_chunk_size_with_nothing_differing(stream_exp, tone_corpus):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "streaming.py"
    done = subprocess.run([sys.executable, str(script), str(stream_exp), str(tone_corpus["dev"]), "--chunk-ms",
                           "80,160", "--mode", "beam", "--beam", "4"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.strip().endswith("ms")]
    assert [row[0] for row in rows] == ["80ms", "160ms"] and [row[1] for row in rows] == ["160ms", "240ms"]
    assert all(row[3] == "0" for row in rows), done.stdout  # streamed finals equal offline transcribe


@pytest.fixture(scope="module")
def stream_bundle(stream_exp, tmp_path_factory):
    from asrkit.recognize.export import export_bundle

    return export_bundle(stream_exp, tmp_path_factory.mktemp("stream_bundle") / "bundle")


def test_a_streaming_bundle_streams_as_the_checkpoint(stream_exp, stream_bundle, tone_corpus):
    """The bundle's streaming graph (states in and out) with its numpy steps (buffering, lookahead,
    CTC head): the checkpoint's streamed log-probs chunk by chunk, and offline transcribe's texts."""
    import json

    from asrkit.recognize.recognizer import Recognizer

    manifest = json.loads((stream_bundle / "manifest.json").read_text())
    assert manifest["stream"]["factor"] == 4 and {"encoder_stream.onnx", "stream.npz"} <= set(manifest["files"])
    checkpoint, bundle = Recognizer(stream_exp), Recognizer(stream_bundle)
    feats = np.random.default_rng(0).standard_normal((53, checkpoint.config.feature.dim)).astype(np.float32)
    sides = []
    for recognizer in (checkpoint, bundle):
        state, parts = recognizer.backend.stream_start(), []
        for start, size in ((0, 5), (5, 1), (6, 17), (23, 30)):
            log_probs, _, state = recognizer.backend.stream_step(feats[start:start + size], state, False)
            parts.append(log_probs)
        log_probs, _, state = recognizer.backend.stream_step(feats[:0], state, True)
        sides.append(np.concatenate(parts + [log_probs]))
    assert sides[0].shape == sides[1].shape and np.abs(sides[0] - sides[1]).max() < 1e-4
    wavs = sorted((tone_corpus["dev"] / "audio").glob("*.wav"))[:4]
    for search in (SearchOptions("greedy"), SearchOptions("beam", 4), SearchOptions("rescore", 4)):
        offline = checkpoint.transcribe_files(wavs, search)
        for wav, want in zip(wavs, offline):
            assert session_text(bundle, wav, search)[0].text == want.text, (search, wav.name)


def test_a_bundle_without_a_streaming_graph_says_why(trained_exp, tmp_path):
    from asrkit.recognize.export import export_bundle
    from asrkit.recognize.recognizer import Recognizer
    from asrkit.recognize.stream import StreamingSession

    bundle = export_bundle(trained_exp, tmp_path / "bidirectional")
    with pytest.raises(AsrkitError, match="has no streaming graph: its encoder is bidirectional"):
        StreamingSession(Recognizer(bundle))


def test_a_streaming_bundle_streams_without_torch(stream_exp, stream_bundle, tone_corpus, tmp_path, capsys):
    import subprocess
    import sys

    env = torch_blocked_env(tmp_path / "no_torch")
    wavs = sorted((tone_corpus["dev"] / "audio").glob("*.wav"))[:3]
    code, want, err = run_cli(["transcribe", stream_exp, *wavs, "--mode", "rescore", "--beam", "4"], capsys)
    assert code == 0, err
    got = subprocess.run([sys.executable, "-m", "asrkit", "transcribe", str(stream_bundle), *map(str, wavs),
                          "--stream", "--chunk-ms", "160", "--mode", "rescore", "--beam", "4"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr
    assert got.stdout == want


FAKE_SOUNDDEVICE = """
# A stand-in for the sounddevice package: the "microphone" plays $ASRKIT_FAKE_MIC, then silence;
# device "broken" cannot be opened, as PortAudio says of a missing device.
import os
import numpy as np
import soundfile


class PortAudioError(Exception):
    pass


class InputStream:
    def __init__(self, samplerate, channels, dtype, device, blocksize):
        if device == "broken":
            raise PortAudioError("Error querying device -1")
        samples, rate = soundfile.read(os.environ["ASRKIT_FAKE_MIC"], dtype="float32")
        assert rate == samplerate and channels == 1 and dtype == "float32"
        self.samples, self.position = samples, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, frames):
        block = self.samples[self.position:self.position + frames]
        self.position += frames
        return np.pad(block, (0, frames - len(block)))[:, None], False
"""


def test_listen_transcribes_the_microphone_and_names_a_device_it_cannot_open(stream_exp, tmp_path):
    import os
    import subprocess
    import sys

    fake = tmp_path / "fake" / "sounddevice.py"
    fake.parent.mkdir()
    fake.write_text(FAKE_SOUNDDEVICE)
    speech = tmp_path / "speech.wav"
    soundfile.write(speech, np.concatenate([tone_words(["a", "b"], seed=1), np.zeros(8000 * 2, np.float32),
                                            tone_words(["b"], seed=2)]), 8000)
    env = {**os.environ, "ASRKIT_FAKE_MIC": str(speech),
           "PYTHONPATH": os.pathsep.join([str(fake.parent)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    command = [sys.executable, "-m", "asrkit", "listen", str(stream_exp), "--seconds", "6"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    from asrkit.recognize.recognizer import Recognizer

    recognizer = Recognizer(stream_exp)
    want = recognizer.transcribe_files([speech])[0].text  # offline: one utterance; listening: two lines
    assert len(done.stdout.splitlines()) == 2
    assert "".join(done.stdout.split()) == "".join(want.split())
    broken = subprocess.run(command + ["--device", "broken"], env=env, capture_output=True, text=True, timeout=300)
    assert broken.returncode == 1 and broken.stderr.strip().splitlines() == [
        "error: cannot open the microphone broken at 8000 Hz: Error querying device -1"]
    missing = subprocess.run(command, env={**os.environ}, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "needs sounddevice: pip install 'asrkit[listen]'" in missing.stderr


@pytest.mark.parametrize("kind", ["checkpoint", "bundle"])
def test_streams_stepped_as_one_batch_give_what_each_gives_alone(kind, stream_exp, stream_bundle, tone_corpus):
    """``step_streams``: several streams at different points (their first chunk, their tenth, with
    their lookahead's frames held) through the encoder as one batch give each stream's own
    log-probs, and their final texts are offline transcribe's."""
    from asrkit.recognize.recognizer import Recognizer
    from asrkit.recognize.stream import StreamingSession, step_streams

    recognizer = Recognizer(stream_exp if kind == "checkpoint" else stream_bundle)
    wavs = sorted((tone_corpus["dev"] / "audio").glob("*.wav"))[:4]
    search = SearchOptions("beam", 4)
    alone = [StreamingSession(recognizer, search, chunk_ms=80.0) for _ in wavs]
    together = [StreamingSession(recognizer, search, chunk_ms=80.0) for _ in wavs]
    audio = [soundfile.read(w, dtype="float32")[0] for w in wavs]
    starts = [0, 0, 0, 0]
    batches, worst = [], 0.0
    for round_ in range(40):
        for i, samples in enumerate(audio):
            piece = 333 * (i + 1) if round_ else 700 * i  # the streams drift apart
            for session in (alone[i], together[i]):
                session.feed(samples[starts[i]:starts[i] + piece])
            starts[i] += piece
        while True:
            ready = [(i, s, c) for i, s in enumerate(together) if (c := s.take_chunk()) is not None]
            if not ready:
                break
            batches.append(len(ready))
            steps = step_streams(recognizer.backend, [c for _, _, c in ready], [s.state for _, s, _ in ready])
            for (i, session, _), step in zip(ready, steps):
                own = alone[i].backend.stream_step(alone[i].take_chunk(), alone[i].state, False)
                worst = max(worst, float(np.abs(own[0] - step[0]).max()) if len(own[0]) else 0.0)
                alone[i].consume(*own)
                session.consume(*step)
    assert max(batches) >= 3 and worst < 1e-4, (batches, worst)
    offline = Recognizer(stream_exp).transcribe_files(wavs, search)
    for i, session in enumerate(together):
        assert session.finish()[-1].text == alone[i].finish()[-1].text == offline[i].text


def test_digital_silence_at_the_start_is_counted_not_heard(stream_exp, tmp_path, capsys):
    """A browser's microphone opens with 10-20 ms of exact zeros; a stream and offline ``transcribe``
    both start at the first other sample, so that a file heard with them in front gives the same
    words from the same frames (their confidences equal), at times later by exactly the silence; a
    file of nothing but zeros gives an empty line."""
    import json

    speech = tone_words(["a", "b", "a"], seed=5)
    speech[0] = speech[0] or 0.001  # its own first sample is sound
    plain, padded, silent = tmp_path / "plain.wav", tmp_path / "padded.wav", tmp_path / "silent.wav"
    soundfile.write(plain, speech, 8000, subtype="FLOAT")
    soundfile.write(padded, np.concatenate([np.zeros(173, np.float32), speech]), 8000, subtype="FLOAT")
    soundfile.write(silent, np.zeros(8000, np.float32), 8000, subtype="FLOAT")
    for how in ([], ["--stream", "--chunk-ms", "160"], ["--stream", "--endpoint"]):
        code, out, err = run_cli(["transcribe", stream_exp, plain, padded, silent, "--format", "json", *how],
                                 capsys)
        assert code == 0, err
        got = {Path(row["file"]).name: row for row in map(json.loads, out.splitlines())}
        assert got["plain.wav"]["text"] and got["padded.wav"]["text"] == got["plain.wav"]["text"], how
        assert got["silent.wav"]["text"] == "" and got["silent.wav"]["words"] == [], how
        for a, b in zip(got["plain.wav"]["words"], got["padded.wav"]["words"]):
            shifted = (b["start"] - a["start"], b["end"] - a["end"])  # JSON holds milliseconds
            assert all(abs(s - 173 / 8000) < 1.1e-3 for s in shifted), (how, a, b)
            assert b["confidence"] == a["confidence"], (how, a, b)  # the same frames heard
    import soxr  # a file at another rate, with digital silence in front: a stream resamples it as it comes,
    other = tmp_path / "other_rate.wav"  # sample for sample as offline transcribe resamples the whole file
    soundfile.write(other, np.concatenate([np.zeros(301, np.float32), soxr.resample(speech, 8000, 22050)]), 22050,
                    subtype="FLOAT")
    outputs = [run_cli(["transcribe", stream_exp, other, "--format", "json", *how], capsys)
               for how in ([], ["--stream", "--chunk-ms", "160"])]
    assert outputs[0][0] == outputs[1][0] == 0 and outputs[0][1] == outputs[1][1] and '"text": ""' not in outputs[0][1]
