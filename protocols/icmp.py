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
Tests hold it to construct's own ``HEADER.parse``/``HEADER.build``. ``FIELDS``
says what the value's fields mean to scenarios, and holds the names of the
types and codes.
"""

from typing import NamedTuple

from construct import GreedyBytes, Int8ub, Int16ub, Int32ub, Struct, Switch, this

from . import layout
from .checksum import internet_checksum, verify
from .errors import Malformed
from .fieldspec import BYTES, Computed, Expect, Field, Header, Int, When

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


class Icmp(NamedTuple):
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


_ECHOES = frozenset({ECHO_REQUEST, ECHO_REPLY})
TYPE_NAMES = {
    "echo-reply": ECHO_REPLY,
    "dest-unreachable": DEST_UNREACHABLE,
    "echo-request": ECHO_REQUEST,
    "time-exceeded": TIME_EXCEEDED,
    "parameter-problem": PARAMETER_PROBLEM,
}
# What a code means depends on the type (RFC 792, RFC 1191 for frag-needed).
CODE_NAMES = {
    DEST_UNREACHABLE: {
        "net-unreachable": NET_UNREACHABLE,
        "host-unreachable": HOST_UNREACHABLE,
        "protocol-unreachable": PROTOCOL_UNREACHABLE,
        "port-unreachable": PORT_UNREACHABLE,
        "frag-needed": FRAG_NEEDED,
    },
    TIME_EXCEEDED: {"ttl-exceeded": TTL_EXCEEDED, "reassembly-timeout": REASSEMBLY_EXCEEDED},
}

# The rest-of-header fields exist only in the types whose HEADER case has them.
FIELDS = Header(
    "icmp",
    Icmp,
    [
        Field("type", "type", Int(8, TYPE_NAMES), default=ECHO_REQUEST),
        Field("code", "code", Int(8, names_by=("type", CODE_NAMES))),
        Field("id", "identifier", Int(16, hex=True), when=When("type", _ECHOES)),
        Field("seq", "sequence", Int(16), when=When("type", _ECHOES)),
        Field("mtu", "next_hop_mtu", Int(16), terse=True, when=When("type", frozenset({DEST_UNREACHABLE}))),
        Field("pointer", "pointer", Int(8), terse=True, when=When("type", frozenset({PARAMETER_PROBLEM}))),
        Field("checksum", "checksum", Int(16, hex=True), Expect.NEVER, Computed.CHECKSUM),
        Field("data", "data", BYTES),
    ],
)
_new = tuple.__new__


def parse(data: bytes, verify_checksum: bool = True) -> Icmp:
    if type(data) is not bytes:
        data = bytes(data)  # fields come out as bytes, whatever buffer came in
    if len(data) < HEADER_LEN:
        raise Malformed("truncated", f"{len(data)} bytes, ICMP needs {HEADER_LEN}")
    if verify_checksum and not verify(data):
        raise Malformed("bad_checksum")
    # Each value is built in Icmp's field order, without the keyword binding of Icmp(...).
    t = data[0]
    if t in (ECHO_REQUEST, ECHO_REPLY):
        _, code, checksum, identifier, sequence = _unpack_echo(data)
        return _new(Icmp, (t, code, data[HEADER_LEN:], identifier, sequence, 0, 0, checksum))
    if t == DEST_UNREACHABLE:
        _, code, checksum, _unused, mtu = _UNREACH_L.unpack_from(data)
        return _new(Icmp, (t, code, data[HEADER_LEN:], 0, 0, mtu, 0, checksum))
    if t == PARAMETER_PROBLEM:
        _, code, checksum, pointer, _unused, _unused2 = _PARAM_L.unpack_from(data)
        return _new(Icmp, (t, code, data[HEADER_LEN:], 0, 0, 0, pointer, checksum))
    _, code, checksum, _unused = _OTHER_L.unpack_from(data)
    return _new(Icmp, (t, code, data[HEADER_LEN:], 0, 0, 0, 0, checksum))


def emit(msg: Icmp) -> bytes:
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
