"""The lab's signal handling, seen from a child forked while the lab is built.

pyroute2 forks to create a namespace and to open a netlink socket inside one,
and ends each child with SIGTERM. The child inherits whatever handler is
installed. Once a CI run saw the child raise KeyboardInterrupt, unwind its copy
of ``Lab.create`` and delete the parent's half-built lab. The child must die
by SIGTERM, and the parent must go on.
"""

import signal
import subprocess
import sys
import textwrap

CHILD_SIGNALLED = textwrap.dedent("""
    import os, signal
    from simstack.engine.live.signals import interrupt_once

    unwound = []
    try:
        with interrupt_once():
            pid = os.fork()
            if pid == 0:
                os.kill(os.getpid(), signal.{name})
                os._exit(0)  # reached only when the handler let the child live
            _, status = os.waitpid(pid, 0)
    except KeyboardInterrupt:
        unwound.append(os.getpid())
        raise
    print(os.waitstatus_to_exitcode(status), unwound)
""")


def _run(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CHILD_SIGNALLED.format(name=name)], capture_output=True,
                          text=True, timeout=30)


def test_a_forked_child_dies_by_sigterm_and_the_parent_goes_on() -> None:
    r = _run("SIGTERM")
    assert (r.returncode, r.stdout, r.stderr) == (0, f"{-signal.SIGTERM} []\n", "")


def test_a_forked_child_dies_by_sigint_and_the_parent_goes_on() -> None:
    r = _run("SIGINT")
    assert (r.returncode, r.stdout, r.stderr) == (0, f"{-signal.SIGINT} []\n", "")


def test_the_parent_itself_is_still_interrupted() -> None:
    script = textwrap.dedent("""
        import os, signal
        from simstack.engine.live.signals import interrupt_once
        try:
            with interrupt_once():
                os.kill(os.getpid(), signal.SIGTERM)
                print("not interrupted")
        except KeyboardInterrupt:
            print("interrupted", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout, r.stderr) == (0, "interrupted True\n", "")
