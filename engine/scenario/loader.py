"""Scenario files: YAML in, checked steps out, every error as ``file:line: message``.

A scenario is a timeline read top to bottom, like a packetdrill script: the
stack's configuration, the hosts around it, then steps that inject frames,
expect frames, drive applications and check counters. See docs/scenarios.md.
"""

import errno
import math
import random
import struct
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from simstack.protocols import ethernet, ipv4
from simstack.protocols.addresses import (
    AddressError,
    check_stack_addresses,
    ip_to_bytes,
    ip_to_str,
    mac_to_bytes,
    parse_interface,
)
from simstack.protocols.arp_cache import ArpConfig
from simstack.protocols.errors import Malformed
from simstack.protocols.fragments import ReassemblyConfig, fragment
from simstack.protocols.interface import Interface, check_interfaces, check_next_hop
from simstack.protocols.routes import parse_route
from simstack.protocols.stack import StackConfig
from simstack.protocols.tcp_cc import CA_STATE_NUMBER
from simstack.protocols.tcp_conn import CHOICES as TCP_CHOICES
from simstack.protocols.tcp_conn import MIN_SND_MSS, TcpConfig
from simstack.protocols.tcp_table import STATES as TCP_STATES

from ..api.services import SERVICES, service_error
from ..wire.capture import read_regular_file
from ..wire.impair import ImpairError, Impairment
from . import quote, repeat
from .droprules import DropRule, DropRuleError, parse_rule
from .fields import IP, Context, Host, SpecError, build_frame, normalize_spec, payload_bytes
from .isn import Isns


class ScenarioError(Exception):
    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")  # no line 0: the file as a whole
        self.file = file
        self.line = line
        self.message = message


class LineDict(dict[str, Any]):
    """A mapping that remembers where it and each of its keys stood."""

    line: int = 0
    key_lines: dict[str, int]


class LineList(list[Any]):
    line: int = 0


class RelativeTime(float):
    """``at: +0.5``: YAML reads the plus sign away, the loader keeps it."""


# libyaml's loader when present (about ten times faster on big files); both keep line marks.
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


MAX_FILE_BYTES = 32 * 1024 * 1024  # the largest scenario file replay reads (docs/scenarios.md)
MAX_INT_DIGITS = 100  # far past any field; Python refuses 4,300, and a long one costs time to convert
MAX_NODES = 10_000_000  # YAML values after aliases are expanded: a few anchors must not expand to billions
MAX_DEPTH = 100  # collections inside collections: a scenario nests four deep; a thousand would overflow the stack


class _Loader(_Base):  # type: ignore[valid-type,misc]
    def construct_document(self, node: yaml.Node) -> Any:
        _check_expansion(node)
        return super().construct_document(node)


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    if len(node.value) > MAX_INT_DIGITS:
        raise yaml.constructor.ConstructorError(problem=f"an integer of {len(node.value)} characters; simstack reads "
                                                        f"at most {MAX_INT_DIGITS}", problem_mark=node.start_mark)
    value: int = loader.construct_yaml_int(node)
    return value


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand it past MAX_NODES values, or into itself, or nested past MAX_DEPTH.

    Everything downstream walks values as trees, so ``&a [*b, *b]`` nested
    thirty deep would cost a billion steps (the "billion laughs"), and a
    value that contains itself would never end. Constructing walks them by
    recursion, which a few hundred brackets would overflow.
    """
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            if size[key] > MAX_NODES:
                raise yaml.constructor.ConstructorError(
                    problem=f"the document expands to more than {MAX_NODES} values through its aliases",
                    problem_mark=node.start_mark)
            continue
        if key in size:
            continue
        if key in on_path:
            raise yaml.constructor.ConstructorError(problem="an alias refers to a value that contains it",
                                                    problem_mark=node.start_mark)
        on_path.add(key)
        if len(on_path) > MAX_DEPTH and isinstance(node, yaml.CollectionNode):  # on_path: its ancestors, and itself
            raise yaml.constructor.ConstructorError(problem=f"values nested more than {MAX_DEPTH} deep",
                                                    problem_mark=node.start_mark)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    _check_node(node, yaml.MappingNode)
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if isinstance(key, bool):  # YAML 1.1 reads on/off/yes/no as booleans; a key is a name, as written ("on:")
            key = str(key_node.value)
        elif not isinstance(key, str):
            key = str(key)
        if key in out:
            raise yaml.MarkedYAMLError(problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark)
        value = loader.construct_object(value_node, deep=True)
        if key in ("at", "until") and isinstance(value_node, yaml.ScalarNode) and value_node.value.startswith("+") \
                and isinstance(value, int | float):
            value = RelativeTime(value)
        out[key] = value
        out.key_lines[key] = line
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    _check_node(node, yaml.SequenceNode)
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    return out


_NODE_NAMES = {yaml.ScalarNode: "scalar", yaml.SequenceNode: "sequence", yaml.MappingNode: "mapping"}


def _check_node(node: yaml.Node, kind: type[yaml.Node]) -> None:
    """``!!map 1``: a tag that asks for a collection on a scalar (or the other way round)."""
    if not isinstance(node, kind):
        raise yaml.constructor.ConstructorError(
            problem=f"expected a {_NODE_NAMES[kind]} node, but found {_NODE_NAMES[type(node)]}", problem_mark=node.start_mark)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)  # type: ignore[arg-type]
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)  # type: ignore[arg-type]
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)  # type: ignore[arg-type]


class _Fallback(Exception):
    """The streaming reader cannot settle this document alone: read it whole (a rare tag, a key after the steps)."""


# Scalar tags whose values are immutable, so one value may stand for every equal scalar of a document.
_SCALAR_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float", "binary", "timestamp", "str"))
_MAX_SHARED_SCALARS = 1 << 16
_Built = tuple[Any, int, str | None]  # a value, its size as _check_expansion counts it, its text when a scalar


class _Reader:
    """A scenario straight from libyaml's events, each step checked as soon as it is read.

    ``yaml.load`` composes the whole document into nodes (a few hundred bytes
    a scalar, with their marks) before constructing any of it: a long
    scenario's node tree took sixty times the file's size. Here the values are
    built from the events with no node tree, equal scalars share one value,
    and each step's mapping is dropped once it became a ``Step``, so memory
    goes to the checked steps alone. The values, their lines and the errors
    are the whole-document reader's (``_Loader``); the steps are checked
    against the keys above them, and a document with a key after its steps,
    or a tag this reader does not build, is read whole instead (``_Fallback``).
    """

    def __init__(self, text: str | bytes, chk: "_Checker") -> None:
        self.parser = _Loader(text)
        self.chk = chk
        self.anchors: dict[str, _Built] = {}
        self.open: dict[str, yaml.Mark] = {}  # anchors of collections still being read: an alias to one is a loop
        self.scalars: dict[tuple[str | None, str, Any], Any] = {}
        self.failure: ScenarioError | None = None  # the first step that failed: the rest is read for YAML errors
        self.depth = 0

    def scenario(self) -> "Scenario":
        p = self.parser
        top: Any = None
        scenario: Scenario | None = None
        try:
            try:
                p.get_event()  # stream start
                if not p.check_event(yaml.StreamEndEvent):
                    start = p.get_event()  # document start
                    event = p.get_event()
                    if type(event) is yaml.MappingStartEvent and event.anchor is None and _plain(event, _MAP):
                        top, scenario = self.top(event)
                    else:
                        top = self.build(event)[0]
                    p.get_event()  # document end
                    if not p.check_event(yaml.StreamEndEvent):
                        raise yaml.composer.ComposerError("expected a single document in the stream", start.start_mark,
                                                          "but found another document", p.get_event().start_mark)
            finally:
                p.dispose()
        except yaml.YAMLError as e:  # the document's own errors come first, as when it is read whole
            raise _yaml_error(self.chk.path, e) from None
        if self.failure is not None:
            raise self.failure
        return scenario if scenario is not None else _checked(self.chk, top)

    def top(self, start: Any) -> tuple[LineDict, "Scenario | None"]:
        """The scenario's mapping, and the scenario when its steps were checked as they came (after the keys above)."""
        p = self.parser
        top = _line_dict(start)
        size = 1
        self.depth = 1
        scenario: Scenario | None = None
        while type(event := p.get_event()) is not yaml.MappingEndEvent:
            key, key_size, _ = self.build(event)
            if isinstance(key, bool) and type(event) is yaml.ScalarEvent:
                key = event.value  # as in mapping(): a key is a name, as written
            elif not isinstance(key, str):
                key = str(key)
            if "steps" in top:
                raise _Fallback  # a key after the steps, which were checked without it
            if key in top:
                raise yaml.MarkedYAMLError(problem=f"duplicate key {key!r}", problem_mark=event.start_mark)
            top.key_lines[key] = event.start_mark.line + 1
            seq = p.peek_event()
            if key == "steps" and type(seq) is yaml.SequenceStartEvent and seq.anchor is None and _plain(seq, _SEQ):
                top[key] = LineList()
                try:
                    scenario = _head(self.chk, top)
                except ScenarioError as e:
                    self.failure = e
                size += key_size + self.steps(p.get_event(), scenario, top)
            else:
                value, value_size, text = self.build(p.get_event())
                top[key] = _relative(key, value, text)
                size += key_size + value_size
            _check_size(size, start)
        return top, scenario

    def steps(self, start: Any, scenario: "Scenario | None", top: LineDict) -> int:
        """Read the steps, checking each into ``scenario`` until one fails (``self.failure``); their size."""
        p = self.parser
        line = start.start_mark.line + 1
        sockets: dict[str, str] = {}
        size = 1
        count = 0
        self.depth = 2  # in the document's mapping, in the steps
        while type(event := p.get_event()) is not yaml.SequenceEndEvent:
            raw, raw_size, _ = self.build(event)
            size += raw_size
            _check_size(size, start)
            count += 1
            if scenario is not None:
                try:
                    _add_step(self.chk, scenario, raw, line, sockets)
                except ScenarioError as e:
                    self.failure, scenario = e, None  # the rest is still read: a YAML error there comes first
        self.depth = 1
        if scenario is not None and self.failure is None:
            if not count:
                self.failure = self.chk.fail(top.key_lines["steps"], "steps must be a non-empty list")
            else:
                _finish(scenario, sockets)
        return size

    def build(self, event: Any) -> _Built:
        """The value that starts with ``event``, as ``_Loader`` constructs it."""
        kind = type(event)
        if kind is yaml.AliasEvent:
            anchor = event.anchor
            if anchor in self.open:
                raise yaml.constructor.ConstructorError(problem="an alias refers to a value that contains it",
                                                        problem_mark=self.open[anchor])
            if anchor not in self.anchors:
                raise yaml.composer.ComposerError(None, None, "found undefined alias", event.start_mark)
            return self.anchors[anchor]
        anchor = event.anchor
        if anchor is not None:
            if anchor in self.anchors or anchor in self.open:
                raise yaml.composer.ComposerError("found duplicate anchor; first occurrence", None,
                                                  "second occurrence", event.start_mark)
            self.open[anchor] = event.start_mark
        built: _Built
        if kind is yaml.ScalarEvent:
            built = self.scalar(event), 1, event.value
        else:
            if not _plain(event, _MAP if kind is yaml.MappingStartEvent else _SEQ):
                raise _Fallback
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise yaml.constructor.ConstructorError(problem=f"values nested more than {MAX_DEPTH} deep",
                                                        problem_mark=event.start_mark)
            built = self.mapping(event) if kind is yaml.MappingStartEvent else self.sequence(event)
            self.depth -= 1
        if anchor is not None:
            del self.open[anchor]
            self.anchors[anchor] = built
        return built

    def scalar(self, event: Any) -> Any:
        key = (event.tag, event.value, event.implicit)
        try:
            return self.scalars[key]
        except KeyError:
            pass
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.parser.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag not in _SCALAR_TAGS:
            raise _Fallback
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        value = self.parser.yaml_constructors[tag](self.parser, node)
        if len(self.scalars) < _MAX_SHARED_SCALARS:
            self.scalars[key] = value
        return value

    def mapping(self, start: Any) -> _Built:
        p = self.parser
        out = _line_dict(start)
        size = 1
        while type(event := p.get_event()) is not yaml.MappingEndEvent:
            key, key_size, _ = self.build(event)
            if isinstance(key, bool) and type(event) is yaml.ScalarEvent:
                key = event.value  # YAML 1.1 reads on/off/yes/no as booleans; a key is a name, as written ("on:")
            elif not isinstance(key, str):
                key = str(key)
            if key in out:
                raise yaml.MarkedYAMLError(problem=f"duplicate key {key!r}", problem_mark=event.start_mark)
            value, value_size, text = self.build(p.get_event())
            out[key] = _relative(key, value, text)
            out.key_lines[key] = event.start_mark.line + 1
            size += key_size + value_size
        _check_size(size, start)
        return out, size, None

    def sequence(self, start: Any) -> _Built:
        p = self.parser
        out = LineList()
        out.line = start.start_mark.line + 1
        size = 1
        while type(event := p.get_event()) is not yaml.SequenceEndEvent:
            value, value_size, _ = self.build(event)
            out.append(value)
            size += value_size
        _check_size(size, start)
        return out, size, None


