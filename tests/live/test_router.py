"""simstack as a router between two lab segments, and the link it can spoil on purpose (issue 18's acceptance).

Each test runs ``simstack live T1 T2 --lab NAME --forward`` (or a one-segment
lab) in a namespace of its own, entered with nsenter as test_lab.py does, so
the bridges, TAPs and client namespaces vanish with it. The kernels in the
client namespaces are the witnesses: their ping, traceroute, curl and UDP
sockets see only what crossed simstack.
"""

import contextlib
import hashlib
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_tool

from .conftest import UDP_PEER, Simstack, received
from .test_lab import Lab, _run
from .test_lab import lab as lab  # the fixture: a host namespace and a lab NAME, all removed afterwards
from .test_udp import counters

pytestmark = pytest.mark.live

SEG1_STACK, SEG2_STACK = "10.0.1.1", "10.0.2.1"
CLIENT1, CLIENT2 = "10.0.1.2", "10.0.2.2"
TIME = re.compile(r"^\d+ bytes from \S+ icmp_seq=\d+ ttl=\d+ time=([\d.]+) ms$", re.M)


def router(lab: Lab, *args: str) -> Simstack:
    """``simstack live NAMEt NAMEu --lab NAME ARGS``: two segments, one client each, simstack their default route."""
    s = Simstack(lab.argv(lab.tap, f"{lab.name}u", "--lab", lab.name, *args))
    lab.host.procs.append(s)
    s.wait_ready()
    return s


def one_segment(lab: Lab, *args: str) -> Simstack:
    """``simstack live NAMEt --lab NAME ARGS``: the stack at 10.0.0.1 and one client, 10.0.0.2."""
    s = Simstack(lab.argv(lab.tap, "--lab", lab.name, *args))
    lab.host.procs.append(s)
    s.wait_ready()
    return s


def ping(lab: Lab, client: int, dst: str, *options: str) -> subprocess.CompletedProcess[str]:
    return lab.client(client, "ping", "-n", *options, dst)


def median_rtt(lab: Lab, dst: str, count: int = 20) -> float:
    """The median round trip of ``count`` pings from client 1, after one that settles ARP."""
    ping(lab, 1, dst, "-c", "1", "-W", "2")
    r = ping(lab, 1, dst, "-c", str(count), "-i", "0.02", "-W", "2")
    assert received(r.stdout) == (count, count), r.stdout + r.stderr
    return statistics.median(float(t) for t in TIME.findall(r.stdout))


def stopped(s: Simstack) -> dict[str, int]:
    assert s.stop() == 0, s.stderr
    return counters(s.stdout)


