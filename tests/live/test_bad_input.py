"""``simstack live`` given bad input, a closed pipe or an early signal: one line or a quiet end, and nothing left behind.

Each runs the real command in a namespace of the test's own (``netns``), or
with a lab (``lab``, from test_lab.py), and checks what the system holds
afterwards, not only what simstack printed.
"""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
from conftest import require, require_tool

from .conftest import TUN, Netns, received
from .test_lab import NETNS_DIR, Lab, _labs, _run, _sweep

pytestmark = pytest.mark.live


@pytest.fixture(name="lab")
def lab_fixture() -> Iterator[Lab]:
    """test_lab.py's ``lab``: a namespace for simstack, names with a prefix of the test's own, swept afterwards."""
    require(os.geteuid() == 0, "live tests need root (network namespaces, TAP devices)")
    require(TUN.exists(), f"{TUN} is missing (no TUN/TAP support)")
    for tool in ("ip", "nsenter", "ping"):
        require_tool(tool)
    name = f"sl{os.getpid()}x{next(_labs)}"
    host = Netns(f"{name}h")
    try:
        yield Lab(name, host)
    finally:
        host.delete()
        _sweep(name)


def assert_one_line(r: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("simstack: "), r.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["tap0", "--ping", "10.0.0.2", "--interval", "nan"], "--interval nan: must be a finite number of seconds"),
        (["tap0", "--ping", "10.0.0.2", "--interval", "inf"], "--interval inf: must be a finite number of seconds"),
        (["tap0", "--ping", "10.0.0.2", "--interval", "1e308"], "--interval 1e+308: want a time in seconds"),
        (["tap0", "--ping", "10.0.0.2", "-W", "inf"], "--linger inf: must be a finite number of seconds"),
        (["tap0", "--serve", "echo", "--serve", "echo"], "--serve echo is given twice"),
        (["tap0", "--ip", "255.255.255.255/32"], "--ip: 255.255.255.255 is the limited broadcast address"),
        (["tap0", "--ip", "127.0.0.1/8"], "--ip: 127.0.0.1 is a loopback address"),
        (["tap0", "--ip", "224.0.0.1/24"], "--ip: 224.0.0.1 is a multicast address"),
        (["tap0", "--gateway", "10.0.0.1"], "--gateway: 10.0.0.1 is the stack's own address"),
        (["tap%d"], "bad interface name 'tap%d': '%' asks the kernel to choose the number"),
        (["tap0", "--record", "/tmp"], "--record /tmp: is a directory"),
        (["tap0", "--record", "/proc/x.yaml"], "--record /proc/x.yaml: cannot write"),
    ],
)
def test_bad_options_exit_2_with_one_line_and_create_nothing(netns: Netns, args: list[str], fragment: str) -> None:
    links = netns.run("ip", "-o", "link", "show").stdout
    r = netns.simstack_once(*args)
    assert "Traceback" not in r.stderr
    assert_one_line(r, fragment)
    assert r.stdout == ""
    assert netns.run("ip", "-o", "link", "show").stdout == links


def test_verbose_into_head_ends_quietly(netns: Netns) -> None:
    """``simstack live tap0 -v | head -n 3``: it said "tap0 failed: Broken pipe" and printed a traceback (16.10)."""
    command = " ".join(netns.simstack_argv("tap0", "-v")[4:])  # already inside the namespace
    script = f'{command} | head -n 3; echo "exit ${{PIPESTATUS[0]}}" >&2'
    pipeline = netns.spawn("bash", "-c", script)
    try:
        deadline = time.monotonic() + 10
        while not netns.link_exists("tap0") and time.monotonic() < deadline:
            time.sleep(0.05)
        ping = netns.run("ping", "-c", "3", "-i", "0.2", "-W", "1", "10.0.0.1")  # frames for the -v lines
        rc = pipeline.wait(timeout=20)
    finally:
        pipeline.kill()
    assert rc == 0, pipeline.stderr
    assert len(pipeline.stdout.splitlines()) == 3, pipeline.stdout
    assert pipeline.stdout.startswith("simstack: live on tap0 "), pipeline.stdout
    assert pipeline.stderr == "exit 141\n", pipeline.stderr + ping.stdout
    assert not netns.link_exists("tap0")