_MAP, _SEQ = yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG


def _plain(event: Any, default: str) -> bool:
    """A collection the document's default constructors build: no tag, or the default one."""
    return event.tag in (None, "!", default)


def _line_dict(start: Any) -> LineDict:
    out = LineDict()
    out.line = start.start_mark.line + 1
    out.key_lines = {}
    return out


def _relative(key: str, value: Any, text: str | None) -> Any:
    if key in ("at", "until") and text is not None and text.startswith("+") and isinstance(value, int | float):
        return RelativeTime(value)
    return value


def _check_size(size: int, start: Any) -> None:
    if size > MAX_NODES:
        raise yaml.constructor.ConstructorError(
            problem=f"the document expands to more than {MAX_NODES} values through its aliases",
            problem_mark=start.start_mark)


# -- the checked form ------------------------------------------------------------
_NOTHING: Mapping[str, Any] = MappingProxyType({})  # what every step without arguments, counters or fields shares


def _nothing() -> Mapping[str, Any]:
    return _NOTHING


@dataclass(slots=True)  # a long scenario holds hundreds of thousands: no __dict__, no empty containers of their own
class Step:
    line: int
    kind: str  # inject | expect | nothing | app | counters
    at: float | None = None
    relative: bool = False
    frames: Sequence[bytes] = ()  # inject: one frame, or its fragments
    build: dict[str, Any] | None = None  # inject of TCP: the fields, built when the step runs (relative numbers)
    fragment: tuple[int, list[int] | None] | None = None  # inject: (size, order), to split a frame built late
    quote: dict[str, Any] | None = None  # inject of an ICMP error: the stack's TCP segment it quotes, built late
    expected: Mapping[str, Any] = field(default_factory=_nothing)  # expect
    within: float | None = None  # expect: how long to wait for the frame
    tolerance: float | None = None  # expect with at: allowed timing error
    at_hi: float | None = None  # expect with at: A~B: the end of the range (at is its start)
    hi_relative: bool = False
    optional: bool = False
    fragments: int = 0  # expect: reassemble this many frames and compare the whole datagram
    span: float = 0.0  # nothing: how long the wire stays quiet
    app: str = ""
    args: Mapping[str, Any] = field(default_factory=_nothing)
    until: float | None = None  # app: the call blocks across later steps and returns at this time
    until_relative: bool = False  # ... counted from the call's start
    counters: Mapping[str, int] = field(default_factory=_nothing)
    note: str = ""
    iface: int | None = None  # inject/expect "on:": the interface's index; None is the first interface
    name: str = ""  # inject: what a later expect's quote: {step: NAME} calls it
    repeat: "repeat.Repeat | None" = None  # inject: send the frame this many times, fields counting up


