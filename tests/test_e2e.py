"""End to end: train a tiny model on tone "words" the test synthesises, then decode, score, transcribe."""

import json

import pytest

from asrkit.checkpoint import load_checkpoint

from conftest import run_cli


@pytest.fixture()
def trained(trained_exp):
    return trained_exp


def test_training_learns(trained):
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 10
    assert rows[-1]["train_loss"] < 0.5 * rows[0]["train_loss"]
    assert rows[0]["dev_wer"] >= 0.5  # untrained: mostly blanks
    assert min(r["dev_wer"] for r in rows) < min(0.3, 0.5 * rows[0]["dev_wer"])
    for name in ("config.yaml", "tokens.txt", "cmvn.json", "train.log", "best.pt", "last.pt"):
        assert (trained / name).is_file(), name
    blob = load_checkpoint(trained / "last.pt")
    assert blob.train_state.epoch == 10 and blob.tokens[0] == "<blank>"


def test_decode_eval_transcribe(trained, tone_corpus, tmp_path, capsys):
    code, out, _ = run_cli(["-q", "decode", trained, tone_corpus["dev"], "--out", tmp_path / "dec"], capsys)
    assert code == 0 and (tmp_path / "dec" / "hyp").is_file()
    code, out, _ = run_cli(["eval", tone_corpus["dev"] / "text", tmp_path / "dec" / "hyp"], capsys)
    assert code == 0 and "word" in out and (tmp_path / "dec" / "per_utt").is_file()
    wer_line = (tmp_path / "dec" / "wer").read_text().split()
    assert wer_line[0] == "%WER" and float(wer_line[1]) < 30.0
    wavs = sorted((tone_corpus["dev"].parent / "dev" / "audio").glob("*.wav"))[:2]
    code, out, _ = run_cli(["-q", "transcribe", trained, *wavs], capsys)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 2 and lines[0].startswith(str(wavs[0]))


def test_transcribe_stereo_other_rate(trained, tone_corpus, tmp_path, capsys):
    """A 16 kHz stereo FLAC of an 8 kHz recording transcribes like the original."""
    import librosa
    import numpy as np
    import soundfile

    wav = sorted((tone_corpus["train"] / "audio").glob("*.wav"))[0]
    mono, rate = soundfile.read(wav, dtype="float32")
    up = librosa.resample(mono, orig_sr=rate, target_sr=16000)
    path = tmp_path / "stereo16k.flac"
    soundfile.write(path, np.stack([up, up], axis=1), 16000)
    code, original, _ = run_cli(["-q", "transcribe", trained, wav], capsys)
    code2, converted, _ = run_cli(["-q", "transcribe", trained, path], capsys)
    assert code == code2 == 0 and original.strip() and converted.strip() == original.strip()


def test_resume_continues_same_run(trained, tone_corpus, tmp_path, capsys):
    """Going back to epoch 3 and resuming reproduces the uninterrupted run: same steps, LR, weights."""
    import shutil

    import torch

    exp = tmp_path / "resumed"
    shutil.copytree(trained, exp)
    shutil.copy(exp / "epoch_3.pt", exp / "last.pt")
    code, _, err = run_cli(["-q", "train", "--train", tone_corpus["train"], "--dev", tone_corpus["dev"],
                            "--out", exp, "--resume"], capsys)  # no --config: the run's own config.yaml
    assert code == 0
    rows = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 11))  # epochs 4-10 redone, each row once
    steps = [json.loads(line)["step"] for line in (exp / "steps.jsonl").read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1))  # steps after epoch 3 cut back and redone, once each
    original, resumed = load_checkpoint(trained / "last.pt"), load_checkpoint(exp / "last.pt")
    assert resumed.train_state.epoch == 10 and resumed.config["train"]["epochs"] == 10
    assert resumed.train_state.step == original.train_state.step
    for key, tensor in original.model_state.items():
        assert torch.allclose(tensor, resumed.model_state[key], atol=1e-5), key
    assert resumed.optimizer_state["param_groups"][0]["lr"] == original.optimizer_state["param_groups"][0]["lr"]
    code, _, err = run_cli(["-q", "train", "--train", tone_corpus["train"], "--out", exp], capsys)
    assert code == 1 and "already holds a checkpoint" in err


