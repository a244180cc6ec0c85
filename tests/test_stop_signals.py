"""Every signal that would end simstack is a stop signal, and a stop signal cannot cut cleanup in two.

SIGHUP (the terminal closed) and SIGUSR1 killed the process with their
default action, leaving a lab's namespaces and bridge behind (issue 16.16).
Each case runs in a subprocess of its own, so the handlers under test are the
real ones and nothing is installed in the test process.
"""

import signal
import subprocess
import sys
import textwrap

import pytest

from simstack.engine.live.signals import STOP_SIGNALS, signal_name

SIGRTMIN_2 = signal.SIGRTMIN + 2


def _python(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=30)


def test_every_signal_that_ends_a_process_by_default_is_a_stop_signal() -> None:
    """signal(7): Term and Core defaults, less what cannot be caught and the faults of the process itself."""
    ends = {"SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGTERM", "SIGXCPU", "SIGXFSZ",
            "SIGVTALRM", "SIGPROF", "SIGIO", "SIGPWR", "SIGSTKFLT"}
    names = {signal_name(s) for s in STOP_SIGNALS}
    assert ends <= names
    assert {signal_name(s) for s in range(signal.SIGRTMIN, signal.SIGRTMAX + 1)} <= names
    assert not names & {"SIGKILL", "SIGSTOP", "SIGPIPE", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT", "SIGCHLD",
                        "SIGWINCH", "SIGCONT", "SIGTSTP", "SIGURG"}
    assert signal_name(SIGRTMIN_2) == "SIGRTMIN+2"


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT, SIGRTMIN_2],
                         ids=signal_name)
def test_a_stop_signal_during_setup_unwinds_like_sigterm(signum: int) -> None:
    r = _python(f"""
        import os, signal
        from simstack.engine.live.signals import interrupt_once
        try:
            with interrupt_once() as caught:
                os.kill(os.getpid(), {signum})
                print("not interrupted")
        except KeyboardInterrupt:
            print("interrupted by", caught.name, signal.getsignal({signum}) is signal.SIG_DFL)
    """)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"interrupted by {signal_name(signum)} True\n", "")


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGUSR1], ids=signal_name)
def test_a_forked_child_still_dies_by_the_signal(signum: int) -> None:
    """pyroute2's children inherit the handler; they must die, not unwind a copy of simstack."""
    r = _python(f"""
        import os
        from simstack.engine.live.signals import interrupt_once
        with interrupt_once():
            pid = os.fork()
            if pid == 0:
                os.kill(os.getpid(), {signum})
                os._exit(0)
            _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"{-signum}\n", "")


def test_defer_interrupts_holds_the_interrupt_until_the_block_is_done() -> None:
    r = _python("""
        import os, signal
        from simstack.engine.live.signals import defer_interrupts, interrupt_once
        done = []
        try:
            with interrupt_once() as caught:
                with defer_interrupts():
                    os.kill(os.getpid(), signal.SIGHUP)
                    with defer_interrupts():  # nested: only the outermost block's end raises
                        os.kill(os.getpid(), signal.SIGTERM)
                    done.append("inner")
                    done.append("outer")
                done.append("after")
        except KeyboardInterrupt:
            print(caught.name, done)
    """)
    assert (r.returncode, r.stdout, r.stderr) == (0, "SIGHUP ['inner', 'outer']\n", "")


def test_an_error_inside_defer_interrupts_goes_on_and_the_interrupt_is_dropped() -> None:
    """The process is unwinding anyway: the error says why, and cleanup after it is not interrupted."""
    r = _python("""
        import os, signal
        from simstack.engine.live.signals import defer_interrupts, interrupt_once
        with interrupt_once() as caught:
            try:
                with defer_interrupts():
                    os.kill(os.getpid(), signal.SIGUSR1)
                    raise RuntimeError("setup failed")
            except RuntimeError as e:
                print(e, caught.name)
            print("cleanup ran")
    """)
    assert (r.returncode, r.stdout, r.stderr) == (0, "setup failed SIGUSR1\ncleanup ran\n", "")


def test_defer_interrupts_in_another_thread_neither_holds_nor_raises() -> None:
    """A session opened in a background thread must not delay the main thread's interrupt, nor receive it."""
    r = _python("""
        import os, signal, threading
        from simstack.engine.live.signals import defer_interrupts, interrupt_once
        inside, release, seen = threading.Event(), threading.Event(), []

        def background():
            try:
                with defer_interrupts():
                    inside.set()
                    release.wait(10)
            except BaseException as e:
                seen.append(type(e).__name__)

        t = threading.Thread(target=background)
        t.start()
        inside.wait(10)
        try:
            with interrupt_once():
                os.kill(os.getpid(), signal.SIGHUP)
                for _ in range(1000):
                    pass
                print("not interrupted")
        except KeyboardInterrupt:
            print("interrupted")
        release.set()
        t.join(10)
        print(seen)
    """)
    assert (r.returncode, r.stdout, r.stderr) == (0, "interrupted\n[]\n", "")
