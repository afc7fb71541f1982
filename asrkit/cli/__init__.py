"""The ``asrkit`` command line: option parsing only; the work lives in library functions."""

from __future__ import annotations

import logging
import sys

import typer

try:  # typer >= 0.29 carries its own copy of click and raises its exceptions
    from typer._click.exceptions import ClickException
except ImportError:  # older typer: click itself (typer.Exit and typer.Abort are click's there)
    from click import ClickException

from asrkit import __version__, progress
from asrkit.errors import AsrkitError

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
        from asrkit.audio import allow_pipes

        allow_pipes(True)
    return value


ALLOW_PIPES = typer.Option(False, "--allow-pipes", callback=_allow_pipes,
                           help="Run the command pipes of wav.scp ('flac -c -d -s x.flac |'); they run in a "
                                "shell, so only for data you trust (or set ASRKIT_ALLOW_PIPES=1).")


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


def fail(message: str) -> None:
    """One red line on stderr."""
    first = " ".join(str(message).split("\n")[0].split()) or "error"
    typer.secho(f"error: {first}", fg=typer.colors.RED, err=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (``asrkit`` the console script exits with it)."""
    from asrkit.audio import allow_pipes

    allow_pipes(False)  # each invocation opts in again (tests call main() many times in one process)
    try:
        result = app(args=argv, prog_name="asrkit", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except AsrkitError as exc:
        fail(str(exc))
        return getattr(exc, "exit_code", 1)
    except typer.Exit as exc:
        return exc.exit_code
    except ClickException as exc:
        exc.show()
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        fail("interrupted")
        return 130


def run() -> None:
    sys.exit(main())


from asrkit.cli import commands, data, lm, plot, tokenizer  # noqa: E402,F401  (registers the commands)
