"""Distributed data-parallel training under torchrun (2 CPU processes, gloo)."""

import os
import subprocess
import sys

import pytest

from asrkit.data.dataset import BucketBatchSampler

from conftest import TINY_CONFIG


def test_sampler_gives_each_rank_an_equal_disjoint_share():
    lengths = [50 + (i * 37) % 300 for i in range(101)]
    single = BucketBatchSampler(lengths, 800, 8, seed=3)
    single.set_epoch(2)
    shares = []
    for rank in range(3):
        sampler = BucketBatchSampler(lengths, 800, 8, seed=3, num_replicas=3, rank=rank)
        sampler.set_epoch(2)
        shares.append([tuple(b) for b in sampler])
    assert len({len(s) for s in shares}) == 1 and len(shares[0]) == len(single) // 3
    flat = [b for s in shares for b in s]
    assert len(set(flat)) == len(flat) and set(flat) <= {tuple(b) for b in single}
    with pytest.raises(ValueError):
        BucketBatchSampler(lengths, 800, 8, num_replicas=2, rank=2)


def torchrun_train(tone_corpus, tmp_path, epochs: int):
    """(config, exp dir, command, environment) of a 2-process CPU training under torchrun."""
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG.replace("epochs: 10", f"epochs: {epochs}"))
    exp = tmp_path / "ddp"
    from asrkit.config import load_config
    from asrkit.data.datadir import DataDir
    from asrkit.data.featstore import compute_missing

    for name in ("train", "dev"):  # torchrun needs the features made beforehand
        compute_missing(DataDir.load(tone_corpus[name]), load_config(config).feature)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "asrkit", "train", "--train", str(tone_corpus["train"]), "--dev", str(tone_corpus["dev"]),
               "--config", str(config), "--out", str(exp), "--set", "train.device=cpu"]
    return config, exp, command, {**os.environ, "OMP_NUM_THREADS": "1"}


def test_torchrun_two_cpu_processes_agree_on_the_weights(tone_corpus, tmp_path):
    config, exp, command, env = torchrun_train(tone_corpus, tmp_path, epochs=2)
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-6000:]
    log = (exp / "train.log").read_text()
    assert "distributed: 2 processes (gloo), this is rank 0" in log
    assert "all 2 processes hold the same weights" in log  # checked across ranks after the last step
    assert log.count("epoch 2/2") == 1  # rank 0 alone logs and saves

    from asrkit.checkpoint import load_checkpoint
    from asrkit.cli import main

    blob = load_checkpoint(exp / "last.pt")
    steps_two = blob.train_state.step
    solo = tmp_path / "solo"
    assert main(["-q", "train", "--train", str(tone_corpus["train"]), "--dev", str(tone_corpus["dev"]),
                 "--config", str(config), "--out", str(solo)]) == 0
    steps_one = load_checkpoint(solo / "last.pt").train_state.step
    assert steps_two <= steps_one // 2 + 1  # each rank takes half of each epoch's batches
    assert main(["-q", "decode", str(exp), str(tone_corpus["dev"]), "--out", str(tmp_path / "dec")]) == 0
    # the dev figures of the last epoch came from both ranks' shares of the dev set: one process
    # evaluating the same weights on the whole of it gets the same loss and WER
    import json

    import torch

    from asrkit.config import config_from_dict
    from asrkit.data.datadir import DataDir
    from asrkit.data.dataset import AsrDataset, BucketBatchSampler, collate
    from asrkit.data.featstore import FeatureStore
    from asrkit.data.features import GlobalCMVN
    from asrkit.model import build_model
    from asrkit.tokenizer import CharTokenizer
    from asrkit.training.loss import validate

    cfg = config_from_dict(blob.config)
    model = build_model(cfg.feature.dim, blob.vocab_size, cfg.model)
    model.load_state_dict(blob.model_state)
    tokenizer = CharTokenizer(blob.tokens)
    dev = DataDir.load(tone_corpus["dev"])
    store = FeatureStore(tone_corpus["dev"])
    ids = dev.utt_ids()
    dataset = AsrDataset(ids, store, {u: tokenizer.encode(dev.text[u]) for u in ids}, None,
                         GlobalCMVN.from_dict(blob.cmvn), {u: store.num_frames(u) for u in ids})
    sampler = BucketBatchSampler(dataset.lengths, cfg.train.max_frames_per_batch, cfg.train.max_utts_per_batch,
                                 shuffle=False)
    assert len(sampler) >= 2  # so that each rank had a share
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)
    loss, wer = validate(model, loader, tokenizer, dev.text, torch.device("cpu"), False)
    row = json.loads((exp / "metrics.jsonl").read_text().splitlines()[-1])
    assert abs(row["dev_loss"] - loss) < 1e-3 * max(1.0, abs(loss)) and row["dev_wer"] == wer


