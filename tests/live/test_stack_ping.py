"""The stack pings the kernel side: ARP first, then RTTs and a summary printed the way ping prints them."""

import re
import signal

import pytest

from .conftest import Netns

pytestmark = pytest.mark.live

REPLY = re.compile(r"^64 bytes from 10\.0\.0\.2: icmp_seq=(\d+) ttl=64 time=(\d+(?:\.\d+)?) ms$", re.M)
SUMMARY = re.compile(r"^rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms$", re.M)


def test_stack_pings_kernel_and_reports_rtts(netns: Netns) -> None:
    r = netns.simstack_once("tap0", "--ping", "10.0.0.2", "--count", "3", "--interval", "0.1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr == ""
    assert "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data." in r.stdout
    replies = REPLY.findall(r.stdout)
    assert [int(seq) for seq, _ in replies] == [1, 2, 3], r.stdout
    rtts = [float(ms) for _, ms in replies]
    assert all(0 < ms < 1000 for ms in rtts), rtts
    assert "--- 10.0.0.2 ping statistics ---" in r.stdout
    assert re.search(r"^3 packets transmitted, 3 received, 0% packet loss, time \d+ms$", r.stdout, re.M), r.stdout
    m = SUMMARY.search(r.stdout)
    assert m, r.stdout
    lo, avg, hi = (float(x) for x in m.groups()[:3])
    # Each line shows about three significant digits (1.23, 12.3 on a loaded machine); the summary shows three decimals.
    assert lo == pytest.approx(min(rtts), rel=0.006, abs=0.0015)
    assert hi == pytest.approx(max(rtts), rel=0.006, abs=0.0015)
    assert lo <= avg <= hi
    assert not netns.link_exists("tap0")


def test_unresolvable_host_is_reported_unreachable(netns: Netns) -> None:
    r = netns.simstack_once("tap0", "--ping", "10.0.0.77", "--count", "2", "--interval", "0.2")
    assert r.returncode == 1, r.stdout + r.stderr
    lines = re.findall(r"^From 10\.0\.0\.1 icmp_seq=(\d) Destination Host Unreachable$", r.stdout, re.M)
    assert lines == ["1", "2"], r.stdout
    assert re.search(r"^2 packets transmitted, 0 received, \+2 errors, 100% packet loss", r.stdout, re.M), r.stdout
    assert "rtt min/avg/max" not in r.stdout


def test_off_subnet_without_gateway_is_network_unreachable(netns: Netns) -> None:
    # 192.0.2.1 (TEST-NET-1) is never sent to: the stack has no route, so nothing leaves it.
    r = netns.simstack_once("tap0", "--ping", "192.0.2.1", "--count", "1")
    assert r.returncode == 2
    assert r.stderr.splitlines() == ["simstack: ping 192.0.2.1: Network is unreachable"]


def test_interrupted_ping_still_prints_its_summary(netns: Netns) -> None:
    s = netns.simstack("tap0", "--ping", "10.0.0.2", "--count", "1000", "--interval", "0.05")
    s.wait_for_line(r"icmp_seq=3 ")
    assert s.stop(signal.SIGINT) == 0, s.stderr
    m = re.search(r"^(\d+) packets transmitted, (\d+) received", s.stdout, re.M)
    assert m, s.stdout
    assert 3 <= int(m.group(2)) <= int(m.group(1)) < 1000
    assert SUMMARY.search(s.stdout), s.stdout
    assert s.stderr == ""


def test_verbose_decodes_each_frame_and_seed_fixes_the_identifier(netns: Netns) -> None:
    idents = []
    for _ in range(2):
        r = netns.simstack_once("tap0", "--ping", "10.0.0.2", "--count", "1", "--seed", "42", "-v")
        assert r.returncode == 0, r.stdout + r.stderr
        out = r.stdout
        assert re.search(r"^ +[\d.]+ > ARP, Request who-has 10\.0\.0\.2 tell 10\.0\.0\.1", out, re.M), out
        assert re.search(r"^ +[\d.]+ < ARP, Reply 10\.0\.0\.2 is-at ", out, re.M), out
        request = re.search(r"^ +[\d.]+ > IP 10\.0\.0\.1 > 10\.0\.0\.2: ICMP echo request, id (\d+), seq 1", out, re.M)
        assert request, out
        assert re.search(rf"^ +[\d.]+ < IP 10\.0\.0\.2 > 10\.0\.0\.1: ICMP echo reply, id {request.group(1)}, seq 1",
                         out, re.M), out
        idents.append(request.group(1))
    assert idents[0] == idents[1]
