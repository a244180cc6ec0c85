"""Reading packetdrill scripts: FreeBSD's tcp-testsuite and Google's gtests, into a typed AST.

``parse(text, path)`` and ``load(path)`` return a ``Script`` (packetdrill_ast.py)
or raise ``PacketdrillError`` whose text is ``path:line: message``; nothing is
run here. The grammar is packetdrill's (google/packetdrill parser.y, with the
NPLab additions FreeBSD's suite relies on: ``#ifdef``, ``md5 valid``,
``/udp(a > b)`` encapsulation), read by a recursive-descent parser over the
tokens of packetdrill_lexer.py. Like packetdrill's, the grammar is not
line-based: an event may run over several lines, and its line is where its
time stands.

``python -m simstack.engine.scenario.packetdrill --census DIR...`` counts
what a collection of scripts uses (packetdrill_census.py).
"""

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from decimal import ROUND_DOWN, Decimal
from ipaddress import ip_interface
from pathlib import Path
from typing import Any

from .packetdrill_ast import (
    ANY,
    Action,
    Array,
    BitOr,
    Call,
    Code,
    Command,
    Config,
    Direction,
    Eol,
    Event,
    Expr,
    FastOpen,
    Field,
    GenericOption,
    IcmpPacket,
    IcmpQuote,
    Int,
    IpInfo,
    Md5,
    Mss,
    Nop,
    Option,
    RawOptions,
    Sack,
    SackOk,
    Script,
    Seq,
    Str,
    Struct,
    Syscall,
    TcpOption,
    TcpPacket,
    Time,
    TimeKind,
    Timestamp,
    UdpEncap,
    UdpPacket,
    Wildcard,
    Word,
    WScale,
)
from .packetdrill_lexer import Defines, PacketdrillError, Token, tokenize

__all__ = ["DEFAULT_DEFINES", "PacketdrillError", "load", "main", "parse"]

# The suites are meant to run with STANDARD defined and no OS name (FreeBSD's README).
DEFAULT_DEFINES = frozenset({"STANDARD"})

U8, U16, U32 = 0xFF, 0xFFFF, 0xFFFFFFFF
TCP_FLAG_LETTERS = ".FSRPEWAU01234567"  # tcpdump's letters, U urgent, E/W ECE/CWR, A AE; digits AccECN's ACE
IP_ECN = ("noecn", "ect0", "ect1", "ce", "ect01")
ENCAPSULATIONS = ("ipv4", "ipv6", "gre", "GREv0", "mpls")
# Options that need a value, and how it reads; the rest are kept as written.
_INT_OPTIONS = ("tolerance_usecs", "mss", "mtu", "bind_port", "connect_port")
# Every option either packetdrill knows (google's and NPLab's config.c), by whether it takes a value.
OPTIONS_WITH_VALUE = frozenset(
    "ip_version bind_port code_command code_format code_sockopt connect_port remote_ip local_ip local_linklocal_ip"  # noqa: SIM905
    " gateway_ip gateway_linklocal_ip netmask_ip speed mss mtu init_scripts tolerance_usecs tolerance_percent"
    " wire_server_ip wire_server_at wire_server_port wire_client_dev wire_server_dev so_filename so_flags"
    " tcp_ts_tick_usecs non_fatal psp_udp_port define tcp_md5_secret udp_encapsulation tun_dev".split()
)
OPTIONS_WITHOUT_VALUE = frozenset(
    "wire_client wire_server tcp_ts_ecr_scaled strict_segments dry_run is_anyip send_omit_free debug verbose"  # noqa: SIM905
    " persistent_tun_dev no_cleanup".split()
)
IP_VERSIONS = ("ipv4", "ipv6", "ipv4-mapped-ipv6")
_DIGITS = re.compile(r"[0-9]+")
_ERRNO = re.compile(r"E[A-Z0-9]+")  # EINPROGRESS; a word that is not one starts a line that lacks its time
MAX_NESTING = 64  # expressions inside expressions: far beyond any script, well short of Python's recursion limit
MAX_TCP_OPTION_BYTES = 40  # RFC 9293 3.1: data offset counts 4-byte words up to 60, 20 for the header

