"""IPv4 fragments joined for the scenario tools: an oracle kept apart from the stack's reassembler.

The runner checks a ``fragments: N`` expectation against the datagram the
stack's fragments make, and the importer folds the fragments a captured host
sent into one such expectation. Both join them here, and deliberately not
with protocols/fragments.py: that reassembler is part of the stack under
test, and an oracle sharing its code would share its bugs and pass them.
This one is short and strict instead of robust: it sees the few frames of one
step, and they must tile one datagram exactly (no gap, no overlap), as the
fragments of a correct sender do (RFC 791 3.2).
"""

from collections.abc import Mapping, Sequence
from typing import Any

from simstack.protocols import ethernet, ipv4
from simstack.protocols.errors import Malformed

from .fields import decode_frame


class DefragError(ValueError):
    """The frames are not the fragments of one datagram; the message says which and why."""


def is_fragment(fields: Mapping[str, Any]) -> bool:
    """Whether decoded fields (``decode_frame``) are a piece of a datagram rather than all of it."""
    return bool(fields.get("ipv4.mf") or fields.get("ipv4.frag"))


def reassemble(frames: Sequence[bytes], mtu: int | None = None, verify_checksum: bool = True) -> bytes:
    """The whole frame that ``frames`` (in any order) are the fragments of.

    Each must be an IPv4 packet of one datagram (source, destination,
    protocol, ID), with a valid header checksum unless ``verify_checksum`` is
    false (captures carry offloaded checksums), and no longer than ``mtu``
    when one is given. The Ethernet header, VLAN tag included, and the IPv4
    header fields are the first fragment's.
    """
    key = None
    pieces: dict[int, bytes] = {}
    head: tuple[ethernet.Ethernet, ipv4.Ipv4] | None = None
    total = None
    for frame in frames:
        try:
            eth = ethernet.parse(frame)
            ip = ipv4.parse(eth.payload, verify_checksum=verify_checksum)
        except Malformed as e:
            raise DefragError(f"expected an IPv4 fragment, got {decode_frame(frame).summary} ({e})") from None
        this = (ip.src, ip.dst, ip.protocol, ip.identification)
        if key is not None and this != key:
            raise DefragError(f"fragment of another datagram: {decode_frame(frame).summary}")
        if mtu is not None and ip.header_len + len(ip.payload) > mtu:
            raise DefragError(f"fragment larger than the MTU {mtu}: {decode_frame(frame).summary}")
        key = this
        pieces[ip.frag_offset] = ip.payload
        if ip.frag_offset == 0:
            head = (eth, ip)
        if not ip.mf:
            total = ip.frag_offset + len(ip.payload)
    data = b""
    for offset in sorted(pieces):
        if offset != len(data):
            break  # a gap, or an overlap
        data += pieces[offset]
    if head is None or total is None or len(data) != total or sum(map(len, pieces.values())) != total:
        raise DefragError("the fragments do not make a whole datagram (first or last missing, or a gap)")
    eth, first = head
    whole = ipv4.Ipv4(src=first.src, dst=first.dst, protocol=first.protocol, payload=data, ttl=first.ttl,
                      identification=first.identification, tos=first.tos, df=first.df, options=first.options)
    joined = ethernet.Ethernet(dst=eth.dst, src=eth.src, ethertype=eth.ethertype, payload=ipv4.emit(whole), vlan=eth.vlan,
                               pcp=eth.pcp, dei=eth.dei)
    return ethernet.emit(joined, pad=False)
