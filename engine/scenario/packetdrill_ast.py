"""What a packetdrill script says, as typed values: the reader's output, the translator's input.

The shapes follow packetdrill's own grammar (google/packetdrill parser.y, and
NPLab's fork that FreeBSD's tcp-testsuite is written for) closely enough that
each node names one thing a script can say, and nothing is decided here about
how to run it. Times are whole microseconds, as packetdrill keeps them; ``...``
anywhere (any options, any argument, any result) is the one value ``ANY``.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum


class Wildcard(Enum):
    """``...``: whatever the stack does here is accepted."""

    ANY = "..."

    def __repr__(self) -> str:
        return "ANY"


ANY = Wildcard.ANY


class TimeKind(Enum):
    ABSOLUTE = "absolute"  # 0.100: since the script started
    RELATIVE = "relative"  # +0.1: since the previous event
    ANY = "any"  # *: whenever it comes (outbound packets only)
    ABSOLUTE_RANGE = "absolute range"  # 0.1~0.2 (outbound packets only)
    RELATIVE_RANGE = "relative range"  # +0~+0.1 (outbound packets only)


@dataclass(frozen=True)
class Time:
    """When an event happens. ``start``/``end`` in microseconds; ``end`` only for ranges."""

    kind: TimeKind
    start: int | None = None
    end: int | None = None

    @property
    def relative(self) -> bool:
        return self.kind in (TimeKind.RELATIVE, TimeKind.RELATIVE_RANGE)


class Direction(Enum):
    INBOUND = "<"  # injected into the stack under test
    OUTBOUND = ">"  # expected from the stack under test


@dataclass(frozen=True)
class IpInfo:
    """The bracketed IP details before a packet: ``[ect0]``, ``(tos 0x20)``, ``(ttl 3)``, ``(hlim 6)``."""

    ecn: str | None = None  # noecn, ect0, ect1, ce, ect01
    tos: int | None = None
    ttl: int | None = None
    flow_label: int | None = None
    hop_limit: int | None = None
    traffic_class: int | None = None
    dscp: str | None = None


@dataclass(frozen=True)
class Seq:
    """``start:end(length)``, relative to each side's initial sequence number unless ``absolute`` (``!``).

    ``...(length)`` (NPLab) leaves the sequence number unchecked: ``start`` and ``end`` are None.
    """

    start: int | None
    end: int | None
    length: int
    absolute: bool = False


# -- TCP options (RFC 9293 3.2, RFC 7323, RFC 2018, RFC 7413) -------------------------


@dataclass(frozen=True)
class Nop:
    pass


@dataclass(frozen=True)
class Eol:
    pass


@dataclass(frozen=True)
class Mss:
    value: int


@dataclass(frozen=True)
class WScale:
    shift: int


@dataclass(frozen=True)
class SackOk:
    pass


@dataclass(frozen=True)
class Sack:
    blocks: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Timestamp:
    """``TS val V ecr E``: ``val`` is ANY for NPLab's ``TS val ...``; ``ecr_absolute`` for ``ecr N!``."""

    val: int | Wildcard
    ecr: int
    ecr_absolute: bool = False


@dataclass(frozen=True)
class Md5:
    """``md5 <hex>`` or NPLab's ``md5 valid`` (key=None: the signature must verify)."""

    key: str | None


@dataclass(frozen=True)
class FastOpen:
    """``FO [cookie]``, or ``FOEXP [cookie]`` for the experimental option number (RFC 7413)."""

    cookie: str
    experimental: bool = False


@dataclass(frozen=True)
class GenericOption:
    """NPLab's ``gen-N data``: option kind N with raw hex data."""

    kind: int
    data: str


@dataclass(frozen=True)
class RawOptions:
    """NPLab's ``<hexbytes>``: the option bytes spelled out."""

    hex: str


TcpOption = Nop | Eol | Mss | WScale | SackOk | Sack | Timestamp | Md5 | FastOpen | GenericOption | RawOptions


# -- Packets --------------------------------------------------------------------------


@dataclass(frozen=True)
class UdpEncap:
    """NPLab's ``/udp(src > dst)`` after a TCP packet: TCP over UDP (RFC 6951 style) encapsulation."""

    src_port: int
    dst_port: int


@dataclass(frozen=True)
class TcpPacket:
    """``< S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK>``.

    ``flags`` is the letter string as written (``S.``, ``FP.``, ``""`` for ``-``),
    ``options`` is the option list in wire order, or ANY for ``<...>``; no list
    written means no options. ``ack``/``win``/``urg`` are None when not written.
    """

    direction: Direction
    flags: str
    seq: Seq
    ack: int | None = None
    win: int | None = None
    urg: int | None = None
    options: tuple[TcpOption, ...] | Wildcard = ()
    ip: IpInfo | None = None
    src_port: int | None = None
    dst_port: int | None = None
    encap: UdpEncap | None = None

    def has(self, flag: str) -> bool:
        """``has(".")`` for ACK, ``has("S")`` for SYN, and so on (tcpdump's letters)."""
        return flag in self.flags


@dataclass(frozen=True)
class UdpPacket:
    """``< udp (100)``, or ``< udp 5000>6000 (100)``: a datagram with that many payload bytes."""

    direction: Direction
    length: int
    ip: IpInfo | None = None
    src_port: int | None = None
    dst_port: int | None = None