# ICMP names as packetdrill's icmp_packet.c spells them: type -> (number, {code -> number}).
ICMPV4_TYPES: dict[str, tuple[int, dict[str, int]]] = {
    "echo_reply": (0, {}),
    "unreachable": (  # RFC 792, RFC 1122 3.2.2.1, RFC 1812 5.2.7.1
        3,
        {
            name: code
            for code, name in enumerate(
                (
                    "net_unreachable",
                    "host_unreachable",
                    "protocol_unreachable",
                    "port_unreachable",
                    "frag_needed",
                    "source_route_failed",
                    "net_unknown",
                    "host_unknown",
                    "source_host_isolated",
                    "net_prohibited",
                    "host_prohibited",
                    "net_unreachable_for_tos",
                    "host_unreachable_for_tos",
                    "packet_filtered",
                    "precedence_violation",
                    "precedence_cutoff",
                )
            )
        },
    ),
    "source_quench": (4, {}),
    "redirect": (5, {}),
    "echo_request": (8, {}),
    "time_exceeded": (11, {"ttl_exceeded_in_transit": 0, "frag_reass_exceeded": 1}),
    "parameter_problem": (12, {}),
    "timestamp_request": (13, {}),
    "timestamp_reply": (14, {}),
    "information_request": (15, {}),
    "information_reply": (16, {}),
    "address_mask_request": (17, {}),
    "address_mask_reply": (18, {}),
}
ICMPV6_TYPES: dict[str, tuple[int, dict[str, int]]] = {  # RFC 4443
    "unreachable": (
        1,
        {"no_route": 0, "admin_prohibited": 1, "not_neighbour": 2, "address_unreachable": 3, "port_unreachable": 4},
    ),
    "packet_too_big": (2, {}),
    "time_exceeded": (3, {"exceeded_hop_limit": 0, "exceeded_frag_time": 1}),
    "parameter_problem": (4, {"header_field": 0, "unknown_next_header": 1, "unknown_option": 2}),
    "echo_request": (128, {}),
    "echo_reply": (129, {}),
    "router_advertisement": (134, {}),
}


def parse(text: str, path: str = "<script>", defines: Defines = DEFAULT_DEFINES) -> Script:
    return _Parser(tokenize(text, path, defines), path, text).script()


def load(path: str | Path, defines: Defines = DEFAULT_DEFINES) -> Script:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PacketdrillError(str(path), 0, f"cannot read: {e}") from None
    return parse(text, str(path), defines)


def _numbered(prefix: str, name: str) -> int | None:
    """tcpdump's ``type_3``/``code_4`` for a number with no name."""
    if name.startswith(prefix) and _DIGITS.fullmatch(name[len(prefix) :]) and int(name[len(prefix) :]) <= U8:
        return int(name[len(prefix) :])
    return None


def _option_bytes(option: TcpOption) -> int:
    """How many bytes an option takes on the wire (RFC 9293 3.2, RFC 7323, RFC 2018, RFC 2385, RFC 7413)."""
    if isinstance(option, Nop | Eol):
        return 1
    if isinstance(option, SackOk):
        return 2
    if isinstance(option, WScale):
        return 3
    if isinstance(option, Mss):
        return 4
    if isinstance(option, Timestamp):
        return 10
    if isinstance(option, Sack):
        return 2 + 8 * len(option.blocks)
    if isinstance(option, Md5):
        return 18 if option.key is None else 2 + len(option.key) // 2
    if isinstance(option, FastOpen):
        return (4 if option.experimental else 2) + len(option.cookie) // 2
    if isinstance(option, GenericOption):
        return 2 + len(option.data) // 2
    return len(option.hex) // 2


def _is_hex(s: str) -> bool:
    return len(s) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in s)


