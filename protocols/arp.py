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

``HEADER`` is the format; it is all fixed-size fields, so ``layout.derive``
turns the whole of it into one ``struct`` that ``parse``/``emit`` run (tests
hold it to ``HEADER.parse``/``HEADER.build``). ``FIELDS`` says what the
value's fields mean to scenarios.
"""

from typing import NamedTuple

from construct import Bytes, Default, Int8ub, Int16ub, Struct

from . import layout
from .errors import Malformed
from .fieldspec import IPV4_ADDRESS, MAC, Expect, Field, Header, Int

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
_LAYOUT = layout.derive(HEADER)  # every field; nothing variable follows
_unpack = _LAYOUT.unpack_from
_pack = _LAYOUT.pack


class Arp(NamedTuple):
    op: int
    sha: bytes
    spa: bytes
    tha: bytes
    tpa: bytes
    htype: int = HTYPE_ETHERNET
    ptype: int = PTYPE_IPV4
    hlen: int = 6
    plen: int = 4


# The format fields are never named in an expectation: parse refuses any
# value but Ethernet/IPv4's, so naming them says nothing.
FIELDS = Header(
    "arp",
    Arp,
    [
        Field("op", "op", Int(16, {"request": REQUEST, "reply": REPLY}), default=REQUEST),
        Field("sha", "sha", MAC),
        Field("spa", "spa", IPV4_ADDRESS),
        Field("tha", "tha", MAC),
        Field("tpa", "tpa", IPV4_ADDRESS),
        Field("htype", "htype", Int(16), Expect.NEVER, terse=True),
        Field("ptype", "ptype", Int(16), Expect.NEVER, terse=True),
        Field("hlen", "hlen", Int(8), Expect.NEVER, terse=True),
        Field("plen", "plen", Int(8), Expect.NEVER, terse=True),
    ],
)
_new = tuple.__new__


def parse(data: bytes) -> Arp:
    if len(data) < LENGTH:
        raise Malformed("truncated", f"{len(data)} bytes, ARP needs {LENGTH}")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _unpack(data)
    # Sanity: this declaration only covers Ethernet/IPv4 (RFC 826 "ar$hrd", "ar$pro").
    if htype != HTYPE_ETHERNET or ptype != PTYPE_IPV4 or hlen != 6 or plen != 4:
        raise Malformed("unsupported_format", f"htype {htype} ptype {ptype:#06x}")
    return _new(Arp, (op, sha, spa, tha, tpa, htype, ptype, hlen, plen))  # Arp's field order, without its __new__


def emit(arp: Arp) -> bytes:
    # fill: a None takes the declaration's Default, as construct's build does.
    return _pack(*_LAYOUT.fill((arp.htype, arp.ptype, arp.hlen, arp.plen, arp.op, arp.sha, arp.spa, arp.tha, arp.tpa)))
