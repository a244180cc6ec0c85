"""The kernel talks to the stack over a TAP: ping, big ping, arping, the neighbour table, the capture."""

import json
import re
import time
from pathlib import Path

import pytest
from conftest import require_tool

from .conftest import Netns, received

pytestmark = pytest.mark.live

STACK_MAC = "aa:bb:cc:dd:ee:ff"


def test_kernel_ping_gets_every_reply(netns: Netns) -> None:
    require_tool("ping")
    netns.live()
    r = netns.run("ping", "-c", "50", "-i", "0.01", "-W", "1", "-w", "15", "10.0.0.1")
    assert received(r.stdout) == (50, 50), r.stdout + r.stderr
    assert r.returncode == 0


def test_ping_at_full_mtu_needs_no_fragmentation(netns: Netns) -> None:
    require_tool("ping")
    netns.live()
    r = netns.run("ping", "-s", "1472", "-M", "do", "-c", "3", "-i", "0.1", "-W", "1", "-w", "10", "10.0.0.1")
    assert received(r.stdout) == (3, 3), r.stdout + r.stderr
    assert len(re.findall(r"^1480 bytes from 10\.0\.0\.1: icmp_seq=\d+ ttl=64", r.stdout, re.M)) == 3, r.stdout


def test_arping_gets_replies_from_our_mac(netns: Netns) -> None:
    require_tool("arping")
    netns.live()
    r = netns.run("arping", "-c", "3", "-w", "10", "-I", "tap0", "10.0.0.1")
    assert r.returncode == 0, r.stdout + r.stderr
    replies = re.findall(r"reply from 10\.0\.0\.1 \[([0-9A-Fa-f:]+)\]", r.stdout)
    assert [mac.lower() for mac in replies] == [STACK_MAC] * 3, r.stdout
    assert "Received 3 response(s)" in r.stdout


def test_neighbour_table_learns_the_configured_mac(netns: Netns) -> None:
    require_tool("ping")
    mac = "02:5e:00:12:34:56"
    netns.live("--mac", mac)
    assert received(netns.run("ping", "-c", "1", "-W", "2", "10.0.0.1").stdout) == (1, 1)
    neigh = json.loads(netns.run("ip", "-j", "neigh", "show", "dev", "tap0", check=True).stdout)
    assert {"dst": "10.0.0.1", "lladdr": mac} in [{k: n.get(k) for k in ("dst", "lladdr")} for n in neigh], neigh


def test_live_pcap_decodes_with_good_checksums(netns: Netns, tmp_path: Path) -> None:
    tshark = require_tool("tshark")
    require_tool("ping")
    pcap = tmp_path / "live.pcap"
    s = netns.live("--pcap", str(pcap))
    assert received(netns.run("ping", "-c", "3", "-i", "0.1", "-W", "1", "-w", "10", "10.0.0.1").stdout) == (3, 3)
    fields = ["frame.protocols", "arp.opcode", "icmp.type", "ip.checksum.status", "icmp.checksum.status",
              "frame.time_epoch"]

    def decode() -> list[list[str]]:
        r = netns.run(tshark, "-r", str(pcap), "-o", "ip.check_checksum:TRUE", "-T", "fields",
                      *[a for f in fields for a in ("-e", f)])
        assert r.returncode == 0, r.stderr
        rows = [line.split("\t") for line in r.stdout.strip().splitlines()]
        # The kernel's own IPv6 chatter (router solicitations, MLD) is on the wire too; keep ARP and ICMPv4.
        return [row for row in rows if {"arp", "icmp"} & set(row[0].split(":"))]

    # Flushed per frame: the capture is complete while simstack still runs.
    rows = decode()
    assert s.proc.poll() is None
    assert s.stop() == 0
    assert decode() == rows
    arp = [row[1] for row in rows if "arp" in row[0].split(":")]
    icmp = [row for row in rows if "icmp" in row[0].split(":")]
    assert arp[:2] == ["1", "2"], rows  # the kernel asks, the stack answers
    assert [row[2] for row in icmp] == ["8", "0"] * 3, rows
    for row in icmp:
        assert (row[3], row[4]) == ("1", "1"), row  # 1 = Good (0 Bad, 2 Unverified)
    stamps = [float(row[5]) for row in rows]
    assert stamps == sorted(stamps)
    assert abs(stamps[0] - time.time()) < 60, "pcap timestamps are not wall-clock time"


def test_idle_stack_uses_no_cpu(netns: Netns) -> None:
    s = netns.live()
    ticks = _cpu_ticks(s.pid)
    time.sleep(1.0)  # the measurement window itself, not a wait for readiness
    used = _cpu_ticks(s.pid) - ticks
    assert used <= 2, f"{used} clock ticks of CPU in 1 s of idling: the loop is polling"


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime
