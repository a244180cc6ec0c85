"""``simstack live --lab``: client namespaces on a bridge with the stack, and nothing left behind.

simstack runs in a namespace of the test's own, entered with nsenter rather
than ``ip netns exec`` (whose private mount namespace would hide the lab's
namespaces, see docs/live.md), so the bridge, the TAP and the bridge-side
veths live there and no frame reaches the machine's own network. Every name a
test can leave carries its prefix ``sl<pid>x<n>`` (also the lab's NAME), and
whatever has that prefix is deleted afterwards, whatever simstack did.
"""

import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from conftest import ROOT, require, require_tool

from .conftest import TUN, Netns, Simstack, received

pytestmark = pytest.mark.live

NETNS_DIR = "/run/netns"
HINT = re.compile(r"^  ip netns exec (\S+) ping (\S+)    # from (\S+)$", re.M)
_labs = itertools.count(1)


def _run(*cmd: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r


def namespaces() -> list[str]:
    return [line.split()[0] for line in _run("ip", "netns", "list", check=True).stdout.splitlines() if line.strip()]


@dataclass
class Lab:
    """One test's lab: NAME, the namespace simstack runs in, and ways to look at both."""

    name: str
    host: Netns

    @property
    def tap(self) -> str:
        return f"{self.name}t"

    def argv(self, *args: str, enter: tuple[str, ...] = ()) -> list[str]:
        enter = enter or ("nsenter", f"--net={NETNS_DIR}/{self.host.name}")
        return [*enter, sys.executable, "-m", "simstack", "live", *args]

    def simstack(self, *args: str, enter: tuple[str, ...] = ()) -> Simstack:
        """``simstack live TAP --lab NAME ARGS`` started in the host namespace, and ready."""
        s = Simstack(self.argv(self.tap, "--lab", self.name, *args, enter=enter))
        self.host.procs.append(s)  # killed by the fixture if the test fails first
        s.wait_ready()
        return s

    def once(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=30)

    def client(self, k: int, *cmd: str) -> subprocess.CompletedProcess[str]:
        return _run("ip", "netns", "exec", f"{self.name}-{k}", *cmd)

    def host_links(self) -> list[str]:
        return _links("-n", self.host.name)

    def leftovers(self) -> list[str]:
        """Everything the lab could have created that still exists."""
        left = [f"namespace {ns}" for ns in namespaces() if ns.startswith(f"{self.name}-")]
        left += [f"link {name} in {self.host.name}" for name in self.host_links() if name != "lo"]
        left += [f"link {name} in the root namespace" for name in _links() if _ours(self.name, name)]
        return left


def _links(*ip_options: str) -> list[str]:
    lines = _run("ip", *ip_options, "-o", "link", "show", check=True).stdout.splitlines()
    return [line.split()[1].split("@")[0].rstrip(":") for line in lines]


def _ours(prefix: str, name: str) -> bool:
    """A name one lab test can give: NAME-k, NAME-br, NAMEt (TAP), NAMEh (host namespace), NAMEp (veth peer)."""
    return re.fullmatch(rf"{prefix}(-br|-\d+|t|h|p)", name) is not None


def _sweep(prefix: str) -> None:
    """Delete namespaces and root-namespace links named with ``prefix``, killing what runs in them."""
    for ns in namespaces():
        if ns != f"{prefix}h" and _ours(prefix, ns):
            for pid in _run("ip", "netns", "pids", ns).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            _run("ip", "netns", "del", ns)
    for name in _links():
        if _ours(prefix, name):
            _run("ip", "link", "del", name)


@pytest.fixture
def lab() -> Iterator[Lab]:
    require(os.geteuid() == 0, "live tests need root (network namespaces, TAP devices)")
    require(TUN.exists(), f"{TUN} is missing (no TUN/TAP support)")
    require_tool("ip")
    require_tool("nsenter")
    require_tool("ping")
    name = f"sl{os.getpid()}x{next(_labs)}"
    assert len(name) <= 11, name  # NAME-br must fit IFNAMSIZ, and NAME+"h" must not be a client's name
    host = Netns(f"{name}h")
    try:
        yield Lab(name, host)
    finally:
        host.delete()  # simstack first, then the namespace with the bridge, TAP and veths in it
        _sweep(name)


def assert_one_line(r: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout == "", r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("simstack: "), r.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_clients_reach_the_stack_and_each_other_and_the_lab_goes_on_a_signal(lab: Lab, sig: signal.Signals) -> None:
    s = lab.simstack("--lab-clients", "2")
    assert f"created {lab.tap} on bridge {lab.name}-br, lab {lab.name} with 2 clients; Ctrl-C to stop" in s.stdout
    for k in (1, 2):
        r = lab.client(k, "ping", "-c", "20", "-i", "0.01", "-W", "1", "-w", "15", "10.0.0.1")
        assert received(r.stdout) == (20, 20), r.stdout + r.stderr
    for k, other in ((1, "10.0.0.3"), (2, "10.0.0.2")):  # through the bridge, not the stack
        r = lab.client(k, "ping", "-c", "3", "-i", "0.01", "-W", "1", "-w", "10", other)
        assert received(r.stdout) == (3, 3), r.stdout + r.stderr
    # Nothing beside the lab has an address: not the TAP, not the bridge, not its veth ends, not even IPv6 link-local.
    addrs = lab.host.run("ip", "-o", "addr", "show", check=True).stdout.splitlines()
    assert [a.split()[1] for a in addrs] == ["lo", "lo"], addrs
    assert sorted(lab.host_links()) == sorted(["lo", lab.tap, f"{lab.name}-br", f"{lab.name}-1", f"{lab.name}-2"])
    assert s.stop(sig) == 0, s.stderr
    assert s.stderr == ""
    out = s.stdout
    assert re.search(rf"^simstack: stopped by {sig.name} after [\d.]+ s; removed {lab.tap} and lab {lab.name}$", out, re.M)
    assert re.search(r"^icmp +.*\brx=40\b.*\btx\.echo_reply=40\b", out, re.M), out
    assert lab.leftovers() == []


def test_hints_are_commands_that_work(lab: Lab) -> None:
    """Client addresses are the subnet's hosts in order, skipping the stack's: .1, .3, .4 for 10.9.0.2/29."""
    s = lab.simstack("--ip", "10.9.0.2/29", "--lab-clients", "3")
    s.wait_for_line(rf"^  ip netns exec {lab.name}-3 ")
    hints = HINT.findall(s.stdout)
    assert hints == [(f"{lab.name}-{k}", "10.9.0.2", f"10.9.0.{last}") for k, last in ((1, 1), (2, 3), (3, 4))], s.stdout
    lines = s.stdout.splitlines()
    assert lines[0].startswith("simstack: live on ") and [ln for ln in lines[1:4] if HINT.match(ln)] == lines[1:4]
    for line in lines[1:4]:
        command = line.split("#")[0].split()
        r = _run(*command, "-c", "3", "-i", "0.01", "-W", "1", "-w", "10")
        assert received(r.stdout) == (3, 3), line + "\n" + r.stdout + r.stderr
    for ns, _, ip in hints:
        assert f"inet {ip}/29 " in _run("ip", "-n", ns, "-o", "addr", "show", "eth0", check=True).stdout
    assert s.stop() == 0
    assert lab.leftovers() == []


def test_clients_have_only_their_subnet_route_by_default(lab: Lab) -> None:
    s = lab.simstack()
    ns = f"{lab.name}-1"
    routes = _run("ip", "-n", ns, "route", check=True).stdout.splitlines()
    assert [r.split() for r in routes] == [["10.0.0.0/24", "dev", "eth0", "proto", "kernel", "scope", "link",
                                           "src", "10.0.0.2"]], routes
    assert "UP" in _run("ip", "-n", ns, "-o", "link", "show", "lo", check=True).stdout.split(">")[0]
    assert "Network is unreachable" in _run("ip", "-n", ns, "route", "get", "192.0.2.1").stderr
    assert s.stop() == 0
    assert lab.leftovers() == []


def test_lab_route_sends_off_subnet_datagrams_to_the_stack_which_does_not_forward(lab: Lab) -> None:
    s = lab.simstack("--lab-route")
    assert "default route via 10.0.0.1" in s.stdout
    ns = f"{lab.name}-1"
    routes = [r.split() for r in _run("ip", "-n", ns, "route", check=True).stdout.splitlines()]
    assert routes[0][:5] == ["default", "via", "10.0.0.1", "dev", "eth0"], routes
    assert routes[1][:3] == ["10.0.0.0/24", "dev", "eth0"] and len(routes) == 2, routes
    # 192.0.2.1 (TEST-NET-1, RFC 5737): the frames go to the stack's MAC on the bridge and stop there.
    r = lab.client(1, "ping", "-c", "3", "-i", "0.05", "-W", "1", "192.0.2.1")
    assert received(r.stdout) == (3, 0), r.stdout + r.stderr
    assert s.stop() == 0
    assert re.search(r"^ipv4 +.*\bdrop\.not_for_us=3\b", s.stdout, re.M), s.stdout
    assert lab.leftovers() == []


@pytest.mark.parametrize("taken", ["namespace", "bridge", "veth", "tap"])
def test_a_taken_name_is_refused_before_anything_is_created(lab: Lab, taken: str) -> None:
    name = lab.name
    if taken == "namespace":
        _run("ip", "netns", "add", f"{name}-1", check=True)
        _run("ip", "-n", f"{name}-1", "addr", "add", "192.0.2.9/32", "dev", "lo", check=True)  # a mark of its owner
        before = os.stat(f"{NETNS_DIR}/{name}-1").st_ino
        fragment = f"--lab {name}: namespace {name}-1 already exists"
    elif taken == "bridge":
        lab.host.run("ip", "link", "add", f"{name}-br", "type", "bridge", check=True)
        fragment = f"--lab {name}: link {name}-br already exists"
    elif taken == "veth":
        lab.host.run("ip", "link", "add", f"{name}-2", "type", "veth", "peer", "name", f"{name}p", check=True)
        fragment = f"--lab {name}: link {name}-2 already exists"
    else:
        lab.host.run("ip", "tuntap", "add", lab.tap, "mode", "tap", check=True)
        fragment = f"{lab.tap} exists: with --lab simstack creates the TAP itself"
    links = sorted(lab.host_links())
    r = lab.once(lab.tap, "--lab", name, "--lab-clients", "2")
    assert_one_line(r, fragment)
    assert sorted(lab.host_links()) == links  # nothing created, nothing taken away
    assert [ns for ns in namespaces() if ns.startswith(f"{name}-")] == ([f"{name}-1"] if taken == "namespace" else [])
    if taken == "namespace":
        assert os.stat(f"{NETNS_DIR}/{name}-1").st_ino == before
        assert "192.0.2.9/32" in _run("ip", "-n", f"{name}-1", "-o", "addr", "show", "lo", check=True).stdout
        assert "UP" not in _run("ip", "-n", f"{name}-1", "-o", "link", "show", "lo", check=True).stdout.split(">")[0]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--lab-clients", "2"], "--lab-clients and --lab-route need --lab"),
        (["--lab-route"], "--lab-clients and --lab-route need --lab"),
        (["--lab", "{name}.x"], "--lab '{name}.x': want 1 to 12 letters, digits, '-' or '_'"),
        (["--lab", "-{name}"], "starting with a letter or digit"),
        (["--lab", "{name}abcdefgh"], "want 1 to 12"),
        (["--lab", "{name}", "--lab-clients", "0"], "--lab-clients 0: want 1 or more"),
        (["--lab", "{name}", "--lab-clients", "254"], "the subnet 10.0.0.0/24 has room for 253 besides the stack's 10.0.0.1"),
        (["--lab", "{name}", "--ip", "10.0.0.5/30", "--lab-clients", "2"], "the subnet 10.0.0.4/30 has room for 1"),
        (["--lab", "{name}", "--lab-clients", "{many}"], "the veth {name}-{many} would be longer than 15 characters"),
    ],
    ids=["clients-without-lab", "route-without-lab", "bad-character", "leading-dash", "long-name", "zero-clients",
         "subnet-full", "small-subnet", "veth-name-too-long"],
)
def test_bad_lab_arguments(lab: Lab, args: list[str], fragment: str) -> None:
    many = str(10 ** (14 - len(lab.name)))  # NAME-<many> is 16 characters, one more than IFNAMSIZ allows
    argv = [a.format(name=lab.name, many=many) for a in args]
    if argv[:2] == ["--lab", f"-{lab.name}"]:
        argv[:2] = [f"--lab=-{lab.name}"]  # argparse would read -NAME as an option
    r = lab.once(lab.tap, *argv)
    assert_one_line(r, fragment.format(name=lab.name, many=many))
    assert lab.leftovers() == []