@contextlib.contextmanager
def http_server(lab: Lab, client: int, directory: Path) -> Iterator[None]:
    """Python's http.server in client ``client``'s namespace, on port 8000, until the block ends."""
    proc = subprocess.Popen(["ip", "netns", "exec", f"{lab.name}-{client}", sys.executable, "-u", "-m", "http.server",
                             "8000", "--bind", "0.0.0.0", "--directory", str(directory)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "Serving HTTP on 0.0.0.0 port 8000 ...": it listens
        assert "Serving HTTP" in line, line
        yield
    finally:
        proc.kill()
        proc.wait(10)


def test_ping_traceroute_curl_and_ttl_one_through_simstack(lab: Lab, tmp_path: Path) -> None:
    require_tool("traceroute")
    require_tool("curl")
    s = router(lab, "--forward")
    assert f"live on {lab.tap} as 10.0.1.1/24" in s.stdout and "; forwarding; " in s.stdout
    assert f"{lab.name}u as 10.0.2.1/24" in s.stdout
    # ping: no loss, and the TTL says one router was crossed
    r = ping(lab, 1, CLIENT2, "-c", "20", "-i", "0.05", "-W", "2", "-w", "20")
    assert received(r.stdout) == (20, 20), r.stdout + r.stderr
    assert "ttl=63" in r.stdout
    # traceroute: simstack's LAN address is hop 1, the far client hop 2
    r = lab.client(1, "traceroute", "-n", "-w", "2", "-q", "1", "-m", "5", CLIENT2)
    hops = [line.split()[:2] for line in r.stdout.splitlines()[1:]]
    assert hops == [["1", SEG1_STACK], ["2", CLIENT2]], r.stdout + r.stderr
    # curl: 20 MB over TCP through the router, byte for byte
    served = tmp_path / "web"
    served.mkdir()
    data = os.urandom(20 * 1000 * 1000)
    (served / "big.bin").write_bytes(data)
    got = tmp_path / "got.bin"
    with http_server(lab, 2, served):
        r = lab.client(1, "curl", "-sS", "--max-time", "120", "-o", str(got), f"http://{CLIENT2}:8000/big.bin")
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(got.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    # TTL 1: time exceeded, from simstack
    r = ping(lab, 1, CLIENT2, "-c", "1", "-t", "1", "-W", "2")
    assert f"From {SEG1_STACK} icmp_seq=1 Time to live exceeded" in r.stdout, r.stdout
    c = stopped(s)
    assert c["ipv4.forward"] >= 20 * 2 + 20_000_000 // 1448
    assert c["ipv4.drop.ttl_exceeded"] >= 2 and c["icmp.tx.error.11.0"] >= 2  # traceroute's hop 1, and the ping
    assert lab.leftovers() == []


def test_without_forward_nothing_gets_through_and_the_counters_say_why(lab: Lab) -> None:
    s = router(lab)
    assert "; not forwarding; " in s.stdout
    r = ping(lab, 1, CLIENT2, "-c", "5", "-i", "0.05", "-W", "1")
    assert received(r.stdout) == (5, 0), r.stdout + r.stderr
    r = ping(lab, 1, SEG2_STACK, "-c", "2", "-i", "0.05", "-W", "1")  # the router itself still answers
    assert received(r.stdout) == (2, 2), r.stdout + r.stderr
    c = stopped(s)
    assert c["ipv4.forward.disabled"] == 5 and c["ipv4.drop.not_for_us"] == 5
    assert c.get("ipv4.forward", 0) == 0
    assert lab.leftovers() == []


def test_impair_in_loses_about_what_it_says_and_counts_it(lab: Lab) -> None:
    s = one_segment(lab, "--impair-in", "loss=10%", "--seed", "1")
    r = ping(lab, 1, "10.0.0.1", "-c", "1000", "-i", "0.002", "-W", "1")
    sent, got = received(r.stdout)
    assert sent == 1000
    assert 70 <= sent - got <= 130, r.stdout[-300:]
    c = stopped(s)
    assert c["wire.in.dropped"] >= sent - got  # every lost request was dropped on the way in (ARP may be too)
    assert c["icmp.tx.echo_reply"] == got


def test_impair_out_delays_every_reply_by_what_it_says(lab: Lab) -> None:
    s = one_segment(lab)
    base = median_rtt(lab, "10.0.0.1")
    stopped(s)
    lab.host.procs.clear()
    s = one_segment(lab, "--impair-out", "delay=50ms", "--seed", "1")
    delayed = median_rtt(lab, "10.0.0.1")
    assert 45.0 <= delayed - base <= 55.0, (base, delayed)
    c = stopped(s)
    assert c["wire.out.delayed"] >= 21 and c.get("wire.in.delayed", 0) == 0


def test_impair_alone_applies_to_both_directions(lab: Lab) -> None:
    s = one_segment(lab, "--impair", "delay=25ms", "--seed", "1")
    assert 50.0 <= median_rtt(lab, "10.0.0.1", 10) <= 56.0  # 25 ms in, 25 ms out
    c = stopped(s)
    assert c["wire.in.delayed"] >= 11 and c["wire.out.delayed"] >= 11


def test_a_drop_rule_stops_ping_but_not_udp_echo_and_counts_each_ping(lab: Lab) -> None:
    s = one_segment(lab, "--drop", "icmp.type=echo-request")
    r = ping(lab, 1, "10.0.0.1", "-c", "10", "-i", "0.05", "-W", "1")
    assert received(r.stdout) == (10, 0), r.stdout
    peer = _run("ip", "netns", "exec", f"{lab.name}-1", sys.executable, str(UDP_PEER), "echo", "10.0.0.1", "7",
                "--count", "20", "--max-size", "1000", "--seed", "3")
    assert peer.returncode == 0, peer.stdout + peer.stderr
    c = stopped(s)
    assert c["wire.rule.1.dropped"] == 10 and c["wire.rule.1.matched"] == 10
    assert c.get("icmp.rx", 0) == 0 and c["udp.rx"] == 20
    assert "drop rule 1 'icmp.type=echo-request': matched 10, dropped 10" in s.stdout


def test_router_flags_are_checked_before_anything_is_made(lab: Lab) -> None:
    cases = [
        ((lab.tap, f"{lab.name}u", "--addr", f"{lab.tap}=10.0.1.1/16", "--addr", f"{lab.name}u=10.0.2.1/24"),
         "overlap: each interface needs a subnet of its own"),
        ((lab.tap, "--addr", f"{lab.tap}=10.0.1.1/24"), "--addr gives the address of one of several IFNAMEs"),
        ((lab.tap, lab.tap), f"IFNAME {lab.tap} is given twice"),
        ((lab.tap, "--route", "10.9.0.0/16", "via", "10.8.0.1"), "--route 10.9.0.0/16 via 10.8.0.1: 10.8.0.1 is on none"),
        ((lab.tap, "--impair", "loss=5%", "--impair-in", "delay=1ms"), "--impair applies to both directions"),
        ((lab.tap, "--impair-out", "delay=forever"), "--impair-out delay=forever: delay=forever: not a number"),
        ((lab.tap, "--drop", "icmp.kind=8"), "--drop 'icmp.kind=8': icmp.kind: unknown field"),
        ((lab.tap, f"{lab.name}u", "--lab", lab.name, "--lab-segments", "3"), "--lab-segments 3: give one IFNAME per segment"),
    ]
    for args, fragment in cases:
        r = lab.once(*args)
        assert r.returncode == 2 and r.stdout == "", (args, r.stdout, r.stderr)
        assert r.stderr.startswith("simstack: ") and fragment in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)
    assert lab.leftovers() == [] and lab.host_links() == ["lo"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_two_segments_are_undone_on_a_signal(lab: Lab, sig: signal.Signals) -> None:
    s = router(lab, "--forward", "--lab-clients", "2")
    assert sorted(lab.host_links()) == sorted(["lo", lab.tap, f"{lab.name}u", f"{lab.name}-br1", f"{lab.name}-br2",
                                               *(f"{lab.name}-{k}" for k in range(1, 5))])
    r = ping(lab, 2, "10.0.2.3", "-c", "3", "-i", "0.05", "-W", "1")  # NAME-2 to NAME-4, across
    assert received(r.stdout) == (3, 3), r.stdout + r.stderr
    assert s.stop(sig) == 0, s.stderr
    assert re.search(rf"^simstack: stopped by {sig.name} after [\d.]+ s; removed {lab.tap}, {lab.name}u and lab "
                     rf"{lab.name}$", s.stdout, re.M), s.stdout
    time.sleep(0.1)
    assert lab.leftovers() == []