def test_average_checkpoints(trained, tone_corpus, tmp_path, capsys):
    import torch

    code, out, _ = run_cli(["-q", "average", trained, "-n", "3", "--by", "last", "--out", tmp_path / "avg.pt"], capsys)
    assert code == 0 and "epoch_8, epoch_9, epoch_10" in out
    averaged = load_checkpoint(tmp_path / "avg.pt")
    parts = [load_checkpoint(trained / f"epoch_{e}.pt").model_state for e in (8, 9, 10)]
    for key, tensor in averaged.model_state.items():
        assert torch.allclose(tensor, sum(p[key] for p in parts) / 3, atol=1e-6), key
    assert averaged.optimizer_state is None and averaged.averaged_from == [str(trained / f"epoch_{e}.pt") for e in (8, 9, 10)]
    code, out, _ = run_cli(["-q", "transcribe", tmp_path / "avg.pt",
                            sorted((tone_corpus["dev"] / "audio").glob("*.wav"))[0]], capsys)
    assert code == 0 and out.strip()
    code, out, _ = run_cli(["-q", "average", trained, "-n", "2", "--out", tmp_path / "best2.pt"], capsys)
    assert code == 0 and out.count("epoch_") == 2
    code, _, err = run_cli(["average", trained, "-n", "99"], capsys)
    assert code == 1 and "fewer than the 99 asked for" in err


def test_beam_search_decode_writes_nbest(trained, tone_corpus, tmp_path, capsys):
    code, _, _ = run_cli(["-q", "decode", trained, tone_corpus["dev"], "--mode", "beam", "--beam", "4",
                          "--nbest", "3", "--out", tmp_path / "beam"], capsys)
    assert code == 0
    lines = (tmp_path / "beam" / "nbest").read_text().splitlines()
    first = [line.split(maxsplit=3) for line in lines if line.split()[1] == "1"]
    hyp = dict(line.split(maxsplit=1) if " " in line else (line, "") for line in
               (tmp_path / "beam" / "hyp").read_text().splitlines())
    assert len(first) == 12 and all(hyp[utt] == (rest[2] if len(rest) > 2 else "") for utt, *rest in first)
    code, _, err = run_cli(["decode", trained, tone_corpus["dev"], "--mode", "beam", "--beam", "0"], capsys)
    assert code == 1 and "--beam and --nbest must be at least 1" in err
    code, _, err = run_cli(["transcribe", trained, tone_corpus["dev"] / "wav.scp", "--mode", "viterbi"], capsys)
    assert code == 1 and "--mode must be one of greedy, beam, rescore" in err


def test_non_finite_batches_are_skipped_and_counted(tone_corpus, tmp_path, monkeypatch):
    import math

    import asrkit.training.trainer as training
    from asrkit.config import load_config
    from asrkit.errors import TrainingError

    real = training.compute_loss
    calls = {"n": 0}

    def sometimes_nan(model, batch, ctc_loss):
        calls["n"] += 1
        loss = real(model, batch, ctc_loss)
        return loss * math.nan if calls["n"] % 3 == 0 else loss

    monkeypatch.setattr(training, "compute_loss", sometimes_nan)
    cfg = load_config(None, ["feature.sample_rate=8000", "feature.num_mel_bins=23", "model.num_layers=1",
                             "model.hidden_size=16", "train.epochs=2", "train.max_frames_per_batch=400"])
    state = training.train(tone_corpus["train"], None, tmp_path / "nan", cfg)
    assert state.skipped_batches == calls["n"] // 3 > 0
    assert state.step == calls["n"] - state.skipped_batches
    assert "non-finite loss or gradient" in (tmp_path / "nan" / "train.log").read_text()

    monkeypatch.setattr(training, "compute_loss", lambda m, b, c: real(m, b, c) * math.nan)
    with pytest.raises(TrainingError, match="every batch had a non-finite loss"):
        training.train(tone_corpus["train"], None, tmp_path / "allnan", cfg)
    assert not (tmp_path / "allnan" / "last.pt").exists()


