"""The scenario tools' fragment oracle (engine/scenario/defrag.py), held to scapy's fragmenter.

scapy cuts a datagram, the oracle joins the pieces, and the result must be
the datagram scapy started from, in any order of the pieces. Pieces that do
not tile one datagram are refused, each with its reason.
"""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from simstack.engine.scenario.defrag import DefragError, is_fragment, reassemble
from simstack.engine.scenario.fields import decode_frame

MACS = {"dst": "02:00:00:00:00:01", "src": "02:00:00:00:00:02"}


def datagram(size: int, ident: int = 0x4242, vlan: int | None = None) -> tuple[bytes, list[bytes]]:
    """A UDP datagram of ``size`` payload bytes as one frame, and scapy's fragments of it (each a frame)."""
    data = bytes(i % 251 for i in range(size))
    ip = IP(src="10.0.0.2", dst="10.0.0.1", id=ident, ttl=33) / UDP(sport=4000, dport=7) / Raw(data)
    ip = IP(bytes(ip))  # checksums and lengths filled in, as the fragments will carry them
    link = Ether(**MACS) / Dot1Q(vlan=vlan) if vlan is not None else Ether(**MACS)
    return bytes(link / ip), [bytes(link / piece) for piece in fragment(ip, fragsize=200)]


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(201, 3000), st.randoms(use_true_random=False), st.sampled_from([None, 5]))
def test_joins_what_scapy_cut_in_any_order(size: int, rnd: random.Random, vlan: int | None) -> None:
    whole, pieces = datagram(size, vlan=vlan)
    assert len(pieces) > 1 and all(is_fragment(decode_frame(p).fields) for p in pieces)
    rnd.shuffle(pieces)
    assert reassemble(pieces, mtu=1500) == whole
    assert not is_fragment(decode_frame(whole).fields)


def _moved(frame: bytes, offset: int) -> bytes:
    """``frame`` (a fragment, more to follow) claiming to start at ``offset``."""
    ip = IP(frame[14:])
    ip.frag = offset // 8
    del ip.chksum
    return frame[:14] + bytes(ip)


_, PIECES = datagram(1000)
_, OTHERS = datagram(1000, ident=7)
REFUSED = {
    "first missing": (PIECES[1:], "do not make a whole datagram"),
    "last missing": (PIECES[:-1], "do not make a whole datagram"),
    "a gap": (PIECES[:1] + PIECES[2:], "do not make a whole datagram"),
    "an overlap": ([*PIECES, _moved(PIECES[1], 8)], "do not make a whole datagram"),
    "an overlap past the end": ([*PIECES, _moved(PIECES[1], 1016)], "do not make a whole datagram"),  # the end is 1008
    "another datagram": (PIECES[:1] + OTHERS[1:], "another datagram"),
    "not IPv4": ([*PIECES[:1], bytes(Ether(**MACS, type=0x0800) / Raw(b"\x45"))], "expected an IPv4 fragment"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refuses_what_is_not_one_datagram(case: str) -> None:
    frames, reason = REFUSED[case]
    with pytest.raises(DefragError, match=reason):
        reassemble(frames)


def test_checks_the_mtu_when_given() -> None:
    largest = max(len(p) - 14 for p in PIECES)  # IPv4 packet sizes; 20 + 200 here
    assert reassemble(PIECES, mtu=largest) == datagram(1000)[0]
    with pytest.raises(DefragError, match=f"larger than the MTU {largest - 1}"):
        reassemble(PIECES, mtu=largest - 1)
