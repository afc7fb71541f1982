"""Bad input through the CLI: exit code 1 and one red line naming the culprit, never a traceback."""

import numpy as np
import pytest
import soundfile

from conftest import run_cli


def assert_one_line_error(code, err, *fragments):
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture()
def fake_exp(tmp_path):
    """A checkpoint-shaped file that is not a checkpoint."""
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "best.pt").write_bytes(b"this is not a checkpoint")
    return exp


def test_version_and_help(capsys):
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.startswith("asrkit ")
    code, out, _ = run_cli(["train", "--help"], capsys)
    assert code == 0 and "--resume" in out


def test_checkpoint_that_is_not_a_checkpoint(fake_exp, wav_file, capsys):
    code, _, err = run_cli(["transcribe", fake_exp, wav_file], capsys)
    assert_one_line_error(code, err, "best.pt is not an asrkit checkpoint")
    code, _, err = run_cli(["transcribe", fake_exp.parent / "nothing-here", wav_file], capsys)
    assert_one_line_error(code, err, "does not exist")
    empty = fake_exp.parent / "empty_exp"
    empty.mkdir()
    code, _, err = run_cli(["decode", empty, fake_exp], capsys)
    assert_one_line_error(code, err, "holds no checkpoint")


def test_unknown_config_key(tmp_path, tone_corpus, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  hidden: 12\n")
    code, _, err = run_cli(["train", "--train", tone_corpus["train"], "--config", config, "--out", tmp_path / "e"],
                           capsys)
    assert_one_line_error(code, err, "unknown key 'hidden'", "c.yaml")
    assert not (tmp_path / "e").exists()  # nothing half-written


def test_data_dir_errors(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_text("u1 /x/1.wav\nu2 /x/2.wav\n")
    (d / "utt2spk").write_text("u1 s\nu2 s\n")
    (d / "text").write_text("u1 HI\n")
    code, _, err = run_cli(["data", "validate", d], capsys)
    assert_one_line_error(code, err, "'u2' has no entry in text")
    (d / "text").write_text("u2 HI\nu1 HO\n")
    code, _, err = run_cli(["data", "validate", d], capsys)
    assert_one_line_error(code, err, "text line 2", "out of order")
    (d / "text").write_text("u1 HI\nu1 HO\n")
    code, _, err = run_cli(["data", "validate", d], capsys)
    assert_one_line_error(code, err, "duplicate id 'u1'")
    (d / "text").write_text("u1 HI\nu2 HO\n")
    code, out, err = run_cli(["data", "validate", d], capsys)
    assert_one_line_error(code, err, "2 audio files do not exist")


def test_fix_then_validate(tmp_path, wav_file, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_text(f"u2 {wav_file}\nu1 {wav_file}\n")
    (d / "utt2spk").write_text("u1 s\nu2 s\n")
    (d / "text").write_text("u1 HI\n")
    code, out, _ = run_cli(["data", "fix", d], capsys)
    assert code == 0 and "1 utterances dropped" in out and (d / ".backup" / "wav.scp").is_file()
    code, out, _ = run_cli(["data", "validate", d], capsys)
    assert code == 0 and "OK, 1 utterances" in out


def test_audio_errors_in_transcribe(trained_exp, tmp_path, capsys):
    code, _, err = run_cli(["transcribe", trained_exp, tmp_path / "missing.wav"], capsys)
    assert_one_line_error(code, err, "missing.wav does not exist")
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(b"fLaC" + bytes(200))
    code, _, err = run_cli(["transcribe", trained_exp, corrupt], capsys)
    assert_one_line_error(code, err, "corrupt.flac: cannot read audio")
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, np.float32), 8000)
    code, _, err = run_cli(["transcribe", trained_exp, empty], capsys)
    assert_one_line_error(code, err, "empty.wav: audio is empty")
    code, _, err = run_cli(["transcribe", trained_exp, tmp_path], capsys)
    assert_one_line_error(code, err, "is a directory")


def test_corrupt_audio_in_training_names_utterance(tmp_path, tone_corpus, tiny_config, capsys):
    import shutil

    d = tmp_path / "train"
    shutil.copytree(tone_corpus["train"], d)
    lines = (d / "wav.scp").read_text().splitlines()
    utt, path = lines[3].split()
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF1234WAVEfmt garbage")
    lines[3] = f"{utt} {broken}"
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    code, _, err = run_cli(["-q", "train", "--train", d, "--config", tiny_config, "--out", tmp_path / "e"], capsys)
    assert_one_line_error(code, err, f"utterance '{utt}'", "broken.wav: cannot read audio")
    assert not (tmp_path / "e" / "last.pt").exists()


def test_eval_missing_file(tmp_path, capsys):
    (tmp_path / "ref").write_text("u1 a b\n")
    code, _, err = run_cli(["eval", tmp_path / "ref", tmp_path / "nohyp"], capsys)
    assert_one_line_error(code, err, "nohyp does not exist")


def test_prepare_bad_corpus_dir(tmp_path, capsys):
    code, _, err = run_cli(["prepare", "yesno", "--corpus-dir", tmp_path, "--out", tmp_path / "o"], capsys)
    assert_one_line_error(code, err, "no yesno wav files")
    code, _, err = run_cli(["prepare", "timit", "--corpus-dir", tmp_path, "--out", tmp_path / "o"], capsys)
    assert_one_line_error(code, err, "unknown corpus 'timit'")


def test_subset_and_split(tone_corpus, tmp_path, capsys):
    from asrkit.data.datadir import DataDir

    code, out, _ = run_cli(["data", "subset", tone_corpus["train"], tmp_path / "sub", "--num-utts", "5"], capsys)
    assert code == 0 and len(DataDir.load(tmp_path / "sub")) == 5
    code, _, _ = run_cli(["data", "split", tone_corpus["train"], tmp_path / "rest", tmp_path / "held",
                          "--fraction", "0.25"], capsys)
    rest, held = DataDir.load(tmp_path / "rest"), DataDir.load(tmp_path / "held")
    assert code == 0 and len(rest) + len(held) == 48 and len(held) == 12
    assert set(rest.text).isdisjoint(held.text)
    code, _, err = run_cli(["data", "subset", tone_corpus["train"], tmp_path / "x"], capsys)
    assert_one_line_error(code, err, "exactly one of --num-utts and --utt-list")


class _Payload:
    """Pickles to a call that would create a file if unpickled with code execution allowed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_checkpoint_with_pickled_code_is_refused(tmp_path, wav_file, capsys):
    import torch

    marker = tmp_path / "pwned"
    torch.save({"format": "asrkit-checkpoint-v1", "evil": _Payload(marker)}, tmp_path / "evil.pt")
    code, _, err = run_cli(["transcribe", tmp_path / "evil.pt", wav_file], capsys)
    assert_one_line_error(code, err, "evil.pt is not an asrkit checkpoint")
    assert not marker.exists()


def test_validate_reads_headers_and_finds_segments_past_the_end(tmp_path, wav_file, capsys):
    duration = soundfile.info(wav_file).duration
    d = tmp_path / "seg"
    d.mkdir()
    (d / "wav.scp").write_text(f"rec1 {wav_file}\n")
    (d / "segments").write_text(f"u1 rec1 0.00 0.30\nu2 rec1 0.30 {duration + 0.5:.2f}\n")
    (d / "text").write_text("u1 a\nu2 b\n")
    (d / "utt2spk").write_text("u1 s\nu2 s\n")
    code, _, err = run_cli(["data", "validate", d], capsys)
    assert_one_line_error(code, err, "utterance 'u2' ends at", f"lasts {duration:.2f}s")
    (d / "segments").write_text(f"u1 rec1 0.00 0.30\nu2 rec1 0.30 {duration:.2f}\n")
    code, out, _ = run_cli(["data", "validate", d], capsys)
    assert code == 0 and "OK, 2 utterances" in out
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF" + bytes(40))
    (d / "wav.scp").write_text(f"rec1 {broken}\n")
    code, _, err = run_cli(["data", "validate", d], capsys)
    assert_one_line_error(code, err, "broken.wav: cannot read audio")


def test_model_at_another_rate_resamples_and_says_so(trained_exp, tmp_path, capsys, caplog):
    import logging

    from conftest import tone_words

    path = tmp_path / "a16k.wav"
    audio = tone_words(["a", "b"], rate=16000, seed=3)
    soundfile.write(path, audio, 16000)  # the tiny model was trained at 8 kHz
    from asrkit.data import audio as audio_module

    audio_module._reported_rates.discard((16000, 8000))
    with caplog.at_level(logging.INFO, logger="asrkit"):
        code, out, err = run_cli(["transcribe", trained_exp, path], capsys)
    assert code == 0 and out.strip()
    assert "resampling audio from 16000 Hz to the model's 8000 Hz" in caplog.text + err


def test_no_ansi_codes_when_not_a_terminal_and_version(trained_exp, tone_corpus, tmp_path):
    import subprocess
    import sys

    from asrkit import __version__

    run = [sys.executable, "-m", "asrkit"]
    done = subprocess.run(run + ["decode", str(trained_exp), str(tone_corpus["dev"]), "--out", str(tmp_path / "d")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stdout + done.stderr  # plain text into pipes and files
    failed = subprocess.run(run + ["transcribe", str(trained_exp), str(tmp_path / "nope.wav")],
                            capture_output=True, text=True)
    assert failed.returncode == 1 and failed.stderr.startswith("error: ") and "\x1b[" not in failed.stderr
    quiet = subprocess.run(run + ["-q", "decode", str(trained_exp), str(tone_corpus["dev"]), "--out",
                                  str(tmp_path / "q")], capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stderr == ""
    version = subprocess.run(run + ["--version"], capture_output=True, text=True)
    assert version.stdout.strip() == f"asrkit {__version__}"


def test_data_with_features_of_another_config_is_refused_for_the_model(trained_exp, tone_corpus, tmp_path, capsys):
    """One data dir, one feature config (Kaldi's way): decoding it with a model of another
    config names both and suggests a copy of the data dir."""
    import shutil

    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("wav.scp", "text", "utt2spk", "spk2utt"):
        shutil.copy(tone_corpus["dev"] / name, dev / name)
    code, out, _ = run_cli(["features", dev, "--set", "feature.kind=mfcc", "--set", "feature.sample_rate=16000"],
                           capsys)
    assert code == 0 and "13-dim mfcc" in out
    code, out, err = run_cli(["decode", trained_exp, dev, "--out", tmp_path / "d"], capsys)
    assert_one_line_error(code, err, "holds features of another config", "kind='mfcc' (asked: 'fbank')",
                          "copy the data dir")
    shutil.copytree(dev, tmp_path / "dev_fbank", ignore=shutil.ignore_patterns("feats.*", "utt2num_frames"))
    code, out, err = run_cli(["decode", trained_exp, tmp_path / "dev_fbank", "--out", tmp_path / "d"], capsys)
    assert code == 0, err
    assert len((tmp_path / "d" / "hyp").read_text().splitlines()) == 12


def test_bad_segment_length_and_worker_count_are_one_line(trained_exp, wav_file, tmp_path, capsys):
    code, _, err = run_cli(["transcribe", trained_exp, wav_file, "--max-seconds", "0.5"], capsys)
    assert_one_line_error(code, err, "--max-seconds must be more than 1")
    code, _, err = run_cli(["train", "--train", tmp_path, "--out", tmp_path / "x", "--set", "train.num_workers=-2"],
                           capsys)
    assert_one_line_error(code, err, "train.num_workers must be -1 (auto), 0 or more")
    code, _, err = run_cli(["train", "--train", tmp_path, "--out", tmp_path / "x", "--set", "train.amp_dtype=fp8"],
                           capsys)
    assert_one_line_error(code, err, "train.amp_dtype must be bf16 or fp16, not 'fp8'")


def test_transcribe_a_10_ms_file_is_one_line_naming_the_minimum(trained_exp, tmp_path, capsys):
    import numpy as np
    import soundfile

    path = tmp_path / "click.wav"
    soundfile.write(path, np.full(80, 0.2, np.float32), 8000)  # 10 ms
    code, out, err = run_cli(["transcribe", trained_exp, path], capsys)
    assert_one_line_error(code, err, str(path), "10.0 ms long", "at least 25 ms")
    assert "n_fft" not in err + out
    just_enough = tmp_path / "short.wav"
    soundfile.write(just_enough, np.full(240, 0.2, np.float32), 8000)  # 30 ms: shorter than n_fft, fine
    code, out, err = run_cli(["transcribe", trained_exp, just_enough], capsys)
    assert code == 0 and "n_fft" not in err and "Warning" not in err


def test_a_usage_error_is_a_message_and_exit_code_2_whatever_typer_carries(capsys):
    """typer 0.29 carries its own copy of click (and no longer installs click): its usage errors
    must still end as click's did, a short message and exit code 2, never a traceback."""
    code, _, err = run_cli(["no-such-command"], capsys)
    assert code == 2 and "No such command" in err and "Traceback" not in err
    code, _, err = run_cli(["train"], capsys)
    assert code == 2 and "Missing option '--out'" in err


def test_decode_and_transcribe_share_one_declaration_of_the_search_options(capsys):
    from asrkit.cli.search_options import _OPTIONS

    flags = {f"--{name.replace('_', '-')}" for name in _OPTIONS}
    _, decode_help, _ = run_cli(["decode", "--help"], capsys)
    _, transcribe_help, _ = run_cli(["transcribe", "--help"], capsys)
    assert all(flag in decode_help for flag in flags)
    assert all(flag in transcribe_help for flag in flags - {"--nbest"}) and "--nbest" not in transcribe_help
    assert "Search" in decode_help and "Search" in transcribe_help  # their own help panel


@pytest.mark.parametrize("command", ["decode", "transcribe"])
@pytest.mark.parametrize("options,message", [
    (["--mode", "greedy", "--lm", "x.arpa"], "--lm needs --mode beam or rescore"),
    (["--mode", "beam", "--beam", "0"], "--beam and --nbest must be at least 1"),
    (["--mode", "viterbi"], "--mode must be one of greedy, beam, rescore"),
    (["--mode", "beam", "--lm-weight", "nan"], "--lm-weight must be a finite number"),
])
def test_bad_search_options_fail_before_a_model_is_looked_for(command, options, message, tmp_path, capsys):
    """The options are one SearchOptions, checked when the command starts: a bad combination is
    the error even where the model does not exist."""
    target = [tmp_path / "no-data"] if command == "decode" else [tmp_path / "no.wav"]
    code, _, err = run_cli([command, tmp_path / "no-exp", *target, *options], capsys)
    assert_one_line_error(code, err, message)


def test_transcribe_goes_on_past_a_bad_file(trained_exp, wav_file, tmp_path, capsys):
    """A bad file gets its one-line error and every other file its transcript, in order; exit code 1."""
    garbage = tmp_path / "random-bytes.wav"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    click = tmp_path / "click.wav"
    soundfile.write(click, np.full(80, 0.2, np.float32), 8000)  # 10 ms: too short for one frame
    files = [wav_file, garbage, wav_file, tmp_path / "missing.wav", click, wav_file]
    code, out, err = run_cli(["transcribe", trained_exp, *files], capsys)
    assert code == 1
    keys = [line.split("\t")[0] for line in out.splitlines()]
    assert keys == [str(wav_file)] * 3
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3
    assert "random-bytes.wav: cannot read audio" in errors[0] and "missing.wav does not exist" in errors[1]
    assert str(click) in errors[2] and "at least 25 ms" in errors[2]
    assert "3 of 6 files could not be transcribed" in err and "Traceback" not in err
    code, out_json, _ = run_cli(["transcribe", trained_exp, wav_file, garbage, "--format", "json"], capsys)
    assert code == 1 and len(out_json.splitlines()) == 1 and '"words"' in out_json


def test_transcripts_hold_one_batch_of_files_at_a_time(trained_exp, wav_file, monkeypatch):
    """Many files: features are read a batch at a time and results come before the later files
    are read, so memory does not grow with the number of files."""
    from asrkit.recognize.recognizer import Recognizer

    recognizer = Recognizer(trained_exp)
    read, seen = [], []
    real = recognizer._segments

    def segments(path, max_seconds):
        read.append(path)
        return real(path, max_seconds)

    monkeypatch.setattr(recognizer, "_segments", segments)
    for result in recognizer.transcripts([wav_file] * 10, batch_size=4):
        seen.append(len(read))
    assert seen == [4, 4, 4, 4, 8, 8, 8, 8, 10, 10]  # each result is out before the next batch is read
    alone = recognizer.transcribe_files([wav_file])[0].text
    assert all(r.text == alone for r in recognizer.transcribe_files([wav_file] * 5))
