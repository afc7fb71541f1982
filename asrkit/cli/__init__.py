"""The ``asrkit`` command line: option parsing only; the work lives in library functions.

One small file per command group (``commands``: prepare, features, train,
average, decode, transcribe, align, eval; ``data``, ``lm``, ``plot``,
``tokenizer``), the search options that every decoding command shares
(``search_options``), and here the app, its error handling (an ``AsrkitError``
becomes one red line and exit code 1) and ``main``. The top layer: it may
import anything below it, and nothing imports it. Library modules are imported
inside the commands, so that ``asrkit --help`` answers without loading torch.
"""

from __future__ import annotations

import sys

import typer

try:  # typer >= 0.29 carries its own copy of click and raises its exceptions
    from typer._click.exceptions import ClickException
except ImportError:  # older typer: click itself (typer.Exit and typer.Abort are click's there)
    from click import ClickException

from asrkit.cli import commands, data, lm, plot, serve, tokenizer  # noqa: F401  (each registers its commands on app)
from asrkit.cli.app import app, fail
from asrkit.data.audio import allow_pipes
from asrkit.errors import AsrkitError

# What a command needs that an install may lack, and how to get it.
MISSING = {
    "torch": "PyTorch, which this install lacks (one without it runs export bundles: transcribe, decode and "
             "align a bundle folder); pip install torch",
    "onnxruntime": "ONNX Runtime: pip install 'asrkit[runtime]'",
    "onnx": "the onnx package: pip install 'asrkit[export]'",
    "matplotlib": "matplotlib: pip install 'asrkit[plot]'",
    "uvicorn": "the server's packages: pip install 'asrkit[serve]'",
    "starlette": "the server's packages: pip install 'asrkit[serve]'",
    "multipart": "the server's packages: pip install 'asrkit[serve]'",
    "python_multipart": "the server's packages: pip install 'asrkit[serve]'",
    "sounddevice": "sounddevice: pip install 'asrkit[listen]' (and the PortAudio library, e.g. apt-get install "
                   "libportaudio2)",
}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (``asrkit`` the console script exits with it)."""
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
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        if root not in MISSING:
            raise
        fail(f"this command needs {MISSING[root]}")
        return 1


def run() -> None:
    sys.exit(main())

