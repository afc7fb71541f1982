"""The training loop's events: steps, epoch ends, interruptions, resume, extension, fine-tuning, clipping."""

from __future__ import annotations

import json
import math
import shutil
import signal
import sys
from pathlib import Path

import pytest
import torch

from asrkit.checkpoint import load_checkpoint, save_checkpoint
from asrkit.config import load_config
from asrkit.errors import ConfigError

from conftest import HOLD, TINY_CONFIG, interrupt_at_call, run_cli, signal_when_ready, steps_reached_epoch

DATA = Path(__file__).parent / "data"


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def same_weights(a: Path, b: Path) -> None:
    first, second = load_checkpoint(a), load_checkpoint(b)
    assert first.train_state.step == second.train_state.step
    for key, tensor in first.model_state.items():
        assert torch.allclose(tensor, second.model_state[key], atol=1e-5), key


@pytest.fixture()
def config(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG)
    return path


def train_args(tone_corpus, config, out, *extra):
    return ["-q", "train", "--train", tone_corpus["train"], "--dev", tone_corpus["dev"], "--config", config,
            "--out", out, *extra]


# ---------------------------------------------------------------- checkpoint versions

def test_version_1_checkpoint_loads_and_decodes_identically():
    """tests/data/checkpoint_v1.pt was written by asrkit before checkpoint versions (commit 8f1394b,
    a 1-layer joint CTC/attention model on tone words); its outputs then are in the _expected file."""
    from asrkit.data.features import compute_features
    from asrkit.recognize.recognizer import Recognizer
    from asrkit.search.options import SearchOptions

    blob = load_checkpoint(DATA / "checkpoint_v1.pt")
    assert blob.train_state.lr_from_step == -1 and blob.train_data is None and blob.world_size is None  # unknown then
    assert blob.config["feature"]["level_norm"] == "none" and not blob.config["feature"]["utterance_cmn"]
    expected = torch.load(DATA / "checkpoint_v1_expected.pt", weights_only=True)
    recognizer = Recognizer(DATA / "checkpoint_v1.pt")
    feats = compute_features(expected["samples"].numpy(), recognizer.config.feature)
    assert torch.allclose(torch.from_numpy(recognizer.log_probs(feats)), expected["log_probs"], atol=1e-5)
    for mode in ("greedy", "beam", "rescore"):
        (hyps,) = recognizer.decode_features([feats], SearchOptions(mode=mode, beam=4,
                                                                     nbest=1 if mode == "greedy" else 2))
        assert [h.tokens for h in hyps] == expected[mode + "_tokens"], mode
        assert torch.allclose(torch.tensor([h.score for h in hyps]), expected[mode + "_scores"], atol=1e-4), mode


def test_a_newer_checkpoint_version_is_refused(tmp_path):
    from asrkit.errors import CheckpointError

    raw = torch.load(DATA / "checkpoint_v1.pt", weights_only=True)
    path = tmp_path / "future.pt"
    torch.save({**raw, "version": 99}, path)
    with pytest.raises(CheckpointError, match="version 99; this asrkit reads up to 5"):
        load_checkpoint(path)


# ---------------------------------------------------------------- steps and epochs

def test_one_metrics_row_per_epoch_and_one_steps_row_per_optimizer_step(trained_exp):
    metrics, steps = rows(trained_exp / "metrics.jsonl"), rows(trained_exp / "steps.jsonl")
    assert [r["epoch"] for r in metrics] == list(range(1, 11))
    assert [r["step"] for r in steps] == list(range(1, metrics[-1]["step"] + 1))
    assert all(r["grad_norm"] > 0 and r["lr"] > 0 for r in steps)
    assert load_checkpoint(trained_exp / "last.pt").epoch_metrics == metrics[-1]


