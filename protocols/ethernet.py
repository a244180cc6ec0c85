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
"""

from dataclasses import dataclass

from construct import Bytes, GreedyBytes, If, Int16ub, Struct, this

from .errors import Malformed

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
    # Integrity first: the compiled parser would read short without complaint.
    if len(frame) < HEADER_LEN:
        raise Malformed("truncated", f"{len(frame)} bytes, header needs {HEADER_LEN}")
    if frame[12] == 0x81 and frame[13] == 0x00 and len(frame) < HEADER_LEN + TAG_LEN:
        raise Malformed("truncated", "802.1Q tag cut short")
    c = _COMPILED.parse(frame)
    tag = c.tag
    if tag is None:
        return Ethernet(c.dst, c.src, c.ethertype, c.payload)
    tci = tag.tci
    return Ethernet(c.dst, c.src, tag.ethertype, c.payload, tci & 0x0FFF, tci >> 13, bool(tci & 0x1000))


def emit(eth: Ethernet, pad: bool = True) -> bytes:
    """Build the frame; ``pad`` fills to the 60-byte minimum as a NIC would."""
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
