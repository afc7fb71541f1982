"""transcribe and decode agree: a file at or under --max-seconds is decoded whole, as decode does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from asrkit.data.datadir import DataDir
from asrkit.recognize.longform import split_on_silence

from conftest import SHARED_CORPORA, TONES, run_cli

YESNO_CONFIG = """
feature: {sample_rate: 8000, num_mel_bins: 23}
model: {num_layers: 1, hidden_size: 48, dropout: 0.0}
train: {epochs: 12, lr: 0.005, warmup_steps: 10, max_frames_per_batch: 3000, seed: 0,
       spec_augment: {enabled: false}}
"""


def transcribe_equals_decode(exp: Path, data_dir: Path, out: Path, capsys, mode: str, beam: int = 4) -> int:
    """Decode a data dir and transcribe its files with the same search; returns how many files have
    words (so that the comparison is not between empty outputs only)."""
    code, _, err = run_cli(["-q", "decode", exp, data_dir, "--mode", mode, "--beam", beam, "--out", out], capsys)
    assert code == 0, err
    decoded = {}
    for line in (out / "hyp").read_text().splitlines():
        utt, _, text = line.partition(" ")
        decoded[utt] = text.strip()
    data = DataDir.load(data_dir)
    utts = data.utt_ids()
    code, printed, err = run_cli(["-q", "transcribe", exp, *[data.wav_scp[u] for u in utts], "--mode", mode,
                                  "--beam", beam], capsys)
    assert code == 0, err
    transcribed = {}
    by_path = {data.wav_scp[u]: u for u in utts}
    for line in printed.splitlines():
        path, _, text = line.partition("\t")
        transcribed[by_path[path]] = text.strip()
    assert transcribed == decoded
    return sum(1 for text in decoded.values() if text)


@pytest.fixture(scope="module")
def yesno(tmp_path_factory):
    if not (SHARED_CORPORA / "yesno").is_dir():
        pytest.skip("../shared/corpora/yesno is not there")
    from asrkit.corpora import yesno as corpus

    root = tmp_path_factory.mktemp("yesno")
    corpus.prepare(SHARED_CORPORA / "yesno", root / "data")
    (root / "conf.yaml").write_text(YESNO_CONFIG)
    exp = root / "exp"
    from asrkit.cli import main

    assert main(["-q", "train", "--train", str(root / "data/train"), "--dev", str(root / "data/dev"),
                 "--config", str(root / "conf.yaml"), "--out", str(exp)]) == 0
    return exp, root / "data" / "test"


@pytest.mark.parametrize("mode", ["greedy", "beam"])
def test_yesno_transcribe_gives_decode_words_for_every_test_file(yesno, tmp_path, capsys, mode):
    """yesno files are ~6 s with pauses of more than 0.25 s between words: cutting them there
    (what transcribe did to every file) changed the words."""
    exp, test = yesno
    samples, rate = soundfile.read(DataDir.load(test).wav_scp[DataDir.load(test).utt_ids()[0]])
    assert len(split_on_silence(samples.astype(np.float32), rate, max_seconds=1.0)) > 2  # it has pauses
    assert transcribe_equals_decode(exp, test, tmp_path / mode, capsys, mode) > 0


def make_paused_corpus(root: Path, num_utts: int = 10, rate: int = 8000) -> Path:
    """Tone words with pauses of 0.3-0.6 s between them (longer than the 0.25 s a cut needs)."""
    rng = np.random.default_rng(3)
    data = DataDir()
    (root / "audio").mkdir(parents=True)
    for i in range(num_utts):
        words = [str(rng.choice(list(TONES))) for _ in range(int(rng.integers(2, 5)))]
        pieces = [np.zeros(int(0.1 * rate), np.float32)]
        for word in words:
            t = np.arange(int(0.2 * rate)) / rate
            pieces.append(0.5 * np.sin(2 * np.pi * TONES[word] * t).astype(np.float32))
            pieces.append(np.zeros(int(rng.uniform(0.3, 0.6) * rate), np.float32))
        audio = np.concatenate(pieces)
        audio += rng.normal(0, 0.003, audio.shape).astype(np.float32)
        utt = f"spk0-{i:03d}"
        path = root / "audio" / f"{utt}.wav"
        soundfile.write(path, audio, rate)
        data.wav_scp[utt], data.text[utt], data.utt2spk[utt] = str(path), " ".join(words), "spk0"
    data.save(root)
    return root


@pytest.mark.parametrize("mode", ["greedy", "beam"])
def test_generated_corpus_transcribe_gives_decode_words(trained_exp, tmp_path, capsys, mode):
    data_dir = make_paused_corpus(tmp_path / "paused")
    assert transcribe_equals_decode(trained_exp, data_dir, tmp_path / "dec", capsys, mode) > 0


def test_a_short_file_stays_whole_and_a_long_one_is_cut():
    rate = 8000
    audio = np.concatenate([np.full(rate, 0.3, np.float32), np.zeros(rate, np.float32),
                            np.full(rate, 0.3, np.float32)])  # 3 s with a 1 s pause
    assert split_on_silence(audio, rate, max_seconds=3.0) == [(0, len(audio))]
    assert len(split_on_silence(audio, rate, max_seconds=2.9)) == 2