def test_accumulation_takes_one_step_per_window(tone_corpus, config, tmp_path, capsys):
    single, double = tmp_path / "single", tmp_path / "double"
    base = ["--set", "train.epochs=2"]
    assert run_cli(train_args(tone_corpus, config, single, *base), capsys)[0] == 0
    assert run_cli(train_args(tone_corpus, config, double, *base, "--set", "train.accum_grad=2"), capsys)[0] == 0
    per_epoch = load_checkpoint(single / "epoch_1.pt").train_state.step
    assert load_checkpoint(double / "epoch_1.pt").train_state.step == math.ceil(per_epoch / 2)
    assert len(rows(double / "steps.jsonl")) == 2 * math.ceil(per_epoch / 2)
    assert all(r["utterances"] > 0 for r in rows(double / "steps.jsonl"))


def test_grad_clip_zero_means_no_clipping_and_negative_is_an_error(tone_corpus, config, tmp_path, capsys):
    exp = tmp_path / "noclip"
    code, _, _ = run_cli(train_args(tone_corpus, config, exp, "--set", "train.epochs=3", "--set",
                                    "train.grad_clip=0"), capsys)
    assert code == 0
    metrics = rows(exp / "metrics.jsonl")
    assert metrics[-1]["train_loss"] < 0.8 * metrics[0]["train_loss"]  # zeroed gradients would learn nothing
    code, _, err = run_cli(train_args(tone_corpus, config, tmp_path / "neg", "--set", "train.grad_clip=-1"), capsys)
    assert code == 1 and "train.grad_clip must be 0 (no clipping) or positive" in err
    with pytest.raises(ConfigError, match="accum_grad must be >= 1"):
        load_config(None, ["train.accum_grad=0"])


# ---------------------------------------------------------------- interruptions

def test_sigterm_saves_last_pt_exits_143_and_resume_matches_an_uninterrupted_run(trained_exp, tone_corpus,
                                                                                 config, tmp_path, capsys):
    """A real `asrkit train` process gets SIGTERM (as from SLURM, Kubernetes or `timeout`) in epoch 3."""
    exp = tmp_path / "term"
    command = [sys.executable, HOLD, "3", *map(str, train_args(tone_corpus, config, exp))]  # held: cannot finish
    returncode, err = signal_when_ready(command, lambda: steps_reached_epoch(exp, 3), signal.SIGTERM)
    assert returncode == 143, err
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err
    saved = load_checkpoint(exp / "last.pt").train_state
    assert saved.epoch == 2 and saved.batches_done == 1  # the step it was on in epoch 3, whole
    assert "interrupted (SIGTERM)" in (exp / "train.log").read_text()
    assert run_cli(train_args(tone_corpus, config, exp, "--resume"), capsys)[0] == 0
    same_weights(trained_exp / "last.pt", exp / "last.pt")
    assert [r["epoch"] for r in rows(exp / "metrics.jsonl")] == list(range(1, 11))


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_process_group_with_loader_workers_saves_and_exits_cleanly(tone_corpus, config, tmp_path,
                                                                                   capsys, signum, code):
    """torchrun, SLURM, GNU timeout and a terminal's Ctrl-C signal the whole process group, DataLoader
    workers included: the workers leave the stop to the main process, which saves last.pt at the
    step it was on and exits 128 + signal, with no 'worker killed' traceback."""
    import os
    import time

    exp, gate = tmp_path / "group", tmp_path / "gate"
    workers = ("--set", "train.num_workers=2")
    command = [sys.executable, HOLD, "3", *map(str, train_args(tone_corpus, config, exp, *workers))]

    def workers_held() -> bool:  # from epoch 3 the workers wait at the gate, and training with them
        if not steps_reached_epoch(exp, 3):
            return False
        gate.touch()
        time.sleep(1.0)  # what they had prefetched is used up: the main process waits for a batch
        return True

    returncode, err = signal_when_ready(command, workers_held, signum, group=True,
                                        env={**os.environ, "ASRKIT_TEST_GATE": str(gate)}, after=gate.unlink)
    assert returncode == code, err
    assert f"interrupted ({signal.Signals(signum).name})" in err and "Traceback" not in err and "killed" not in err
    saved = load_checkpoint(exp / "last.pt").train_state
    assert saved.epoch >= 2 and saved.step > 0
    assert run_cli(train_args(tone_corpus, config, exp, "--resume", *workers), capsys)[0] == 0
    assert load_checkpoint(exp / "last.pt").train_state.epoch == 10