@pytest.mark.parametrize("delay", [0.05, 0.1, 0.15, 0.2, 0.3, 0.5])
def test_ctrl_c_in_the_first_moments_prints_no_traceback(netns: Netns, delay: float) -> None:
    """Ctrl-C while the modules load, or while setup runs: an exit status, no traceback, no TAP (16.10)."""
    s = netns.simstack("tap0")
    time.sleep(delay)
    s.proc.send_signal(signal.SIGINT)
    rc = s.wait(timeout=20)
    assert "Traceback" not in s.stderr and "KeyboardInterrupt" not in s.stderr, s.stderr
    assert s.stderr == "", s.stderr
    # 130: simstack saw it (while its modules loaded, or during setup); -SIGINT: it came before Python ran at all
    # (`ip netns exec` still starting on a busy machine), whose default action ends a process without a word.
    assert rc in (0, 130, -signal.SIGINT), (rc, s.stdout)
    assert not netns.link_exists("tap0")


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGUSR1, signal.SIGQUIT], ids=lambda s: s.name)
def test_a_fatal_signal_stops_like_sigterm_and_removes_the_lab(lab: Lab, sig: signal.Signals) -> None:
    """SIGHUP killed the process outright: no counters, and the namespaces and bridge stayed (16.16)."""
    s = lab.simstack("--lab-clients", "2")
    assert received(lab.client(1, "ping", "-c", "2", "-i", "0.05", "-W", "2", "10.0.0.1").stdout) == (2, 2)
    assert s.stop(sig) == 0, s.stderr
    assert s.stderr == ""
    assert f"simstack: stopped by {sig.name} after " in s.stdout, s.stdout
    assert re.search(r"^icmp +.*\btx\.echo_reply=2\b", s.stdout, re.M), s.stdout  # the counters
    assert lab.leftovers() == []


@pytest.mark.parametrize("sig", ["SIGHUP", "SIGUSR1"])
@pytest.mark.parametrize("where", ["bridge", "veth", "namespace"])
def test_a_signal_between_making_a_lab_object_and_recording_it_leaves_nothing(lab: Lab, sig: str, where: str) -> None:
    """The signal lands right after the kernel made the object, before the lab wrote it down."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        from pyroute2 import netns  # where lab.py takes it from, when it makes a namespace
        from simstack.engine.live import lab as lab_module, session

        do, create = lab_module._do, netns.create

        def do_then_signal(ipr, what, method, *argv, **kwarg):
            do(ipr, what, method, *argv, **kwarg)
            kind = kwarg.get("kind")
            if argv[:1] == ("add",) and (kind == "bridge" and {where!r} == "bridge" or kind == "veth" and {where!r} == "veth"):
                os.kill(os.getpid(), signal.{sig})

        def create_then_signal(name, *a, **kw):
            create(name, *a, **kw)
            if {where!r} == "namespace":
                os.kill(os.getpid(), signal.{sig})

        lab_module._do = do_then_signal
        netns.create = create_then_signal
        opts = session.LiveOptions({lab.tap!r}, lab={lab.name!r}, lab_clients=2)
        sys.exit(session.run(opts, sys.stdout, sys.stderr))
    """)
    r = _run("nsenter", f"--net={NETNS_DIR}/{lab.host.name}", sys.executable, "-c", script)
    assert (r.returncode, r.stdout, r.stderr) == (
        0, f"simstack: stopped by {sig} before the stack ran; undid its setup\n", "")
    assert lab.leftovers() == []


def test_a_signal_while_a_failed_setup_is_undone_does_not_cut_the_undoing_short(lab: Lab) -> None:
    """Setup fails after the lab is up; while the lab is removed, SIGHUP arrives: all of it still goes."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        from simstack.engine.live import lab as lab_module, session
        from simstack.engine.wire.errors import SetupError

        remove = lab_module._remove_netns

        def remove_after_a_signal(made):
            os.kill(os.getpid(), signal.SIGHUP)
            remove(made)

        def fail(host, names):
            raise SetupError("setup failed on purpose")

        lab_module._remove_netns = remove_after_a_signal
        session.start_services = fail
        opts = session.LiveOptions({lab.tap!r}, lab={lab.name!r}, lab_clients=3)
        try:
            sys.exit(session.run(opts, sys.stdout, sys.stderr))
        except SetupError as e:
            print(e)
    """)
    r = _run("nsenter", f"--net={NETNS_DIR}/{lab.host.name}", sys.executable, "-c", script)
    assert (r.returncode, r.stdout, r.stderr) == (0, "setup failed on purpose\n", "")
    assert lab.leftovers() == []


@pytest.mark.parametrize("delay", [0.3, 0.45, 0.6, 0.75, 0.9, 1.2])
def test_sighup_at_any_moment_of_a_lab_session_leaves_nothing(lab: Lab, delay: float) -> None:
    """The real command, a signal at a moment of its life: before, during or after the lab is built."""
    proc = subprocess.Popen(lab.argv(lab.tap, "--lab", lab.name, "--lab-clients", "4"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(delay)
        proc.send_signal(signal.SIGHUP)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert "Traceback" not in err, err
    assert proc.returncode in (0, -signal.SIGHUP), (proc.returncode, out, err)  # -SIGHUP: before simstack's code ran
    assert lab.leftovers() == []