@dataclass(frozen=True)
class IcmpQuote:
    """The packet an ICMP error quotes, in brackets after it.

    ``[1:1(0)]`` is a TCP segment (``seq``), ``[udp (N)]`` a datagram, ``[raw (N)]``
    raw IP, ``[sctp (tag)]`` an SCTP packet (``length`` holds the tag then).
    """

    protocol: str  # tcp, udp, udplite, raw, sctp
    seq: Seq | None = None
    length: int | None = None
    coverage: int | None = None  # udplite only
    encap: UdpEncap | None = None


@dataclass(frozen=True)
class IcmpPacket:
    """``< icmp unreachable port_unreachable [0:0(0)]``, ``< icmp unreachable frag_needed mtu 1300 [...]``.

    ``type``/``code`` are the names as written; ``type_value``/``code_value`` the
    numbers they stand for in the script's IP version (ICMPv6's for ipv6), as
    packetdrill's tables give them; ``type_N``/``code_N`` are numbers spelled out.
    """

    direction: Direction
    type: str
    code: str | None = None
    mtu: int | None = None
    echo_id: int | None = None
    quote: IcmpQuote | None = None
    ip: IpInfo | None = None
    type_value: int = 0
    code_value: int = 0


Packet = TcpPacket | UdpPacket | IcmpPacket


# -- System calls ---------------------------------------------------------------------


@dataclass(frozen=True)
class Int:
    """A number; ``hex`` records that it was written ``0x..``."""

    value: int
    hex: bool = False


@dataclass(frozen=True)
class Word:
    """A bare name: a constant (``AF_INET``, ``SO_RCVBUF``, ``ECONNREFUSED``) or ``NULL``."""

    name: str


@dataclass(frozen=True)
class Str:
    """A quoted string; ``prefix`` for ``"abc"...`` (only the start is checked)."""

    value: str
    prefix: bool = False


@dataclass(frozen=True)
class BitOr:
    """``O_RDWR | O_NONBLOCK``."""

    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class Array:
    """``[65536]``: a value passed by reference, or a list of them."""

    items: tuple["Expr", ...]


@dataclass(frozen=True)
class Struct:
    """``{...}``: a struct, its members usually ``Field``s (``{l_onoff=1, l_linger=0}``)."""

    items: tuple["Expr", ...]

    def get(self, name: str) -> "Expr | None":
        for item in self.items:
            if isinstance(item, Field) and isinstance(item.target, Word) and item.target.name == name:
                return item.value
        return None


@dataclass(frozen=True)
class Field:
    """``name=value`` inside a struct; ``target`` is a ``Call`` for NPLab's ``msg_iov(1)=[...]``."""

    target: "Expr"
    value: "Expr"


@dataclass(frozen=True)
class Call:
    """``htons(8080)``, ``inet_addr("192.0.2.1")``, ``sizeof(...)``."""

    name: str
    args: tuple["Expr", ...]


Expr = Int | Word | Str | Wildcard | BitOr | Array | Struct | Field | Call


@dataclass(frozen=True)
class Syscall:
    """``connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)``.

    ``errno`` is the symbol after the result and ``note`` the text in
    parentheses (``strerror`` for an errno, or a remark such as ``flags O_RDWR``).
    ``end`` is set for a call that blocks (``0.0...0.1 read(...)``): the time it
    returns, in microseconds on the same footing as the event's start (for a
    relative start, relative to the same earlier event).
    """

    name: str
    args: tuple[Expr, ...]
    result: Expr
    errno: str | None = None
    note: str | None = None
    end: int | None = None


@dataclass(frozen=True)
class Command:
    """A backtick shell line, kept as written (it may span lines); ``line`` is where it opens."""

    text: str
    line: int


@dataclass(frozen=True)
class Code:
    """``%{ python }%``: a block packetdrill hands to Python with TCP_INFO fields in scope."""

    text: str


Action = TcpPacket | UdpPacket | IcmpPacket | Syscall | Command | Code


@dataclass(frozen=True)
class Event:
    line: int
    time: Time
    action: Action


# -- The script -----------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """A ``--name[=value]`` line at the top of a script, as written."""

    name: str
    value: str | None
    line: int


@dataclass(frozen=True)
class Config:
    """The harness settings a script runs under: its options over packetdrill's defaults.

    The addresses are the Google harness's (packetdrill itself picks a random
    local address in 192.168.0.0/16); ports are packetdrill's defaults. Options
    with no field here are kept in ``extra`` as written.
    """

    ip_version: str = "ipv4"
    local_ip: str = "192.168.0.1"
    remote_ip: str = "192.0.2.1"
    tolerance_usecs: int = 4000
    tolerance_percent: float | None = None
    mss: int | None = None
    mtu: int | None = None
    bind_port: int = 8080
    connect_port: int = 8080
    extra: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Script:
    """A whole script: options, the harness configuration they give, and the timeline.

    ``init_command`` and ``cleanup_command`` are the untimed backtick lines
    packetdrill allows before the first and after the last event (Google's
    scripts run ``defaults.sh`` this way).
    """

    path: str
    options: tuple[Option, ...]
    config: Config
    events: tuple[Event, ...]
    init_command: Command | None = None
    cleanup_command: Command | None = None