def test_ctrl_c_during_validation_saves_and_resume_finishes_the_same_run(trained_exp, tone_corpus, config,
                                                                        tmp_path, capsys, monkeypatch):
    import asrkit.training.loss as training  # validation calls greedy_search there
    from asrkit.data.datadir import DataDir
    from asrkit.data.dataset import BucketBatchSampler
    from asrkit.data.featstore import compute_missing

    feats = compute_missing(DataDir.load(tone_corpus["dev"]), load_config(config).feature)
    dev_batches = len(BucketBatchSampler([feats.num_frames(u) for u in feats.entries], 400, 64, shuffle=False))
    # greedy search runs once per dev batch: stop at the first dev batch of epoch 3
    real = interrupt_at_call(monkeypatch, training, "greedy_search", 2 * dev_batches + 1)
    exp = tmp_path / "val"
    code, _, err = run_cli(train_args(tone_corpus, config, exp), capsys)
    assert code == 130 and "interrupted" in err
    saved = load_checkpoint(exp / "last.pt").train_state
    assert saved.epoch == 2 and saved.batches_done > 0  # epoch 3 trained, not yet validated
    monkeypatch.setattr(training, "greedy_search", real)
    assert run_cli(train_args(tone_corpus, config, exp, "--resume"), capsys)[0] == 0
    same_weights(trained_exp / "last.pt", exp / "last.pt")
    assert [r["epoch"] for r in rows(exp / "metrics.jsonl")] == list(range(1, 11))


def test_a_kill_between_checkpoint_and_metrics_row_writes_no_row_twice(trained_exp, tone_corpus, config,
                                                                      tmp_path, capsys, monkeypatch):
    """Epoch 3's checkpoints are written, then the process dies before its metrics row: the resume
    puts the row back from the checkpoint, and averaging sees every epoch once."""
    from asrkit.training.expdir import RunLog

    real = RunLog.epoch

    def die_at_epoch_3(self, row):
        if row["epoch"] == 3:
            raise SystemExit(137)
        real(self, row)

    monkeypatch.setattr(RunLog, "epoch", die_at_epoch_3)
    exp = tmp_path / "killed"
    with pytest.raises(SystemExit):
        run_cli(train_args(tone_corpus, config, exp), capsys)
    assert [r["epoch"] for r in rows(exp / "metrics.jsonl")] == [1, 2]
    assert load_checkpoint(exp / "last.pt").train_state.epoch == 3
    monkeypatch.setattr(RunLog, "epoch", real)
    assert run_cli(train_args(tone_corpus, config, exp, "--resume"), capsys)[0] == 0
    metrics = rows(exp / "metrics.jsonl")
    assert [r["epoch"] for r in metrics] == list(range(1, 11))
    assert metrics[2] == load_checkpoint(exp / "epoch_3.pt").epoch_metrics
    same_weights(trained_exp / "last.pt", exp / "last.pt")


# ---------------------------------------------------------------- resume: what may change

def test_resume_refuses_a_changed_config_and_names_the_keys(trained_exp, tone_corpus, config, tmp_path, capsys):
    exp = tmp_path / "changed"
    shutil.copytree(trained_exp, exp)
    code, _, err = run_cli(train_args(tone_corpus, config, exp, "--resume", "--set", "model.hidden_size=64",
                                      "--set", "train.lr=0.5"), capsys)
    assert code == 1
    assert "differs from the one" in err and "model.hidden_size, train.lr" in err and "--init" in err
    assert len(err.strip().splitlines()) == 1