def test_ifname_that_is_a_lab_link_is_refused(lab: Lab) -> None:
    assert_one_line(lab.once(f"{lab.name}-br", "--lab", lab.name), f"IFNAME {lab.name}-br is the name of one of the lab's")
    assert lab.leftovers() == []


def test_a_failure_part_way_removes_what_was_made_and_nothing_else(lab: Lab) -> None:
    """``Lab`` on its own: a namespace appears under a lab name after ``check``; ``create`` unwinds, the intruder stays."""
    name = lab.name
    script = textwrap.dedent(f"""
        import subprocess
        from simstack.engine.wire.errors import SetupError
        from simstack.engine.live.lab import Lab, plan_lab
        from simstack.protocols.stack import StackConfig

        plan = plan_lab({name!r}, 3, True, StackConfig(mac=bytes(5) + b"\\x01", ip=bytes([10, 0, 0, 1])))
        assert plan is not None
        lab = Lab(plan)
        lab.check()
        subprocess.run(["ip", "netns", "add", "{name}-2"], check=True)
        try:
            lab.create()
        except SetupError as e:
            print(e)
        lab.destroy()  # a second time: nothing to do
    """)
    r = _run("nsenter", f"--net={NETNS_DIR}/{lab.host.name}", sys.executable, "-c", script)
    assert r.stdout == f"cannot create namespace {name}-2: it appeared while the lab was set up\n", r.stdout + r.stderr
    assert r.stderr == ""
    assert lab.host_links() == ["lo"]  # the bridge and NAME-1's veth are gone
    assert [ns for ns in namespaces() if ns.startswith(f"{name}-")] == [f"{name}-2"]  # NAME-1 gone, the intruder kept


