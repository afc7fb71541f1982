"""Stopping a long job cleanly on Ctrl-C (SIGINT) and SIGTERM (what SLURM, Kubernetes and ``timeout`` send).

Inside ``StopSignals`` a signal is only noted; the job asks ``check()`` at its
safe points (between optimizer steps, between validation batches) and it
raises ``Interrupted`` there, so that what is saved next is a consistent
state. A second Ctrl-C raises at once (the user insists); a second SIGTERM
is only noted again: torchrun, SLURM and ``timeout`` signal the whole process
group and then forward the signal to their children, and a process manager
that wants a stop now sends SIGKILL after its grace period anyway. The exit
code is Unix's 128 + signal: 130 for SIGINT, 143 for SIGTERM.

DataLoader worker processes get the signals of their process group too; they
ignore them (``ignore_stop_signals``, their ``worker_init_fn``), so that the
main process, not a dead worker, decides how the job stops.
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
        if self.received is not None and signum == signal.SIGINT:  # Ctrl-C twice: stop now
            raise Interrupted(signum)
        self.received = self.received or signum

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


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """A DataLoader worker's ``worker_init_fn``: SIGINT and SIGTERM sent to the process group are the
    main process's to handle (torch's worker would die of SIGTERM, and the main process would then
    fail with 'DataLoader worker killed' before it could save); the main process ends the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


__all__ = ["Interrupted", "StopSignals", "Stopped", "ignore_stop_signals"]