def test_resume_may_change_the_number_of_threads(trained_exp, tone_corpus, config, tmp_path, capsys):
    """A run stopped on one machine continues on one with other cores (the threads change the speed)."""
    import torch

    exp = tmp_path / "threads"
    shutil.copytree(trained_exp, exp)
    shutil.copy(exp / "epoch_9.pt", exp / "last.pt")
    threads = torch.get_num_threads()
    try:
        code, _, err = run_cli(train_args(tone_corpus, config, exp, "--resume", "--set", "train.num_threads=1"),
                               capsys)
    finally:
        torch.set_num_threads(threads)  # the process's setting, which later tests' exact comparisons rely on
    assert code == 0, err
    assert load_checkpoint(exp / "last.pt").train_state.epoch == 10


def test_resume_with_more_epochs_extends_the_run_without_a_jump_in_the_learning_rate(trained_exp, tone_corpus,
                                                                                    config, tmp_path, capsys):
    exp = tmp_path / "extended"
    shutil.copytree(trained_exp, exp)
    shutil.copy(exp / "epoch_5.pt", exp / "last.pt")  # half-way through the 10-epoch schedule
    resumed_at = load_checkpoint(exp / "last.pt").train_state.step
    before = [r["lr"] for r in rows(exp / "steps.jsonl") if r["step"] <= resumed_at]
    code, _, _ = run_cli(train_args(tone_corpus, config, exp, "--resume", "--set", "train.epochs=14"), capsys)
    assert code == 0
    blob = load_checkpoint(exp / "last.pt")
    assert blob.train_state.epoch == 14 and blob.config["train"]["epochs"] == 14
    assert "epochs: 14" in (exp / "config.yaml").read_text()
    lrs = [r["lr"] for r in rows(exp / "steps.jsonl")]
    after = lrs[resumed_at:]
    assert lrs[:resumed_at] == before
    assert after[0] <= before[-1] + 1e-12  # no jump back up
    assert all(b <= a + 1e-12 for a, b in zip(after, after[1:]))  # decays all the way
    cfg = load_config(config)
    floor = cfg.train.lr * cfg.train.final_lr_ratio
    assert math.isclose(after[-1], floor, rel_tol=0.05) and after[0] > 2 * floor
    assert "extended from 10 to 14 epochs" in (exp / "train.log").read_text()
    assert [r["epoch"] for r in rows(exp / "metrics.jsonl")] == list(range(1, 15))
    code, _, err = run_cli(train_args(tone_corpus, config, exp, "--resume", "--set", "train.epochs=3"), capsys)
    assert code == 1 and "14 epochs are already done" in err


def test_fp16_loss_scale_is_saved_and_restored(tone_corpus, config, tmp_path, capsys, monkeypatch):
    import asrkit.training.trainer as training

    real = training.grad_scaler
    monkeypatch.setattr(training, "grad_scaler", lambda device, use_amp, dtype: real(device, True, "fp16"))
    exp = tmp_path / "fp16"
    assert run_cli(train_args(tone_corpus, config, exp, "--set", "train.epochs=1"), capsys)[0] == 0
    blob = load_checkpoint(exp / "last.pt")
    assert blob.scaler_state["scale"] == 2.0 ** 16
    blob.scaler_state["scale"] = 1024.0  # as if overflows had lowered it
    save_checkpoint(exp / "last.pt", blob)
    seen = {}
    real_run = training.Trainer.run

    def spy(self):
        seen["scale"] = self.scaler.get_scale()
        return real_run(self)

    monkeypatch.setattr(training.Trainer, "run", spy)
    assert run_cli(train_args(tone_corpus, config, exp, "--resume", "--set", "train.epochs=2"), capsys)[0] == 0
    assert seen["scale"] == 1024.0


# ---------------------------------------------------------------- fine-tuning

