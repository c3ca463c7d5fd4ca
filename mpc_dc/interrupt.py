"""Clean interruption: SIGINT, SIGTERM and SIGHUP unwind like Ctrl-C, and a test failpoint.

The CLI runs every command inside :func:`handle_signals`: the first SIGTERM (or
SIGHUP) raises :class:`Terminated`, a :class:`KeyboardInterrupt`, in the main
thread, so every ``with`` block unwinds as it does on Ctrl-C: a temporary run
directory is removed (:func:`mpc_dc.rundir.atomic_dir`), a process pool is stopped
(:mod:`mpc_dc.sweep`). The command then exits with ``128 + signal number`` (130
for SIGINT, 143 for SIGTERM) after one line on stderr. A second signal while that
cleanup runs ends the process at once (the user insists); whatever temporary
folder it leaves is removed at the next write into the same folder
(:func:`mpc_dc.rundir.clean_stale`).

:func:`hold_point` is a failpoint for the interruption tests: with
``MPC_DC_TEST_HOLD=<point>:<folder>[:<match>]`` in the environment, a process
that reaches ``<point>`` ("simulate": a simulated interval; "write": a run
directory fully written but not yet renamed into place), for a run whose name
or path contains ``<match>`` (any run without it), creates
``<folder>/<point>-<pid>`` and waits there to be killed. Without the variable it
costs one comparison.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

HOLD_ENV = "MPC_DC_TEST_HOLD"
"""Environment variable of the test failpoint: ``<point>:<folder>``."""

_HOLD = os.environ.get(HOLD_ENV, "")

HANDLED_SIGNALS: tuple[signal.Signals, ...] = tuple(
    s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None
)
"""Signals that unwind a command cleanly (SIGHUP: the terminal was closed)."""


class Terminated(KeyboardInterrupt):
    """The process received a termination signal; unwinds like Ctrl-C.

    Parameters
    ----------
    signum : int
        The signal received.
    """

    def __init__(self, signum: int) -> None:
        # args holds the number, so ``type(e)(*e.args)`` (as simpy re-raises) rebuilds it.
        super().__init__(int(signum))
        self.signum = int(signum)

    def __str__(self) -> str:
        return signal.Signals(self.signum).name


def exit_code(error: KeyboardInterrupt) -> int:
    """``128 + signal number``: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    signum = error.signum if isinstance(error, Terminated) else int(signal.SIGINT)
    return 128 + signum


def signal_name(error: KeyboardInterrupt) -> str:
    """``SIGINT``, ``SIGTERM`` or ``SIGHUP``."""
    signum = error.signum if isinstance(error, Terminated) else int(signal.SIGINT)
    return signal.Signals(signum).name


@contextmanager
def handle_signals() -> Iterator[None]:
    """Turn SIGINT/SIGTERM/SIGHUP into :class:`Terminated` inside the block.

    Only the main thread may install handlers; elsewhere this does nothing. The
    previous handlers are restored on exit (the CLI is also called in-process, by
    the tests).
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may install signal handlers
        return
    previous = {s: signal.getsignal(s) for s in HANDLED_SIGNALS}
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if received:
            # A second signal during the cleanup: stop now; stale folders are
            # removed by the next write (rundir.clean_stale).
            os._exit(128 + signum)
        received.append(signum)
        raise Terminated(signum)

    for s in HANDLED_SIGNALS:
        signal.signal(s, on_signal)
    try:
        yield
    finally:
        for s, handler in previous.items():
            # None: a handler set outside Python; the default is the closest we can restore.
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def hold_point(point: str, where: str = "") -> None:
    """Test failpoint: wait here to be killed when ``MPC_DC_TEST_HOLD`` names ``point``.

    Parameters
    ----------
    point : str
        ``"simulate"`` or ``"write"``.
    where : str
        The run (id or path) at the point, matched against the optional ``<match>``.
    """
    if not _HOLD:
        return
    name, _, rest = _HOLD.partition(":")
    folder, _, match = rest.partition(":")
    if name != point or not folder or match not in where:
        return
    Path(folder, f"{point}-{os.getpid()}").touch()
    while True:
        time.sleep(0.05)