def test_ctrl_c_saves_and_resume_finishes_the_same_run(trained, tone_corpus, tmp_path, capsys, monkeypatch):
    """Ctrl-C in the middle of epoch 4 saves last.pt; --resume ends with the weights of a run never stopped."""
    import torch

    import asrkit.training.trainer as training

    from conftest import TINY_CONFIG, interrupt_at_call

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    steps_per_epoch = load_checkpoint(trained / "epoch_1.pt").train_state.step
    stop_at = 3 * steps_per_epoch + 2  # the second batch of epoch 4
    real = interrupt_at_call(monkeypatch, training, "compute_loss", stop_at)
    exp = tmp_path / "exp"
    args = ["-q", "train", "--train", tone_corpus["train"], "--dev", tone_corpus["dev"], "--config", config, "--out", exp]
    code, _, err = run_cli(args, capsys)
    assert code == 130 and "interrupted" in err
    saved = load_checkpoint(exp / "last.pt").train_state
    assert saved.epoch == 3 and saved.batches_done == 1 and saved.step == stop_at - 1
    monkeypatch.setattr(training, "compute_loss", real)
    code, _, _ = run_cli(args + ["--resume"], capsys)
    assert code == 0
    original, resumed = load_checkpoint(trained / "last.pt"), load_checkpoint(exp / "last.pt")
    assert resumed.train_state.step == original.train_state.step
    for key, tensor in original.model_state.items():
        assert torch.allclose(tensor, resumed.model_state[key], atol=1e-5), key


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tone_corpus, tmp_path, capsys):
    """A training process killed with SIGKILL loses at most the steps since its last save."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import torch

    from conftest import HOLD, TINY_CONFIG

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    overrides = ["--set", "train.epochs=25", "--set", "train.save_every_steps=1"]
    common = ["train", "--train", str(tone_corpus["train"]), "--config", str(config), *overrides]
    killed = tmp_path / "killed"
    held = {**os.environ, "ASRKIT_TEST_HOLD_SAVE": "1"}  # it waits after its first save in epoch 3: cannot finish
    process = subprocess.Popen([sys.executable, HOLD, "3", "-q", *common, "--out", str(killed)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=held)
    state, deadline = None, time.time() + 120
    try:
        while time.time() < deadline and process.poll() is None:
            try:
                state = load_checkpoint(killed / "last.pt").train_state
            except Exception:  # not written yet
                state = None
            if state and state.epoch >= 2 and state.batches_done > 0:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        process.kill()
        process.wait()
    saved = load_checkpoint(killed / "last.pt").train_state
    assert saved.epoch == 2 and saved.batches_done == 1  # the save it waited after
    assert run_cli(["-q", *common, "--out", killed, "--resume"], capsys)[0] == 0
    reference = tmp_path / "reference"
    assert run_cli(["-q", *common, "--out", reference], capsys)[0] == 0
    resumed, original = load_checkpoint(killed / "last.pt"), load_checkpoint(reference / "last.pt")
    assert resumed.train_state.step == original.train_state.step
    assert resumed.train_state.epoch == 25
    for key, tensor in original.model_state.items():
        assert torch.allclose(tensor, resumed.model_state[key], atol=1e-5), key


def test_sentencepiece_model_trains_decodes_and_gives_word_times(tone_corpus, tiny_config, tmp_path, capsys):
    """tokenizer.type sentencepiece end to end: the model is trained and kept in the exp dir and
    the checkpoint; transcribe needs nothing else, and its CTM has one line per spoken word."""
    exp = tmp_path / "sp"
    code, _, err = run_cli(["-q", "train", "--train", tone_corpus["train"], "--dev", tone_corpus["dev"], "--config",
                            tiny_config, "--out", exp, "--set", "tokenizer.type=sentencepiece",
                            "--set", "tokenizer.vocab_size=6", "--set", "train.epochs=12", "--set",
                            "model.ctc_weight=0.5"], capsys)
    assert code == 0, err
    assert (exp / "tokenizer.model").is_file() and load_checkpoint(exp / "best.pt").sentencepiece is not None
    code, _, err = run_cli(["-q", "decode", exp, tone_corpus["dev"], "--mode", "rescore", "--beam", "4",
                            "--out", tmp_path / "dec"], capsys)
    assert code == 0, err
    code, out, _ = run_cli(["eval", tone_corpus["dev"] / "text", tmp_path / "dec" / "hyp"], capsys)
    assert float((tmp_path / "dec" / "wer").read_text().split()[1]) < 30.0
    import torch

    from asrkit.errors import CheckpointError
    from asrkit.recognize.recognizer import Recognizer
    from asrkit.tokenizer import train_sentencepiece

    blob = torch.load(exp / "best.pt", weights_only=True)
    blob["sentencepiece"] = train_sentencepiece(["a b ab ba"] * 20, tmp_path / "other", vocab_size=5).proto
    torch.save(blob, tmp_path / "mismatched.pt")
    with pytest.raises(CheckpointError, match="mismatched.pt: its sentencepiece model .* does not match"):
        Recognizer(tmp_path / "mismatched.pt")
    (exp / "tokenizer.model").unlink()  # transcribe reads it from the checkpoint
    wav = sorted((tone_corpus["dev"] / "audio").glob("*.wav"))[0]
    utt = wav.stem
    code, out, _ = run_cli(["-q", "transcribe", exp, wav, "--format", "ctm"], capsys)
    words = [line.split()[4] for line in out.strip().splitlines()]
    reference = dict(line.split(" ", 1) for line in (tone_corpus["dev"] / "text").read_text().splitlines())[utt]
    assert code == 0 and words == reference.split()
    code, out, err = run_cli(["-q", "train", "--train", tone_corpus["train"], "--config", tiny_config, "--out",
                              tmp_path / "big", "--set", "tokenizer.type=sentencepiece",
                              "--set", "tokenizer.vocab_size=50"], capsys)
    assert code != 0 and "sentencepiece training failed: Vocabulary size too high (50)" in err


def test_epochs_are_picked_by_dev_loss_dev_wer_or_last(tmp_path):
    from asrkit.checkpoint import select_epochs
    from asrkit.errors import CheckpointError

    rows = [(1, 3.0, 0.50), (2, 1.0, 0.40), (3, 2.0, 0.20), (4, 1.5, 0.20), (5, 4.0, 0.10)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "dev_loss": loss, "dev_wer": wer}) + "\n"
                                                    for e, loss, wer in rows))
    for epoch, *_ in rows:
        (tmp_path / f"epoch_{epoch}.pt").write_bytes(b"")
    names = lambda paths: [p.stem for p in paths]  # noqa: E731
    assert names(select_epochs(tmp_path, 2, "dev_loss")) == ["epoch_2", "epoch_4"]
    assert names(select_epochs(tmp_path, 2, "dev_wer")) == ["epoch_4", "epoch_5"]  # 3 and 4 tie on WER: 4's loss is lower
    assert names(select_epochs(tmp_path, 3, "dev_wer")) == ["epoch_3", "epoch_4", "epoch_5"]
    assert names(select_epochs(tmp_path, 2, "last")) == ["epoch_4", "epoch_5"]
    with pytest.raises(CheckpointError, match="dev_loss, dev_wer or last"):
        select_epochs(tmp_path, 2, "dev_acc")
