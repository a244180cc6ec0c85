"""TCP header (RFC 9293 3.1): the value type, its construct declaration, and the codec derived from it.

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |          Source Port          |       Destination Port        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                        Sequence Number                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Acknowledgment Number                      |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Data |       |C|E|U|A|P|R|S|F|                               |
    | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
    |       |       |R|E|G|K|H|T|N|N|                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           Checksum            |         Urgent Pointer        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                           [Options]                           |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                                                               :
    :                             Data                              :
    :                                                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

The declaration keeps byte-aligned fields (``offset_reserved``, ``flags``) for
the reasons ``ipv4`` gives for version/IHL: a BitStruct costs more than the
rest of the header, and with one struct code per byte ``layout.derive`` reads
the twenty fixed bytes as one ``struct.Struct``. The ``Tcp`` value holds what
they mean; the four reserved bits are sent as zero and ignored on receipt
(RFC 9293 3.1).

TCP has no length field: the segment is whatever IP carried. A Data Offset
past the end of the buffer is therefore ``bad_data_offset`` whether the sender
lied or the segment was cut short, just as IPv4 calls an IHL past the buffer
``bad_ihl``.

The checksum covers the pseudo-header of RFC 9293 3.1 (source address,
destination address, zero, protocol 6, TCP length), so ``parse`` and ``emit``
take the addresses. ``parse`` checks the lengths, then the checksum over the
raw bytes, and only then builds anything.

Options (RFC 9293 3.2) are kept in wire order, NOP and EOL included, so that a
parsed segment re-emits to the same bytes and a scenario can say where the
NOPs go. Every option length is checked against its kind and against the
options area. RFC 9293 3.2 (MUST-7) asks an implementation to be prepared for
an illegal length; a segment with one is ``Malformed("bad_option")``, which
the stack drops and counts rather than guess where the next option starts.
"""

import struct
from typing import Any, NamedTuple

from construct import Bytes, Default, GreedyBytes, Int8ub, Int16ub, Int32ub, Struct, len_, this

from . import layout
from .checksum import internet_checksum, ones_sum, verify
from .errors import Malformed
from .fieldspec import BYTES, RECEIVER_SEQ, SENDER_SEQ, TCP_FLAGS, TCP_OPTIONS, Computed, Expect, Field, Header, Int
from .ipv4 import PROTO_TCP, pseudo_header_sum

# Control bits (RFC 9293 3.1, RFC 3168 for ECE/CWR).
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

# Option kinds (RFC 9293 3.2, RFC 7323, RFC 2018).
OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8

HEADER_LEN = 20
MAX_HEADER = 60
MAX_OPTIONS = MAX_HEADER - HEADER_LEN  # 40: Data Offset is 4 bits of 32-bit words
MAX_SACK_BLOCKS = 4  # RFC 2018 3: 2 + 8n <= 40 bytes

# The total length each known kind must have (RFC 9293 3.2, RFC 7323 2.2 and 3.2, RFC 2018 2).
OPTION_LENGTH = {OPT_MSS: 4, OPT_WSCALE: 3, OPT_SACK_PERMITTED: 2, OPT_TIMESTAMP: 10}
SACK_LENGTHS = frozenset(2 + 8 * n for n in range(1, MAX_SACK_BLOCKS + 1))  # 10, 18, 26, 34