def test_sigterm_under_torchrun_stops_every_rank_at_one_step_and_rank_0_saves(tone_corpus, tmp_path):
    """torchrun forwards SIGTERM to its workers: they agree to stop after the same step, rank 0
    writes last.pt, and every rank exits through asrkit's one-line error (none hangs)."""
    import signal

    from conftest import signal_when_ready, steps_reached_epoch

    config, exp, command, env = torchrun_train(tone_corpus, tmp_path, epochs=40)
    returncode, err = signal_when_ready(command, lambda: steps_reached_epoch(exp, 3), signal.SIGTERM, env=env)
    assert returncode != 0, "training finished before the signal"
    assert err.count("error: interrupted (SIGTERM)") == 2  # both ranks, each through the clean path
    from asrkit.checkpoint import load_checkpoint

    saved = load_checkpoint(exp / "last.pt").train_state
    assert saved.epoch >= 2 and (saved.batches_done > 0 or saved.epoch >= 3)
    assert (exp / "train.log").read_text().count("interrupted (SIGTERM)") == 1  # rank 0 alone logs


@pytest.mark.parametrize("hold", ["step", "validation"])
def test_sigterm_to_torchruns_process_group_stops_every_rank_at_one_point(tone_corpus, tmp_path, hold):
    """SLURM and GNU timeout signal torchrun's whole process group, and torchrun forwards the signal
    again: every rank gets two SIGTERMs. Each stops at the same point, in training or in the middle
    of validation, rank 0 saves, and nobody hangs in a collective or dies of the second signal."""
    import signal

    from asrkit.checkpoint import load_checkpoint

    from conftest import HOLD, signal_when_ready

    config, exp, command, env = torchrun_train(tone_corpus, tmp_path, epochs=40)
    script = command.index("-m", 3)
    command[script:script + 2] = [HOLD, "3"]  # each rank holds from epoch 3 until it is signalled
    held = tmp_path / "held"
    env = {**env, "ASRKIT_TEST_HELD": str(held)}
    if hold == "validation":  # hold after the dev set's first batch instead: the stop comes mid-validation
        env["ASRKIT_TEST_HOLD_DEV"] = "1"
    returncode, err = signal_when_ready(command, held.exists, signal.SIGTERM, env=env, group=True)
    assert returncode != 0  # torchrun's own: its agent ends on the signal with a SignalException
    assert err.count("error: interrupted (SIGTERM)") == 2  # each rank through the clean path
    frames = [line for line in err.splitlines() if line.strip().startswith("File ")]
    assert not any("asrkit" in line for line in frames), err  # no traceback from a rank: torchrun's alone
    saved = load_checkpoint(exp / "last.pt").train_state
    assert saved.epoch == 2 and saved.batches_done > 0
    assert (exp / "train.log").read_text().count("interrupted (SIGTERM)") == 1


def test_torchrun_without_features_fails_at_once_naming_the_command(tone_corpus, tmp_path):
    from asrkit.data.datadir import DataDir

    fresh = {}
    for name in ("train", "dev"):
        fresh[name] = tmp_path / name
        DataDir.load(tone_corpus[name]).save(fresh[name])  # the same audio, no features yet
    config, exp, command, env = torchrun_train(tone_corpus, tmp_path, epochs=2)
    command = [str(fresh[c.split("/")[-1]]) if c in (str(tone_corpus["train"]), str(tone_corpus["dev"])) else c
               for c in command]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode != 0
    assert f"{fresh['train']} has no up-to-date features for this config" in done.stderr
    assert "asrkit features" in done.stderr and not (fresh["train"] / "feats.scp").exists()