def test_sigterm_part_way_through_create_unwinds_it(lab: Lab) -> None:
    """SIGTERM's default action would leave the namespaces behind: during ``create`` it unwinds instead."""
    script = textwrap.dedent(f"""
        import os, signal
        from simstack.engine.live.lab import Lab, plan_lab
        from simstack.protocols.stack import StackConfig

        plan = plan_lab({lab.name!r}, 5, False, StackConfig(mac=bytes(5) + b"\x01", ip=bytes([10, 0, 0, 1])))
        assert plan is not None
        lab = Lab(plan)
        add_client = lab._add_client

        def add_client_then_stop(ipr, client, bridge):
            add_client(ipr, client, bridge)
            if client.name.endswith("-3"):
                os.kill(os.getpid(), signal.SIGTERM)

        lab._add_client = add_client_then_stop
        try:
            lab.create()
        except KeyboardInterrupt:
            print("interrupted", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
    """)
    r = _run("nsenter", f"--net={NETNS_DIR}/{lab.host.name}", sys.executable, "-c", script)
    assert (r.returncode, r.stdout, r.stderr) == (0, "interrupted True\n", "")
    assert lab.leftovers() == []


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_after_the_lab_is_up_but_before_the_loop_runs_undoes_it_all(lab: Lab, sig: str) -> None:
    """The gap between ``Lab.create`` returning and the loop's own handler: the session unwinds, exit 0."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        from simstack.engine.live import session

        start_services = session.start_services

        def stop_then_start(host, names):  # runs after the lab, the TAP's link and its address exist
            os.kill(os.getpid(), signal.{sig})
            return start_services(host, names)

        session.start_services = stop_then_start
        opts = session.LiveOptions({lab.tap!r}, lab={lab.name!r}, lab_clients=2)
        sys.exit(session.run(opts, sys.stdout, sys.stderr))
    """)
    r = _run("nsenter", f"--net={NETNS_DIR}/{lab.host.name}", sys.executable, "-c", script)
    assert (r.returncode, r.stdout, r.stderr) == (
        0, f"simstack: stopped by {sig} before the stack ran; undid its setup\n", "")
    assert lab.leftovers() == []


def test_under_ip_netns_exec_it_warns_that_the_namespaces_are_private(lab: Lab) -> None:
    s = lab.simstack(enter=("ip", "netns", "exec", lab.host.name))
    assert s.stop() == 0
    assert "is a slave mount here (under ip netns exec?)" in s.stderr
    assert lab.leftovers() == []


def test_the_docs_show_the_lab() -> None:
    text = (ROOT / "docs" / "live.md").read_text()
    assert "\n## Lab\n" in text
    assert "  ip netns exec simstack-1 ping 10.0.0.1    # from 10.0.0.2\n" in text
