"""UDP over the TAP, live: the kernel's own sockets against the stack's services, and the examples.

The kernel side is Python's ``socket`` module run inside the test's namespace
(``udp_peer.py``), so every datagram crosses the kernel's real UDP and IPv4
code: its checksums, its fragmentation, its reassembly and its reading of our
ICMP errors. A connected kernel socket is the witness for ICMP: Linux turns a
port unreachable for it into ``ConnectionRefusedError`` on the next call, so
"no error" and "no ICMP" are the same observation.
"""

import json
import re
import signal
import sys
from pathlib import Path

import pytest

from .conftest import UDP_PEER, Netns

pytestmark = pytest.mark.live

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STACK = "10.0.0.1"
MAX_UDP = 65507  # 65535 - 20 (IPv4 header) - 8 (UDP header)


def counters(s_stdout: str) -> dict[str, int]:
    """The stack's counters from the report ``simstack live`` prints when it stops."""
    found: dict[str, int] = {}
    for line in s_stdout.split("simstack: stopped", 1)[-1].splitlines()[1:]:
        layer, _, items = line.partition(" ")
        for name, value in re.findall(r"(\S+)=(\d+)", items):
            found[f"{layer}.{name}"] = int(value)
    return found


def test_thousand_datagrams_up_to_a_full_frame_come_back_intact(netns: Netns) -> None:
    s = netns.live()
    rc, out = netns.udp_peer("echo", STACK, "7", "--count", "1000", "--max-size", "1472", "--seed", "1000", timeout=60)
    assert (rc, out["ok"]) == (0, 1000), out
    assert s.stop() == 0, s.stderr
    c = counters(s.stdout)
    assert c["udp.delivered"] == 1000 and c["udp.tx"] == 1000, c
    assert "ipv4.frag.rx" not in c and "ipv4.frag.tx" not in c, c  # 1472 bytes of data still fit one frame


def test_datagrams_up_to_65507_bytes_are_fragmented_both_ways_and_come_back(netns: Netns) -> None:
    s = netns.live()
    # Room for a few whole 64 KiB datagrams: each of its 45 fragments is charged a full skb to the buffer.
    rc, out = netns.udp_peer("echo", STACK, "7", "--count", "100", "--max-size", str(MAX_UDP), "--seed", "65507",
                             "--rcvbuf", str(8 << 20), timeout=60)
    assert (rc, out["ok"]) == (0, 100), out
    assert s.stop() == 0, s.stderr
    c = counters(s.stdout)
    assert c["udp.delivered"] == 100 and c["udp.tx"] == 100, c
    assert c["ipv4.frag.rx"] > 1000 and c["ipv4.frag.tx"] == c["ipv4.frag.rx"], c  # same datagrams, same MTU


@pytest.mark.parametrize("via", ["recv", "send"])
def test_closed_port_refuses_a_connected_kernel_socket(netns: Netns, via: str) -> None:
    netns.live()
    _, out = netns.udp_peer("probe", STACK, "5555", "--via", via)
    assert out["outcomes"] == ["refused"], out


def test_discard_answers_nothing_not_even_icmp(netns: Netns) -> None:
    s = netns.live()
    _, out = netns.udp_peer("probe", STACK, "9", "--count", "3", "--timeout", "0.3")
    assert out["outcomes"] == ["timeout"] * 3, out
    # The same probe does see answers and errors: the echo port replies, so the silence above is discard's.
    _, out = netns.udp_peer("probe", STACK, "7")
    assert out["outcomes"] == ["reply:7"], out
    assert s.stop() == 0, s.stderr
    c = counters(s.stdout)
    assert c["udp.delivered"] == 4 and c["udp.tx"] == 1, c
    assert not any(name.startswith("icmp.tx") for name in c), c


def test_no_serve_leaves_the_echo_port_closed(netns: Netns) -> None:
    netns.live("--no-serve")
    _, out = netns.udp_peer("probe", STACK, "7")
    assert out["outcomes"] == ["refused"], out
    _, out = netns.udp_peer("probe", STACK, "9")
    assert out["outcomes"] == ["refused"], out


def test_example_client_talks_to_a_kernel_echo_server(netns: Netns) -> None:
    server = netns.spawn(sys.executable, str(UDP_PEER), "serve", "10.0.0.2", "5007")
    server.wait_for_line('"ready"')
    # The example creates tap0 and gives the kernel side 10.0.0.2 itself; the server was bound ahead (IP_FREEBIND).
    r = netns.run(sys.executable, str(EXAMPLES / "udp_echo_client.py"), "tap0", "--count", "5", "--size", "100",
                  timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr == ""
    seqs = re.findall(r"^100 bytes from 10\.0\.0\.2:5007: seq (\d) time=\d+\.\d\d ms ok$", r.stdout, re.M)
    assert seqs == ["1", "2", "3", "4", "5"], r.stdout
    assert "5 sent, 5 echoed intact, 0 lost or corrupted" in r.stdout
    assert server.stop() == -signal.SIGTERM  # and its output is all read
    echoed = [json.loads(line) for line in server.stdout.splitlines() if '"echoed"' in line]
    assert len(echoed) == 5 and all(e["echoed"] == 100 and e["source"].startswith("10.0.0.1:") for e in echoed), echoed
    assert not netns.link_exists("tap0")


def test_example_client_reports_a_missing_server(netns: Netns) -> None:
    r = netns.run(sys.executable, str(EXAMPLES / "udp_echo_client.py"), "tap0", "--count", "2", timeout=30)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.count("connection refused (nothing listens on 10.0.0.2:5007)") == 2, r.stdout
    assert "2 sent, 0 echoed intact, 2 lost or corrupted" in r.stdout


def test_example_server_echoes_for_a_kernel_client(netns: Netns) -> None:
    server = netns.spawn(sys.executable, str(EXAMPLES / "udp_echo_server.py"), "tap0", "--port", "5007")
    server.wait_for_line(r"^echoing UDP on 0\.0\.0\.0:5007; Ctrl-C to stop$")
    rc, out = netns.udp_peer("echo", STACK, "5007", "--count", "40", "--max-size", "9000", "--seed", "5007")
    assert (rc, out["ok"]) == (0, 40), out
    assert server.stop(signal.SIGINT) == 0, server.stderr
    assert len(re.findall(r"^10\.0\.0\.2:\d+: echoed \d+ bytes$", server.stdout, re.M)) == 40, server.stdout
    assert server.stdout.rstrip().endswith("stopped after echoing 40 datagrams"), server.stdout
    assert server.stderr == ""
    assert not netns.link_exists("tap0")
