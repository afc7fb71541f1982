"""Shared fixtures: tiny corpora the tests synthesise themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from asrkit.data.datadir import DataDir

SHARED_CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
TONES = {"a": 440.0, "b": 1300.0}  # each "word" is a tone burst; transcripts are word sequences


def ctc_paths(log_probs, blank: int = 0):
    """Every alignment of a small (T, V) log-prob matrix: yields (label sequence, path log-probability)."""
    import itertools

    num_frames, vocab = log_probs.shape
    for path in itertools.product(range(vocab), repeat=num_frames):
        labels, previous = [], None
        for token in path:
            if token != blank and token != previous:
                labels.append(token)
            previous = token
        yield tuple(labels), float(sum(log_probs[t, token] for t, token in enumerate(path)))


def ctc_brute_force(log_probs, blank: int = 0) -> dict[tuple, float]:
    """log P(label sequence) for every label sequence, by summing over all alignments."""
    import math

    totals: dict[tuple, float] = {}
    for labels, score in ctc_paths(log_probs, blank):
        if labels in totals:
            high, low = max(totals[labels], score), min(totals[labels], score)
            totals[labels] = high + math.log1p(math.exp(low - high))
        else:
            totals[labels] = score
    return totals


def tone_words(words: list[str], rate: int = 8000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pieces = [np.zeros(int(0.1 * rate), np.float32)]
    for word in words:
        t = np.arange(int(rng.uniform(0.18, 0.25) * rate)) / rate
        pieces.append(0.5 * np.sin(2 * np.pi * TONES[word] * t).astype(np.float32))
        pieces.append(np.zeros(int(rng.uniform(0.08, 0.15) * rate), np.float32))
    audio = np.concatenate(pieces)
    return audio + rng.normal(0, 0.003, audio.shape).astype(np.float32)


def make_tone_data_dir(root: Path, num_utts: int, seed: int, rate: int = 8000) -> Path:
    rng = np.random.default_rng(seed)
    audio_dir = root / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    data = DataDir()
    for i in range(num_utts):
        words = [str(rng.choice(list(TONES))) for _ in range(int(rng.integers(1, 4)))]
        utt = f"spk{i % 2}-{seed:02d}{i:03d}"
        path = audio_dir / f"{utt}.wav"
        soundfile.write(path, tone_words(words, rate, seed * 1000 + i), rate)
        data.wav_scp[utt] = str(path)
        data.text[utt] = " ".join(words)
        data.utt2spk[utt] = f"spk{i % 2}"
    data.save(root)
    return root


@pytest.fixture(scope="session")
def tone_corpus(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tones")
    return {"train": make_tone_data_dir(root / "train", 48, seed=1),
            "dev": make_tone_data_dir(root / "dev", 12, seed=2)}


@pytest.fixture()
def wav_file(tmp_path) -> Path:
    path = tmp_path / "a.wav"
    soundfile.write(path, tone_words(["a", "b"]), 8000)
    return path


TINY_CONFIG = """
feature: {sample_rate: 8000, num_mel_bins: 23}
model: {num_layers: 1, hidden_size: 32, dropout: 0.0}
train: {epochs: 10, lr: 0.01, warmup_steps: 10, max_frames_per_batch: 400, seed: 0,
       spec_augment: {enabled: false}, augment: {noise_prob: 0, gain_prob: 0, telephone_prob: 0}}