HEADER = Struct(
    "src_port" / Int16ub,
    "dst_port" / Int16ub,
    "seq" / Int32ub,
    "ack" / Int32ub,
    "offset_reserved" / Default(Int8ub, (5 + len_(this.options) // 4) << 4),  # Data Offset (4) | Rsrvd (4)
    "flags" / Int8ub,  # CWR ECE URG ACK PSH RST SYN FIN
    "window" / Int16ub,
    "checksum" / Int16ub,
    "urgent" / Int16ub,
    "options" / Bytes((this.offset_reserved >> 4) * 4 - HEADER_LEN),
    "payload" / GreedyBytes,
)
_FIXED = layout.derive(HEADER, tail={"options": Bytes, "payload": GreedyBytes})  # src_port .. urgent
_unpack = _FIXED.unpack_from
_pack = _FIXED.pack


class Option(NamedTuple):
    """One option, in wire order.

    ``value`` by kind: MSS and WSCALE an int; SACK a tuple of (left, right)
    edges; TIMESTAMP a (TSval, TSecr) pair; SACK_PERMITTED, NOP and EOL None;
    an unknown kind its raw bytes (the option's data, after kind and length).

    ``emit`` also takes raw bytes for a known kind and writes them as they are,
    so a test or scenario can send a deliberately bad MSS or SACK.
    """

    kind: int
    value: Any = None


class Tcp(NamedTuple):
    src_port: int
    dst_port: int
    seq: int = 0
    ack: int = 0
    flags: int = 0
    window: int = 0
    urgent: int = 0
    options: tuple[Option, ...] = ()
    payload: bytes = b""
    # Set by parse(); emit() computes them when left as None.
    data_offset: int | None = None  # in 32-bit words
    checksum: int | None = None

    def option(self, kind: int) -> Any:
        """The value of the first option of ``kind``, or None when absent (SACK-permitted gives True)."""
        for opt in self.options:
            if opt.kind == kind:
                return True if kind == OPT_SACK_PERMITTED else opt.value
        return None


FIELDS = Header(
    "tcp",
    Tcp,
    [
        Field("sport", "src_port", Int(16), default=0),
        Field("dport", "dst_port", Int(16), default=0),
        Field("flags", "flags", TCP_FLAGS),
        Field("seq", "seq", SENDER_SEQ),
        Field("ack", "ack", RECEIVER_SEQ),
        Field("win", "window", Int(16), Expect.CHOICE, default=65535),  # an injected peer offers a window
        Field("urg", "urgent", Int(16), Expect.DETAIL, terse=True),
        Field("options", "options", TCP_OPTIONS, Expect.CHOICE),
        Field("off", "data_offset", Int(4), Expect.NEVER, Computed.LENGTH),
        Field("checksum", "checksum", Int(16, hex=True), Expect.NEVER, Computed.CHECKSUM),
        Field("data", "payload", BYTES),
        Field("len", "payload", Int(16), Expect.NEVER, measures=True),  # implied by data
    ],
)
_new = tuple.__new__


# -- parse -----------------------------------------------------------------------

_NOP = Option(OPT_NOP)
_EOL = Option(OPT_EOL)
_SACK_OK = Option(OPT_SACK_PERMITTED)
_U16 = struct.Struct(">H")
_TS = struct.Struct(">II")
_SACK = {length: struct.Struct(f">{(length - 2) // 4}I") for length in SACK_LENGTHS}
# RFC 7323 Appendix A: the layout nearly every data segment of a timestamping
# connection carries (NOP, NOP, TS), recognised in one comparison.
_NOP_NOP_TS = bytes((OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10))


def parse(data: bytes, src: bytes, dst: bytes, verify_checksum: bool = True) -> Tcp:
    """Lengths, then the checksum on the raw bytes, then the fixed header and the options."""
    if type(data) is not bytes:
        data = bytes(data)  # fields come out as bytes, whatever buffer came in
    n = len(data)
    if n < HEADER_LEN:
        raise Malformed("truncated", f"{n} bytes, TCP needs {HEADER_LEN}")
    offset = data[12] >> 4
    hlen = offset * 4
    if offset < 5:
        raise Malformed("bad_data_offset", f"data offset {offset} below 5")
    if hlen > n:
        raise Malformed("bad_data_offset", f"data offset says {hlen} bytes, {n} present")
    if verify_checksum and not verify(data, pseudo_header_sum(src, dst, PROTO_TCP, n)):
        raise Malformed("bad_checksum")
    src_port, dst_port, seq, ack, _off, flags, window, checksum, urgent = _unpack(data)
    if hlen == HEADER_LEN:
        options: tuple[Option, ...] = ()
    elif hlen == 32 and data[20:24] == _NOP_NOP_TS:
        options = (_NOP, _NOP, Option(OPT_TIMESTAMP, _TS.unpack_from(data, 24)))
    else:
        options = parse_options(data, HEADER_LEN, hlen)
    return _new(Tcp, (src_port, dst_port, seq, ack, flags, window, urgent, options, data[hlen:], offset, checksum))


def parse_options(data: bytes, start: int, end: int) -> tuple[Option, ...]:
    """The options in ``data[start:end]``; one step per option, not per byte."""
    out: list[Option] = []
    i = start
    while i < end:
        kind = data[i]
        if kind == OPT_NOP:
            out.append(_NOP)
            i += 1
            continue
        if kind == OPT_EOL:
            out.append(_EOL)  # RFC 9293 3.2: the rest of the area is padding
            break
        # RFC 9293 3.2 (MUST-68): every other kind has a length octet, counting kind and length.
        if i + 1 >= end:
            raise Malformed("bad_option", f"option {kind} at offset {i} has no length octet")
        length = data[i + 1]
        if length < 2:
            raise Malformed("bad_option", f"option {kind} has length {length}")
        nxt = i + length
        if nxt > end:
            raise Malformed("bad_option", f"option {kind} of length {length} runs past the options area")
        if kind == OPT_TIMESTAMP:
            if length != 10:
                raise Malformed("bad_option", f"timestamps option of length {length}, RFC 7323 3.2 says 10")
            out.append(Option(kind, _TS.unpack_from(data, i + 2)))
        elif kind == OPT_MSS:
            if length != 4:
                raise Malformed("bad_option", f"MSS option of length {length}, RFC 9293 3.2 says 4")
            out.append(Option(kind, _U16.unpack_from(data, i + 2)[0]))
        elif kind == OPT_WSCALE:
            if length != 3:
                raise Malformed("bad_option", f"window scale option of length {length}, RFC 7323 2.2 says 3")
            out.append(Option(kind, data[i + 2]))
        elif kind == OPT_SACK_PERMITTED:
            if length != 2:
                raise Malformed("bad_option", f"SACK-permitted option of length {length}, RFC 2018 2 says 2")
            out.append(_SACK_OK)
        elif kind == OPT_SACK:
            edges = _SACK.get(length)
            if edges is None:
                raise Malformed("bad_option", f"SACK option of length {length}, RFC 2018 3 says 2 + 8n, n 1..4")
            e = edges.unpack_from(data, i + 2)
            out.append(Option(kind, tuple(zip(e[::2], e[1::2], strict=True))))
        else:
            # RFC 9293 3.2 (MUST-5): an option we do not implement is skipped by its length.
            out.append(Option(kind, data[i + 2 : nxt]))
        i = nxt
    return tuple(out)


# -- emit ------------------------------------------------------------------------

_OPTION_BYTES = {OPT_NOP: b"\x01", OPT_EOL: b"\x00"}


def emit_options(options: tuple[Option, ...] | list[Option]) -> bytes:
    """The options area: each ``Option`` as RFC 9293 3.2 lays it out, zero-padded to 32 bits.

    The padding is an End of Option List octet followed by zeros (RFC 9293 3.1,
    "The TCP header padding is used to ensure that the TCP header ends ... on a
    32-bit boundary. The padding is composed of zeros."). ``ValueError`` when
    the result does not fit the 40 bytes Data Offset can describe, or a value
    does not fit its kind.
    """
    parts: list[bytes] = []
    for opt in options:
        parts.append(_option_bytes(opt))
    out = b"".join(parts)
    out += bytes(-len(out) % 4)
    if len(out) > MAX_OPTIONS:
        raise ValueError(f"options take {len(out)} bytes padded, at most {MAX_OPTIONS} fit")
    return out


def _option_bytes(opt: Option) -> bytes:
    kind, value = opt
    fixed = _OPTION_BYTES.get(kind)
    if fixed is not None:
        return fixed
    if not 0 <= kind <= 0xFF:
        raise ValueError(f"option kind {kind} is not an octet")
    if isinstance(value, (bytes, bytearray)):
        # Raw data, for a kind we do not know or a deliberately bad known one.
        if len(value) > MAX_OPTIONS - 2:
            raise ValueError(f"option {kind} carries {len(value)} bytes, at most {MAX_OPTIONS - 2} fit")
        return bytes((kind, 2 + len(value))) + value
    try:
        if kind == OPT_TIMESTAMP:
            tsval, tsecr = value
            return b"\x08\x0a" + _TS.pack(tsval, tsecr)
        if kind == OPT_MSS:
            return b"\x02\x04" + _U16.pack(value)
        if kind == OPT_WSCALE:
            return bytes((OPT_WSCALE, 3, value))
        if kind == OPT_SACK_PERMITTED:
            return b"\x04\x02"
        if kind == OPT_SACK:
            blocks = tuple(value)
            if not 1 <= len(blocks) <= MAX_SACK_BLOCKS:
                raise ValueError(f"SACK carries 1 to {MAX_SACK_BLOCKS} blocks, not {len(blocks)}")
            length = 2 + 8 * len(blocks)
            return bytes((OPT_SACK, length)) + _SACK[length].pack(*(edge for block in blocks for edge in block))
    except (struct.error, TypeError) as e:
        raise ValueError(f"option {kind}: {value!r} does not fit ({e})") from None
    raise ValueError(f"option {kind} is not one simstack builds from a value; give its data as bytes")


def emit(seg: Tcp, src: bytes, dst: bytes, partial: bool = False) -> bytes:
    """Build the segment. Data Offset and the checksum are computed unless set.

    ``partial``: the checksum field gets the pseudo-header's sum alone, folded and not complemented, for a
    device with checksum offload to complete over the header and data (Linux's CHECKSUM_PARTIAL: the
    virtio-net header's NEEDS_CSUM, csum_offset 16); a 64 KB segment is then never summed here.
    """
    options = emit_options(seg.options) if seg.options else b""
    payload = seg.payload
    # HEADER's Default: offset_reserved = (5 + len(options) // 4) << 4, reserved bits zero.
    offset = HEADER_LEN // 4 + len(options) // 4 if seg.data_offset is None else seg.data_offset
    if not 0 <= offset <= 15:
        raise ValueError(f"data offset {offset} does not fit 4 bits")
    fixed = (seg.src_port, seg.dst_port, seg.seq, seg.ack, offset << 4, seg.flags, seg.window)
    csum = seg.checksum
    if csum is None and partial:
        csum = pseudo_header_sum(src, dst, PROTO_TCP, HEADER_LEN + len(options) + len(payload))
    elif csum is None:
        # The header's length is a multiple of 4, so the payload's 16-bit words keep
        # their alignment and the sum splits into payload, then header (RFC 1071 2(B)).
        pseudo = pseudo_header_sum(src, dst, PROTO_TCP, HEADER_LEN + len(options) + len(payload))
        csum = internet_checksum(_pack(*fixed, 0, seg.urgent) + options, ones_sum(payload, pseudo) if payload else pseudo)
    return _pack(*fixed, csum, seg.urgent) + options + payload
