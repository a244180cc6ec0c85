"""Stop signals while simstack builds or tears down what it owns.

The default action of SIGTERM, SIGHUP (the terminal closed), SIGUSR1 and
most other signals ends the process on the spot, with a lab's namespaces and
bridge still in place. Every signal whose default is to end the process and
that a process can catch is a stop signal here (``STOP_SIGNALS``), handled as
SIGTERM is. While setup runs, the first one raises KeyboardInterrupt instead,
so every ``with`` and undo callback on the way out runs; later ones are
ignored, so that unwinding is not cut short. Once the loop runs, it installs
its own handler (``LiveDriver.run_until_signal``) for the same signals.

Left alone: SIGKILL and SIGSTOP (no process can catch them), SIGPIPE (Python
ignores it; a closed pipe is an EPIPE error where it is written), and the
signals that report a fault in the process itself (SIGSEGV, SIGBUS, SIGFPE,
SIGILL, SIGTRAP, SIGSYS, SIGABRT), after which Python code cannot be trusted
to run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType, TracebackType


def _stop_signals() -> tuple[int, ...]:
    """signal(7): every signal whose default action is Term or Core, less those listed above as left alone."""
    names = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF",
             "SIGXCPU", "SIGXFSZ", "SIGIO", "SIGPWR", "SIGSTKFLT")
    found = [int(getattr(signal, name)) for name in names if hasattr(signal, name)]
    if hasattr(signal, "SIGRTMIN"):  # real-time signals end the process too
        found += [n for n in range(signal.SIGRTMIN, signal.SIGRTMAX + 1) if n in signal.valid_signals()]
    return tuple(found)


STOP_SIGNALS = _stop_signals()


def signal_name(signum: int) -> str:
    """SIGHUP, or SIGRTMIN+3 for a real-time signal (which has no name of its own)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        if hasattr(signal, "SIGRTMIN") and signal.SIGRTMIN <= signum <= signal.SIGRTMAX:
            return f"SIGRTMIN+{signum - signal.SIGRTMIN}"
        return f"signal {signum}"



_active = False  # an interrupt_once is in force in this process: nested ones add nothing
_defer_depth = 0  # inside defer_interrupts: a stop signal is noted, and raised when the outermost block ends
_deferred = False


class defer_interrupts(contextlib.AbstractContextManager[None]):
    """Hold back the KeyboardInterrupt of a stop signal until the block is done.

    For steps that must not be cut in two: making an object and recording it
    (cut between the two, the object exists with nobody to remove it), and
    removing what was made. If the block ends normally, the held-back
    interrupt is raised then; if it ends with an exception, or ``unwinding``
    says one is on its way already (the block runs in an ``__exit__``), that
    exception goes on and the interrupt is dropped: the process is unwinding
    anyway.
    """

    def __init__(self, unwinding: bool = False) -> None:
        self.unwinding = unwinding
        # Handlers run in the main thread only; another thread's block must neither hold nor raise its interrupt.
        self.main = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> None:
        global _defer_depth
        if self.main:
            _defer_depth += 1

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        global _defer_depth, _deferred
        if not self.main:
            return
        _defer_depth -= 1
        if _defer_depth == 0 and _deferred:
            _deferred = False
            if t is None and not self.unwinding:
                raise KeyboardInterrupt


@dataclass
class Caught:
    """Which stop signal interrupted the setup, if any."""

    signum: int | None = None

    @property
    def name(self) -> str:
        return signal_name(self.signum) if self.signum is not None else ""


@contextlib.contextmanager
def interrupt_once() -> Iterator[Caught]:
    """The first stop signal raises KeyboardInterrupt (held back inside ``defer_interrupts``); later ones are ignored.

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
        global _deferred
        if caught.signum is None:
            caught.signum = signum
            if _defer_depth:
                _deferred = True
                return
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

