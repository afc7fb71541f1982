"""asrkit plot: PNG files of an utterance and of the training curves (attention: tests/test_rescore.py)."""

import soundfile

from conftest import run_cli, tone_words

PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_utterance_and_curves(trained_exp, tmp_path, capsys):
    wav = tmp_path / "ab.wav"
    soundfile.write(wav, tone_words(["a", "b"], seed=4), 8000)
    code, out, err = run_cli(["plot", "utterance", trained_exp, wav, "--out", tmp_path / "u.png"], capsys)
    assert code == 0, err
    assert (tmp_path / "u.png").read_bytes()[:8] == PNG and (tmp_path / "u.png").stat().st_size > 10_000
    code, out, err = run_cli(["plot", "curves", trained_exp, "--out", tmp_path / "c.png"], capsys)
    assert code == 0 and (tmp_path / "c.png").read_bytes()[:8] == PNG, err


def test_plot_errors_are_one_line(trained_exp, tmp_path, capsys):
    wav = tmp_path / "ab.wav"
    soundfile.write(wav, tone_words(["a"], seed=4), 8000)
    code, _, err = run_cli(["plot", "attention", trained_exp, wav, "--out", tmp_path / "a.png"], capsys)
    assert code == 1 and "has no attention decoder" in err and err.count("\n") == 1
    code, _, err = run_cli(["plot", "curves", tmp_path], capsys)
    assert code == 1 and "metrics.jsonl does not exist" in err
    assert not (tmp_path / "a.png").exists()


def test_gradients_through_time_for_every_type_and_the_plot(trained_exp, tone_corpus, tmp_path, capsys):
    import numpy as np
    import torch

    from asrkit.config import ModelConfig
    from asrkit.model import build_model
    from asrkit.plot import gradients_through_time

    feats = torch.randn(1, 40, 5)
    for rnn_type in ("lstm", "gru", "rnn", "jordan"):
        for variant in ({}, {"pyramid_layers": 1, "projection_size": 6}):
            cfg = ModelConfig(rnn_type=rnn_type, num_layers=3, hidden_size=8, dropout=0.0, **variant)
            torch.manual_seed(0)
            model = build_model(5, 6, cfg)
            norms = gradients_through_time(model, feats)
            expected = [10, 5, 5] if variant else [10, 10, 10]  # 40 frames / 4, then one pyramid halving
            assert [len(n) for n in norms] == expected, (rnn_type, variant)
            assert all(np.isfinite(n).all() and (n >= 0).all() for n in norms)
            assert (norms[-1] > 0).all()  # through the recurrence every frame reaches the last one
    code, out, err = run_cli(["plot", "gradients", trained_exp, tone_corpus["dev"], "--out", tmp_path / "g.png"],
                             capsys)
    assert code == 0, err
    assert (tmp_path / "g.png").read_bytes()[:8] == PNG and (tmp_path / "g.png").stat().st_size > 10_000
    code, _, err = run_cli(["plot", "gradients", trained_exp, tone_corpus["dev"], "--num-utts", "0"], capsys)
    assert code == 1 and "--num-utts must be at least 1" in err
