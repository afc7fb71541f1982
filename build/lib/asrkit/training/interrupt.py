"""Stopping a long job cleanly on Ctrl-C (SIGINT) and SIGTERM (what SLURM, Kubernetes and ``timeout`` send).

Inside ``StopSignals`` a signal is only noted; the job asks ``check()`` at its
safe points (between optimizer steps, between validation batches) and it
raises ``Interrupted`` there, so that what is saved next is a consistent
state. A second signal raises at once. The exit code is Unix's 128 + signal:
130 for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import signal
import threading

from asrkit.errors import AsrkitError


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal (a KeyboardInterrupt, so Ctrl-C handling covers SIGTERM too)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class Stopped(AsrkitError):
    """What a command raises after a clean stop on a signal: the CLI prints one line and exits with
    ``exit_code`` (Typer would turn a KeyboardInterrupt into 130 whatever the signal)."""

    def __init__(self, exc: KeyboardInterrupt, what: str = "") -> None:
        name = exc.args[0] if isinstance(exc, Interrupted) else "SIGINT"
        super().__init__(f"interrupted ({name}){what}")
        self.exit_code = exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT


class StopSignals:
    """Context manager: SIGINT and SIGTERM are noted and raised as ``Interrupted`` at ``check()``."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:  # asked twice: stop now
            raise Interrupted(signum)
        self.received = signum

    def check(self) -> None:
        if self.received is not None:
            raise Interrupted(self.received)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


__all__ = ["Interrupted", "StopSignals", "Stopped"]
