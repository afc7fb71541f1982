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


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal (a KeyboardInterrupt, so Ctrl-C handling covers SIGTERM too)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_code(exc: BaseException) -> int:
    """128 + the signal of an ``Interrupted``; 130 (SIGINT) for a plain KeyboardInterrupt."""
    return exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT


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


__all__ = ["Interrupted", "StopSignals", "exit_code"]
