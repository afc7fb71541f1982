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
