"""The Typer app that every command group registers on, its root options, and the shared ``--allow-pipes``."""

from __future__ import annotations

import logging
import sys

import typer

from asrkit import __version__, progress
from asrkit.data.audio import allow_pipes

app = typer.Typer(
    name="asrkit",
    help="A small speech recognition toolkit: prepare data, train a BiLSTM-CTC model, decode, score.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _allow_pipes(value: bool) -> bool:
    if value:
        allow_pipes(True)
    return value


ALLOW_PIPES = typer.Option(False, "--allow-pipes", callback=_allow_pipes,
                           help="Run the command pipes of wav.scp ('flac -c -d -s x.flac |'); they run in a "
                                "shell, so only for data you trust (or set ASRKIT_ALLOW_PIPES=1).")


def fail(message: str) -> None:
    """One red line on stderr."""
    first = " ".join(str(message).split("\n")[0].split()) or "error"
    typer.secho(f"error: {first}", fg=typer.colors.RED, err=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"asrkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors; no progress bars."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    progress.QUIET = quiet
    _setup_logging(logging.WARNING if quiet else logging.INFO)


def _setup_logging(level: int) -> None:
    """Console messages at ``level``; the logger itself stays at INFO so train.log gets everything."""
    log = logging.getLogger("asrkit")
    log.setLevel(logging.INFO)
    for handler in [h for h in log.handlers if getattr(h, "_asrkit_console", False)]:
        log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(level)
    handler._asrkit_console = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.propagate = False
