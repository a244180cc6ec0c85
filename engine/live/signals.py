"""SIGINT and SIGTERM while simstack builds or tears down what it owns.

SIGTERM's default action ends the process on the spot, with a lab's
namespaces and bridge still in place. While setup runs, the first stop signal
raises KeyboardInterrupt instead, so every ``with`` and undo callback on the way
out runs; later signals are ignored, so that unwinding is not cut short. Once
the loop runs, it installs its own handler (``LiveDriver.run_until_signal``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_active = False  # an interrupt_once is in force in this process: nested ones add nothing


@dataclass
class Caught:
    """Which stop signal interrupted the setup, if any."""

    signum: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


@contextlib.contextmanager
def interrupt_once() -> Iterator[Caught]:
    """The first SIGINT or SIGTERM raises KeyboardInterrupt; the ones after it are ignored.

    Handlers can only be set from the main thread; elsewhere, and inside an
    outer ``interrupt_once``, the handling in force stands.
    """
    global _active
    caught = Caught()
    if _active or threading.current_thread() is not threading.main_thread():
        yield caught
        return
    saved = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    owner = os.getpid()

    def stop(signum: int, _frame: FrameType | None) -> None:
        if os.getpid() != owner:
            # A child forked meanwhile (pyroute2 forks to create a namespace and
            # to open a socket inside one, then ends the child with SIGTERM)
            # inherits this handler. Raising there would unwind a copy of
            # simstack in the child, which would tear the lab down under the
            # parent: the child dies the way the signal's default action says.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if caught.signum is None:
            caught.signum = signum
            raise KeyboardInterrupt

    _active = True
    for s in STOP_SIGNALS:
        signal.signal(s, stop)
    try:
        yield caught
    finally:
        _active = False
        for s, handler in saved.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)

