"""``asrkit plot ...``: PNG pictures of an utterance, the attention, the training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from asrkit.cli import app

plot_app = typer.Typer(help="PNG pictures (needs matplotlib: pip install matplotlib).", no_args_is_help=True)
app.add_typer(plot_app, name="plot")


@plot_app.command("utterance")
def utterance(
    exp: Path = typer.Argument(..., help="Experiment dir (uses best.pt) or a checkpoint file."),
    audio: Path = typer.Argument(..., help="Audio file."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="PNG to write (default AUDIO_STEM.png here)."),
) -> None:
    """Spectrogram, CTC posteriorgram and the decoded words at their aligned times."""
    from asrkit.inference import Recognizer
    from asrkit.plot import plot_utterance

    path = plot_utterance(Recognizer(exp), audio, out or Path(f"{audio.stem}.png"))
    typer.echo(f"{path}")


@plot_app.command("attention")
def attention(
    exp: Path = typer.Argument(..., help="Experiment dir or checkpoint of a model with an attention decoder."),
    audio: Path = typer.Argument(..., help="Audio file."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="PNG to write (default AUDIO_STEM_attention.png)."),
) -> None:
    """The decoder's attention weights over time for each output token."""
    from asrkit.inference import Recognizer
    from asrkit.plot import plot_attention

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
