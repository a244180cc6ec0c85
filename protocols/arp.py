"""ARP for Ethernet and IPv4 (RFC 826).

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-------------------------------+-------------------------------+
    |     Hardware type (1)         |     Protocol type (0x0800)    |
    +---------------+---------------+-------------------------------+
    |  HLEN (6)     |  PLEN (4)     |          Operation            |
    +---------------+---------------+-------------------------------+
    |  Sender hardware address (6) | Sender protocol address (4)    |
    |  Target hardware address (6) | Target protocol address (4)    |
    +---------------------------------------------------------------+
"""

from dataclasses import dataclass

from construct import Bytes, Default, Int8ub, Int16ub, Struct

from .errors import Malformed

REQUEST = 1
REPLY = 2
HTYPE_ETHERNET = 1
PTYPE_IPV4 = 0x0800
LENGTH = 28

HEADER = Struct(
    "htype" / Default(Int16ub, HTYPE_ETHERNET),
    "ptype" / Default(Int16ub, PTYPE_IPV4),
    "hlen" / Default(Int8ub, 6),
    "plen" / Default(Int8ub, 4),
    "op" / Int16ub,
    "sha" / Bytes(6),
    "spa" / Bytes(4),
    "tha" / Bytes(6),
    "tpa" / Bytes(4),
)
_COMPILED = HEADER.compile()


@dataclass(frozen=True, slots=True)
class Arp:
    op: int
    sha: bytes
    spa: bytes
    tha: bytes
    tpa: bytes
    htype: int = HTYPE_ETHERNET
    ptype: int = PTYPE_IPV4
    hlen: int = 6
    plen: int = 4


def parse(data: bytes) -> Arp:
    if len(data) < LENGTH:
        raise Malformed("truncated", f"{len(data)} bytes, ARP needs {LENGTH}")
    c = _COMPILED.parse(data)
    # Sanity: this declaration only covers Ethernet/IPv4 (RFC 826 "ar$hrd", "ar$pro").
    if c.htype != HTYPE_ETHERNET or c.ptype != PTYPE_IPV4 or c.hlen != 6 or c.plen != 4:
        raise Malformed("unsupported_format", f"htype {c.htype} ptype {c.ptype:#06x}")
    return Arp(c.op, c.sha, c.spa, c.tha, c.tpa)


def emit(arp: Arp) -> bytes:
    return bytes(
        _COMPILED.build(
            {
                "htype": arp.htype,
                "ptype": arp.ptype,
                "hlen": arp.hlen,
                "plen": arp.plen,
                "op": arp.op,
                "sha": arp.sha,
                "spa": arp.spa,
                "tha": arp.tha,
                "tpa": arp.tpa,
            }
        )
    )
