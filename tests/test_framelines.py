"""replay's frame lines against tcpdump's own (issue 19, item 8).

Each frame of a few scenarios is written to a pcap and read back by tcpdump
with the flags simstack's options stand for (``-v``: tcpdump's plain line,
``-vv``: its ``-v``, ``-e``, ``-x``); the lines must be the same, padded ARP
replies, first fragments and IPv6 frames included. The IPv6 frames are built
by scapy, which simstack shares no code with.
"""

import re
import subprocess
from pathlib import Path

import pytest
from conftest import SCENARIOS, require_tool

from simstack.engine.scenario.fields import decode_frame
from simstack.engine.scenario.framelines import Style, frame_text
from simstack.engine.scenario.loader import load
from simstack.engine.scenario.runner import Runner
from simstack.engine.wire.pcap import PcapWriter

# ARP (padded replies), ICMP, UDP, first and later fragments of ICMP and UDP datagrams
NAMES = ["ping", "udp/echo", "udp/closed-port-unreachable", "fragments/echo-fragmented-both-ways",
         "fragments/memory-bound", "arp/resolve-retries-give-up"]
_STAMP = re.compile(r"^\d+\.\d{6} ")


def replayed(name: str) -> list[bytes]:
    frames: list[bytes] = []
    assert Runner(load(SCENARIOS / f"{name}.yaml"), trace=lambda t, d, f: frames.append(f)).run().passed
    return frames


def tcpdump(frames: list[bytes], tmp_path: Path, *flags: str) -> list[str]:
    """tcpdump's text for each frame: its first line without the time stamp, and the lines that follow it."""
    pcap = tmp_path / "frames.pcap"
    with pcap.open("wb") as f:
        writer = PcapWriter(f)
        for i, frame in enumerate(frames):
            writer.write(i / 1000, frame)
    r = subprocess.run([require_tool("tcpdump"), "-nn", "-tt", *flags, "-r", str(pcap)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    chunks: list[list[str]] = []
    for line in r.stdout.splitlines():
        if _STAMP.match(line):
            chunks.append([_STAMP.sub("", line)])
        else:
            chunks[-1].append(line)
    assert len(chunks) == len(frames)
    return ["\n".join(c) for c in chunks]


def later_fragment(frame: bytes) -> bool:
    fields = decode_frame(frame).fields
    return bool(fields.get("ipv4.frag"))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("style", "flags"), [(Style(1), ()), (Style(2), ("-v",)), (Style(1, link=True), ("-e",)),
                                              (Style(2, link=True), ("-e", "-v")), (Style(1, hex=True), ("-x",))],
                         ids=["v", "vv", "e", "vv-e", "x"])
def test_lines_are_tcpdump_s(tmp_path: Path, name: str, style: Style, flags: tuple[str, ...]) -> None:
    frames = replayed(name)
    theirs = tcpdump(frames, tmp_path, *flags)
    compared = 0
    for frame, expected in zip(frames, theirs, strict=True):
        if style.level == 1 and later_fragment(frame):
            continue  # ours names the fragment (frag id:len@offset), as tcpdump before 4.99 did; 4.99 says ip-proto-N
        assert frame_text(frame, None, style) == expected
        compared += 1
    assert compared >= 3


def test_first_fragments_decode_their_transport_header(tmp_path: Path) -> None:
    frames = replayed("fragments/echo-fragmented-both-ways")
    firsts = [f for f in frames if "ipv4.mf" in decode_frame(f).fields and decode_frame(f).fields["ipv4.mf"]
              and not later_fragment(f)]
    assert [frame_text(f) for f in firsts] == ["IP 10.0.0.2 > 10.0.0.1: ICMP echo request, id 77, seq 1, length 1480",
                                               "IP 10.0.0.1 > 10.0.0.2: ICMP echo reply, id 77, seq 1, length 1480"]


def _ipv6_frames() -> list[bytes]:
    from scapy.layers.inet import UDP
    from scapy.layers.inet6 import (
        ICMPv6EchoReply,
        ICMPv6EchoRequest,
        ICMPv6MLReport2,
        ICMPv6ND_NA,
        ICMPv6ND_NS,
        ICMPv6ND_RS,
        IPv6,
        IPv6ExtHdrHopByHop,
    )
    from scapy.layers.l2 import Ether

    eth = Ether(src="02:00:00:00:00:02", dst="33:33:00:00:00:01")
    packets = [
        eth / IPv6(src="fe80::1", dst="ff02::1") / ICMPv6EchoRequest(id=1, seq=2, data=b"x" * 56),
        eth / IPv6(src="2001:db8::2", dst="2001:db8::1") / ICMPv6EchoReply(id=1, seq=2, data=b"x" * 56),
        eth / IPv6(src="fe80::1", dst="ff02::1:ff00:2") / ICMPv6ND_NS(tgt="fe80::2"),
        eth / IPv6(src="fe80::2", dst="fe80::1") / ICMPv6ND_NA(tgt="fe80::2"),
        eth / IPv6(src="fe80::1", dst="ff02::2") / ICMPv6ND_RS(),
        eth / IPv6(src="::", dst="ff02::16") / IPv6ExtHdrHopByHop() / ICMPv6MLReport2(),
        eth / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=1000, dport=2000) / b"hello",
    ]
    return [bytes(p) for p in packets]


def test_ipv6_frames_get_tcpdump_s_line(tmp_path: Path) -> None:
    frames = _ipv6_frames()
    for frame, expected in zip(frames, tcpdump(frames, tmp_path), strict=True):
        assert frame_text(frame) == expected
    assert all(decode_frame(f).summary.startswith("IP6 ") for f in frames)