def _describe(tok: Token) -> str:
    if tok.kind == "eof":
        return "end of file"
    if tok.kind == "command":
        return "a `shell command`"
    if tok.kind == "code":
        return "a %{ code }% block"
    if tok.kind == "option":
        return f"option --{tok.text}"
    if tok.kind == "string":
        return f'"{tok.text}"'
    return repr(tok.text)


class _Parser:
    def __init__(self, tokens: list[Token], path: str, text: str) -> None:
        self.toks = tokens
        self.i = 0
        self.path = path
        self.text = text
        self.ip_version = "ipv4"
        self.depth = 0

    # -- helpers ------------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def next(self) -> Token:
        tok = self.toks[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def error(self, tok: Token, message: str) -> PacketdrillError:
        return PacketdrillError(self.path, tok.line, message)

    def expected(self, what: str, tok: Token | None = None) -> PacketdrillError:
        tok = tok or self.peek()
        return self.error(tok, f"expected {what}, found {_describe(tok)}")

    def at(self, kind: str, text: str | None = None) -> bool:
        tok = self.peek()
        return tok.kind == kind and (text is None or tok.text == text)

    def at_word(self, *words: str) -> bool:
        tok = self.peek()
        return tok.kind == "word" and tok.text in words

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        return self.next() if self.at(kind, text) else None

    def expect(self, kind: str, what: str | None = None) -> Token:
        if not self.at(kind):
            raise self.expected(what or repr(kind))
        return self.next()

    def expect_word(self, word: str) -> Token:
        if not self.at_word(word):
            raise self.expected(repr(word))
        return self.next()

    def integer(self, what: str, limit: int | None = None, signed: bool = False) -> int:
        tok = self.peek()
        if tok.kind == "int":
            value = int(tok.text)
        elif tok.kind == "hex":
            value = int(tok.text, 16)
        else:
            raise self.expected(what)
        self.next()
        if (value < 0 and not signed) or (limit is not None and value > limit):
            raise self.error(tok, f"{what} out of range: {tok.text}")
        return value

    # -- the script ---------------------------------------------------------------------

    def script(self) -> Script:
        options: list[Option] = []
        while self.at("option"):
            tok = self.next()
            options.append(Option(tok.text, tok.value, tok.line))
        config = self.config(options)
        self.ip_version = config.ip_version
        init = None
        if self.at("command"):
            tok = self.next()
            init = Command(tok.text, tok.line)
        events: list[Event] = []
        cleanup = None
        while not self.at("eof"):
            tok = self.peek()
            if tok.kind == "command" and self.peek(1).kind == "eof" and events:
                self.next()
                cleanup = Command(tok.text, tok.line)
                break
            if tok.kind == "option":
                raise self.error(tok, f"option --{tok.text} after the first event: options come first")
            events.append(self.event())
        if not events:
            raise self.error(self.peek(), "no events in script")
        return Script(self.path, tuple(options), config, tuple(events), init, cleanup)

    def config(self, options: list[Option]) -> Config:
        """Options over the harness defaults; the ones with no Config field go to ``extra`` as written."""
        values: dict[str, Any] = {}
        extra: dict[str, str | None] = {}
        for opt in options:
            name, value = opt.name, opt.value

            def bad(why: str, line: int = opt.line) -> PacketdrillError:
                return PacketdrillError(self.path, line, why)

            if name in OPTIONS_WITHOUT_VALUE:
                if value is not None:
                    raise bad(f"--{name} takes no value")
                extra[name] = None
            elif name not in OPTIONS_WITH_VALUE:
                raise bad(f"unknown option --{name}")
            elif not value:
                raise bad(f"--{name} needs a value")
            elif name in _INT_OPTIONS:
                if not _DIGITS.fullmatch(value) or int(value) <= 0 or (name.endswith("_port") and int(value) > U16):
                    raise bad(f"bad --{name}: {value}")
                values[name] = int(value)
            elif name == "tolerance_percent":
                try:
                    values[name] = float(value)
                except ValueError:
                    raise bad(f"bad --{name}: {value}") from None
            elif name == "ip_version":
                if value not in IP_VERSIONS:
                    raise bad(f"bad --ip_version: {value} (one of {', '.join(IP_VERSIONS)})")
                values[name] = value
            elif name in ("local_ip", "remote_ip"):
                try:
                    ip_interface(value)
                except ValueError:
                    raise bad(f"bad --{name}: {value}") from None
                values[name] = value
            else:
                extra[name] = value
        return Config(extra=extra, **values)

    # -- events -------------------------------------------------------------------------

    def event(self) -> Event:
        first = self.peek()
        time = self.time()
        action = self.action()
        outbound_packet = isinstance(action, TcpPacket | UdpPacket | IcmpPacket) and action.direction is Direction.OUTBOUND
        if time.kind is TimeKind.ANY and not outbound_packet:
            raise self.error(first, "event time * can only be used with outbound packets")
        if time.kind in (TimeKind.ABSOLUTE_RANGE, TimeKind.RELATIVE_RANGE) and not outbound_packet:
            raise self.error(first, "a time range can only be used with outbound packets")
        return Event(first.line, time, action)

    def seconds(self) -> int:
        """A time in seconds, as microseconds (exactly: 0.57 is 570000, not 569999)."""
        tok = self.peek()
        if tok.kind not in ("int", "float"):
            raise self.expected("a time")
        self.next()
        if tok.text.startswith("-"):
            raise self.error(tok, f"negative time: {tok.text}")
        return int((Decimal(tok.text) * 1_000_000).to_integral_value(ROUND_DOWN))

    def time(self) -> Time:
        tok = self.peek()
        if tok.kind == "*":
            self.next()
            return Time(TimeKind.ANY)
        if tok.kind == "+":
            self.next()
            start = self.seconds()
            if not self.accept("~"):
                return Time(TimeKind.RELATIVE, start)
            if not self.accept("+"):
                raise self.expected("'+' (a relative time range is +start~+end)")
            return self.time_range(TimeKind.RELATIVE_RANGE, start, tok)
        if tok.kind not in ("int", "float"):
            if tok.kind in ("<", ">") or tok.kind in ("command", "code") or self.peek(1).kind == "(":
                raise self.error(tok, f"missing time before {_describe(tok)}: an event starts with a time (0.1, +0.1 or *)")
            raise self.expected("an event time (0.1, +0.1, 0.1~0.2 or *)")
        start = self.seconds()
        if not self.accept("~"):
            return Time(TimeKind.ABSOLUTE, start)
        if self.at("+"):
            raise self.expected("an absolute time (an absolute time range is start~end)")
        return self.time_range(TimeKind.ABSOLUTE_RANGE, start, tok)

    def time_range(self, kind: TimeKind, start: int, tok: Token) -> Time:
        end = self.seconds()
        if end < start:
            raise self.error(tok, "time range is backwards")
        return Time(kind, start, end)

    def action(self) -> Action:
        tok = self.peek()
        if tok.kind in ("<", ">"):
            return self.packet()
        if tok.kind == "command":
            self.next()
            return Command(tok.text, tok.line)
        if tok.kind == "code":
            self.next()
            return Code(tok.text)
        if tok.kind == "ellipsis":
            self.next()
            end = self.seconds()
            return self.syscall(end)
        if tok.kind == "word" and self.peek(1).kind == "(":
            return self.syscall(None)
        raise self.expected("a packet (< or >), a system call, a `shell command` or a %{ code }% block")

    # -- packets ------------------------------------------------------------------------

    def packet(self) -> TcpPacket | UdpPacket | IcmpPacket:
        direction = Direction(self.next().kind)
        if self.at_word(*ENCAPSULATIONS):
            raise self.error(self.peek(), f"unsupported packet encapsulation {_describe(self.peek())}")
        ip = self.ip_info(direction)
        if self.at_word("udp"):
            self.next()
            src, dst = self.ports()
            self.expect("(", "'(' and the UDP payload length")
            length = self.integer("UDP payload size", U16)
            self.expect(")")
            return UdpPacket(direction, length, ip, src, dst)
        if self.at_word("icmp"):
            self.next()
            return self.icmp(direction, ip)
        if self.at_word("sctp", "udplite"):
            raise self.error(self.peek(), f"unsupported packet type {_describe(self.peek())}")
        src, dst = self.ports()
        flags = self.flags()
        seq = self.seq()
        ack = win = urg = None
        if self.accept("word", "ack"):
            ack = self.integer("TCP ack sequence number", U32)
        if self.accept("word", "win"):
            win = self.integer("TCP window value", U16)
        if self.accept("word", "urg"):
            urg = self.integer("urg_ptr value", U16)
        options: tuple[TcpOption, ...] | Wildcard = ()
        if self.at("<"):
            options = self.tcp_options(direction)
        if self.at_word("ack", "win", "urg") or self.at("<"):
            shape = "a TCP segment is flags start:end(length) [ack N] [win N] [urg N] [<options>]"
            raise self.error(self.peek(), f"{_describe(self.peek())} out of place: {shape}")
        return TcpPacket(direction, flags, seq, ack, win, urg, options, ip, src, dst, self.encap())

    def ip_info(self, direction: Direction) -> IpInfo | None:
        close = {"(": ")", "[": "]"}.get(self.peek().kind)
        if close is None:
            return None
        self.next()
        values: dict[str, object] = {}
        while True:
            tok = self.peek()
            if tok.kind != "word":
                raise self.expected("an IP field (ect0, ect1, ce, noecn, tos, ttl, flowlabel, ...)")
            self.next()
            if tok.text in IP_ECN:
                if tok.text == "ect01" and direction is Direction.INBOUND:
                    raise self.error(tok, "[ect01] can only be used with outbound packets")
                values["ecn"] = tok.text
            elif tok.text == "tos":
                values["tos"] = self.integer("tos", U8)
            elif tok.text == "class":
                values["traffic_class"] = self.integer("traffic class", U8)
            elif tok.text == "ttl":
                values["ttl"] = self.integer("ttl", U8)
            elif tok.text == "hlim":
                values["hop_limit"] = self.integer("hlim", U8)
            elif tok.text == "flowlabel":
                values["flow_label"] = self.integer("flowlabel", 0xFFFFF)
            elif tok.text == "dscp":
                values["dscp"] = self.next().text
            else:
                raise self.error(tok, f"unknown IP field {_describe(tok)}")
            if not self.accept(","):
                break
        self.expect(close)
        return IpInfo(**values)  # type: ignore[arg-type]

    def ports(self) -> tuple[int | None, int | None]:
        if self.at("int") and self.peek(1).kind == ">":
            src = self.integer("source port", U16)
            self.next()
            return src, self.integer("destination port", U16)
        return None, None

    def flags(self) -> str:
        start = self.peek()
        if self.accept("-"):
            return ""
        parts = []
        if self.at("word"):
            parts.append(self.next().text)
        if self.at("float") and not self.peek().text.startswith("-"):
            parts.append(self.next().text)  # AccECN's ACE counter after the dot: S.5, .3
        elif parts:
            if self.at("."):
                parts.append(self.next().text)
            if self.at("word"):
                parts.append(self.next().text)  # NPLab: more letters, after the dot or not
        elif self.at("."):
            parts.append(self.next().text)
        if not parts:
            raise self.expected("TCP flags (S, S., ., P., F., R, R., -, ...) or udp/icmp")
        flags = "".join(parts)
        for letter in flags:
            if letter not in TCP_FLAG_LETTERS:
                raise self.error(start, f"invalid TCP flag {letter!r} in {flags!r}")
        return flags

    def seq(self) -> Seq:
        if self.accept("ellipsis"):
            self.expect("(", "'(' and the payload length")
            length = self.integer("TCP payload size", U16)
            self.expect(")")
            return Seq(None, None, length)
        tok = self.peek()
        if not (tok.kind == "int" and self.peek(1).kind == ":"):
            raise self.expected("a sequence range start:end(length)")
        start = self.integer("TCP start sequence number", U32)
        self.next()
        end = self.integer("TCP end sequence number", U32)
        self.expect("(", "'(' and the payload length")
        length = self.integer("TCP payload size", U16)
        self.expect(")")
        if end != start + length:
            raise self.error(
                tok, f"inconsistent TCP sequence numbers and payload size: {start}:{end}({length}), {start} + {length} != {end}"
            )
        return Seq(start, end, length, absolute=self.accept("!") is not None)

    def encap(self) -> UdpEncap | None:
        if not (self.at("/") and self.peek(1).kind == "word" and self.peek(1).text == "udp"):
            return None
        self.next()
        self.next()
        self.expect("(", "'(' and the UDP ports")
        src = self.integer("UDP source port", U16)
        self.expect(">")
        dst = self.integer("UDP destination port", U16)
        self.expect(")")
        return UdpEncap(src, dst)

    def tcp_options(self, direction: Direction) -> tuple[TcpOption, ...] | Wildcard:
        lt = self.next()
        if self.accept("ellipsis"):
            self.expect(">", "'>' to close <...>")
            if direction is Direction.INBOUND:
                raise self.error(lt, "<...> for TCP options can only be used with outbound packets")
            return ANY
        options: list[TcpOption] = []
        while True:
            options.append(self.tcp_option())
            if self.accept(">"):
                break
            if not self.accept(","):
                raise self.expected("',' or '>' in the TCP option list")
        size = sum(map(_option_bytes, options))
        if size > MAX_TCP_OPTION_BYTES:
            raise self.error(lt, f"TCP option list too long: {size} bytes, at most {MAX_TCP_OPTION_BYTES}")
        if size % 4:  # RFC 9293 3.1: the header ends on a 32-bit boundary; scripts pad with nop/eol themselves
            raise self.error(lt, f"TCP options are not padded to a multiple of 4 bytes: {size % 4} excess bytes")
        return tuple(options)

    def tcp_option(self) -> TcpOption:
        tok = self.peek()
        if tok.kind == "int" and self.peek(1).kind == ">" and _is_hex(tok.text):
            self.next()
            return RawOptions(tok.text)
        if tok.kind != "word":
            raise self.expected("a TCP option (nop, eol, mss, wscale, sackOK, sack, TS, ...)")
        self.next()
        name = tok.text
        if name == "nop":
            return Nop()
        if name == "eol":
            return Eol()
        if name == "mss":
            return Mss(self.integer("mss value", U16))
        if name == "wscale":
            return WScale(self.integer("window scale shift count", U8))
        if name == "sackOK":
            return SackOk()
        if name == "sack":
            blocks = []
            while self.at("int") and self.peek(1).kind == ":":
                left = self.integer("TCP SACK left sequence number", U32)
                self.next()
                blocks.append((left, self.integer("TCP SACK right sequence number", U32)))
            if not blocks:
                raise self.expected("SACK blocks left:right")
            return Sack(tuple(blocks))
        if name == "TS":
            self.expect_word("val")
            val: int | Wildcard = ANY if self.accept("ellipsis") else self.integer("ts val", U32)
            self.expect_word("ecr")
            ecr = self.integer("ecr val", U32)
            return Timestamp(val, ecr, ecr_absolute=self.accept("!") is not None)
        if name == "md5":
            if self.accept("word", "valid"):
                return Md5(None)
            digest = self.blob("an MD5 digest")
            if not _is_hex(digest) or len(digest) > 32:
                raise self.error(tok, f"TCP MD5 digest {digest!r} is not a hex string of at most 16 bytes")
            return Md5(digest)
        if name in ("FO", "FOEXP"):
            cookie = "" if self.at(",") or self.at(">") else self.blob("a Fast Open cookie")
            if not _is_hex(cookie):
                raise self.error(tok, f"TCP fast open cookie {cookie!r} is not a valid hex string")
            return FastOpen(cookie, experimental=name == "FOEXP")
        if name.startswith("gen-"):
            kind = int(name[4:])
            if kind > U8:
                raise self.error(tok, f"TCP option kind out of range: {kind}")
            data = "" if self.at(",") or self.at(">") else self.blob("option data")
            if not _is_hex(data):
                raise self.error(tok, f"TCP option data {data!r} is not a valid hex string")
            return GenericOption(kind, data)
        if self.at(">") and _is_hex(name):
            return RawOptions(name)
        raise self.error(tok, f"unknown TCP option {_describe(tok)}")

    def blob(self, what: str) -> str:
        if not self.at("word") and not self.at("int"):
            raise self.expected(what)
        return self.next().text

    def icmp(self, direction: Direction, ip: IpInfo | None) -> IcmpPacket:
        if not self.at("word"):
            raise self.expected("an ICMP type (unreachable, time_exceeded, ...)")
        type_tok = self.next()
        code_tok = None
        if self.at("word") and not self.at_word("mtu", "id"):
            code_tok = self.next()
        type_value, code_value = self.icmp_numbers(type_tok, code_tok)
        mtu = None
        if self.accept("word", "mtu"):
            mtu_tok = self.peek()
            mtu = self.integer("ICMP MTU", U32 if self.ip_version == "ipv6" else U16)
            if self.ip_version != "ipv6" and (type_value, code_value) != (3, 4):
                raise self.error(mtu_tok, "ICMPv4 MTU is only valid for unreachable frag_needed")
        echo_id = self.integer("ICMP echo id", U16) if self.accept("word", "id") else None
        quote = None
        if self.accept("["):
            quote = self.icmp_quote()
            self.expect("]", "']' to close the quoted packet")
        code = code_tok.text if code_tok else None
        return IcmpPacket(direction, type_tok.text, code, mtu, echo_id, quote, ip, type_value, code_value)

    def icmp_numbers(self, type_tok: Token, code_tok: Token | None) -> tuple[int, int]:
        table = ICMPV6_TYPES if self.ip_version == "ipv6" else ICMPV4_TYPES
        version = "ICMPv6" if self.ip_version == "ipv6" else "ICMPv4"
        codes: dict[str, int] = {}
        if type_tok.text in table:
            type_value, codes = table[type_tok.text]
        elif (n := _numbered("type_", type_tok.text)) is not None:
            type_value = n
        else:
            raise self.error(type_tok, f"bad ICMP type {type_tok.text!r} for {version}")
        if code_tok is None:
            return type_value, 0
        if code_tok.text in codes:
            return type_value, codes[code_tok.text]
        if (n := _numbered("code_", code_tok.text)) is not None:
            return type_value, n
        raise self.error(code_tok, f"bad ICMP code {code_tok.text!r} for {version} {type_tok.text}")

    def icmp_quote(self) -> IcmpQuote:
        for protocol in ("udp", "raw", "sctp"):
            if self.accept("word", protocol):
                self.expect("(")
                length = self.integer(f"{protocol} length", U32)
                self.expect(")")
                return IcmpQuote(protocol, length=length, encap=self.encap() if protocol == "sctp" else None)
        if self.accept("word", "udplite"):
            self.expect("(")
            length = self.integer("udplite length", U16)
            self.expect(",")
            coverage = self.integer("udplite checksum coverage", U16)
            self.expect(")")
            return IcmpQuote("udplite", length=length, coverage=coverage)
        return IcmpQuote("tcp", seq=self.seq(), encap=self.encap())

    # -- system calls -------------------------------------------------------------------

    def syscall(self, end: int | None) -> Syscall:
        name = self.expect("word", "a system call name")
        self.expect("(", f"'(' after {name.text}")
        args = self.expr_list(")")
        if not self.at("="):
            raise self.expected(f"'=' and the result of {name.text}()")
        self.next()
        result = self.expr(result=True)
        errno = note = None
        if self.at("word") and _ERRNO.fullmatch(self.peek().text):
            errno = self.next().text
        if self.at("("):
            note = self.note()
        return Syscall(name.text, args, result, errno, note, end)

    def note(self) -> str:
        """``(Operation now in progress)``: kept as written, apostrophes and all."""
        open_ = self.next()
        depth = 1
        while depth:
            tok = self.next()
            if tok.kind == "eof":
                raise self.error(open_, "unclosed '(' in the note after a result")
            depth += {"(": 1, ")": -1}.get(tok.kind, 0)
        return " ".join(self.text[open_.end : tok.start].split())

    def expr_list(self, close: str) -> tuple[Expr, ...]:
        items: list[Expr] = []
        if self.accept(close):
            return ()
        while True:
            items.append(self.expr())
            if self.accept(close):
                return tuple(items)
            if not self.accept(","):
                raise self.expected(f"',' or {close!r}")

    def expr(self, result: bool = False) -> Expr:
        """An argument, or with ``result`` a syscall's result: there ``= EINPROGRESS (...)`` is a word and a note, not a call."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(self.peek(), f"expression nested more than {MAX_NESTING} deep")
        left = self.primary(result)
        while self.accept("|"):
            left = BitOr(left, self.primary(result))
        self.depth -= 1
        return left

    def primary(self, result: bool = False) -> Expr:
        tok = self.peek()
        if tok.kind == "ellipsis":
            self.next()
            return ANY
        if tok.kind == "int":
            self.next()
            return Int(int(tok.text))
        if tok.kind == "hex":
            self.next()
            return Int(int(tok.text, 16), hex=True)
        if tok.kind == "string":
            value = ""
            while self.at("string"):  # "abc" "def" is one string, as in C
                value += self.next().text
            return Str(value, prefix=self.accept("ellipsis") is not None)
        if tok.kind == "[":
            self.next()
            return Array(self.expr_list("]"))
        if tok.kind == "{":
            self.next()
            return Struct(self.expr_list("}"))
        if tok.kind == "word":
            self.next()
            target: Expr = Word(tok.text)
            if result:
                return target
            if self.accept("("):
                target = Call(tok.text, self.expr_list(")"))
            if self.accept("="):
                return Field(target, self.expr())
            return target
        raise self.expected('an expression (a number, a name, "string", [...], {...} or ...)')


# -- the command line -----------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    from .packetdrill_census import census

    ap = argparse.ArgumentParser(prog="python -m simstack.engine.scenario.packetdrill", description=__doc__.split("\n")[0])
    ap.add_argument("--census", nargs="+", metavar="DIR", required=True, help="folders (or .pkt files) to read and count")
    ap.add_argument(
        "-D", "--define", action="append", default=None, metavar="NAME[=VALUE]", help="names #ifdef sees (default: STANDARD)"
    )
    args = ap.parse_args(argv)
    defines: Defines = DEFAULT_DEFINES
    if args.define is not None:
        defines = {name: value if eq else None for name, eq, value in (d.partition("=") for d in args.define)}
    scripts = []
    unreadable = 0
    for path in _script_paths(args.census):
        try:
            scripts.append(load(path, defines))
        except PacketdrillError as e:
            print(e, file=sys.stderr)
            unreadable += 1
    print(census(scripts).report())
    if unreadable:
        print(f"{unreadable} script(s) could not be read", file=sys.stderr)
    return 2 if unreadable else 0


def _script_paths(roots: Iterable[str]) -> list[Path]:
    paths: list[Path] = []
    for root in roots:
        p = Path(root)
        paths.extend(sorted(p.rglob("*.pkt")) if p.is_dir() else [p])
    return paths


if __name__ == "__main__":
    raise SystemExit(main())