@dataclass
class Scenario:
    path: str
    description: str
    config: StackConfig
    ctx: Context
    seed: int
    steps: list[Step]
    services: tuple[str, ...] = ()
    allow_unexpected: bool = False
    ignore: list[dict[str, Any]] = field(default_factory=list)  # frames of the stack's own choosing, never expected
    expect_within: float = 5.0
    tolerance: float = 0.0
    tcp: bool = False  # TCP steps: the runner learns ISNs from the frames that cross the wire
    impair_in: Impairment = field(default_factory=Impairment)  # options.impair / impair_in / impair_out
    impair_out: Impairment = field(default_factory=Impairment)
    drop: list[DropRule] = field(default_factory=list)  # options.drop, applied to injected frames
    contexts: list[Context] = field(default_factory=list)  # per interface: the host names its frames use

    def rng(self) -> random.Random:
        return random.Random(self.seed)


MAX_SECONDS = 1_000_000.0  # every time and duration in a scenario: about 11.6 days of virtual time
# The ranges of stack.arp and stack.reassembly: wide enough for any real setting, narrow enough
# that no setting makes one packet cost more than a bounded amount of work or memory.
ARP_RANGES: dict[str, tuple[float, float]] = {
    "reachable_time": (0, 86_400), "retrans_time": (0.01, 3_600), "max_probes": (1, 100),
    "queue_len": (1, 65_535), "queue_bytes": (1, 16 << 20), "queue_total_bytes": (1, 64 << 20),
    "stale_time": (0, 86_400), "failed_time": (0, 86_400), "max_entries": (1, 65_536), "gc_min_age": (0, 3_600),
}
REASSEMBLY_RANGES: dict[str, tuple[float, float]] = {
    "timeout": (0.001, 3_600), "max_datagrams": (1, 65_536), "max_fragments": (1, 8_192), "max_bytes": (1, 256 << 20),
}
MAX_OPTIONS = 40  # IPv4 options: IHL is 4 bits, so a header holds at most 60 bytes (RFC 791 3.1)
MAX_DATAGRAM = 65_535  # IPv4 Total Length is 16 bits

TOP_KEYS = {"description", "stack", "hosts", "options", "steps"}
STACK_KEYS = {"mac", "ip", "gateway", "mtu", "ttl", "min_pmtu", "vlan", "seed", "arp", "reassembly", "services", "tcp"}
STACK_KEYS |= {"interfaces", "forward", "routes"}  # several interfaces, and a router (docs/scenarios.md, "Routers")
OPTION_KEYS = {"allow_unexpected", "ignore", "expect_within", "tolerance"}
OPTION_KEYS |= {"impair", "impair_in", "impair_out", "drop"}  # what the wire does to frames ("Impairment and drop rules")
STEP_ACTIONS = {"inject", "expect", "app", "counters"}
COUNTER_LAYERS = {"eth", "arp", "ipv4", "icmp", "udp", "tcp", "tap"}
COUNTER_LAYERS |= {"wire"}  # drop rules and impairment
# stack.tcp: the range each setting of TcpConfig may take (numbers of seconds, or counts).
TCP_RANGES: dict[str, tuple[float, float]] = {
    "msl": (0.001, 3600), "rto_initial": (0.001, 600), "rto_min": (0.001, 600), "rto_max": (0.001, 3600),
    "delack_time": (0.001, 0.2), "keepalive_time": (0.001, 604800), "keepalive_intvl": (0.001, 86400),
    "fin_timeout": (0.001, 3600), "syn_retries": (0, 255), "synack_retries": (0, 255), "retries": (0, 255),
    "rcvbuf": (256, 1 << 30), "sndbuf": (256, 1 << 30), "ooo_max_segments": (1, 1_000_000),
    "challenge_ack_limit": (1, 1_000_000), "keepalive_probes": (1, 255), "initial_window": (1, 1000),
    "max_syn_backlog": (1, 1_000_000), "somaxconn": (1, 1_000_000), "ephemeral": (1, 65535),
    "wscale": (-1, 14), "ts_hz": (1, 1000), "rto_slop": (0, 600), "quickack": (0, 1000), "abc_limit": (1, 1000),
    "syncookies": (0, 2), "max_connections": (1, 1_000_000), "max_tw_buckets": (0, 1_000_000),
    "ooo_max_bytes": (1, 1 << 30), "rst_limit": (1, 1_000_000),
    "min_snd_mss": MIN_SND_MSS,
}
STEP_KEYS = {
    "inject": {"at", "note", "fragment", "on", "name", "quote", "repeat"},
    "expect": {"at", "note", "within", "tolerance", "optional", "for", "fragments", "on"},
    "app": {"at", "note", "until", "within"},
    "counters": {"at", "note"},
}
_SOCK = {"socket": "name", "error": "error"}
APP_OPS: dict[str, dict[str, str]] = {
    # op: {argument: kind}; for recv/recvfrom/getsockname, data and addr are the expected result
    "ping": {"dst": "ip", "id": "int", "seq": "int", "data": "bytes", "count": "int", "interval": "float"},
    "socket": {"socket": "name", "type": "socktype"},
    "setblocking": {"socket": "name", "blocking": "bool"},
    "bind": {**_SOCK, "addr": "addr"},
    "listen": {**_SOCK, "backlog": "count"},
    "accept": {**_SOCK, "as": "name", "addr": "addr", "timeout": "float"},
    "connect": {**_SOCK, "addr": "addr", "timeout": "float"},
    "sendto": {**_SOCK, "addr": "addr", "data": "bytes"},
    "send": {**_SOCK, "data": "bytes", "returns": "count", "timeout": "float"},
    "recv": {**_SOCK, "size": "count", "timeout": "float", "data": "bytes", "len": "count", "peek": "bool"},
    "recvfrom": {**_SOCK, "size": "int", "timeout": "float", "data": "bytes", "addr": "addr"},
    "shutdown": {**_SOCK, "how": "how"},
    "setsockopt": {**_SOCK, "option": "sockopt", "value": "optvalue"},
    "getsockopt": {**_SOCK, "option": "sockopt", "value": "optvalue"},
    "getsockname": {**_SOCK, "addr": "addr"},
    "getpeername": {**_SOCK, "addr": "addr"},
    "close": {"socket": "name"},
    "wait": {"socket": "name"},
    "getblocking": {"socket": "name", "blocking": "bool"},  # fcntl(F_GETFL): blocking is the expected answer
    "sockstat": {"state": "tcpstate", "port": "int", "count": "count"},  # how many connections are in a state
    # getsockopt(TCP_INFO): the expected congestion state (windows in segments)
    "tcp_info": {**_SOCK, "ca_state": "castate", "cwnd": "count", "ssthresh": "count", "sacked": "count"},
}
# Calls that may block, and so may take until:/within: (packetdrill's "0...0.1 read()").
BLOCKING_OPS = {"recv", "recvfrom", "accept", "connect", "send"}
STREAM_OPS = {"listen", "accept", "shutdown", "setsockopt", "getsockopt", "tcp_info"}  # on a socket of type: stream only
DGRAM_OPS = {"sendto", "recvfrom"}
REQUIRED_ARGS = {"ping": ("dst",), "bind": ("addr",), "connect": ("addr",), "sendto": ("addr",), "accept": ("as",),
                 "setblocking": ("blocking",), "shutdown": ("how",), "setsockopt": ("option", "value"),
                 "getsockopt": ("option",), "getblocking": ("blocking",), "sockstat": ("state", "count")}
