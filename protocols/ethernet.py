"""Ethernet II with an optional IEEE 802.1Q tag.

     0                   1                   2                   3
    +-----------------------------------------------+
    |              Destination MAC (6)              |
    +-----------------------------------------------+
    |                Source MAC (6)                 |
    +-----------------------+-----------------------+
    |  EtherType or TPID    |  [TCI: PCP|DEI|VID]   |  present when TPID = 0x8100
    +-----------------------+-----------------------+
    | [inner EtherType]     |  payload ...
    +-----------------------+

``HEADER`` is the format. ``parse``/``emit`` run the codec that
``layout.derive`` reads off it (one ``struct`` for the addresses and type, one
for the tag), because construct's own parser costs microseconds of machinery
per frame; tests hold the two to ``HEADER.parse``/``HEADER.build``. ``FIELDS``
says what the value's fields mean to scenarios.
"""

from typing import NamedTuple

from construct import Bytes, GreedyBytes, If, IfThenElse, Int16ub, Struct, this

from . import layout
from .errors import Malformed
from .fieldspec import MAC, Expect, Field, Header, Int, When

TYPE_IPV4 = 0x0800
TYPE_ARP = 0x0806
TYPE_VLAN = 0x8100
MIN_FRAME = 60  # IEEE 802.3 minimum without FCS; a NIC pads short frames
HEADER_LEN = 14
TAG_LEN = 4

HEADER = Struct(
    "dst" / Bytes(6),
    "src" / Bytes(6),
    "ethertype" / Int16ub,
    "tag" / If(this.ethertype == TYPE_VLAN, Struct("tci" / Int16ub, "ethertype" / Int16ub)),
    "payload" / GreedyBytes,
)
# Derived from HEADER: dst, src, ethertype; then the tag's tci, ethertype. The
# payload (GreedyBytes) is the rest of the frame.
_HEAD = layout.derive(HEADER, tail={"tag": IfThenElse, "payload": GreedyBytes})
_TAG = layout.derive(layout.member(HEADER, "tag").thensubcon)
_unpack_head = _HEAD.unpack_from
_unpack_tag = _TAG.unpack_from
_pack_head = _HEAD.pack
_pack_tag = _TAG.pack


class Ethernet(NamedTuple):
    dst: bytes
    src: bytes
    ethertype: int
    payload: bytes = b""
    vlan: int | None = None  # VID when the frame carries an 802.1Q tag
    pcp: int = 0
    dei: bool = False


FIELDS = Header(
    "eth",
    Ethernet,
    [
        Field("dst", "dst", MAC),
        Field("src", "src", MAC),
        Field("type", "ethertype", Int(16, {"ipv4": TYPE_IPV4, "arp": TYPE_ARP, "vlan": TYPE_VLAN}, hex=True),
              Expect.DETAIL),
        Field("vlan", "vlan", Int(12), when=When("vlan")),
        Field("pcp", "pcp", Int(3), Expect.DETAIL, terse=True, when=When("vlan")),
    ],
    unnamed=("payload", "dei"),  # the payload is the next layer; DEI is not in the scenario language
)
_new = tuple.__new__


def parse(frame: bytes) -> Ethernet:
    if type(frame) is not bytes:
        frame = bytes(frame)  # fields come out as bytes, whatever buffer came in
    n = len(frame)
    # Integrity first: a struct must not read short.
    if n < HEADER_LEN:
        raise Malformed("truncated", f"{n} bytes, header needs {HEADER_LEN}")
    if frame[12] == 0x81 and frame[13] == 0x00 and n < HEADER_LEN + TAG_LEN:
        raise Malformed("truncated", "802.1Q tag cut short")
    dst, src, ethertype = _unpack_head(frame)
    # The value is built as the tuple it is, in Ethernet's field order, without
    # the keyword binding of Ethernet(...): parse is the hot path.
    if ethertype != TYPE_VLAN:
        return _new(Ethernet, (dst, src, ethertype, frame[HEADER_LEN:], None, 0, False))
    tci, ethertype = _unpack_tag(frame, HEADER_LEN)
    return _new(Ethernet, (dst, src, ethertype, frame[HEADER_LEN + TAG_LEN :], tci & 0x0FFF, tci >> 13, bool(tci & 0x1000)))


def emit(eth: Ethernet, pad: bool = True) -> bytes:
    """Build the frame; ``pad`` fills to the 60-byte minimum as a NIC would."""
    if eth.vlan is None:
        if eth.ethertype == TYPE_VLAN:
            # HEADER reads a tag after TPID 0x8100; construct's build fails here too (TypeError).
            raise ValueError("ethertype 0x8100 is the 802.1Q TPID: set vlan to tag the frame")
        frame = _pack_head(eth.dst, eth.src, eth.ethertype) + eth.payload
    else:
        tci = (eth.pcp & 7) << 13 | (0x1000 if eth.dei else 0) | (eth.vlan & 0x0FFF)
        frame = _pack_head(eth.dst, eth.src, TYPE_VLAN) + _pack_tag(tci, eth.ethertype) + eth.payload
    if pad and len(frame) < MIN_FRAME:
        frame += bytes(MIN_FRAME - len(frame))
    return frame