def test_init_fine_tunes_with_new_characters_and_the_init_cmvn(trained_exp, tone_corpus, config, tmp_path, capsys):
    from asrkit.data.datadir import DataDir

    data = DataDir.load(tone_corpus["train"])
    data.text = {u: t.replace("b", "c") for u, t in data.text.items()}  # a character the model lacks
    data.path = tmp_path / "train_c"
    data.save(tmp_path / "train_c")
    exp = tmp_path / "tuned"
    code, _, err = run_cli(["train", "--train", tmp_path / "train_c", "--config", config, "--out", exp,
                            "--init", trained_exp / "last.pt", "--set", "train.epochs=2"], capsys)
    assert code == 0, err
    source, tuned = load_checkpoint(trained_exp / "last.pt"), load_checkpoint(exp / "last.pt")
    assert tuned.tokens == source.tokens + ["c"]
    assert tuned.cmvn == source.cmvn
    assert tuned.model_state["ctc_head.weight"].shape[0] == len(source.tokens) + 1
    assert tuned.train_state.step == 2 * load_checkpoint(trained_exp / "epoch_1.pt").train_state.step
    assert "1 new characters (c) get fresh output rows" in (exp / "train.log").read_text()
    assert rows(exp / "steps.jsonl")[0]["lr"] < 0.01 / 5  # a fresh warm-up, not the source's floor


def test_init_weights_copy_old_rows_and_keep_new_ones(trained_exp):
    from asrkit.checkpoint import transfer_weights
    from asrkit.config import config_from_dict
    from asrkit.model import build_model

    source = load_checkpoint(trained_exp / "last.pt")
    cfg = config_from_dict(source.config)
    vocab = source.vocab_size
    model = build_model(cfg.feature.dim, vocab + 2, cfg.model)
    fresh = model.ctc_head.weight[vocab:].detach().clone()
    transfer_weights(model, source.model_state, vocab, "x.pt")
    assert torch.equal(model.ctc_head.weight[:vocab], source.model_state["ctc_head.weight"])
    assert torch.equal(model.ctc_head.weight[vocab:], fresh)


@pytest.mark.parametrize("override,message", [
    ("feature.num_mel_bins=40", "its features differ from this config's in feature.num_mel_bins"),
    ("model.hidden_size=48", "has shape"),
])
def test_init_with_another_feature_or_model_config_is_one_line_error(trained_exp, tone_corpus, config, tmp_path,
                                                                    capsys, override, message):
    code, _, err = run_cli(train_args(tone_corpus, config, tmp_path / "bad", "--init", trained_exp / "last.pt",
                                      "--set", override), capsys)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


def test_max_steps_stops_mid_epoch_without_a_partial_row_and_resume_finishes_the_run(trained_exp, tone_corpus,
                                                                                    config, tmp_path, capsys):
    per_epoch = load_checkpoint(trained_exp / "epoch_1.pt").train_state.step
    exp = tmp_path / "smoke"
    code, out, _ = run_cli(train_args(tone_corpus, config, exp, "--set", f"train.max_steps={per_epoch + 2}"), capsys)
    assert code == 0
    saved = load_checkpoint(exp / "last.pt").train_state
    assert saved.step == per_epoch + 2 and saved.epoch == 1 and saved.batches_done == 2
    assert [r["epoch"] for r in rows(exp / "metrics.jsonl")] == [1]  # no row for the unfinished epoch 2
    assert len(rows(exp / "steps.jsonl")) == per_epoch + 2
    assert "train.max_steps=" in (exp / "train.log").read_text()
    code, _, _ = run_cli(train_args(tone_corpus, config, exp, "--resume", "--set", "train.max_steps=0"), capsys)
    assert code == 0
    same_weights(trained_exp / "last.pt", exp / "last.pt")
    with pytest.raises(ConfigError, match="max_steps must be >= 0"):
        load_config(None, ["train.max_steps=-1"])


