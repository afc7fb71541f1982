"""``asrkit serve``: the HTTP/WebSocket server over one model."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from pathlib import Path
from typing import Optional

import typer

from asrkit.cli.app import app
from asrkit.cli.search_options import search_options
from asrkit.errors import AsrkitError
from asrkit.search.options import SearchOptions

log = logging.getLogger("asrkit")
SETTINGS_VARIABLE = "ASRKIT_SERVE"  # how each worker process learns what to serve (uvicorn's factory)


@app.command()
@search_options(nbest=False)
def serve(
    exp: Path = typer.Argument(..., help="Experiment dir, checkpoint or export bundle to serve."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; the default answers this machine only. Another "
                             "address without --api-key-file is warned about."),
    port: int = typer.Option(8000, help="TCP port."),
    max_sessions: int = typer.Option(8, "--max-sessions", help="Requests and streams at once per worker; one "
                                     "more is answered 503 (a socket: close code 1013)."),
    api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="Keys, one per line: every "
                                                "endpoint but /healthz and the page then needs "
                                                "'Authorization: Bearer <key>'."),
    max_upload_mb: float = typer.Option(25.0, "--max-upload-mb", help="Largest upload (413 above it)."),
    idle_timeout: float = typer.Option(60.0, "--idle-timeout", help="Seconds a stream may send nothing before "
                                       "it is closed (code 1001)."),
    request_timeout: float = typer.Option(30.0, "--request-timeout", help="Seconds an upload may stall (408)."),
    chunk_ms: float = typer.Option(320.0, "--chunk-ms", help="Streams: the encoder's chunk (a whole number of "
                                   "the model's frames)."),
    workers: int = typer.Option(1, "--workers", help="Server processes, each with its own copy of the model "
                                "(memory times N); on a few cores 1 is best: one process batches "
                                "concurrent work itself."),
    threads: int = typer.Option(0, "--threads", help="Threads of the acoustic model per worker (0: the cores "
                                "divided among the workers)."),
    batch: bool = typer.Option(True, "--batch/--no-batch", help="Batch the work that waits (files of several "
                               "requests in one model call, chunks of several streams in one encoder step); "
                               "--no-batch runs each alone, for comparison."),
    search: SearchOptions = None,
) -> None:
    """Serve a model over HTTP and WebSocket: POST /v1/transcribe, OpenAI's POST
    /v1/audio/transcriptions, WS /v1/stream (a streaming model), GET /v1/models, /healthz, and a
    browser page at /. Needs pip install 'asrkit[serve]'."""
    import uvicorn

    if not exp.exists():
        raise AsrkitError(f"{exp} does not exist")
    for name, value in (("--max-sessions", max_sessions), ("--workers", workers), ("--port", port)):
        if value < 1:
            raise AsrkitError(f"{name} must be at least 1, not {value}")
    for name, value in (("--max-upload-mb", max_upload_mb), ("--idle-timeout", idle_timeout),
                        ("--request-timeout", request_timeout)):
        if not value > 0:
            raise AsrkitError(f"{name} must be a positive number, not {value}")
    if api_key_file is not None:
        from asrkit.serve.app import load_keys

        load_keys(api_key_file)  # a missing or empty file fails now, not in each worker
    elif not _loopback(host):
        log.warning("serving on %s without --api-key-file: anyone who can reach this address can use the model",
                    host)
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    settings = {"exp": str(exp.resolve()), "search": _search_dict(search), "max_sessions": max_sessions,
                "api_key_file": str(api_key_file.resolve()) if api_key_file else None,
                "max_upload_mb": max_upload_mb, "idle_timeout": idle_timeout, "request_timeout": request_timeout,
                "chunk_ms": chunk_ms, "threads": threads, "batch": batch}
    os.environ[SETTINGS_VARIABLE] = json.dumps(settings)
    from asrkit.serve.main import from_environment

    if workers == 1:  # built here, so that a model that cannot load says so before the port opens
        target, factory = from_environment(), False
    else:
        target, factory = "asrkit.serve.main:from_environment", True
    typer.echo(f"serving {exp} on http://{host}:{port} ({workers} worker(s), {threads} thread(s) each)", err=True)
    uvicorn.run(target, host=host, port=port, workers=workers, factory=factory, log_level="warning",
                ws_max_size=4 * 1024 * 1024, timeout_graceful_shutdown=5)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _search_dict(search: SearchOptions) -> dict:
    from dataclasses import asdict

    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(search).items()}
