"""IPv4 header (RFC 791 3.1).

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version|  IHL  |Type of Service|          Total Length         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Identification        |Flags|      Fragment Offset    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Time to Live |    Protocol   |         Header Checksum       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                       Source Address                          |
    |                    Destination Address                        |
    |                    Options (IHL > 5)                          |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

The declaration keeps byte-aligned fields (``version_ihl``, ``flags_fragment``)
because construct's compiled BitStruct costs five times more than the whole
rest of the header; the ``Ipv4`` value splits them into what they mean.

``parse``/``emit`` run the codec ``layout.derive`` reads off ``HEADER``: one
``struct`` for the twenty fixed bytes. The two members it cannot express are
handled here, after the explicit length checks: ``options`` is the bytes the
IHL says, ``payload`` runs to Total Length. The two computed ``Default``s are
computed here as the declaration computes them (IHL from the options, Total
Length from the IHL and the payload); tests hold this to construct's own
``HEADER.parse``/``HEADER.build``. ``FIELDS`` says what the value's fields
mean to scenarios.
"""

from typing import NamedTuple

from construct import Bytes, Default, GreedyBytes, Int8ub, Int16ub, Struct, len_, this

from . import layout
from .checksum import internet_checksum, ones_sum, verify
from .errors import Malformed
from .fieldspec import BOOL, BYTES, IPV4_ADDRESS, Computed, Expect, Field, Header, Int

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
MIN_HEADER = 20
MAX_PACKET = 65535
FLAG_DF = 0x4000
FLAG_MF = 0x2000
FLAG_RESERVED = 0x8000