"""


@pytest.fixture()
def tiny_config(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG)
    return path


JOINT_CONFIG = TINY_CONFIG.replace("model: {num_layers: 1, hidden_size: 32, dropout: 0.0}",
                                   "model: {num_layers: 1, hidden_size: 32, dropout: 0.0, ctc_weight: 0.5, "
                                   "attention_dim: 16, decoder_hidden_size: 32, decoder_embed_dim: 8}")


@pytest.fixture(scope="session")
def joint_exp(tone_corpus, tmp_path_factory):
    """A tiny joint CTC/attention model (it has a decoder, for rescoring), trained once per session."""
    from asrkit.cli import main

    root = tmp_path_factory.mktemp("joint")
    (root / "joint.yaml").write_text(JOINT_CONFIG.replace("epochs: 10", "epochs: 14"))
    exp = root / "exp"
    assert main(["-q", "train", "--train", str(tone_corpus["train"]), "--dev", str(tone_corpus["dev"]),
                 "--config", str(root / "joint.yaml"), "--out", str(exp)]) == 0
    return exp


STREAM_CONFIG = JOINT_CONFIG.replace(
    "feature: {sample_rate: 8000, num_mel_bins: 23}",
    "feature: {sample_rate: 8000, num_mel_bins: 23, level_norm: none, utterance_cmn: false}").replace(
    "ctc_weight: 0.5,", "ctc_weight: 0.5, bidirectional: false, lookahead: 2,").replace("epochs: 10", "epochs: 16")


@pytest.fixture(scope="session")
def stream_exp(tmp_path_factory):
    """A tiny unidirectional joint CTC/attention model with a lookahead, on local features (its own
    copy of the tone corpus: a data dir holds the features of one feature config)."""
    from asrkit.cli import main

    root = tmp_path_factory.mktemp("stream")
    train, dev = make_tone_data_dir(root / "train", 48, seed=1), make_tone_data_dir(root / "dev", 12, seed=2)
    (root / "stream.yaml").write_text(STREAM_CONFIG)
    exp = root / "exp"
    assert main(["-q", "train", "--train", str(train), "--dev", str(dev), "--config", str(root / "stream.yaml"),
                 "--out", str(exp)]) == 0
    return exp


def torch_blocked_env(root: Path) -> dict[str, str]:
    """An environment whose Python finds, first on its path (under ``root``), a ``torch`` package that
    refuses to import, as an install without PyTorch does."""
    import os

    (root / "torch").mkdir(parents=True)
    (root / "torch" / "__init__.py").write_text(
        'raise ModuleNotFoundError("torch is blocked: the bundle runtime must not import it", name="torch")\n')
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    from asrkit.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="session")
def trained_exp(tone_corpus, tmp_path_factory) -> Path:
    """A tiny model trained once per session on the tone corpus."""
    from asrkit.cli import main

    root = tmp_path_factory.mktemp("trained")
    (root / "tiny.yaml").write_text(TINY_CONFIG)
    exp = root / "tiny"
    assert main(["-q", "train", "--train", str(tone_corpus["train"]), "--dev", str(tone_corpus["dev"]),
                 "--config", str(root / "tiny.yaml"), "--out", str(exp)]) == 0
    return exp


def interrupt_at_call(monkeypatch, owner, name: str, call: int):
    """Replace ``owner.name`` by a wrapper that raises KeyboardInterrupt (what Ctrl-C raises) on its
    ``call``-th call from now and calls the real one otherwise; returns the real one."""
    real, calls = getattr(owner, name), {"n": 0}

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, interrupting)
    return real


def random_ints(generator):
    """``randint(low, high)``: a whole number in [low, high] drawn from the torch ``generator``."""
    import torch

    def randint(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (), generator=generator))

    return randint


def random_lm_fusion(randint, words: list[str], tokenizer, num_sentences: int):
    """A word n-gram LM (order 1-3) of random sentences of ``words``, fused with a random weight
    and word bonus: the LM side of the random cases the property tests of the search draw."""
    from asrkit.search.arpa import ArpaLM
    from asrkit.search.lm import LmFusion, build_arpa

    sentences = [[words[randint(0, len(words) - 1)] for _ in range(randint(1, 4))] for _ in range(num_sentences)]
    lm = ArpaLM.parse(build_arpa(sentences, order=randint(1, 3)).splitlines())
    return LmFusion(lm, tokenizer, weight=[0.3, 1.0][randint(0, 1)], bonus=[0.0, 1.5, -0.5][randint(0, 2)])


def assert_nbest_agree(fast, slow, with_lm: bool, where: str) -> None:
    """The batched search's whole n-best equals the reference's: the same hypotheses in the same
    order, with the same scores (and LM scores). The check of the search's property tests."""
    import math

    for utt, (got, want) in enumerate(zip(fast, slow)):
        at = f"{where} utt {utt}"
        assert [h.tokens for h in got] == [h.tokens for h in want], at
        for g, w in zip(got, want):
            assert math.isclose(g.score, w.score, rel_tol=1e-5, abs_tol=2e-3), at
            if with_lm:
                assert math.isclose(g.lm_score, w.lm_score, abs_tol=2e-3), at


HOLD = str(Path(__file__).with_name("hold_until_signal.py"))  # python HOLD EPOCH ASRKIT_ARGS...


def signal_when_ready(command: list[str], ready, signum: int, timeout: float = 180, env=None,
                      group: bool = False, after=None) -> tuple[int, str]:
    """Run ``command``, send it ``signum`` as soon as ``ready()`` is true, and return its exit code
    and stderr (exit code 0: it finished before it was ready). ``group``: the command runs in a
    session of its own and the signal goes to its whole process group, as a terminal's Ctrl-C,
    torchrun, SLURM and GNU timeout send it (DataLoader workers included). ``after()`` runs half a
    second after the signal (e.g. to let a held process go on)."""
    import os
    import subprocess
    import time

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=group)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and process.poll() is None:
            try:
                is_ready = ready()
            except (OSError, ValueError):  # a file half written
                is_ready = False
            if is_ready:
                if group:
                    os.killpg(process.pid, signum)
                else:
                    process.send_signal(signum)
                if after is not None:
                    time.sleep(0.5)
                    after()
                break
            time.sleep(0.02)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    return process.returncode, err


def steps_reached_epoch(exp: Path, epoch: int) -> bool:
    """Whether ``exp/steps.jsonl`` has a row of ``epoch`` (training is that far)."""
    import json

    steps = exp / "steps.jsonl"
    return steps.is_file() and any(json.loads(line)["epoch"] >= epoch for line in steps.read_text().splitlines())