def test_a_stop_inside_an_accumulation_window_restarts_that_window(tone_corpus, config, tmp_path, capsys,
                                                                  monkeypatch):
    """Ctrl-C on the second batch of a 2-batch window: last.pt holds the state before the window,
    and the resumed run ends with the weights of a run never stopped."""
    import asrkit.training.trainer as training

    accum = ["--set", "train.accum_grad=2", "--set", "train.epochs=3"]
    real, calls = training.compute_loss, {"n": 0}

    def count(model, batch, ctc_loss):
        calls["n"] += 1
        return real(model, batch, ctc_loss)

    monkeypatch.setattr(training, "compute_loss", count)
    reference = tmp_path / "reference"
    assert run_cli(train_args(tone_corpus, config, reference, *accum), capsys)[0] == 0
    per_epoch = load_checkpoint(reference / "epoch_1.pt").train_state.step
    batches = calls["n"] // 3
    stop_at = batches + 4  # epoch 2: the second batch of its second window
    interrupt_at_call(monkeypatch, training, "compute_loss", stop_at)
    exp = tmp_path / "stopped"
    code, _, err = run_cli(train_args(tone_corpus, config, exp, *accum), capsys)
    assert code == 130 and "interrupted" in err
    saved = load_checkpoint(exp / "last.pt").train_state
    assert saved.epoch == 1 and saved.batches_done == 2 and saved.step == per_epoch + 1
    monkeypatch.setattr(training, "compute_loss", real)
    assert run_cli(train_args(tone_corpus, config, exp, "--resume", *accum), capsys)[0] == 0
    same_weights(reference / "last.pt", exp / "last.pt")


def _trainer(tone_corpus, tmp_path, name: str, *overrides: str):
    """A Trainer set up as `asrkit train` sets it up (tiny model, no dropout, no augmentation)."""
    from asrkit.training.trainer import Trainer

    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG)
    cfg = load_config(path, list(overrides))
    torch.manual_seed(0)
    (tmp_path / name).mkdir()
    return Trainer(Path(tone_corpus["train"]), None, tmp_path / name, cfg)