HEADER = Struct(
    "version_ihl" / Default(Int8ub, 0x40 | (5 + len_(this.options) // 4)),
    "tos" / Int8ub,  # DSCP (6 bits) | ECN (2 bits), RFC 2474 / RFC 3168
    "total_length" / Default(Int16ub, (this.version_ihl & 0x0F) * 4 + len_(this.payload)),
    "identification" / Int16ub,
    "flags_fragment" / Int16ub,  # reserved | DF | MF | offset in 8-octet units
    "ttl" / Int8ub,
    "protocol" / Int8ub,
    "checksum" / Int16ub,
    "src" / Bytes(4),
    "dst" / Bytes(4),
    "options" / Bytes((this.version_ihl & 0x0F) * 4 - MIN_HEADER),
    "payload" / GreedyBytes,
)
_FIXED = layout.derive(HEADER, tail={"options": Bytes, "payload": GreedyBytes})  # version_ihl .. dst
_unpack = _FIXED.unpack_from
_pack = _FIXED.pack  # refuses addresses that are not four bytes, as Bytes(4) does
_pack_again = _FIXED.struct.pack  # the same bytes, once _pack has seen these values


class Ipv4(NamedTuple):
    src: bytes
    dst: bytes
    protocol: int
    payload: bytes = b""
    ttl: int = 64
    identification: int = 0
    tos: int = 0
    df: bool = False
    mf: bool = False
    frag_offset: int = 0  # in bytes, a multiple of 8
    options: bytes = b""
    reserved_flag: bool = False
    # Set by parse(); emit() recomputes them when left as None.
    ihl: int | None = None
    total_length: int | None = None
    checksum: int | None = None

    @property
    def header_len(self) -> int:
        return MIN_HEADER + len(self.options)


FIELDS = Header(
    "ipv4",
    Ipv4,
    [
        Field("src", "src", IPV4_ADDRESS),
        Field("dst", "dst", IPV4_ADDRESS),
        Field("proto", "protocol", Int(8, {"icmp": PROTO_ICMP, "tcp": PROTO_TCP, "udp": PROTO_UDP}), Expect.DETAIL),
        Field("ttl", "ttl", Int(8), Expect.CHOICE),
        Field("id", "identification", Int(16, hex=True), Expect.CHOICE),
        Field("tos", "tos", Int(8), Expect.CHOICE, terse=True),
        Field("df", "df", BOOL, Expect.CHOICE),
        Field("mf", "mf", BOOL, Expect.DETAIL, terse=True),
        Field("frag", "frag_offset", Int(16), Expect.DETAIL, terse=True),
        Field("ihl", "ihl", Int(4), Expect.NEVER, Computed.LENGTH),
        Field("len", "total_length", Int(16), Expect.DETAIL, Computed.LENGTH),
        Field("checksum", "checksum", Int(16, hex=True), Expect.NEVER, Computed.CHECKSUM),
        Field("options", "options", BYTES, Expect.DETAIL, terse=True),
    ],
    unnamed=("payload", "reserved_flag"),  # the payload is the next layer; the reserved bit is not in the language
)
_new = tuple.__new__


def parse(data: bytes, verify_checksum: bool = True) -> Ipv4:
    """Integrity checks on the raw bytes, then the fixed twenty bytes in one ``struct``.

    Trailing bytes past Total Length (Ethernet padding) are dropped here.
    """
    if type(data) is not bytes:
        data = bytes(data)  # fields come out as bytes, whatever buffer came in
    n = len(data)
    if n < MIN_HEADER:
        raise Malformed("truncated", f"{n} bytes, header needs {MIN_HEADER}")
    version = data[0] >> 4
    ihl = data[0] & 0x0F
    if version != 4:
        raise Malformed("bad_version", f"version {version}")
    hlen = ihl * 4
    if ihl < 5:
        raise Malformed("bad_ihl", f"IHL {ihl} below 5")
    total = (data[2] << 8) | data[3]
    if hlen > n:
        raise Malformed("bad_ihl", f"IHL says {hlen} bytes, {n} present")
    if total < hlen:
        raise Malformed("bad_total_length", f"total length {total} below header length {hlen}")
    if total > n:
        raise Malformed("bad_total_length", f"total length {total} exceeds the {n} bytes received")
    if verify_checksum and not verify(data[:hlen]):
        raise Malformed("bad_checksum")
    _vihl, tos, _total, ident, ff, ttl, protocol, checksum, src, dst = _unpack(data)
    # Ipv4's field order, built without the keyword binding of Ipv4(...): parse is the hot path.
    return _new(Ipv4, (
        src, dst, protocol, data[hlen:total], ttl, ident, tos, bool(ff & FLAG_DF), bool(ff & FLAG_MF),
        (ff & 0x1FFF) * 8, data[MIN_HEADER:hlen], bool(ff & FLAG_RESERVED), ihl, total, checksum,
    ))


def emit(ip: Ipv4) -> bytes:
    """Build the packet. IHL, Total Length and the checksum are computed unless set."""
    if len(ip.options) % 4:
        raise ValueError("IPv4 options must be padded to a multiple of 4 bytes")
    if ip.frag_offset % 8:
        raise ValueError("fragment offset must be a multiple of 8 bytes")
    ff = (
        (FLAG_RESERVED if ip.reserved_flag else 0)
        | (FLAG_DF if ip.df else 0)
        | (FLAG_MF if ip.mf else 0)
        | (ip.frag_offset // 8)
    )
    options = ip.options
    payload = ip.payload
    # HEADER's Defaults: version_ihl = 0x40 | (5 + len(options) // 4),
    # total_length = (version_ihl & 0x0F) * 4 + len(payload).
    vihl = 0x40 | (5 + len(options) // 4) if ip.ihl is None else 0x40 | ip.ihl
    hlen = (vihl & 0x0F) * 4
    total = hlen + len(payload) if ip.total_length is None else ip.total_length
    fixed = (vihl, ip.tos, total, ip.identification, ff, ip.ttl, ip.protocol)
    head = _pack(*fixed, 0, ip.src, ip.dst) + options
    csum = ip.checksum
    if csum is None:
        # Over the first IHL * 4 bytes, as built: the header unless IHL was set to lie.
        csum = internet_checksum(head if hlen == len(head) else (head + payload)[:hlen])
    elif csum == 0:
        return head + payload
    return _pack_again(*fixed, csum, ip.src, ip.dst) + options + payload


def pseudo_header_sum(src: bytes, dst: bytes, protocol: int, length: int) -> int:
    """Ones' complement sum of the RFC 768 / RFC 9293 3.1 pseudo-header."""
    return ones_sum(src + dst + bytes((0, protocol, length >> 8, length & 0xFF)))
