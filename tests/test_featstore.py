"""The feature store: Kaldi feats.scp + arks through kaldiio, records, stale and foreign features, --nj."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from asrkit.config import FeatureConfig
from asrkit.data.datadir import DataDir
from asrkit.data.featstore import FeatureStore, compute_missing
from asrkit.data.features import utterance_features
from asrkit.errors import DataDirError

from conftest import TINY_CONFIG, run_cli

CFG = FeatureConfig(sample_rate=8000, num_mel_bins=23)


@pytest.fixture()
def data_dir(tone_corpus, tmp_path) -> Path:
    """A copy of the dev data dir (its audio stays where it is)."""
    out = tmp_path / "dev"
    DataDir.load(tone_corpus["dev"]).save(out)
    return out


def test_round_trip_is_bit_equal_and_kaldi_readable(data_dir):
    import kaldiio

    store = compute_missing(DataDir.load(data_dir), CFG)
    data = DataDir.load(data_dir)
    assert sorted(store.entries) == data.utt_ids() and not store.external
    plain = kaldiio.load_scp(str(data_dir / "feats.scp"))  # what Kaldi/ESPnet tools see
    for utt in data.utterances():
        expected = utterance_features(utt, CFG)
        assert np.array_equal(store[utt.utt_id], expected)
        assert np.array_equal(plain[utt.utt_id], expected) and plain[utt.utt_id].dtype == np.float32
        assert store.num_frames(utt.utt_id) == expected.shape[0]
    lines = (data_dir / "utt2num_frames").read_text().split("\n")
    assert lines[0].split()[1] == str(store.num_frames(data.utt_ids()[0]))
    record = json.loads((data_dir / "feats.json").read_text())
    assert record["feature_config"]["num_mel_bins"] == 23 and len(record["utts"]) == len(data)


@pytest.mark.parametrize("nj", [2, 100])
def test_parallel_jobs_write_their_own_arks_with_the_same_features(data_dir, tmp_path, nj):
    single = tmp_path / "single"
    shutil.copytree(data_dir, single)
    one = compute_missing(DataDir.load(single), CFG)
    many = compute_missing(DataDir.load(data_dir), CFG, nj=nj)
    arks = sorted(p.name for p in data_dir.glob("feats.*.ark"))
    assert len(arks) == min(nj, len(one))  # --nj above the utterance count: one job per utterance
    for utt in one.entries:
        assert np.array_equal(one[utt], many[utt])


def test_changed_audio_is_recomputed_and_the_rest_kept(data_dir, tone_corpus, caplog):
    compute_missing(DataDir.load(data_dir), CFG)
    data = DataDir.load(data_dir)
    first, second = data.utt_ids()[:2]
    before = {k: v for k, v in (line.split(" ", 1) for line in (data_dir / "feats.scp").read_text().splitlines())}
    data.wav_scp[first] = data.wav_scp[second]  # the id now points at another recording
    data.save(data_dir)
    with caplog.at_level("INFO", logger="asrkit"):
        store = compute_missing(DataDir.load(data_dir), CFG)
    assert "computing features for 1 of 12 utterances" in caplog.text
    assert np.array_equal(store[first], store[second])
    after = {k: v for k, v in (line.split(" ", 1) for line in (data_dir / "feats.scp").read_text().splitlines())}
    assert after[first] != before[first] and all(after[u] == before[u] for u in before if u != first)
    assert len(list(data_dir.glob("feats.*.ark"))) == 2  # the old shard still holds the others


def test_another_feature_config_on_the_same_data_dir_is_refused(data_dir, capsys):
    compute_missing(DataDir.load(data_dir), CFG)
    code, _, err = run_cli(["features", data_dir, "--set", "feature.sample_rate=8000",
                            "--set", "feature.num_mel_bins=40"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1
    assert "num_mel_bins=23 (asked: 40)" in lines[0] and "_fbank40" in lines[0] and "--force" in lines[0]
    code, out, _ = run_cli(["-q", "features", data_dir, "--set", "feature.sample_rate=8000",
                            "--set", "feature.num_mel_bins=40", "--force"], capsys)
    assert code == 0 and FeatureStore(data_dir).dim == 40
    assert len(list(data_dir.glob("feats.*.ark"))) == 1  # the 23-dim shard is gone


def test_a_failing_job_leaves_no_feats_scp_and_no_ark(data_dir, tmp_path, capsys):
    data = DataDir.load(data_dir)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    victim = data.utt_ids()[-1]
    data.wav_scp[victim] = str(broken)
    data.save(data_dir)
    code, _, err = run_cli(["features", data_dir, "--nj", "2", "--set", "feature.sample_rate=8000",
                            "--set", "feature.num_mel_bins=23"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and f"utterance {victim!r}" in lines[0] and "Traceback" not in err
    assert not (data_dir / "feats.scp").exists() and not list(data_dir.glob("feats.*"))


def test_missing_or_cut_ark_is_one_line_naming_the_utterance(data_dir, trained_exp, tmp_path, capsys):
    store = compute_missing(DataDir.load(data_dir), CFG)
    ark = next(data_dir.glob("feats.*.ark"))
    data = DataDir.load(data_dir)
    last = data.utt_ids()[-1]
    ark.write_bytes(ark.read_bytes()[:-50])  # the last matrix cut short
    with pytest.raises(DataDirError, match=f"utterance '{last}': cannot read its features from"):
        FeatureStore(data_dir)[last]
    ark.unlink()
    code, _, err = run_cli(["decode", trained_exp, data_dir, "--out", tmp_path / "d"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and str(ark.name) in lines[0] and "utterance" in lines[0]
    assert store is not None


def test_validate_lists_text_and_feats_scp_that_disagree(data_dir, capsys):
    compute_missing(DataDir.load(data_dir), CFG)
    lines = (data_dir / "feats.scp").read_text().splitlines()
    (data_dir / "feats.scp").write_text("\n".join(lines[1:] + ["zzz-extra " + lines[0].split(" ", 1)[1]]) + "\n")
    code, _, err = run_cli(["data", "validate", data_dir], capsys)
    assert code == 1 and "1 in text but not in feats.scp" in err and "1 in feats.scp but not in text" in err


def test_foreign_features_train_decode_and_transcribe_refuses(tone_corpus, tmp_path, capsys):
    """A feats.scp the test writes itself with kaldiio (as Kaldi's compute-fbank-feats would): used as
    given, never rewritten; the model is marked, and transcribe on audio refuses."""
    import kaldiio

    dirs = {}
    for name in ("train", "dev"):
        data = DataDir.load(tone_corpus[name])
        out = tmp_path / name
        data.save(out)
        with kaldiio.WriteHelper(f"ark,scp:{tmp_path / name}_kaldi.ark,{out / 'feats.scp'}") as writer:
            for utt in data.utterances():  # 23-dim "Kaldi" features: fbank plus a constant
                writer(utt.utt_id, utterance_features(utt, CFG) + 1.0)
        dirs[name] = out
    scp_before = (dirs["train"] / "feats.scp").read_text()
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG.replace("epochs: 10", "epochs: 2"))
    exp = tmp_path / "exp"
    code, _, err = run_cli(["-q", "train", "--train", dirs["train"], "--dev", dirs["dev"], "--config", config,
                            "--out", exp], capsys)
    assert code == 0, err
    assert (dirs["train"] / "feats.scp").read_text() == scp_before and not (dirs["train"] / "feats.json").exists()
    from asrkit.checkpoint import load_checkpoint

    assert load_checkpoint(exp / "last.pt").features_external is True
    code, _, err = run_cli(["-q", "decode", exp, dirs["dev"], "--out", tmp_path / "dec"], capsys)
    assert code == 0, err
    wav = DataDir.load(dirs["dev"]).wav_scp[DataDir.load(dirs["dev"]).utt_ids()[0]]
    code, _, err = run_cli(["transcribe", exp, wav], capsys)
    assert code == 1 and "trained on foreign features" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["decode", exp, tone_corpus["dev"], "--out", tmp_path / "d2"], capsys)
    assert code == 1 and "needs a feats.scp of the same kind" in err
    code, _, err = run_cli(["train", "--train", dirs["train"], "--config", config, "--out", tmp_path / "e40",
                            "--set", "feature.num_mel_bins=40"], capsys)
    assert code == 1 and "its features have 23 dimensions, the config's fbank has 40" in err


def test_a_failed_force_run_keeps_the_features_feats_scp_points_to(data_dir, tmp_path, capsys):
    store = compute_missing(DataDir.load(data_dir), CFG)
    first = sorted(store.entries)[0]
    before = store[first]
    data = DataDir.load(data_dir)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    data.wav_scp[data.utt_ids()[-1]] = str(broken)
    data.save(data_dir)
    code, _, err = run_cli(["features", data_dir, "--force", "--set", "feature.sample_rate=8000",
                            "--set", "feature.num_mel_bins=23"], capsys)
    assert code == 1 and "cannot read audio" in err
    assert np.array_equal(FeatureStore(data_dir)[first], before)  # the old arks are still there


def test_bad_store_inputs_are_one_line_errors(data_dir, trained_exp, tone_corpus, tmp_path, capsys):
    import kaldiio

    code, _, err = run_cli(["features", data_dir, "--nj", "0", "--set", "feature.sample_rate=8000",
                            "--set", "feature.num_mel_bins=23"], capsys)
    assert code == 1 and "--nj must be at least 1, not 0" in err and len(err.strip().splitlines()) == 1
    compute_missing(DataDir.load(data_dir), CFG)
    (data_dir / "feats.json").write_text("{not json")
    code, _, err = run_cli(["decode", trained_exp, data_dir, "--out", tmp_path / "d"], capsys)
    assert code == 1 and "damaged JSON" in err and len(err.strip().splitlines()) == 1
    # a foreign feats.scp that misses utterances of text, and a model of asrkit's features on it
    foreign = tmp_path / "foreign"
    data = DataDir.load(tone_corpus["dev"])
    data.save(foreign)
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/f.ark,{foreign / 'feats.scp'}") as writer:
        for utt in data.utterances()[1:]:
            writer(utt.utt_id, utterance_features(utt, CFG))
    code, _, err = run_cli(["features", foreign, "--set", "feature.sample_rate=8000",
                            "--set", "feature.num_mel_bins=23"], capsys)
    assert code == 1 and "1 utterances of text have no features" in err
    code, _, err = run_cli(["decode", trained_exp, foreign, "--out", tmp_path / "d2"], capsys)
    assert code == 1 and "a feats.scp asrkit did not write" in err and "move that feats.scp away" in err
    # train and dev with features of two kinds
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/g.ark,{foreign / 'feats.scp'}") as writer:
        for utt in data.utterances():
            writer(utt.utt_id, utterance_features(utt, CFG))
    code, _, err = run_cli(["train", "--train", tone_corpus["train"], "--dev", foreign, "--config", config,
                            "--out", tmp_path / "mixed"], capsys)
    assert code == 1 and "train and dev need the same kind" in err


def test_parallel_jobs_say_a_resampling_once(data_dir):
    """--nj 3 on 8 kHz audio for a 16 kHz config: one 'resampling' line, from the parent."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "asrkit", "features", str(data_dir), "--nj", "3", "--set",
                           "feature.sample_rate=16000"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("resampling audio from 8000 Hz to the model's 16000 Hz") == 1, done.stderr


def test_a_feats_scp_pipe_runs_only_with_the_opt_in(data_dir, tmp_path, capsys, monkeypatch):
    """kaldiio runs a feats.scp entry that ends in '|' in a shell: the same --allow-pipes rule as
    wav.scp. Without it, validate, train and decode refuse before anything runs."""
    import kaldiio

    import asrkit.data.audio as audio

    monkeypatch.delenv("ASRKIT_ALLOW_PIPES", raising=False)
    data = DataDir.load(data_dir)
    marker = tmp_path / "ran"
    first = data.utt_ids()[0]
    matrices = {u.utt_id: utterance_features(u, CFG) for u in data.utterances()}
    kaldiio.save_mat(str(tmp_path / "one.mat"), matrices[first])  # what 'copy-matrix ... - |' writes
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'rest.ark'},{tmp_path / 'rest.scp'}") as writer:
        for utt in data.utt_ids()[1:]:
            writer(utt, matrices[utt])
    pipe = f"{first} touch {marker}; cat {tmp_path / 'one.mat'} |\n"
    (data_dir / "feats.scp").write_text(pipe + (tmp_path / "rest.scp").read_text())
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG.replace("epochs: 10", "epochs: 1"))
    for args in (["data", "validate", data_dir],
                 ["train", "--train", data_dir, "--config", config, "--out", tmp_path / "exp"]):
        code, _, err = run_cli(args, capsys)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 1 and len(lines) == 1, err
        assert f"{data_dir / 'feats.scp'} line 1: {first!r} is a command pipe" in lines[0] and "--allow-pipes" in lines[0]
        assert not marker.exists()
    monkeypatch.setenv("ASRKIT_ALLOW_PIPES", "maybe")
    code, _, err = run_cli(["data", "validate", data_dir], capsys)
    assert code == 1 and "ASRKIT_ALLOW_PIPES='maybe' is neither yes" in err and not marker.exists()
    monkeypatch.setenv("ASRKIT_ALLOW_PIPES", "no")
    with pytest.raises(DataDirError, match="is a command pipe"):
        FeatureStore(data_dir)
    monkeypatch.setenv("ASRKIT_ALLOW_PIPES", "Yes")
    assert np.array_equal(FeatureStore(data_dir)[first], matrices[first]) and marker.exists()
    monkeypatch.delenv("ASRKIT_ALLOW_PIPES")
    audio.allow_pipes(True)  # what --allow-pipes does
    try:
        assert np.array_equal(FeatureStore(data_dir)[first], matrices[first])
    finally:
        audio.allow_pipes(False)


@pytest.mark.parametrize("value,allowed", [("1", True), ("true", True), ("YES", True), (" yes ", True),
                                           ("", False), ("0", False), ("False", False), ("no", False)])
def test_the_pipes_variable_reads_yes_and_no(value, allowed, monkeypatch):
    import asrkit.data.audio as audio

    monkeypatch.setenv("ASRKIT_ALLOW_PIPES", value)
    assert audio.pipes_allowed() is allowed