def _gradient(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("grad_clip", [0.0, 5.0])
def test_grad_clip_zero_lets_a_large_gradient_through_and_a_limit_clips_it(tone_corpus, tmp_path, monkeypatch,
                                                                          grad_clip):
    """A loss scaled up 1000x gives a gradient norm far above 5 (the default limit): with
    grad_clip 0 the step uses it whole (the logged norm), with grad_clip 5 it is cut to 5."""
    import asrkit.training.trainer as training

    trainer = _trainer(tone_corpus, tmp_path, "clip", f"train.grad_clip={grad_clip}")
    real = training.compute_loss
    monkeypatch.setattr(training, "compute_loss", lambda model, batch, ctc: 1000 * real(model, batch, ctc))
    batch = next(iter(trainer.train_loader))
    trainer.step([batch], 0, {"loss": 0.0, "utterances": 0, "audio_seconds": 0.0, "skipped": 0})
    logged = json.loads((tmp_path / "clip" / "steps.jsonl").read_text().splitlines()[-1])["grad_norm"]
    used = float(_gradient(trainer.model).norm())
    assert logged > 50.0
    assert used == pytest.approx(logged if grad_clip == 0 else grad_clip, rel=1e-4)


def test_accum_grad_gives_the_gradient_of_one_batch_k_times_larger(tone_corpus, tmp_path):
    """accum_grad 2 over two batches of 4 utterances = one batch of the same 8 (the loss is a mean
    per utterance), within float tolerance; no clipping, so the gradients are compared whole."""
    from asrkit.data.dataset import collate

    stats = {"loss": 0.0, "utterances": 0, "audio_seconds": 0.0, "skipped": 0}
    accumulated = _trainer(tone_corpus, tmp_path, "accum", "train.accum_grad=2", "train.grad_clip=0")
    single = _trainer(tone_corpus, tmp_path, "single", "train.grad_clip=0")
    for a, b in zip(accumulated.model.state_dict().values(), single.model.state_dict().values()):
        assert torch.equal(a, b)  # the same starting weights
    items = [accumulated.train_loader.dataset[i] for i in range(8)]
    accumulated.step([collate(items[:4]), collate(items[4:])], 0, dict(stats))
    single.step([collate(items)], 0, dict(stats))
    assert torch.allclose(_gradient(accumulated.model), _gradient(single.model), rtol=1e-4, atol=1e-6)
    assert accumulated.state.step == single.state.step == 1


def test_resume_takes_config_and_data_from_the_run_and_extends_a_finished_run_at_the_floor_rate(
        trained_exp, tone_corpus, config, tmp_path, capsys):
    """`asrkit train --out EXP --resume --set train.epochs=12` is the whole command: the config, the
    train and the dev data come from the run's record (so best.pt goes on meaning the best on the same
    dev set), and the two added epochs of the finished 10-epoch run train at the floor rate."""
    exp = tmp_path / "more"
    shutil.copytree(trained_exp, exp)
    record = load_checkpoint(exp / "last.pt")
    assert record.train_data.path == str(Path(tone_corpus["train"]).resolve()) and record.world_size == 1
    assert record.dev_data.utterances == 12 and len(record.train_data.fingerprint) == 64
    code, _, err = run_cli(["train", "--out", exp, "--resume", "--set", "train.epochs=12"], capsys)
    assert code == 0, err
    metrics = rows(exp / "metrics.jsonl")
    assert [r["epoch"] for r in metrics] == list(range(1, 13)) and all(r["dev_loss"] == r["dev_loss"] for r in metrics)
    assert f"resume: dev set {record.dev_data.path}, as the run recorded it" in (exp / "train.log").read_text()
    cfg = load_config(config)
    floor = cfg.train.lr * cfg.train.final_lr_ratio
    added = [r["lr"] for r in rows(exp / "steps.jsonl") if r["epoch"] > 10]
    assert added and all(lr == pytest.approx(floor) for lr in added)


def test_resume_with_other_data_or_another_world_size_is_refused_unless_accepted(trained_exp, tone_corpus, config,
                                                                                 tmp_path, capsys):
    from asrkit.data.datadir import DataDir

    exp = tmp_path / "changed"
    shutil.copytree(trained_exp, exp)
    shutil.copy(exp / "epoch_5.pt", exp / "last.pt")
    other = tmp_path / "train_less"
    data = DataDir.load(tone_corpus["train"])
    data.subset(data.utt_ids()[:-4]).save(other)  # the same data dir but four utterances
    code, _, err = run_cli(["-q", "train", "--train", other, "--out", exp, "--resume"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "training data differ" in err and "had 48 utterances" in err and "has 44" in err and "--accept-changes" in err
    record = load_checkpoint(exp / "last.pt")
    record.world_size = 2  # as if torchrun had trained it on two processes
    save_checkpoint(exp / "last.pt", record)
    code, _, err = run_cli(["train", "--out", exp, "--resume"], capsys)
    assert code == 1 and "the run had 2 processes, this one 1" in err and "training data" not in err
    code, _, err = run_cli(["train", "--train", other, "--out", exp, "--resume", "--accept-changes",
                            "--set", "train.epochs=6"], capsys)
    assert code == 0, err
    log = (exp / "train.log").read_text()
    assert "accepted (--accept-changes): epoch 6 restarts from its first batch" in log
    assert load_checkpoint(exp / "last.pt").train_data.utterances == 44


def test_resume_of_a_checkpoint_without_a_data_record_needs_train(trained_exp, tmp_path, capsys):
    exp = tmp_path / "old"
    shutil.copytree(trained_exp, exp)
    record = load_checkpoint(exp / "last.pt")
    record.train_data = record.dev_data = record.world_size = None  # as version 4 wrote it
    save_checkpoint(exp / "last.pt", record)
    code, _, err = run_cli(["train", "--out", exp, "--resume"], capsys)
    assert code == 1 and "--train is needed" in err and "predates" in err
    code, _, err = run_cli(["train", "--out", tmp_path / "new"], capsys)
    assert code == 1 and "--train is needed" in err
