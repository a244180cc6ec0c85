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
per frame; ``with layout.construct_codec():`` runs ``HEADER.compile()`` instead.
"""

from dataclasses import dataclass

from construct import Bytes, GreedyBytes, If, IfThenElse, Int16ub, Struct, this

from . import layout
from .errors import Malformed
from .layout import CODEC

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
_COMPILED = HEADER.compile()
# Derived from HEADER: dst, src, ethertype; then the tag's tci, ethertype. The
# payload (GreedyBytes) is the rest of the frame.
_HEAD = layout.derive(HEADER, tail={"tag": IfThenElse, "payload": GreedyBytes})
_TAG = layout.derive(layout.member(HEADER, "tag").thensubcon)
_unpack_head = _HEAD.unpack_from
_unpack_tag = _TAG.unpack_from
_pack_head = _HEAD.pack
_pack_tag = _TAG.pack


@dataclass(frozen=True, slots=True)
class Ethernet:
    dst: bytes
    src: bytes
    ethertype: int
    payload: bytes = b""
    vlan: int | None = None  # VID when the frame carries an 802.1Q tag
    pcp: int = 0
    dei: bool = False


def parse(frame: bytes) -> Ethernet:
    if type(frame) is not bytes:
        frame = bytes(frame)  # fields come out as bytes, whatever buffer came in
    n = len(frame)
    # Integrity first: neither the compiled parser nor a struct may read short.
    if n < HEADER_LEN:
        raise Malformed("truncated", f"{n} bytes, header needs {HEADER_LEN}")
    if frame[12] == 0x81 and frame[13] == 0x00 and n < HEADER_LEN + TAG_LEN:
        raise Malformed("truncated", "802.1Q tag cut short")
    if CODEC.construct:
        return _parse_compiled(frame)
    dst, src, ethertype = _unpack_head(frame)
    if ethertype != TYPE_VLAN:
        return Ethernet(dst, src, ethertype, frame[HEADER_LEN:])
    tci, ethertype = _unpack_tag(frame, HEADER_LEN)
    return Ethernet(dst, src, ethertype, frame[HEADER_LEN + TAG_LEN :], tci & 0x0FFF, tci >> 13, bool(tci & 0x1000))


def _parse_compiled(frame: bytes) -> Ethernet:
    c = _COMPILED.parse(frame)
    tag = c.tag
    if tag is None:
        return Ethernet(c.dst, c.src, c.ethertype, c.payload)
    tci = tag.tci
    return Ethernet(c.dst, c.src, tag.ethertype, c.payload, tci & 0x0FFF, tci >> 13, bool(tci & 0x1000))


def emit(eth: Ethernet, pad: bool = True) -> bytes:
    """Build the frame; ``pad`` fills to the 60-byte minimum as a NIC would."""
    if CODEC.construct:
        return _emit_compiled(eth, pad)
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


def _emit_compiled(eth: Ethernet, pad: bool) -> bytes:
    if eth.vlan is None:
        fields = {"dst": eth.dst, "src": eth.src, "ethertype": eth.ethertype, "tag": None, "payload": eth.payload}
    else:
        tci = (eth.pcp & 7) << 13 | (0x1000 if eth.dei else 0) | (eth.vlan & 0x0FFF)
        tag = {"tci": tci, "ethertype": eth.ethertype}
        fields = {"dst": eth.dst, "src": eth.src, "ethertype": TYPE_VLAN, "tag": tag, "payload": eth.payload}
    frame: bytes = _COMPILED.build(fields)
    if pad and len(frame) < MIN_FRAME:
        frame += bytes(MIN_FRAME - len(frame))
    return frame
