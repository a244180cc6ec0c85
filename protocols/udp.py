"""UDP (RFC 768).

     0      7 8     15 16    23 24    31
    +--------+--------+--------+--------+
    |     Source      |   Destination   |
    |      Port       |      Port       |
    +--------+--------+--------+--------+
    |     Length      |    Checksum     |
    +--------+--------+--------+--------+
    |          data octets ...
    +-----------------------------------+

The checksum covers a pseudo-header of the IPv4 addresses, protocol and UDP
length, so parse and emit take the addresses too. ``parse``/``emit`` run the
``struct`` ``layout.derive`` reads off ``HEADER``; tests hold it to
construct's own ``HEADER.parse``/``HEADER.build``. ``FIELDS`` says what the
value's fields mean to scenarios.
"""

from typing import NamedTuple

from construct import Default, GreedyBytes, Int16ub, Struct, len_, this

from . import layout
from .checksum import internet_checksum, ones_sum
from .errors import Malformed
from .fieldspec import BYTES, Computed, Expect, Field, Header, Int
from .ipv4 import PROTO_UDP, pseudo_header_sum

HEADER_LEN = 8
MAX_PAYLOAD = 65535 - 20 - HEADER_LEN  # 65507: the largest datagram IPv4 can carry

HEADER = Struct(
    "src_port" / Int16ub,
    "dst_port" / Int16ub,
    "length" / Default(Int16ub, HEADER_LEN + len_(this.payload)),
    "checksum" / Int16ub,
    "payload" / GreedyBytes,
)
_FIXED = layout.derive(HEADER, tail={"payload": GreedyBytes})  # ports, length, checksum
_unpack = _FIXED.unpack_from
_pack = _FIXED.pack


class Udp(NamedTuple):
    src_port: int
    dst_port: int
    payload: bytes = b""
    length: int | None = None  # from parse; emit computes it when None
    checksum: int | None = None  # from parse (0 = sender sent none); emit computes it when None


FIELDS = Header(
    "udp",
    Udp,
    [
        Field("sport", "src_port", Int(16), default=0),
        Field("dport", "dst_port", Int(16), default=0),
        Field("len", "length", Int(16), Expect.DETAIL, Computed.LENGTH),
        Field("checksum", "checksum", Int(16, hex=True), Expect.NEVER, Computed.CHECKSUM),
        Field("data", "payload", BYTES),
    ],
)
_new = tuple.__new__


def parse(data: bytes, src: bytes, dst: bytes, verify_checksum: bool = True) -> Udp:
    """Integrity (lengths), then the checksum, then the fields."""
    n = len(data)
    if n < HEADER_LEN:
        raise Malformed("truncated", f"{n} bytes, UDP needs {HEADER_LEN}")
    length = (data[4] << 8) | data[5]
    if length < HEADER_LEN:
        raise Malformed("bad_length", f"length {length} below the header's {HEADER_LEN}")
    if length > n:
        raise Malformed("bad_length", f"length {length} exceeds the {n} bytes received")
    data = data[:length]  # RFC 768: the length field rules; IP may carry more
    checksum = (data[6] << 8) | data[7]
    if verify_checksum and not checksum_ok(data, src, dst):
        raise Malformed("bad_checksum")
    src_port, dst_port, _length, _checksum = _unpack(data)
    return _new(Udp, (src_port, dst_port, data[HEADER_LEN:], length, checksum))  # Udp's order, without its __new__


def checksum_ok(datagram: bytes, src: bytes, dst: bytes) -> bool:
    """``datagram`` cut to its length field. RFC 768: a zero checksum means none was sent."""
    if datagram[6:8] == b"\x00\x00":
        return True
    return ones_sum(datagram, pseudo_header_sum(src, dst, PROTO_UDP, len(datagram))) == 0xFFFF


def emit(dgram: Udp, src: bytes, dst: bytes) -> bytes:
    # HEADER's Default: length = 8 + len(payload).
    length = HEADER_LEN + len(dgram.payload) if dgram.length is None else dgram.length
    out = bytearray(_pack(dgram.src_port, dgram.dst_port, length, 0) + dgram.payload)
    if dgram.checksum is None:
        csum = internet_checksum(out, pseudo_header_sum(src, dst, PROTO_UDP, len(out)))
        # RFC 768: a computed zero is sent as all ones, zero meaning "none".
        csum = csum or 0xFFFF
    else:
        csum = dgram.checksum
    out[6] = csum >> 8
    out[7] = csum & 0xFF
    return bytes(out)
