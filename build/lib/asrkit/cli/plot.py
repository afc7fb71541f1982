"""``asrkit plot ...``: PNG pictures of an utterance, the attention, the training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from asrkit.cli.app import app

plot_app = typer.Typer(help="PNG pictures (needs matplotlib: pip install matplotlib).", no_args_is_help=True)
app.add_typer(plot_app, name="plot")


@plot_app.command("utterance")
def utterance(
    exp: Path = typer.Argument(..., help="Experiment dir (uses best.pt) or a checkpoint file."),
    audio: Path = typer.Argument(..., help="Audio file."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="PNG to write (default AUDIO_STEM.png here)."),
) -> None:
    """Spectrogram, CTC posteriorgram and the decoded words at their aligned times."""
    from asrkit.plot import plot_utterance
    from asrkit.recognize.recognizer import Recognizer

    path = plot_utterance(Recognizer(exp), audio, out or Path(f"{audio.stem}.png"))
    typer.echo(f"{path}")


@plot_app.command("attention")
def attention(
    exp: Path = typer.Argument(..., help="Experiment dir or checkpoint of a model with an attention decoder."),
    audio: Path = typer.Argument(..., help="Audio file."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="PNG to write (default AUDIO_STEM_attention.png)."),
) -> None:
    """The decoder's attention weights over time for each output token."""
    from asrkit.plot import plot_attention
    from asrkit.recognize.recognizer import Recognizer

    path = plot_attention(Recognizer(exp), audio, out or Path(f"{audio.stem}_attention.png"))
    typer.echo(f"{path}")


@plot_app.command("curves")
def curves(
    exp: Path = typer.Argument(..., help="Experiment dir (reads metrics.jsonl)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="PNG to write (default EXP/curves.png)."),
) -> None:
    """Training curves: train/dev loss, dev WER, learning rate per epoch."""
    from asrkit.plot import plot_training

    typer.echo(f"{plot_training(exp, out or exp / 'curves.png')}")


@plot_app.command("gradients")
def gradients(
    exp: Path = typer.Argument(..., help="Experiment dir (uses best.pt) or a checkpoint file."),
    data_dir: Path = typer.Argument(..., help="Data dir; its longest utterances are used."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="PNG to write (default EXP/gradients.png)."),
    num_utts: int = typer.Option(3, "--num-utts", help="How many of the longest utterances to plot."),
) -> None:
    """Gradients through time: the norm of d log p(best token at the last frame) / d h_t for every
    layer's output h_t (forward direction), untrained and trained weights, log scale."""
    from asrkit.errors import AsrkitError
    from asrkit.plot import plot_gradients
    from asrkit.recognize.recognizer import Recognizer

    if num_utts < 1:
        raise AsrkitError(f"--num-utts must be at least 1, not {num_utts}")
    default = (exp if exp.is_dir() else exp.parent) / "gradients.png"
    typer.echo(f"{plot_gradients(Recognizer(exp), data_dir, out or default, num_utts)}")
