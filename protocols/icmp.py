"""ICMPv4 (RFC 792), the messages simstack sends and answers.

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Type      |     Code      |          Checksum             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    | echo: Identifier | Sequence   | unreachable: unused | Next-hop MTU (RFC 1191)
    | parameter problem: Pointer | unused    | others: unused (32 bits)
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Data: echo payload, or the offending IP header + leading bytes

``parse``/``emit`` run the codec ``layout.derive`` reads off ``HEADER``: the
common type/code/checksum run joined to each ``Switch`` case's rest of header,
one ``struct`` per type; ``data`` (GreedyBytes) is the rest of the message.
``with layout.construct_codec():`` runs ``HEADER.compile()`` instead.
"""

from dataclasses import dataclass

from construct import GreedyBytes, Int8ub, Int16ub, Int32ub, Struct, Switch, this

from . import layout
from .checksum import internet_checksum, verify
from .errors import Malformed
from .layout import CODEC

ECHO_REPLY = 0
DEST_UNREACHABLE = 3
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
PARAMETER_PROBLEM = 12

# Destination unreachable codes (RFC 792, RFC 1191)
NET_UNREACHABLE = 0
HOST_UNREACHABLE = 1
PROTOCOL_UNREACHABLE = 2
PORT_UNREACHABLE = 3
FRAG_NEEDED = 4
# Time exceeded codes
TTL_EXCEEDED = 0
REASSEMBLY_EXCEEDED = 1

ERROR_TYPES = frozenset({DEST_UNREACHABLE, TIME_EXCEEDED, PARAMETER_PROBLEM, 4, 5})
HEADER_LEN = 8

_ECHO = Struct("identifier" / Int16ub, "sequence" / Int16ub)
HEADER = Struct(
    "type" / Int8ub,
    "code" / Int8ub,
    "checksum" / Int16ub,
    "rest"
    / Switch(
        this.type,
        {
            ECHO_REPLY: _ECHO,
            ECHO_REQUEST: _ECHO,
            DEST_UNREACHABLE: Struct("unused" / Int16ub, "next_hop_mtu" / Int16ub),
            PARAMETER_PROBLEM: Struct("pointer" / Int8ub, "unused" / Int8ub, "unused2" / Int16ub),
        },
        default=Struct("unused" / Int32ub),
    ),
    "data" / GreedyBytes,
)
_COMPILED = HEADER.compile()
# Derived from HEADER: type, code, checksum, then the rest of header of each case.
_HEAD = layout.derive(HEADER, tail={"rest": Switch, "data": GreedyBytes})
_REST = layout.member(HEADER, "rest")
_ECHO_L = _HEAD + layout.derive(_REST.cases[ECHO_REQUEST])  # type code checksum identifier sequence
_UNREACH_L = _HEAD + layout.derive(_REST.cases[DEST_UNREACHABLE])  # ... unused next_hop_mtu
_PARAM_L = _HEAD + layout.derive(_REST.cases[PARAMETER_PROBLEM])  # ... pointer unused unused2
_OTHER_L = _HEAD + layout.derive(_REST.default)  # ... unused
if _REST.cases[ECHO_REPLY] is not _REST.cases[ECHO_REQUEST] or any(
    lay.size != HEADER_LEN for lay in (_ECHO_L, _UNREACH_L, _PARAM_L, _OTHER_L)
):
    raise layout.LayoutError("ICMP's rest of header is no longer one 4-byte run per type, shared by both echoes")
_unpack_echo = _ECHO_L.unpack_from
_pack_echo = _ECHO_L.pack


@dataclass(frozen=True, slots=True)
class Icmp:
    type: int
    code: int = 0
    data: bytes = b""
    identifier: int = 0
    sequence: int = 0
    next_hop_mtu: int = 0
    pointer: int = 0
    checksum: int | None = None  # from parse; emit computes it when None

    @property
    def is_error(self) -> bool:
        return self.type in ERROR_TYPES


def parse(data: bytes, verify_checksum: bool = True) -> Icmp:
    if type(data) is not bytes:
        data = bytes(data)  # fields come out as bytes, whatever buffer came in
    if len(data) < HEADER_LEN:
        raise Malformed("truncated", f"{len(data)} bytes, ICMP needs {HEADER_LEN}")
    if verify_checksum and not verify(data):
        raise Malformed("bad_checksum")
    if CODEC.construct:
        return _parse_compiled(data)
    t = data[0]
    if t in (ECHO_REQUEST, ECHO_REPLY):
        _, code, checksum, identifier, sequence = _unpack_echo(data)
        return Icmp(t, code, data[HEADER_LEN:], identifier, sequence, checksum=checksum)
    if t == DEST_UNREACHABLE:
        _, code, checksum, _unused, mtu = _UNREACH_L.unpack_from(data)
        return Icmp(t, code, data[HEADER_LEN:], next_hop_mtu=mtu, checksum=checksum)
    if t == PARAMETER_PROBLEM:
        _, code, checksum, pointer, _unused, _unused2 = _PARAM_L.unpack_from(data)
        return Icmp(t, code, data[HEADER_LEN:], pointer=pointer, checksum=checksum)
    _, code, checksum, _unused = _OTHER_L.unpack_from(data)
    return Icmp(t, code, data[HEADER_LEN:], checksum=checksum)


def _parse_compiled(data: bytes) -> Icmp:
    c = _COMPILED.parse(data)
    rest = c.rest
    t = c.type
    if t in (ECHO_REQUEST, ECHO_REPLY):
        return Icmp(t, c.code, c.data, rest.identifier, rest.sequence, checksum=c.checksum)
    if t == DEST_UNREACHABLE:
        return Icmp(t, c.code, c.data, next_hop_mtu=rest.next_hop_mtu, checksum=c.checksum)
    if t == PARAMETER_PROBLEM:
        return Icmp(t, c.code, c.data, pointer=rest.pointer, checksum=c.checksum)
    return Icmp(t, c.code, c.data, checksum=c.checksum)


def emit(msg: Icmp) -> bytes:
    if CODEC.construct:
        return _emit_compiled(msg)
    t = msg.type
    if t in (ECHO_REQUEST, ECHO_REPLY):
        fields: tuple[int, ...] = (msg.identifier, msg.sequence)
        pack = _pack_echo
    elif t == DEST_UNREACHABLE:
        fields, pack = (0, msg.next_hop_mtu), _UNREACH_L.pack
    elif t == PARAMETER_PROBLEM:
        fields, pack = (msg.pointer, 0, 0), _PARAM_L.pack
    else:
        fields, pack = (0,), _OTHER_L.pack
    data = msg.data
    csum = msg.checksum
    if csum is None:
        csum = internet_checksum(pack(t, msg.code, 0, *fields) + data)
    return pack(t, msg.code, csum, *fields) + data


def _emit_compiled(msg: Icmp) -> bytes:
    t = msg.type
    if t in (ECHO_REQUEST, ECHO_REPLY):
        rest: dict[str, int] = {"identifier": msg.identifier, "sequence": msg.sequence}
    elif t == DEST_UNREACHABLE:
        rest = {"unused": 0, "next_hop_mtu": msg.next_hop_mtu}
    elif t == PARAMETER_PROBLEM:
        rest = {"pointer": msg.pointer, "unused": 0, "unused2": 0}
    else:
        rest = {"unused": 0}
    out = bytearray(_COMPILED.build({"type": t, "code": msg.code, "checksum": 0, "rest": rest, "data": msg.data}))
    csum = internet_checksum(out) if msg.checksum is None else msg.checksum
    out[2] = csum >> 8
    out[3] = csum & 0xFF
    return bytes(out)