SOCKET_TYPES = ("dgram", "stream")
CA_STATES = tuple(CA_STATE_NUMBER)  # the recovery phases, as Linux's tcp_ca_state
SHUTDOWN_HOW = {"rd": 0, "wr": 1, "rdwr": 2}  # SHUT_RD, SHUT_WR, SHUT_RDWR
# "error" (SO_ERROR): get only; "congestion" (TCP_CONGESTION) takes a name
SOCKET_OPTIONS = ("nodelay", "reuseaddr", "rcvbuf", "sndbuf", "keepalive", "congestion", "error")
ERROR_NAMES = {
    "OSError", "ConnectionRefusedError", "ConnectionError", "TimeoutError", "BlockingIOError", "EADDRINUSE",
    "EADDRNOTAVAIL", "ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EMSGSIZE", "EAGAIN", "EINVAL",
    "EDESTADDRREQ", "ENOTCONN", "EBADF", "ConnectionResetError", "BrokenPipeError", "ECONNRESET", "ETIMEDOUT",
    "EPIPE", "EINPROGRESS", "EALREADY", "EISCONN", "ENOPROTOOPT", "ENOENT",
}


class _Checker:
    def __init__(self, path: str) -> None:
        self.path = path
        self.values: dict[tuple[type, Any], Any] = {}  # one of each equal value the steps hold (share)

    def share(self, value: Any) -> Any:
        """``value``, or an equal one of the same type met before: a long scenario repeats addresses and payloads."""
        if type(value) not in (bytes, str, float):
            return value
        key = (type(value), value)
        found = self.values.get(key)
        if found is None:
            if len(self.values) >= _MAX_SHARED_SCALARS:
                return value
            found = self.values[key] = value
        return found

    def fail(self, line: int, message: str) -> ScenarioError:
        return ScenarioError(self.path, line, message)

    def mapping(self, value: Any, line: int, what: str) -> LineDict:
        if not isinstance(value, LineDict):
            raise self.fail(getattr(value, "line", line), f"{what} must be a mapping")
        return value

    def keys(self, m: LineDict, allowed: set[str], what: str) -> None:
        for key in m:
            if key not in allowed:
                raise self.fail(m.key_lines[key], f"unknown key {key!r} in {what}; allowed: {', '.join(sorted(allowed))}")

    def integer(self, m: LineDict, key: str, lo: int, hi: int) -> int:
        value = m[key]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(m.key_lines[key], f"{key} must be an integer from {lo} to {hi}, got {value!r}")
        return value

    def number(self, m: LineDict, key: str, lo: float = 0.0, hi: float = MAX_SECONDS) -> float:
        """A finite number from ``lo`` to ``hi``: a NaN or infinite deadline would never end a wait."""
        value = m[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(m.key_lines[key], f"{key} must be a number from {lo:g} to {hi:g}, got {value!r}")
        if not math.isfinite(value):
            raise self.fail(m.key_lines[key], f"{key} must be a finite number, got {value!r}")
        if not lo <= value <= hi:
            raise self.fail(m.key_lines[key], f"{key} must be a number from {lo:g} to {hi:g}, got {value!r}")
        return float(value)


def load(path: str | Path) -> Scenario:
    path = str(path)
    try:
        data = read_regular_file(path, MAX_FILE_BYTES)
        data.decode()  # a text file; libyaml reads the bytes, so no copy of the file's length lives on
    except OSError as e:
        raise ScenarioError(path, 0, f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError(path, 0, "not a text file") from None
    except ValueError as e:
        raise ScenarioError(path, 0, f"cannot read: {e}") from None
    return loads(data, path)


def loads(text: str | bytes, path: str = "<scenario>") -> Scenario:
    chk = _Checker(path)
    try:
        return _Reader(text, chk).scenario()
    except _Fallback:
        pass
    try:
        doc = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        raise _yaml_error(path, e) from None
    return _checked(chk, doc)


def _checked(chk: _Checker, doc: Any) -> Scenario:
    """The scenario in ``doc``, a whole document."""
    if doc is None:  # nothing but blank lines and comments
        raise ScenarioError(chk.path, 0, "the file is empty: a scenario needs a description and steps")
    top = chk.mapping(doc, 1, "a scenario")
    scenario = _head(chk, top)
    steps = top["steps"]
    if not isinstance(steps, LineList) or not steps:
        raise chk.fail(top.key_lines["steps"], "steps must be a non-empty list")
    sockets: dict[str, str] = {}  # name -> type, of the sockets open at this point of the file
    for raw in steps:
        _add_step(chk, scenario, raw, steps.line, sockets)
    return _finish(scenario, sockets)


def _yaml_error(path: str, e: yaml.YAMLError) -> ScenarioError:
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        return ScenarioError(path, line, f"YAML: {e.problem or e.context}")
    return ScenarioError(path, 0, f"YAML: {e}")


def _head(chk: _Checker, top: LineDict) -> Scenario:
    """The scenario but its steps: what every step is checked against."""
    chk.keys(top, TOP_KEYS, "the scenario")
    for required in ("description", "steps"):
        if required not in top:
            raise chk.fail(top.line, f"missing {required!r}")
    description = top["description"]
    if not isinstance(description, str) or not description.strip():
        raise chk.fail(top.key_lines["description"], "description must be a paragraph of text")

    config, seed, services = _stack(chk, top)
    stack_host = Host("stack", config.mac, config.ip)
    hosts = _hosts(chk, top)
    ctx = Context(stack_host, hosts, next(iter(hosts.values()), None))
    contexts = _contexts(chk, top, config, ctx)
    scenario = Scenario(chk.path, description.strip(), config, ctx, seed, [], services)
    scenario.contexts = contexts
    if "options" in top:
        opts = chk.mapping(top["options"], top.key_lines["options"], "options")
        chk.keys(opts, OPTION_KEYS, "options")
        if "allow_unexpected" in opts:
            if not isinstance(opts["allow_unexpected"], bool):
                raise chk.fail(opts.key_lines["allow_unexpected"], "allow_unexpected must be true or false")
            scenario.allow_unexpected = opts["allow_unexpected"]
        if "ignore" in opts:
            scenario.ignore = _ignore(chk, opts, ctx)
        if "expect_within" in opts:
            scenario.expect_within = chk.number(opts, "expect_within")
        if "tolerance" in opts:
            scenario.tolerance = chk.number(opts, "tolerance")
        _link_options(chk, opts, scenario)
    return scenario


def _add_step(chk: _Checker, scenario: Scenario, raw: Any, line: int, sockets: dict[str, str]) -> None:
    """Check one step against the scenario and the sockets open before it, and append it."""
    iface = _on(chk, raw, scenario.config)
    step = _step(chk, raw, line, scenario.contexts[iface or 0] if scenario.contexts else scenario.ctx, scenario.steps)
    step.iface = iface
    _share(chk, step)
    name = step.args.get("socket")
    if step.kind == "app" and name is not None:
        _socket_use(chk, step, name, sockets)
    if step.build is not None or any(k.startswith("tcp.") for k in step.expected):
        scenario.tcp = True
    scenario.steps.append(step)


def _share(chk: _Checker, step: Step) -> None:
    """Hold the step's keys and values once for the whole scenario (interned keys, shared values)."""
    share = chk.share
    if step.expected:
        step.expected = {sys.intern(k): share(v) for k, v in step.expected.items()}
    if step.frames:
        step.frames = tuple(share(f) for f in step.frames)
    if step.at is not None:
        step.at = share(step.at)


def _finish(scenario: Scenario, sockets: dict[str, str]) -> Scenario:
    if "stream" in sockets.values() or any(s.args.get("type") == "stream" for s in scenario.steps):
        scenario.tcp = True
    return scenario


def _socket_use(chk: _Checker, step: Step, name: str, sockets: dict[str, str]) -> None:
    """The socket ``step`` names is open here, of a type its operation takes; track what it opens and closes."""
    op = step.app
    if op == "socket":
        if name in sockets:
            raise chk.fail(step.line, f"socket {name!r} is already open; close it first")
        sockets[name] = step.args.get("type", "dgram")
        return
    kind = sockets.get(name)
    if kind is None:
        raise chk.fail(step.line, f"socket {name!r} is not open here; open it with 'app: socket'")
    if op in STREAM_OPS and kind != "stream":
        raise chk.fail(step.line, f"app: {op} needs a stream socket; {name!r} is a datagram socket (type: stream)")
    if op in DGRAM_OPS and kind != "dgram":
        raise chk.fail(step.line, f"app: {op} needs a datagram socket; {name!r} is a stream socket")
    if kind == "dgram" and op in ("connect", "send") and (step.until is not None or step.within is not None):
        raise chk.fail(step.line, f"app: {op} on a datagram socket never blocks: until and within go with stream sockets")
    if op == "accept":
        new = step.args["as"]
        if new in sockets:
            raise chk.fail(step.line, f"socket {new!r} is already open; accept names a new socket")
        sockets[new] = "stream"
    if op == "close":
        del sockets[name]


def _stack(chk: _Checker, top: LineDict) -> tuple[StackConfig, int, tuple[str, ...]]:
    mac, ip, prefix = mac_to_bytes("aa:bb:cc:dd:ee:ff"), ip_to_bytes("10.0.0.1"), 24
    kwargs: dict[str, Any] = {}
    seed = 1
    services: tuple[str, ...] = ()
    if "stack" in top:
        s = chk.mapping(top["stack"], top.key_lines["stack"], "stack")
        chk.keys(s, STACK_KEYS, "stack")
        ifaces = _interfaces(chk, s) if "interfaces" in s else ()
        if ifaces:
            mac, ip, prefix = ifaces[0].mac, ifaces[0].ip, ifaces[0].prefix_len
        for key in ("mac", "ip", "gateway"):
            if key not in s:
                continue
            text = str(s[key])
            try:
                if key == "mac":
                    mac = mac_to_bytes(text)
                elif key == "ip":
                    ip, prefix = parse_interface(text if "/" in text else text + "/24")
                else:
                    kwargs["gateway"] = ip_to_bytes(text)
            except ValueError as e:
                raise chk.fail(s.key_lines[key], str(e)) from None
        try:
            check_stack_addresses(ip, prefix, mac, None if ifaces else kwargs.get("gateway"))
        except AddressError as e:
            raise chk.fail(s.key_lines.get(e.what, s.line), f"stack.{e.what}: {e}") from None
        for key, lo, hi in (("mtu", 68, 65535), ("ttl", 1, 255), ("min_pmtu", 68, 65535), ("vlan", 1, 4094),
                            ("seed", 0, 2**64 - 1)):
            if key in s:
                v = s[key]
                if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                    raise chk.fail(s.key_lines[key], f"{key} must be an integer from {lo} to {hi}, got {v!r}")
                if key == "seed":
                    seed = v
                else:
                    kwargs[key] = v
        if "arp" in s:
            a = chk.mapping(s["arp"], s.key_lines["arp"], "stack.arp")
            names = set(ArpConfig.__dataclass_fields__)
            chk.keys(a, names, "stack.arp")
            kwargs["arp"] = ArpConfig(**_settings(chk, a, ArpConfig.__dataclass_fields__, ARP_RANGES))
        if "reassembly" in s:
            r = chk.mapping(s["reassembly"], s.key_lines["reassembly"], "stack.reassembly")
            chk.keys(r, set(ReassemblyConfig.__dataclass_fields__), "stack.reassembly")
            kwargs["reassembly"] = ReassemblyConfig(**_settings(chk, r, ReassemblyConfig.__dataclass_fields__,
                                                                REASSEMBLY_RANGES))
        if "tcp" in s:
            kwargs["tcp"] = _tcp_config(chk, s)
        if "services" in s:
            names = s["services"]
            line = s.key_lines["services"]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise chk.fail(line, f"services must be a list of {', '.join(SERVICES)} or http:DIR")
            for n in names:
                why = service_error(n)  # http:DIR, as a live session records it, names a directory that must exist
                if why is not None:
                    raise chk.fail(line, f"services: {why}")
            kinds = [n.partition(":")[0] for n in names]
            twice = next((n for i, n in enumerate(kinds) if n in kinds[:i]), None)
            if twice is not None:
                raise chk.fail(line, f"services: {twice} is listed twice; each service runs once, on its own port")
            services = tuple(names)
        _routing(chk, s, ifaces or (Interface(mac, ip, prefix),), kwargs)
    return StackConfig(mac, ip, prefix, **kwargs), seed, services


def _settings(chk: _Checker, m: LineDict, fields: Mapping[str, Any], ranges: Mapping[str, tuple[float, float]]
              ) -> dict[str, Any]:
    """A config section's values, each in its range; integers where the dataclass wants them."""
    out: dict[str, Any] = {}
    for key in m:
        lo, hi = ranges[key]
        if fields[key].type in (int, "int"):
            out[key] = chk.integer(m, key, int(lo), int(hi))
        else:
            out[key] = chk.number(m, key, lo, hi)
    return out


def _tcp_config(chk: _Checker, s: LineDict) -> TcpConfig:
    """``stack.tcp``: TcpConfig's settings, each within TCP_RANGES (timers in seconds, counts, rfc5961 a boolean)."""
    t = chk.mapping(s["tcp"], s.key_lines["tcp"], "stack.tcp")
    defaults = TcpConfig()
    chk.keys(t, set(TcpConfig.__dataclass_fields__), "stack.tcp")
    kw: dict[str, Any] = {}
    for key, value in t.items():
        line = t.key_lines[key]
        default = getattr(defaults, key)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise chk.fail(line, f"tcp.{key} must be true or false, got {value!r}")
            kw[key] = value
            continue
        if isinstance(default, str):
            if value not in TCP_CHOICES[key]:
                raise chk.fail(line, f"tcp.{key} must be one of {', '.join(TCP_CHOICES[key])}, got {value!r}")
            kw[key] = value
            continue
        lo, hi = TCP_RANGES[key]
        if isinstance(default, tuple):
            if not isinstance(value, list) or len(value) != 2 or not all(
                    isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in value) or value[0] > value[1]:
                raise chk.fail(line, f"tcp.{key} must be [LOW, HIGH], ports from {lo:g} to {hi:g}, got {value!r}")
            kw[key] = tuple(value)
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
                raise chk.fail(line, f"tcp.{key} must be a number of seconds from {lo:g} to {hi:g}, got {value!r}")
            kw[key] = float(value)
        else:
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise chk.fail(line, f"tcp.{key} must be an integer from {lo:g} to {hi:g}, got {value!r}")
            kw[key] = value
    try:
        return TcpConfig(**kw)
    except ValueError as e:
        raise chk.fail(s.key_lines["tcp"], f"stack.tcp: {e}") from None


def _hosts(chk: _Checker, top: LineDict) -> dict[str, Host]:
    hosts: dict[str, Host] = {}
    if "hosts" not in top:
        return hosts
    h = chk.mapping(top["hosts"], top.key_lines["hosts"], "hosts")
    for name, spec in h.items():
        line = h.key_lines[name]
        if name in ("stack", "broadcast", "any", "zero"):
            raise chk.fail(line, f"host name {name!r} is reserved")
        m = chk.mapping(spec, line, f"host {name!r}")
        chk.keys(m, {"mac", "ip"}, f"host {name!r}")
        try:
            mac = mac_to_bytes(str(m["mac"])) if "mac" in m else None
            ip = ip_to_bytes(str(m["ip"])) if "ip" in m else None
        except ValueError as e:
            raise chk.fail(line, str(e)) from None
        hosts[name] = Host(name, mac, ip)
    return hosts


def _step(chk: _Checker, raw: Any, line: int, ctx: Context, earlier: list[Step] | None = None) -> Step:
    m = chk.mapping(raw, line, "a step")
    actions = [k for k in m if k in STEP_ACTIONS]
    if len(actions) != 1:
        unknown = [k for k in m if k not in STEP_ACTIONS and k not in STEP_KEYS["expect"]]
        if unknown:
            raise chk.fail(m.key_lines[unknown[0]], f"unknown step key {unknown[0]!r}; a step is one of "
                                                    f"{', '.join(sorted(STEP_ACTIONS))}")
        raise chk.fail(m.line, f"a step needs exactly one of {', '.join(sorted(STEP_ACTIONS))}")
    action = actions[0]
    allowed = STEP_KEYS[action] | {action}
    if action == "app":
        if not isinstance(m["app"], str):
            raise chk.fail(m.key_lines["app"], f"app must name an operation ({', '.join(APP_OPS)}), got {m['app']!r}")
        allowed |= set(APP_OPS.get(m["app"], {}))
    chk.keys(m, allowed, f"an {action} step")
    step = Step(m.line, action)
    if "at" in m:
        if isinstance(m["at"], str) and "~" in m["at"]:
            if action != "expect":
                raise chk.fail(m.key_lines["at"], "a time range (at: A~B) goes with expect: it says when a frame may leave")
            step.at, step.relative, step.at_hi, step.hi_relative = _time_range(chk, m["at"], m.key_lines["at"])
        else:
            step.at = chk.number(m, "at")
            step.relative = isinstance(m["at"], RelativeTime)
    if "note" in m:
        step.note = str(m["note"])
    if "name" in m:
        step.name = str(m["name"])
    aline = m.key_lines[action]
    try:
        if action == "inject":
            spec = m["inject"]
            if isinstance(spec, Mapping) and set(spec) == {"raw"}:
                step.frames = [payload_bytes({"hex": spec["raw"]}, "raw")]
            else:
                flat = normalize_spec(spec, ctx)
                # Built now to check it; a TCP segment is built again when it runs, from the ISNs seen by then.
                step.frames = [_build(chk, flat, ctx, aline)]
                if any(k.startswith("tcp.") for k in flat):
                    step.build = flat
            if "quote" in m:
                if not isinstance(spec, Mapping) or "icmp" not in spec:
                    raise chk.fail(m.key_lines["quote"], "quote goes with an ICMP error to inject: the segment it quotes")
                quoted = normalize_spec(m["quote"], ctx)
                if not any(k.startswith("tcp.") for k in quoted):
                    raise chk.fail(m.key_lines["quote"], "quote: the stack's TCP segment, as tcp: {sport, dport, seq}")
                _build(chk, quoted, ctx, m.key_lines["quote"])
                step.quote = quoted
                step.build = flat
            if "repeat" in m:
                step.repeat = _repeat(chk, m, spec, step.frames[0])
            if "fragment" in m:
                step.fragment = _fragment_spec(chk, m)
                try:
                    step.frames = fragment_frame(step.frames[0], *step.fragment)
                except ValueError as e:
                    raise chk.fail(m.key_lines["fragment"], str(e)) from None
        elif action == "expect":
            if m["expect"] == "nothing":
                step.kind = "nothing"
                if "for" not in m:
                    raise chk.fail(aline, "expect: nothing needs 'for: SECONDS'")
                step.span = chk.number(m, "for")
            else:
                if "for" in m:
                    raise chk.fail(m.key_lines["for"], "'for' goes with 'expect: nothing'")
                step.expected = _checked_sizes(normalize_spec(quote.resolve(chk, m["expect"], earlier or [], aline), ctx))
                if "within" in m:
                    if "at" in m:
                        raise chk.fail(m.key_lines["within"], "'within' and 'at' exclude each other: 'at' fixes the time")
                    step.within = chk.number(m, "within")
                if "tolerance" in m:
                    step.tolerance = chk.number(m, "tolerance")
                if "optional" in m:
                    if not isinstance(m["optional"], bool):
                        raise chk.fail(m.key_lines["optional"], "optional must be true or false")
                    step.optional = m["optional"]
                if "fragments" in m:
                    step.fragments = chk.integer(m, "fragments", 2, 1024)
        elif action == "app":
            _app(chk, m, step, ctx)
        else:
            c = chk.mapping(m["counters"], aline, "counters")
            step.counters = counters = {}
            for name, value in c.items():
                if name.partition(".")[0] not in COUNTER_LAYERS or "." not in name:
                    raise chk.fail(c.key_lines[name], f"counter {name}: names start with a layer "
                                                      f"({', '.join(sorted(COUNTER_LAYERS))}) and a dot")
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise chk.fail(c.key_lines[name], f"counter {name} must be a count, got {value!r}")
                counters[name] = value
    except SpecError as e:
        raise chk.fail(_line_of(m[action], e.path, aline), str(e)) from None
    return step


def _ignore(chk: _Checker, opts: LineDict, ctx: Context) -> list[dict[str, Any]]:
    """``ignore: [SPEC, ...]``: each SPEC names fields the way ``expect`` does."""
    specs, line = opts["ignore"], opts.key_lines["ignore"]
    if not isinstance(specs, LineList) or not specs:
        raise chk.fail(line, "ignore must be a non-empty list of frame descriptions, as expect takes them")
    out = []
    for spec in specs:
        where = spec.line if isinstance(spec, LineDict) else line
        try:
            out.append(_checked_sizes(normalize_spec(spec, ctx)))
        except SpecError as e:
            raise chk.fail(_line_of(spec, e.path, where), f"ignore: {e}") from None
    return out


def _checked_sizes(flat: dict[str, Any]) -> dict[str, Any]:
    """Refuse sizes no header can carry: the codecs would wrap them into other values (44 bytes of options, IHL 0)."""
    options = flat.get("ipv4.options", b"")
    if len(options) > MAX_OPTIONS:
        raise SpecError("ipv4.options", f"{len(options)} bytes; an IPv4 header holds at most {MAX_OPTIONS} "
                                        f"(IHL 15, RFC 791 3.1)")
    return flat


def _build(chk: _Checker, flat: dict[str, Any], ctx: Context, line: int) -> bytes:
    """The frame ``flat`` describes, or a one-line error when its sizes do not fit the headers."""
    _checked_sizes(flat)
    layers = {k.partition(".")[0] for k in flat}
    if "ipv4" in layers or layers & {"icmp", "udp", "tcp"}:
        upper = len(flat.get("payload.", b""))
        for layer in ("icmp", "udp"):
            if layer in layers:
                upper += 8 + len(flat.get(f"{layer}.data", b""))
        if "tcp" in layers:
            upper += 60 + len(flat.get("tcp.data", b"")) + flat.get("tcp.len", 0)  # at most 60 bytes of header
        size = 20 + len(flat.get("ipv4.options", b"")) + upper
        if size > MAX_DATAGRAM:
            raise SpecError("ipv4", f"the datagram would be {size} bytes; its Total Length holds at most {MAX_DATAGRAM}")
    try:
        return build_frame(flat, ctx, Isns())  # a TCP segment is built again when it runs, from the ISNs by then
    except (struct.error, OverflowError) as e:  # a size this module's checks missed: still one line, not a traceback
        raise chk.fail(line, f"cannot build this frame: {e}") from None


def _repeat(chk: _Checker, m: LineDict, spec: Any, frame: bytes) -> repeat.Repeat:
    """``repeat: {count, vary, every}``: the frame sent ``count`` times, each ``vary`` field adding its step."""
    line = m.key_lines["repeat"]
    r = chk.mapping(m["repeat"], line, "repeat")
    chk.keys(r, {"count", "vary", "every"}, "repeat")
    for other in ("fragment", "quote"):
        if other in m:
            raise chk.fail(m.key_lines[other], f"repeat and {other} exclude each other")
    if "count" not in r:
        raise chk.fail(r.line, "repeat needs 'count': how many frames to send")
    count = chk.integer(r, "count", 1, repeat.MAX_COUNT)
    vary: dict[str, int] = {}
    if "vary" in r:
        v = chk.mapping(r["vary"], r.key_lines["vary"], "repeat.vary")
        for name in v:
            if name not in repeat.FIELDS:
                raise chk.fail(v.key_lines[name], f"repeat.vary: {name} cannot vary; these can: "
                                                  f"{', '.join(repeat.FIELDS)}")
            vary[name] = chk.integer(v, name, -(1 << 32), 1 << 32)
    every = chk.number(r, "every", 0.0, MAX_SECONDS / count) if "every" in r else 0.0
    named = {k.partition(".")[0] for k in (spec if isinstance(spec, Mapping) else {})
             if isinstance(spec[k], Mapping) and "checksum" in spec[k]}
    rep = repeat.Repeat(count, vary, every, frozenset(named))
    why = repeat.check(frame, rep)
    if why is not None:
        raise chk.fail(line, why)
    return rep


def _fragment_spec(chk: _Checker, m: LineDict) -> tuple[int, list[int] | None]:
    """``fragment: {size: N, order: [i, ...]}``: the size, and the order (None: as they come)."""
    line = m.key_lines["fragment"]
    spec = m["fragment"]
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = {"size": spec}
    if not isinstance(spec, Mapping) or not set(spec) <= {"size", "order"} or "size" not in spec:
        raise chk.fail(line, "fragment must be N or {size: N, order: [indexes]}")
    size = spec["size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 8 or size % 8:
        raise chk.fail(line, f"fragment size must be a positive multiple of 8, got {size!r}")
    order = spec.get("order")
    if order is not None and (not isinstance(order, list) or not all(isinstance(i, int) for i in order)):
        order = [-1]  # refused by fragment_frame, which knows how many pieces there are
    return size, order


def fragment_frame(frame: bytes, size: int, order: list[int] | None) -> list[bytes]:
    """Split the IPv4 payload of ``frame``, then reorder or repeat pieces; ValueError says why it cannot."""
    try:
        eth = ethernet.parse(frame)
        if eth.ethertype != ethernet.TYPE_IPV4:
            raise ValueError(f"only a valid IPv4 datagram can be fragmented (ethertype {eth.ethertype:#06x})")
        whole = ipv4.parse(eth.payload)
    except Malformed as e:
        raise ValueError(f"only a valid IPv4 datagram can be fragmented ({e})") from None
    pieces = [
        ethernet.emit(ethernet.Ethernet(eth.dst, eth.src, eth.ethertype, ipv4.emit(p), eth.vlan), pad=False)
        for p in fragment(whole, whole.header_len + size)
    ]
    if order is None:
        return pieces
    if not order or not all(0 <= i < len(pieces) for i in order):
        raise ValueError(f"order must list fragment indexes from 0 to {len(pieces) - 1}")
    return [pieces[i] for i in order]


def _time_range(chk: _Checker, text: str, line: int) -> tuple[float, bool, float, bool]:
    """``at: +0.04~+0.05`` or ``0.1~0.2``: (start, relative, end, relative), as packetdrill writes a range."""
    ends = text.split("~")
    out: list[tuple[float, bool]] = []
    for end in ends:
        end = end.strip()
        try:
            value = float(end)
        except ValueError:
            value = -1.0
        if len(ends) != 2 or not 0 <= value <= MAX_SECONDS:
            raise chk.fail(line, f"at: want a time range A~B, like +0.04~+0.05 or 0.1~0.2, got {text!r}")
        out.append((value, end.startswith("+")))
    (lo, lo_rel), (hi, hi_rel) = out
    if lo_rel != hi_rel:
        raise chk.fail(line, f"at: both ends of {text!r} must be relative (+) or both absolute")
    if lo > hi:
        raise chk.fail(line, f"at: the range {text!r} ends before it starts")
    return lo, lo_rel, hi, hi_rel


def _line_of(spec: Any, path: str, default: int) -> int:
    """The line of the deepest key named in ``path`` (``icmp.seq``)."""
    line = default
    node = spec
    for part in path.split("."):
        if isinstance(node, LineDict) and part in node:
            line = node.key_lines[part]
            node = node[part]
        else:
            break
    return line


def _app(chk: _Checker, m: LineDict, step: Step, ctx: Context) -> None:
    op = m["app"]
    if not isinstance(op, str) or op not in APP_OPS:
        raise chk.fail(m.key_lines["app"], f"unknown app operation {op!r}; known: {', '.join(APP_OPS)}")
    step.app = op
    if op == "setsockopt" and "value" in m and m.get("option") not in ("error", "congestion") and isinstance(m["value"], str):
        raise chk.fail(m.key_lines["value"], f"value must be a count or true/false, got {m['value']!r}")
    for key in ("until", "within"):
        if key in m:
            if op not in BLOCKING_OPS:
                raise chk.fail(m.key_lines[key], f"{key} goes with a call that can block ({', '.join(sorted(BLOCKING_OPS))})")
            if "timeout" in m:
                raise chk.fail(m.key_lines[key], f"{key} and timeout exclude each other: {key} lets the call block "
                                                 "across later steps, timeout blocks it in place")
    if "until" in m and "within" in m:
        raise chk.fail(m.key_lines["within"], "until and within exclude each other: until fixes the return time")
    if "until" in m:
        step.until = chk.number(m, "until")
        step.until_relative = isinstance(m["until"], RelativeTime)
    if "within" in m:
        step.within = chk.number(m, "within")
    step.args = args = {}
    for name, kind in APP_OPS[op].items():
        if name in m:
            args[name] = _app_arg(chk, m, name, kind, ctx)
    # Every socket operation names its socket; some need more.
    required = (("socket",) if "socket" in APP_OPS[op] else ()) + REQUIRED_ARGS.get(op, ())
    for name in required:
        if name not in step.args:
            raise chk.fail(m.line, f"app: {op} needs {name}")


# Arguments that take one of a few words: (the name an error gives, the words).
WORD_ARGS: dict[str, tuple[str, Sequence[str] | dict[str, int]]] = {
    "castate": ("ca_state", CA_STATES), "tcpstate": ("state", TCP_STATES), "socktype": ("type", SOCKET_TYPES),
    "how": ("how", SHUTDOWN_HOW),
}


def _app_arg(chk: _Checker, m: LineDict, name: str, kind: str, ctx: Context) -> Any:
    value = m[name]
    line = m.key_lines[name]
    try:
        if kind == "ip":
            return IP.normalize(value, ctx, name)
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
                raise chk.fail(line, f"{name} must be an integer from 0 to 65535, got {value!r}")
            return value
        if kind == "count":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 31:
                raise chk.fail(line, f"{name} must be an integer from 0 to {(1 << 31) - 1}, got {value!r}")
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise chk.fail(line, f"{name} must be true or false, got {value!r}")
            return value
        if kind in WORD_ARGS:
            label, words = WORD_ARGS[kind]
            if value not in words:
                raise chk.fail(line, f"{label} must be one of {', '.join(words)}, got {value!r}")
            return words[value] if isinstance(words, dict) else value  # shutdown's how: its number
        if kind == "sockopt":
            if value not in SOCKET_OPTIONS or (value == "error" and m["app"] == "setsockopt"):
                names = SOCKET_OPTIONS if m["app"] == "getsockopt" else SOCKET_OPTIONS[:-1]
                raise chk.fail(line, f"option must be one of {', '.join(names)}, got {value!r}")
            return value
        if kind == "optvalue":
            # a number, true/false, or (for option: error) an errno name such as ECONNREFUSED
            if isinstance(value, str) and value.isupper() and hasattr(errno, value):
                return getattr(errno, value)
            if isinstance(value, bool):
                return int(value)
            if "option" in m and m["option"] == "congestion":
                if not isinstance(value, str) or not value.isidentifier() or not value.islower():
                    raise chk.fail(line, f"value must be an algorithm's name such as cubic, got {value!r}")
                return value
            if not isinstance(value, int) or not 0 <= value < 1 << 31:
                raise chk.fail(line, f"value must be a count, true or false, or an errno name, got {value!r}")
            return value
        if kind == "float":
            return chk.number(m, name)
        if kind == "bytes":
            return payload_bytes(value, name)
        if kind == "name":
            if not isinstance(value, str) or not value:
                raise chk.fail(line, f"{name} must be a name")
            return value
        if kind == "error":
            if not isinstance(value, str) or value not in ERROR_NAMES:
                raise chk.fail(line, f"error must be one of {', '.join(sorted(ERROR_NAMES))}, got {value!r}")
            return value
        # addr: [host, port] with host an address, a host name, or "any"
        if not isinstance(value, list) or len(value) != 2:
            raise chk.fail(line, f"{name} must be [host, port], got {value!r}")
        host, port = value
        ip = "0.0.0.0" if host in ("any", "") else ip_to_str(IP.normalize(host, ctx, name))
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 0xFFFF:
            raise chk.fail(line, f"port must be an integer from 0 to 65535, got {port!r}")
        return (ip, port)
    except SpecError as e:
        raise chk.fail(line, str(e)) from None


# -- several interfaces, routing, and what the wire does ------------------------------
MAX_INTERFACES = 16
IFACE_KEYS = {"name", "mac", "ip", "mtu", "vlan", "offload"}


def _interfaces(chk: _Checker, s: LineDict) -> tuple[Interface, ...]:
    """``stack.interfaces``: a list of ``{name, mac, ip, mtu, vlan}``, the first one the stack's default."""
    items, line = s["interfaces"], s.key_lines["interfaces"]
    if not isinstance(items, LineList) or not 1 <= len(items) <= MAX_INTERFACES:
        raise chk.fail(line, f"interfaces must be a list of 1 to {MAX_INTERFACES} interfaces, each "
                             "{name: NAME, mac: MAC, ip: ADDR/PREFIX}")
    beside = [key for key in ("mac", "ip", "mtu", "vlan") if key in s]
    if beside:
        raise chk.fail(s.key_lines[beside[0]], f"stack.{beside[0]} goes with each interface when there is a list of them")
    out: list[Interface] = []
    for item in items:
        m = chk.mapping(item, line, "an interface")
        chk.keys(m, IFACE_KEYS, "an interface")
        for key in ("name", "mac", "ip"):
            if key not in m:
                raise chk.fail(m.line, f"an interface needs {key}")
        name = m["name"]
        if not isinstance(name, str) or not name.isidentifier() or name in ("stack", "broadcast", "any", "zero"):
            raise chk.fail(m.key_lines["name"], f"interface name must be a word (letters, digits, _) other than stack, "
                                                f"broadcast, any and zero, got {name!r}")
        try:
            mac = mac_to_bytes(str(m["mac"]))
        except ValueError as e:
            raise chk.fail(m.key_lines["mac"], str(e)) from None
        try:
            text = str(m["ip"])
            ip, prefix = parse_interface(text if "/" in text else text + "/24")
        except ValueError as e:
            raise chk.fail(m.key_lines["ip"], str(e)) from None
        try:
            check_stack_addresses(ip, prefix, mac)
        except AddressError as e:
            raise chk.fail(m.key_lines.get(e.what, m.line), f"interface {name}: {e}") from None
        mtu = chk.integer(m, "mtu", 68, 65535) if "mtu" in m else 1500
        vlan = chk.integer(m, "vlan", 1, 4094) if "vlan" in m else None
        offload = m.get("offload", False)
        if not isinstance(offload, bool):
            raise chk.fail(m.key_lines["offload"], f"offload is true or false, got {offload!r}")
        out.append(Interface(mac, ip, prefix, mtu, vlan, name, offload))
    try:
        check_interfaces(out)
    except AddressError as e:
        raise chk.fail(line, f"stack.interfaces: {e}") from None
    return tuple(out)


def _routing(chk: _Checker, s: LineDict, ifaces: tuple[Interface, ...], kwargs: dict[str, Any]) -> None:
    """``stack.forward``, ``stack.routes`` (``NETWORK/PREFIX via GATEWAY``) and, with interfaces, the gateway's check."""
    if len(ifaces) > 1 or "interfaces" in s:
        kwargs.update(interfaces=ifaces, mtu=ifaces[0].mtu, vlan=ifaces[0].vlan)
        if "gateway" in kwargs:
            try:
                check_next_hop(ifaces, kwargs["gateway"])
            except AddressError as e:
                raise chk.fail(s.key_lines["gateway"], f"stack.gateway: {e}") from None
    if "forward" in s:
        if not isinstance(s["forward"], bool):
            raise chk.fail(s.key_lines["forward"], "forward must be true or false")
        kwargs["forward"] = s["forward"]
    if "routes" in s:
        items, line = s["routes"], s.key_lines["routes"]
        if not isinstance(items, LineList) or not items:
            raise chk.fail(line, "routes must be a list of 'NETWORK/PREFIX via GATEWAY'")
        routes = []
        for item in items:
            try:
                network, length, via = parse_route(str(item))
                check_next_hop(ifaces, via, "routes")
            except (ValueError, AddressError) as e:
                raise chk.fail(line, f"stack.routes: {e}") from None
            routes.append((network, length, via))
        kwargs["routes"] = tuple(routes)


def _contexts(chk: _Checker, top: LineDict, config: StackConfig, ctx: Context) -> list[Context]:
    """One context per interface: ``stack`` is that interface, the default peer the first host on its subnet.

    Interface names become host names too (``eth: {src: wan}``).
    """
    if not config.interfaces:
        return [ctx]
    hosts = ctx.hosts
    taken = [iface.name for iface in config.interfaces if iface.name in hosts]
    if taken:
        raise chk.fail(top.key_lines.get("hosts", top.line), f"host {taken[0]!r} has the name of an interface")
    users = list(hosts.values())
    contexts = []
    for iface in config.interfaces:
        peer = next((h for h in users if h.ip is not None and iface.on_link(h.ip)), ctx.peer)
        contexts.append(Context(Host("stack", iface.mac, iface.ip), hosts, peer))
    for iface in config.interfaces:
        hosts[iface.name] = Host(iface.name, iface.mac, iface.ip)
    return contexts


def _on(chk: _Checker, raw: Any, config: StackConfig) -> int | None:
    """``on: NAME``: the index of the interface a step's frame is on (None: the first)."""
    if not isinstance(raw, LineDict) or "on" not in raw:
        return None
    names = [iface.name for iface in config.interfaces]
    if raw["on"] not in names:
        known = f"one of {', '.join(names)}" if names else "an interface of stack.interfaces, and this stack lists none"
        raise chk.fail(raw.key_lines["on"], f"on: {raw['on']!r} must name {known}")
    return names.index(raw["on"])


def _link_options(chk: _Checker, opts: LineDict, scenario: Scenario) -> None:
    """``impair`` (both directions), ``impair_in``, ``impair_out``, and ``drop`` rules."""
    specs: dict[str, Impairment] = {}
    for key in ("impair", "impair_in", "impair_out"):
        if key not in opts:
            continue
        if not isinstance(opts[key], str):
            raise chk.fail(opts.key_lines[key], f"{key} must be text like 'loss=5%,delay=20ms'")
        try:
            specs[key] = Impairment.parse(opts[key])
        except ImpairError as e:
            raise chk.fail(opts.key_lines[key], f"{key}: {e}") from None
    if "impair" in specs and len(specs) > 1:
        raise chk.fail(opts.key_lines["impair"], "impair applies to both directions: give it, or impair_in and impair_out")
    scenario.impair_in = specs.get("impair", specs.get("impair_in", Impairment()))
    scenario.impair_out = specs.get("impair", specs.get("impair_out", Impairment()))
    if "drop" in opts:
        rules, line = opts["drop"], opts.key_lines["drop"]
        if not isinstance(rules, LineList) or not rules or not all(isinstance(r, str) for r in rules):
            raise chk.fail(line, "drop must be a list of rules like 'icmp.type=echo-request,every=2'")
        try:
            scenario.drop = [parse_rule(r, scenario.ctx) for r in rules]
        except DropRuleError as e:
            raise chk.fail(line, f"drop: {e}") from None
