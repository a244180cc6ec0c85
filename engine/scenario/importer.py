"""``simstack import``: a capture of a real host becomes a scenario simstack must pass.

A capture shows what a real stack (usually Linux) did; the scenario asks
simstack to do the same. One host of the capture is the stack (``--stack
IP``). Frames sent to it become injects, exact to the byte except for the
address mapping; frames it sent become expectations naming only what any
correct stack must reproduce. What a real stack does by its own choice rather
than by duty (when to re-probe a neighbour, the IP ID, the TTL) is left out,
made optional, or turned into an ``app`` step that asks simstack to do the
same thing (a ping, a datagram sent from a socket). The rules are listed in
docs/recording.md and in ``_Classifier`` below.

Addresses move: the stack's own IP and MAC become simstack's configured ones
(10.0.0.1, aa:bb:cc:dd:ee:ff unless ``--ip``/``--mac``), its neighbours on the
same subnet move with it (host part kept), and ``--map OLD=NEW`` moves any
address, overriding both. Frames are rebuilt from fields, so header checksums are
recomputed; checksums inside payloads (the UDP checksum carried by a first
fragment, the datagram an ICMP error quotes) are adjusted as RFC 1624 does.

Timing: injects and app steps keep the capture's timeline as absolute
``at:`` times; expectations carry no ``at`` and rely on order, because a
kernel and simstack answer a few microseconds apart (or, for timers, a few
milliseconds) and nothing a correct stack must do depends on that (see
``_steps``).
"""

import io
import os
import shutil
import sys
import tempfile
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, TextIO

from construct import ConstructError

from simstack.protocols import arp, ethernet, fieldspec, icmp, ipv4, tcp, udp
from simstack.protocols.addresses import (
    BROADCAST_MAC,
    ZERO_IP,
    ZERO_MAC,
    AddressError,
    check_stack_addresses,
    ip_to_bytes,
    ip_to_str,
    is_multicast_mac,
    mac_to_bytes,
    mac_to_str,
    parse_interface,
)
from simstack.protocols.checksum import internet_checksum
from simstack.protocols.errors import Malformed
from simstack.protocols.fieldspec import Computed, Expect
from simstack.protocols.stack import StackConfig

from ..wire.capture import Capture, CapturedFrame, CaptureError, CaptureFile, open_capture
from .defrag import DefragError, is_fragment, reassemble
from .fields import LAYERS, Context, Decoded, Host, build_frame, decode_frame
from .isn import Isns, Rel
from .recorder import (
    DEFAULT_TOLERANCE,
    HostTable,
    OutStep,
    app_step,
    expect_fields,
    inject_spec,
    join_words,
    protocols_of,
    render_bytes,
    render_scenario,
    render_step,
    render_value,
    service_ports,
)
from .tcp_apps import AppCall, infer

EXIT_OK, EXIT_INVALID = 0, 2
DEFAULT_IP = "10.0.0.1/24"
DEFAULT_MAC = "aa:bb:cc:dd:ee:ff"
ECHO_PORT, DISCARD_PORT = 7, 9
LONG_WAIT_NS = 4_000_000_000  # an expectation this long after the step before needs more than the default 5 s

# What an expectation names: what a correct stack must reproduce; --strict adds the host's own choices.
DUTY = frozenset({Expect.DUTY})
STRICT = frozenset({Expect.DUTY, Expect.CHOICE})
# A fragment sent alone is expected by the duty fields and what places its raw payload: protocol, MF, offset.
_PLACES_A_FRAGMENT = ("ipv4.proto", "ipv4.mf", "ipv4.frag")
_ALL_FIELDS = tuple(f for header in LAYERS.values() for f in header.fields)
_MAC_KEYS = tuple(f.key for f in _ALL_FIELDS if f.type is fieldspec.MAC)
_IP_KEYS = tuple(f.key for f in _ALL_FIELDS if f.type is fieldspec.IPV4_ADDRESS)
_CHECKSUM_KEYS = tuple(f.key for f in _ALL_FIELDS if f.computed is Computed.CHECKSUM)
ETHERTYPE_NAMES = {
    0x86DD: "IPv6", 0x88CC: "LLDP", 0x8035: "RARP", 0x88A8: "802.1ad", 0x8863: "PPPoE discovery",
    0x8864: "PPPoE", 0x0842: "Wake-on-LAN", 0x88E5: "MACsec", 0x8809: "slow protocols (LACP)", 0x888E: "EAPOL",
    0x22F0: "AVTP", 0x88F7: "PTP", 0x8847: "MPLS", 0x9000: "loopback (CTP)",
}
IP_PROTO_NAMES = {2: "IGMP", 41: "IPv6-in-IPv4", 47: "GRE", 50: "ESP", 89: "OSPF", 103: "PIM", 132: "SCTP"}
SIMSTACK_SENDS_ICMP = {icmp.ECHO_REPLY, icmp.ECHO_REQUEST, icmp.DEST_UNREACHABLE, icmp.TIME_EXCEEDED,
                       icmp.PARAMETER_PROBLEM}


class ImportFailed(Exception):
    """The import cannot go on; the message is one line for the user (exit 2)."""


@dataclass(frozen=True)
class ImportOptions:
    capture: str
    out: str
    stack: str  # the host of the capture that simstack plays, by IPv4 address
    maps: tuple[str, ...] = ()
    strict: bool = False
    ip: str = DEFAULT_IP
    mac: str = DEFAULT_MAC
    command: str | None = None  # the command line as typed, for the file's header; rebuilt from the options without it


@dataclass
class Imported:
    yaml: str
    frames: int = 0
    counts: Counter[str] = field(default_factory=Counter)  # inject, expect, optional, app
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> frames
    warnings: list[str] = field(default_factory=list)

    def summary(self, source: str, out: str) -> str:
        c = self.counts
        made = (f"{c['inject']} injects, {c['expect']} expected, {c['optional']} optional, {c['app']} app steps"
                + (f", {c['prime']} priming steps" if c["prime"] else ""))
        skipped = sum(self.skipped.values())
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0])))
        return (f"imported {self.frames} frames from {source} into {out} ({made}); "
                f"skipped {skipped}" + (f": {why}" if why else ""))


# -- addresses ----------------------------------------------------------------------------------------
@dataclass
class AddressMap:
    ips: dict[bytes, bytes] = field(default_factory=dict)
    macs: dict[bytes, bytes] = field(default_factory=dict)

    def ip(self, value: bytes) -> bytes:
        return self.ips.get(value, value)

    def mac(self, value: bytes) -> bytes:
        return self.macs.get(value, value)

    def fields(self, flat: Mapping[str, Any]) -> dict[str, Any]:
        """The same fields with every address moved (payloads are the caller's business)."""
        out = dict(flat)
        for key in _MAC_KEYS:
            if key in out:
                out[key] = self.mac(out[key])
        for key in _IP_KEYS:
            if key in out:
                out[key] = self.ip(out[key])
        return out


def parse_maps(maps: tuple[str, ...]) -> AddressMap:
    m = AddressMap()
    for item in maps:
        old, sep, new = item.partition("=")
        if not sep:
            raise ImportFailed(f"--map {item}: want OLD=NEW, two IPv4 addresses or two MAC addresses")
        try:
            m.ips[ip_to_bytes(old.strip())] = ip_to_bytes(new.strip())
            continue
        except ValueError:
            pass
        try:
            m.macs[mac_to_bytes(old.strip())] = mac_to_bytes(new.strip())
        except ValueError:
            raise ImportFailed(f"--map {item}: want OLD=NEW, two IPv4 addresses or two MAC addresses") from None
    return m


def adjust_checksum(csum: int, old: bytes, new: bytes) -> int:
    """RFC 1624 eqn. 3: the checksum after the 16-bit words ``old`` became ``new``, without the data."""
    total = ~csum & 0xFFFF
    for i in range(0, len(old), 2):
        total += (~int.from_bytes(old[i:i + 2], "big") & 0xFFFF) + int.from_bytes(new[i:i + 2], "big")
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _adjust_l4(proto: int, l4: bytes, old_pair: bytes, new_pair: bytes) -> bytes:
    """Fix the pseudo-header part of a UDP or TCP checksum carried in ``l4`` (may be a prefix)."""
    offset = {ipv4.PROTO_UDP: 6, ipv4.PROTO_TCP: 16}.get(proto)
    if offset is None or len(l4) < offset + 2 or old_pair == new_pair:
        return l4
    csum = int.from_bytes(l4[offset:offset + 2], "big")
    if proto == ipv4.PROTO_UDP and csum == 0:
        return l4  # no checksum was sent
    fixed = adjust_checksum(csum, old_pair, new_pair)
    if proto == ipv4.PROTO_UDP and fixed == 0:
        fixed = 0xFFFF
    return l4[:offset] + fixed.to_bytes(2, "big") + l4[offset + 2:]


def map_quote(data: bytes, amap: AddressMap, injected: Mapping[tuple[bytes, bytes, int, int], bytes]) -> bytes:
    """The datagram an ICMP error quotes, with its addresses moved and checksums still right.

    If the quoted datagram is one the scenario injects, the quote is that
    datagram's first bytes as injected (so any checksum the import fixed is
    fixed in the quote too); otherwise its header is rebuilt with the new
    addresses and the transport checksum adjusted.
    """
    try:
        q = ipv4.HEADER.parse(data)
    except (ConstructError, ValueError):
        return data
    if q.version_ihl >> 4 != 4 or (q.version_ihl & 0x0F) < 5:
        return data
    key = (q.src, q.dst, q.protocol, q.identification)
    whole = injected.get(key)
    if whole is not None and len(whole) >= len(data):
        return whole[:len(data)]
    src, dst = amap.ip(q.src), amap.ip(q.dst)
    if (src, dst) == (q.src, q.dst):
        return data
    header = bytearray(ipv4.HEADER.build({**q, "src": src, "dst": dst, "checksum": 0, "payload": b""}))
    header[10:12] = internet_checksum(header).to_bytes(2, "big")
    payload = q.payload if q.flags_fragment & 0x1FFF else _adjust_l4(q.protocol, q.payload, q.src + q.dst, src + dst)
    return bytes(header) + payload


# -- classifying frames -----------------------------------------------------------------------------------------
@dataclass
class Frame:
    number: int  # 1-based, as tshark and wireshark count
    ns: int  # since the first frame kept
    data: bytes
    d: Decoded  # decoded as captured (old addresses)
    role: str = ""  # inject | expect | optional | ping | sendto | fragment (folded into an earlier expect)
    why: str = ""  # for optional frames, the note
    app_first: "Frame | None" = None  # an app step to write before this frame (hoisted above its ARP request)
    group: list[int] = field(default_factory=list)  # expect: the numbers of the fragments of one datagram, in order

    @property
    def f(self) -> dict[str, Any]:
        return self.d.fields


def _skip_reason(fr: Frame) -> str | None:
    """Why simstack has nothing to do with this frame's protocol, or None when it speaks it."""
    f = fr.f
    etype = f.get("eth.type")
    if etype is None:
        return "malformed"
    if etype not in (ethernet.TYPE_ARP, ethernet.TYPE_IPV4):
        return ETHERTYPE_NAMES.get(etype, f"ethertype {etype:#06x}")
    if etype == ethernet.TYPE_IPV4 and "ipv4.proto" in f and \
            f["ipv4.proto"] not in (ipv4.PROTO_ICMP, ipv4.PROTO_UDP, ipv4.PROTO_TCP):
        proto = f["ipv4.proto"]
        return IP_PROTO_NAMES.get(proto, f"IPv4 protocol {proto}")
    return None


# ICMP destination unreachable, protocol unreachable: its type and code, as they stand in a frame that holds one.
_UNREACHABLE = bytes([icmp.DEST_UNREACHABLE, icmp.PROTOCOL_UNREACHABLE])
# Roles between the passes: one byte a kept frame (Frame.role spells them out).
ROLES = ("", "inject", "expect", "optional", "ping", "sendto", "fragment", "ack")
_ROLE = {name: code for code, name in enumerate(ROLES)}
# What tcp_apps.infer reads of a frame: a TCP frame keeps these between the passes, every other frame nothing.
_TCP_APP_KEYS = ("ipv4.src", "ipv4.dst", "ipv4.mf", "ipv4.frag", "tcp.sport", "tcp.dport", "tcp.seq", "tcp.ack",
                 "tcp.flags", "tcp.win", "tcp.options", "tcp.data")
_NOT_TCP: tuple[float, str, Mapping[str, Any]] = (0.0, "", MappingProxyType({}))
_SPOOL_MEMORY = 1 << 20  # steps written past this many characters wait in a temporary file, not in memory


def _tcp_event(fr: Frame) -> tuple[float, str, Mapping[str, Any]]:
    f = fr.f
    if "tcp.sport" not in f:
        return _NOT_TCP
    return fr.ns / 1e9, "<" if fr.role == "inject" else ">", {k: f[k] for k in _TCP_APP_KEYS if k in f}


def _service_facts(f: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """What ``_services`` asks of a frame, when it asks anything: (UDP ports, ICMP type, the quoted port)."""
    sport, dport, kind = f.get("udp.sport"), f.get("udp.dport"), f.get("icmp.type")
    quoted = _quoted_dport(f.get("icmp.data", b"")) if kind == icmp.DEST_UNREACHABLE else None
    if sport in (ECHO_PORT, DISCARD_PORT) or dport == DISCARD_PORT or quoted == DISCARD_PORT:
        return sport, dport, kind, quoted
    return None


@dataclass
class _Plan:
    """What the second pass decided, held for the third in a few bytes a frame."""

    kept: bytearray = field(default_factory=bytearray)  # by capture frame: 1 when kept
    role: bytearray = field(default_factory=bytearray)  # by kept frame: its code in ROLES
    ns: "array[int]" = field(default_factory=lambda: array("q"))  # by kept frame: since the first one kept
    why: dict[int, str] = field(default_factory=dict)  # optional frames: the note
    app_first: dict[int, tuple[int, int, bytes]] = field(default_factory=dict)  # ARP request -> (kept index, number, data)
    groups: dict[int, tuple[list[int], bytes]] = field(default_factory=dict)  # first fragment -> (numbers, datagram)
    events: list[tuple[float, str, Mapping[str, Any]]] = field(default_factory=list)  # by kept frame, for tcp_apps
    services: dict[int, tuple[Any, ...]] = field(default_factory=dict)  # by kept frame: _service_facts
    tcp: bool = False


@dataclass
class _Member:
    k: int  # kept index
    fr: Frame


class _Classifier:
    """Decide, for each frame the stack sent, whether it is expected, optional or an app's doing.

    * ARP request to a unicast MAC: optional (a probe of a neighbour it already knows; when is its choice).
    * ARP request with sender 0.0.0.0 or sender = target (RFC 5227 probe, announcement): optional.
    * ARP request broadcast, followed by traffic the stack starts itself to that address: optional,
      and the app step that starts the traffic goes before it.
    * ARP request broadcast, followed by an answer the stack owes: expected (it must resolve to answer).
    * ARP reply to a request in the capture: expected; any other (gratuitous) reply: optional.
    * ICMP echo request: ``app: ping`` with the same id, seq and data, then expected.
    * UDP from the echo port: expected (simstack's echo service answers).
    * UDP from any other port: ``app: sendto`` on a socket bound to that port, then expected.
    * Fragments of one datagram, sent back to back: one expectation of the whole datagram (``fragments: N``).
    * TCP with data, SYN, FIN or RST: expected, after the ``app`` steps that make it (tcp_apps). A bare ACK:
      not expected (``ack``), and the scenario ignores simstack's, since when to acknowledge is a stack's
      own choice (delayed ACKs, RFC 1122 4.2.3.2); the window it shows still tells when the application read.
    * Everything else it sent (echo replies, ICMP errors, ...): expected.

    Frames are decided one by one in capture order (``feed``), and two rules
    look ahead. An ARP request waits for the next frame the stack sends to its
    target (``pending``), and a run of fragments of one datagram that the
    stack sends back to back waits for the first frame that does not continue
    it (``group``). Each is settled when that frame arrives, before the
    frame's own role, as a classification of the whole capture would settle it.
    """

    def __init__(self, importer: "Importer", plan: _Plan) -> None:
        self.importer = importer
        self.plan = plan
        self.asked: set[tuple[bytes, bytes]] = set()  # (requester ip, requester mac) of ARP requests to the stack
        self.pending: dict[bytes, list[int]] = {}  # target -> broadcast ARP requests of the stack, by kept index
        self.group: list[_Member] = []  # fragments of one datagram the stack sent back to back, so far

    def feed(self, k: int, fr: Frame) -> None:
        f = fr.f
        if fr.role == "inject":
            if f.get("arp.op") == arp.REQUEST and f.get("arp.tpa") == self.importer.stack_ip:
                self.asked.add((f["arp.spa"], f["arp.sha"]))
            return
        waiting = self.pending.pop(f["ipv4.dst"], ()) if "ipv4.dst" in f else ()
        for request in waiting:
            self._follow(request, k, fr)
        if self.group:
            first = self.group[0].fr
            if is_fragment(f) and _frag_key(f) == _frag_key(first.f) and not self.plan.role[k]:
                self.group.append(_Member(k, fr))
                return
            while self.group:  # a run that made no datagram goes on from its second fragment, up to this frame
                self.close()
        if not self.plan.role[k]:
            self._classify(k, fr)

    def _set(self, k: int, role: str, why: str = "") -> None:
        self.plan.role[k] = _ROLE[role]
        if why:
            self.plan.why[k] = why

    def _classify(self, k: int, fr: Frame) -> None:
        f = fr.f
        if "arp.op" in f:
            self._classify_arp(k, fr)
        elif f.get("icmp.type") == icmp.ECHO_REQUEST:
            self._set(k, "ping")
        elif "udp.sport" in f and f["udp.sport"] != ECHO_PORT:
            self._set(k, "sendto")
        elif _bare_ack(f):
            self._set(k, "ack")
        elif is_fragment(f):
            self.group = [_Member(k, fr)]
        else:
            self._set(k, "expect")

    def _classify_arp(self, k: int, fr: Frame) -> None:
        f = fr.f
        if f["arp.op"] == arp.REPLY:
            if (f["arp.tpa"], f["arp.tha"]) in self.asked:
                self._set(k, "expect")
            else:
                self._set(k, "optional", "an ARP reply nobody asked for (gratuitous): the stack's own choice")
        elif f["arp.op"] != arp.REQUEST:
            self._set(k, "optional", f"ARP opcode {f['arp.op']}: not something simstack sends")
        elif f["eth.dst"] != BROADCAST_MAC:
            self._set(k, "optional", "a unicast ARP request re-checks a neighbour the stack already knows; "
                                     "when to send one is the stack's choice")
        elif f["arp.spa"] in (ZERO_IP, f["arp.tpa"]):
            self._set(k, "optional", "an ARP probe or announcement (RFC 5227): the stack's own choice")
        else:
            self.pending.setdefault(f["arp.tpa"], []).append(k)  # settled by what the stack sends it next

    def _follow(self, request: int, k: int, follow: Frame) -> None:
        """The broadcast ARP request ``request`` is settled by ``follow``, the next frame the stack sent its target."""
        f = follow.f
        if f.get("icmp.type") == icmp.ECHO_REQUEST or ("udp.sport" in f and f["udp.sport"] != ECHO_PORT):
            self._set(request, "optional", "the stack resolves the address before traffic of its own; simstack "
                                           "resolves only if it does not know the neighbour yet")
            if not self.plan.role[k]:
                self._set(k, "ping" if f.get("icmp.type") == icmp.ECHO_REQUEST else "sendto")
                self.plan.app_first[request] = (k, follow.number, follow.data)
        else:
            self._set(request, "expect")

    def close(self) -> None:
        """Fold the fragments gathered into one ``fragments: N`` expectation, or, when they make no datagram,
        expect the first alone and go on from the second."""
        group, self.group = self.group, []
        if not group:
            return
        first = group[0]
        try:
            whole = reassemble([m.fr.data for m in group], verify_checksum=False) if len(group) > 1 else None
        except DefragError:
            whole = None
        self._set(first.k, "expect")
        if whole is None:
            for m in group[1:]:  # each is classified in turn, as if met for the first time
                if self.group:
                    self.group.append(m)
                elif not self.plan.role[m.k]:
                    self._classify(m.k, m.fr)
            return
        plan = self.plan
        plan.groups[first.k] = ([m.fr.number for m in group], whole)
        for m in group[1:]:
            self._set(m.k, "fragment")
        # From here on the first fragment stands for the whole datagram (as in Frame.d).
        d = decode_frame(whole)
        if d.fields.get("icmp.type") in icmp.ERROR_TYPES:
            self.importer.quoted.add(_quoted_key(d.fields.get("icmp.data", b"")))
        plan.events[first.k] = _tcp_event(Frame(first.fr.number, first.fr.ns, whole, d, "expect"))
        plan.tcp = plan.tcp or "tcp.sport" in d.fields
        facts = _service_facts(d.fields)
        if facts is None:
            plan.services.pop(first.k, None)
        else:
            plan.services[first.k] = facts

    def finish(self) -> None:
        while self.group:
            self.close()
        for requests in self.pending.values():
            for k in requests:
                self._set(k, "optional", "the stack asked for this address but sent it nothing afterwards")
        self.pending.clear()


class Importer:
    """A capture into a scenario, in three passes that hold a few bytes a frame between them.

    A capture of 200,000 frames held as decoded frames took 40 times its size
    (issue 16.7). The passes read the frames again instead: the first learns
    the stack's MAC and the addresses that move; the second keeps and
    classifies each frame and learns the hosts, keeping a role a frame; the
    third writes each step as it is made, into a spool, since the header
    above the steps (hosts, counts) is known only at the end.
    """

    def __init__(self, capture: Capture | CaptureFile, opts: ImportOptions, source: str = "") -> None:
        self.capture = capture
        self.opts = opts
        self.source = source or opts.capture
        try:
            self.stack_ip = ip_to_bytes(opts.stack)
        except ValueError as e:
            raise ImportFailed(f"--stack: {e}") from None
        try:
            self.new_ip, self.prefix = parse_interface(opts.ip if "/" in opts.ip else opts.ip + "/24")
            self.new_mac = mac_to_bytes(opts.mac)
            check_stack_addresses(self.new_ip, self.prefix, self.new_mac)
        except AddressError as e:
            raise ImportFailed(f"--{e.what}: {e}") from None
        except ValueError as e:
            raise ImportFailed(str(e)) from None
        self.amap = parse_maps(opts.maps)
        self.result = Imported("")
        self.stack_mac = b""
        self.vlan: int | None = None
        self.config = StackConfig(self.new_mac, self.new_ip, self.prefix)
        self.hosts = HostTable(Host("stack", self.new_mac, self.new_ip), self.config)
        self.first_ns = 0  # the capture's first frame, since the epoch
        self.answered: set[tuple[Any, ...]] = set()  # datagrams the stack answered with protocol unreachable
        self.quoted: set[tuple[Any, ...]] = set()  # datagrams some ICMP error quotes
        self.services: list[str] = []
        self.protocols: list[str] = []
        self.span_ns = 0  # from the first frame kept to the last
        self._head = ""
        self._spool: IO[str] | None = None

    # -- the passes -------------------------------------------------------------------------------------
    def run(self) -> Imported:
        """The whole import, with the scenario in ``result.yaml``."""
        self.prepare()
        text = io.StringIO()
        self.write(text)
        self.result.yaml = text.getvalue()
        return self.result

    def prepare(self) -> Imported:
        """Read and decide everything; ``write`` then writes the scenario. ImportFailed or CaptureError say why not."""
        self._survey()
        plan = self._decide()
        self._steps(plan)
        return self.result

    def write(self, out: TextIO) -> None:
        """The scenario ``prepare`` made: its head, then the steps it spooled."""
        out.write(self._head)
        spool, self._spool = self._spool, None
        if spool is not None:
            with spool:
                spool.seek(0)
                shutil.copyfileobj(spool, out)

    def _frames(self) -> Iterable[CapturedFrame]:
        return self.capture.frames if isinstance(self.capture, Capture) else self.capture

    def _survey(self) -> None:
        """Pass 1: the stack's MAC, and the datagrams it answered with protocol unreachable.

        The MAC of ``--stack`` is the source of its first IPv4 or ARP frame.
        Frames to it do not tell: a frame for its IP may be addressed to
        another MAC (a flooded frame), which is exactly what a test may show.
        Once it is known, only a frame holding an ICMP protocol unreachable's
        type and code (3, 2) somewhere in its bytes is decoded.
        """
        ip = self.stack_ip
        self.amap.ips.setdefault(ip, self.new_ip)
        self.new_ip = self.amap.ips[ip]
        mac: bytes | None = None
        addressed = False  # a frame was sent to --stack
        unreachable: list[tuple[Any, Any, tuple[Any, ...]]] = []  # (eth.src, ipv4.src, quoted) of protocol unreachables
        count = 0
        for c in self._frames():
            if not count:
                self.first_ns = c.ns
            count += 1
            if mac is None:
                f = decode_frame(c.data).fields
                if f.get("ipv4.src") == ip or (f.get("arp.spa") == ip and "arp.op" in f):
                    self.vlan = f.get("eth.vlan")
                    mac = f["eth.src"]
                elif ip in (f.get("ipv4.dst"), f.get("arp.tpa")):
                    addressed = True
            elif _UNREACHABLE in c.data:
                f = decode_frame(c.data).fields
            else:
                continue
            if f.get("icmp.type") == icmp.DEST_UNREACHABLE and f.get("icmp.code") == icmp.PROTOCOL_UNREACHABLE:
                unreachable.append((f.get("eth.src"), f.get("ipv4.src"), _quoted_key(f.get("icmp.data", b""))))
        if not count:
            raise ImportFailed(f"{self.source}: the capture holds no frames")
        if mac is None:
            if addressed:
                raise ImportFailed(f"{self.source}: {self.opts.stack} sent no frame in this capture, so its MAC is unknown")
            raise ImportFailed(f"{self.source}: no frame from or to {self.opts.stack}; is --stack the right address?")
        self.stack_mac = mac
        self.amap.macs.setdefault(mac, self.new_mac)
        self.new_mac = self.amap.macs[mac]
        try:
            check_stack_addresses(self.new_ip, self.prefix, self.new_mac)
        except AddressError as e:
            raise ImportFailed(f"--map gives the stack an address it cannot have: {e}") from None
        self.answered = {key for src_mac, src_ip, key in unreachable if src_mac == mac or src_ip == ip}

    def _move_subnet(self, f: Mapping[str, Any], old: StackConfig, new_net: int) -> None:
        """Addresses on the captured host's subnet move with it, keeping their host part.

        The prefix length is ``--ip``'s. So 10.9.0.2 next to a stack at
        10.9.0.1 becomes 10.0.0.2 next to simstack at 10.0.0.1, and the
        subnet's broadcast address stays the broadcast address; ``--map``
        overrides any of these.
        """
        mask = old.netmask
        for key in _IP_KEYS:
            ip = f.get(key)
            if ip is None or ip == ZERO_IP or not old.on_link(ip) or ip in self.amap.ips:
                continue
            host = int.from_bytes(ip, "big") & ~mask & 0xFFFFFFFF
            self.amap.ips[ip] = (new_net | host).to_bytes(4, "big")

    def _from_stack(self, f: Mapping[str, Any]) -> bool:
        return f.get("eth.src") == self.stack_mac or f.get("ipv4.src") == self.stack_ip or \
            ("arp.op" in f and f.get("arp.spa") == self.stack_ip)

    def _decide(self) -> _Plan:
        """Pass 2: which frames to keep (``_keep``), what each becomes (``_Classifier``), the hosts they show.

        Addresses move as they are first seen (``_move_subnet``), so each frame
        has its addresses' new values before the hosts learn from it.
        """
        self.config = StackConfig(self.new_mac, self.new_ip, self.prefix, vlan=self.vlan)
        self.hosts = HostTable(Host("stack", self.new_mac, self.new_ip), self.config)
        old = StackConfig(self.stack_mac, self.stack_ip, self.prefix)
        new_net = int.from_bytes(self.new_ip, "big") & old.netmask
        plan = _Plan()
        classifier = _Classifier(self, plan)
        base: int | None = None
        for number, c in enumerate(self._frames(), 1):
            fr = Frame(number, c.ns - self.first_ns, c.data, decode_frame(c.data))
            self._move_subnet(fr.f, old, new_net)
            if fr.f.get("icmp.type") in icmp.ERROR_TYPES:
                self.quoted.add(_quoted_key(fr.f.get("icmp.data", b"")))
            if not self._keep(fr, c):
                plan.kept.append(0)
                continue
            plan.kept.append(1)
            k = len(plan.ns)
            if base is None:
                base = fr.ns
            fr.ns -= base
            plan.ns.append(fr.ns)
            plan.role.append(_ROLE[fr.role])
            f = fr.f
            self.hosts.learn(self.amap.fields(f))
            plan.tcp = plan.tcp or "tcp.sport" in f
            plan.events.append(_tcp_event(fr))
            facts = _service_facts(f)
            if facts is not None:
                plan.services[k] = facts
            classifier.feed(k, fr)
        classifier.finish()
        if not plan.ns:
            raise ImportFailed(f"{self.source}: no frame to or from {self.opts.stack} that simstack can replay")
        self.result.frames = len(plan.ns)
        self.span_ns = plan.ns[-1]
        self.services = self._services(plan)
        return plan

    def _keep(self, fr: Frame, raw: CapturedFrame) -> bool:
        """Whether simstack has anything to do with this frame; sets ``fr.role`` to inject or "" (the stack's)."""
        skipped = self.result.skipped
        f = fr.f
        if raw.cut:
            skipped["cut short by the snaplen"] += 1
            return False
        from_stack = self._from_stack(f)
        to_stack = f.get("eth.dst") in (self.stack_mac, BROADCAST_MAC)
        reason = _skip_reason(fr)
        if reason is not None and reason.startswith(("IPv4 protocol", *IP_PROTO_NAMES.values())) \
                and _frag_key(f) in self.answered:
            reason = None  # the stack answered it with protocol unreachable: that answer is simstack's to give
        if reason is not None and reason != "malformed":
            skipped[reason] += 1  # a protocol simstack does not speak, whoever sent it
            return False
        if not from_stack and not to_stack:
            skipped["not to or from the stack"] += 1
            return False
        if from_stack and "malformed" in fr.d.summary:
            skipped["malformed, sent by the stack"] += 1
            return False
        if from_stack and "icmp.type" in f and f["icmp.type"] not in SIMSTACK_SENDS_ICMP:
            skipped[f"ICMP type {f['icmp.type']} (simstack never sends it)"] += 1
            return False
        fr.role = "" if from_stack else "inject"
        return True

    def _lookahead(self, plan: _Plan, apps: Mapping[int, list[AppCall]]) -> dict[int, int | None]:
        """For each optional expectation (by kept index): when the next inject or app step after it comes (``emit``).

        The steps of a kept frame come in this order: the TCP application calls
        before it, the app step that starts it, then its own step.
        """
        out: dict[int, int | None] = {}
        hoisted = {k for k, _, _ in plan.app_first.values()}
        calls = apps.get(len(plan.ns))
        nxt: int | None = round(calls[0].t * 1e9) if calls else None
        for k in range(len(plan.ns) - 1, -1, -1):
            role = ROLES[plan.role[k]]
            if role == "optional":
                out[k] = nxt
            if role == "inject" or k in plan.app_first or (role in ("ping", "sendto") and k not in hoisted):
                nxt = plan.ns[k]
            calls = apps.get(k)
            if calls:
                nxt = round(calls[0].t * 1e9)
        return out

    def _steps(self, plan: _Plan) -> None:
        """Pass 3: every step, timed (``emit``) and written to the spool as it is made; then the head."""
        apps = self._tcp_apps(plan)
        later = self._lookahead(plan, apps)
        ctx_old = Context(Host("stack", self.stack_mac, self.stack_ip))
        ctx_new = self.hosts.context()
        injected: dict[tuple[bytes, bytes, int, int], bytes] = {}  # old IPv4 identity -> IPv4 packet, when quoted
        counts = self.result.counts
        sockets: list[int] = []
        started: set[int] = set()  # frames whose app step is written already (above their ARP request)
        isns = Isns()  # learned from the capture as the replay will learn them (old addresses; ISNs do not move)
        primer = _Primer(self)
        spool = self._spool = tempfile.SpooledTemporaryFile(_SPOOL_MEMORY, "w+", encoding="utf-8")  # noqa: SIM115 (write)
        prev = 0  # the time of the step before, in the capture's nanoseconds
        written = 0

        def emit(step: OutStep, t: int, nxt: int | None = None) -> None:
            """Give injects and app steps their capture time, expectations a window; then spool the step.

            Injects and app steps take absolute ``at:`` times, so the capture's
            timeline holds whatever an expectation did to the replay's clock.
            Expectations carry no ``at``: a kernel and simstack answer microseconds
            apart, and order is what a correct stack must get right. A required one
            whose frame came long after the step before (a timer: reassembly,
            ARP retries) waits that long plus a second instead of the default 5 s.
            An optional one waits at most until the next timed step (``nxt``), so it
            catches simstack's own version of the frame if simstack sends one by
            then, and never moves the clock past a step that comes later.
            """
            nonlocal prev, written
            if step.action in ("inject", "app"):
                step.at = _seconds(t)
            elif step.optional:
                step.within = round(max(0, nxt - prev) / 1e9, 6) if nxt is not None else 0.0
            elif t - prev > LONG_WAIT_NS:
                step.within = round((t - prev) / 1e9 + 1, 3)
            prev = t
            primer.see(step)
            spool.write(("\n" if written else "") + "\n".join(render_step(step, self.hosts)) + "\n")
            written += 1

        k = -1
        for number, c in enumerate(self._frames(), 1):
            if not plan.kept[number - 1]:
                continue
            k += 1
            for call in apps.get(k, ()):
                emit(self._tcp_app_step(call), round(call.t * 1e9))
                counts["app"] += 1
            fr = self._frame(plan, k, number, c.data)
            self._protocols(fr.d)
            if fr.role in ("fragment", "ack"):
                if "tcp.sport" in fr.f:
                    isns.see(fr.data, ">")
                if fr.role == "ack":
                    self.result.skipped["bare TCP ACKs from the host (simstack's are ignored)"] += 1
                continue
            comment = f"frame {fr.number}, {fr.ns / 1e9:.6f} {'<' if fr.role == 'inject' else '>'} {fr.d.summary}"
            starter = fr.app_first or (fr if fr.role in ("ping", "sendto") and fr.number not in started else None)
            if starter is not None:
                if starter is not fr:
                    started.add(starter.number)
                emit(self._app_step(starter, sockets), fr.ns)
                counts["app"] += 1
            if "tcp.sport" in fr.f and fr.role == "inject":  # relative numbers, as before this segment
                comment = comment.replace(fr.d.summary, decode_frame(fr.data, isns).summary)
            if fr.role == "inject":
                step = self._inject_step(fr, ctx_old, ctx_new, injected, isns)
                step.comment = comment
                emit(step, fr.ns)
                counts["inject"] += 1
                if "tcp.sport" in fr.f:
                    if isinstance(step.flat.get("tcp.seq"), int) and not isinstance(step.flat["tcp.seq"], Rel):
                        isns.learn_syn(fr.data)
                    isns.see(fr.data, "<")
                continue
            fields = expect_fields(fr.d, STRICT if self.opts.strict else DUTY)
            if "tcp.sport" in fields:
                isns.see(fr.data, ">")
                fields = isns.relative(fields)
                comment = comment.replace(fr.d.summary, decode_frame(fr.data, isns).summary)
            flat = self.amap.fields(fields)
            if "icmp.data" in flat and flat.get("icmp.type") in icmp.ERROR_TYPES:
                flat["icmp.data"] = map_quote(flat["icmp.data"], self.amap, injected)
            step = OutStep("expect", None, flat, None, comment)
            if fr.group:
                step.fragments = len(fr.group)
                step.note = f"the whole datagram, reassembled from the {len(fr.group)} fragments the stack sends"
                step.comment = (f"frames {', '.join(str(n) for n in fr.group)}, {fr.ns / 1e9:.6f} > "
                                f"{fr.d.summary} (in {len(fr.group)} fragments)")
            elif is_fragment(fr.f):
                step.flat = self._fragment_fields(fr)
            if fr.role == "optional":
                step.optional, step.note = True, fr.why
                counts["optional"] += 1
            else:
                counts["expect"] += 1
            emit(step, fr.ns, later.get(k))
        for call in apps.get(len(plan.ns), ()):
            emit(self._tcp_app_step(call), round(call.t * 1e9))
            counts["app"] += 1
        first = primer.steps() + self._socket_steps(sockets)
        self._check_subnet()
        options = [("tolerance", str(DEFAULT_TOLERANCE))]
        if any(code == _ROLE["ack"] for code in plan.role):
            options.append(("ignore", "[{tcp: {flags: ., len: 0}}]  # bare ACKs: when to send them is a stack's choice"))
        self._head = render_scenario(
            self._description(), self.config, 1, self.services, self.hosts, options, first,
            header=f"Imported by simstack from {Path(self.source).name}: "
                   f"{self.opts.command or 'simstack import ' + self._argv()}")
        if first and written:
            self._head += "\n"  # the blank line between the steps above and the spooled ones

    def _frame(self, plan: _Plan, k: int, number: int, data: bytes) -> Frame:
        """Kept frame ``k`` as pass 2 left it: its role, note, hoisted app step and fragments."""
        group = plan.groups.get(k)
        fr = Frame(number, plan.ns[k], data, decode_frame(group[1] if group else data), ROLES[plan.role[k]],
                   plan.why.get(k, ""))
        if group:
            fr.group = group[0]
        hoisted = plan.app_first.get(k)
        if hoisted is not None:
            x, x_number, x_data = hoisted
            fr.app_first = Frame(x_number, plan.ns[x], x_data, decode_frame(x_data), ROLES[plan.role[x]])
        return fr

    def _protocols(self, d: Decoded) -> None:
        for name in protocols_of([d]):
            if name not in self.protocols:
                self.protocols.append(name)

    def _argv(self) -> str:
        o = self.opts
        parts = [Path(o.capture).name, "-o", Path(o.out).name, "--stack", o.stack, *(f"--map {m}" for m in o.maps)]
        if o.ip != DEFAULT_IP:
            parts += ["--ip", o.ip]
        if o.mac != DEFAULT_MAC:
            parts += ["--mac", o.mac]
        if o.strict:
            parts.append("--strict")
        return " ".join(parts)


    def _tcp_apps(self, plan: _Plan) -> dict[int, list[AppCall]]:
        """The applications behind the host's TCP segments (tcp_apps.infer), by the index of the frame they precede."""
        if not plan.tcp:
            return {}
        apps: dict[int, list[AppCall]] = {}
        for call in infer(plan.events, self.stack_ip, service_ports(self.services)):
            apps.setdefault(call.before, []).append(call)
        plan.events.clear()
        return apps

    def _tcp_app_step(self, call: AppCall) -> OutStep:
        call.args = [(name, (self.amap.ip(value[0]) if value[0] else value[0], value[1]) if name == "addr" else value)
                     for name, value in call.args]
        return app_step(call, self.hosts, None)


    def _inject_step(self, fr: Frame, ctx_old: Context, ctx_new: Context,
                     injected: dict[tuple[bytes, bytes, int, int], bytes], isns: Isns | None = None) -> OutStep:
        spec = inject_spec(fr.data, ctx_old, fr.d, isns)
        if spec.fields is None:
            assert spec.raw is not None
            raw = self._map_raw(spec.raw)
            note = spec.note + ("; Ethernet addresses mapped" if raw != spec.raw else "")
            return OutStep("inject", None, {}, raw, "", note)
        flat = self.amap.fields(spec.fields)
        notes = [spec.note] if spec.note else []
        f = fr.f
        pair_old = f.get("ipv4.src", b"") + f.get("ipv4.dst", b"")
        pair_new = flat.get("ipv4.src", b"") + flat.get("ipv4.dst", b"")
        for key in _CHECKSUM_KEYS:
            if key not in flat:
                continue
            if key not in fr.d.bad_checksums:
                if not (key == "udp.checksum" and flat[key] == 0):  # zero: "no checksum", kept
                    del flat[key]  # a valid checksum: recomputed for the new addresses
            elif key in ("udp.checksum", "tcp.checksum") and _offload_partial(f, key.partition(".")[0]):
                del flat[key]
                notes.append(f"the capture shows a {key[:3].upper()} checksum left for NIC offload (the pseudo-header "
                             "sum); recomputed")
            else:
                notes.append(f"{key} was bad in the capture and stays as captured")
        if is_fragment(f) and not f.get("ipv4.frag") and "payload." in flat:
            flat["payload."] = _adjust_l4(f["ipv4.proto"], flat["payload."], pair_old, pair_new)
        if "icmp.data" in flat and flat.get("icmp.type") in icmp.ERROR_TYPES:
            flat["icmp.data"] = map_quote(flat["icmp.data"], self.amap, injected)
        if "ipv4.src" in f:
            try:
                packet = ethernet.parse(build_frame(flat, ctx_new, isns)).payload
                injected[(f["ipv4.src"], f["ipv4.dst"], f["ipv4.proto"], f["ipv4.id"])] = packet
            except (ValueError, Malformed):
                pass
        return OutStep("inject", None, flat, None, "", "; ".join(notes))


    def _map_raw(self, raw: bytes) -> bytes:
        """A frame kept as raw bytes: its Ethernet addresses are mapped, the rest is left as captured."""
        try:
            eth = ethernet.parse(raw)
        except Malformed:
            return raw
        moved = eth._replace(dst=self.amap.mac(eth.dst), src=self.amap.mac(eth.src))
        return ethernet.emit(moved, pad=False) if moved != eth else raw


    def _fragment_fields(self, fr: Frame) -> dict[str, Any]:
        f = fr.f
        flat = self.amap.fields({**expect_fields(fr.d, DUTY), **{k: f[k] for k in _PLACES_A_FRAGMENT}})
        payload = f.get("payload.", b"")
        if not f.get("ipv4.frag"):
            payload = _adjust_l4(f["ipv4.proto"], payload, f["ipv4.src"] + f["ipv4.dst"], flat["ipv4.src"] + flat["ipv4.dst"])
        flat["payload."] = payload
        return flat


    def _app_step(self, fr: Frame, sockets: list[int]) -> OutStep:
        f = self.amap.fields(fr.f)
        dst = self.hosts.ip_name(f["ipv4.dst"]) or ip_to_str(f["ipv4.dst"])
        note = "the stack starts this itself: an application step asks simstack to do the same"
        comment = f"frame {fr.number} starts here: {fr.d.summary}"
        if fr.role == "ping":
            args: list[tuple[str, str | list[str]]] = [
                ("dst", dst), ("id", render_value("icmp.id", f["icmp.id"], self.hosts)), ("seq", str(f["icmp.seq"])),
                ("data", render_bytes(f.get("icmp.data", b"")))]
            return OutStep("app", None, {}, None, comment, note, app="ping", args=args)
        port = f["udp.sport"]
        if port not in sockets:
            sockets.append(port)
        args = [("socket", f"udp{port}"), ("addr", f"[{dst}, {f['udp.dport']}]"),
                ("data", render_bytes(f.get("udp.data", b"")))]
        return OutStep("app", None, {}, None, comment, note, app="sendto", args=args)


    def _socket_steps(self, ports: list[int]) -> list[OutStep]:
        steps = []
        for port in ports:
            steps.append(OutStep("app", "0", app="socket", args=[("socket", f"udp{port}")],
                                 note=f"the stack sends UDP from port {port} in the capture: an application owns it"))
            steps.append(OutStep("app", None, app="bind", args=[("socket", f"udp{port}"), ("addr", f"[any, {port}]")]))
            self.result.counts["app"] += 2
        return steps


    def _check_subnet(self) -> None:
        for host in self.hosts.hosts.values():
            if host.ip is not None and not self.config.on_link(host.ip):
                self.result.warnings.append(
                    f"{ip_to_str(host.ip)} is not on simstack's subnet {ip_to_str(self.new_ip)}/{self.prefix}, "
                    f"so the replayed stack cannot answer it; map it with --map {ip_to_str(host.ip)}=NEW")


    def _services(self, plan: _Plan) -> list[str]:
        """echo when the stack answered from port 7; discard when datagrams to port 9 drew no port unreachable."""
        facts = [(ROLES[plan.role[k]], *f) for k, f in plan.services.items()]
        services = []
        if any(role == "expect" and sport == ECHO_PORT for role, sport, _, _, _ in facts):
            services.append("echo")
        to_discard = any(role == "inject" and dport == DISCARD_PORT for role, _, dport, _, _ in facts)
        refused = any(role == "expect" and kind == icmp.DEST_UNREACHABLE and quoted == DISCARD_PORT
                      for role, _, _, kind, quoted in facts)
        sends_from_9 = any(sport == DISCARD_PORT and role != "inject" for role, sport, _, _, _ in facts)
        if to_discard and not refused and not sends_from_9:
            services.append("discard")
        return services

    def _description(self) -> str:
        c = self.result.counts
        span = self.span_ns / 1e9
        first = datetime.fromtimestamp(self.first_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        services = self.services
        moved = [f"{ip_to_str(o)} to {ip_to_str(n)}" for o, n in self.amap.ips.items() if o != n]
        moved += [f"{mac_to_str(o)} to {mac_to_str(n)}" for o, n in self.amap.macs.items() if o != n]
        skipped = sum(self.result.skipped.values())
        protos = join_words(self.protocols)
        text = (f"Imported from the {self.capture.format} capture {Path(self.source).name} (taken {first}): "
                f"{self.result.frames} frames over {span:.3f} s carrying {protos}, to and from the host "
                f"{self.opts.stack}, which simstack plays here. Addresses moved: {join_words(moved)}. "
                f"{c['inject']} frames it received are injected as captured (checksums recomputed for the new "
                f"addresses); {c['expect']} frames it sent are expected with what any correct stack must "
                f"reproduce: addresses, ARP opcodes, ICMP type, code, identifier, sequence and payload, UDP ports "
                f"and payload" + (", TCP ports, flags, sequence numbers and data" if "TCP" in protos else ""))
        text += ", and, as --strict asks, its IP ID, TTL, DF and TOS." if self.opts.strict else \
            " (not the host's own choices of IP ID, TTL, DF or TOS)."
        if c["optional"]:
            text += f" {c['optional']} frames the host sent by its own choice are optional."
        if c["app"]:
            text += " Traffic the host started itself is started by app steps."
        if c["prime"]:
            text += " ARP exchanges at the start teach simstack the neighbours the host already knew."
        if services:
            text += f" The {join_words(services)} service{'s answer' if len(services) > 1 else ' answers'} as the host did."
        if skipped:
            text += f" {skipped} frames were left out (protocols simstack does not speak, or other hosts' traffic)."
        return text


class _Primer:
    """Teach simstack the neighbours the captured host knew before the capture began (``Importer._steps``).

    A stack answers an IPv4 frame without asking ARP only if it learned
    the sender earlier. When the capture shows the stack sending to a
    neighbour it never learned within the capture, an ARP request from
    that neighbour is injected first (simstack learns from it, RFC 826)
    and its reply expected. ``see`` is shown every step in order; ``steps``
    are the steps to put first.
    """

    def __init__(self, importer: Importer) -> None:
        self.importer = importer
        self.known: set[bytes] = set()
        self.need: dict[bytes, bytes] = {}

    def see(self, step: OutStep) -> None:
        im = self.importer
        f = step.flat
        if step.action == "inject" and "arp.op" in f and f.get("arp.tpa") == im.new_ip and f["arp.spa"] != ZERO_IP:
            self.known.add(f["arp.spa"])
        elif step.action == "expect" and "ipv4.dst" in f and not step.optional:
            mac = f.get("eth.dst")
            hop = f["ipv4.dst"]
            if mac is None or mac == BROADCAST_MAC or is_multicast_mac(mac) or not im.config.on_link(hop):
                return
            if hop not in self.known and hop not in self.need:
                self.need[hop] = mac
            self.known.add(hop)

    def steps(self) -> list[OutStep]:
        im = self.importer
        out = []
        stack = Host("stack", im.new_mac, im.new_ip)
        for ip, mac in self.need.items():
            note = ("priming: the captured host knew this neighbour before the capture began; "
                    "its ARP request teaches simstack the same")
            req = {"eth.dst": BROADCAST_MAC, "eth.src": mac, "arp.op": arp.REQUEST, "arp.sha": mac, "arp.spa": ip,
                   "arp.tha": ZERO_MAC, "arp.tpa": stack.ip}
            out.append(OutStep("inject", "0", req, None, "", note))
            out.append(OutStep("expect", None, {"eth.dst": mac, "eth.src": stack.mac, "arp.op": arp.REPLY,
                                                "arp.sha": stack.mac, "arp.spa": stack.ip, "arp.tha": mac,
                                                "arp.tpa": ip}))
            im.result.counts["prime"] += 2
        return out


def _frag_key(f: Mapping[str, Any]) -> tuple[Any, ...]:
    return f.get("ipv4.src"), f.get("ipv4.dst"), f.get("ipv4.proto"), f.get("ipv4.id")


def _offload_partial(f: Mapping[str, Any], layer: str = "udp") -> bool:
    """A UDP or TCP checksum holding just the pseudo-header sum: the sender left it to NIC offload (veth, virtio)."""
    if layer == "tcp":
        if "ipv4.len" not in f or "ipv4.ihl" not in f:
            return False
        length = f["ipv4.len"] - f["ipv4.ihl"] * 4
        proto = ipv4.PROTO_TCP
    else:
        length = f.get("udp.len")
        proto = ipv4.PROTO_UDP
    if length is None:
        return False
    pseudo = ipv4.pseudo_header_sum(f["ipv4.src"], f["ipv4.dst"], proto, length)
    return f.get(f"{layer}.checksum") in (pseudo, ~pseudo & 0xFFFF)


def _bare_ack(f: Mapping[str, Any]) -> bool:
    """A TCP segment that only acknowledges: no data and no SYN, FIN or RST."""
    return "tcp.flags" in f and not f.get("tcp.data") and not f["tcp.flags"] & (tcp.SYN | tcp.FIN | tcp.RST)


def _quoted_key(data: bytes) -> tuple[Any, ...]:
    """(src, dst, protocol, id) of the datagram an ICMP error quotes, as ``_frag_key`` gives for a frame."""
    try:
        q = ipv4.HEADER.parse(data)
    except (ConstructError, ValueError):
        return ()
    return q.src, q.dst, q.protocol, q.identification


def _quoted_dport(data: bytes) -> int | None:
    try:
        q = ipv4.HEADER.parse(data)
        if q.protocol == ipv4.PROTO_UDP and len(q.payload) >= 4:
            return int(udp.HEADER.parse(q.payload.ljust(8, b"\0")).dst_port)
    except (ConstructError, ValueError):
        pass
    return None


def _seconds(ns: int) -> str:
    text = f"{ns / 1e9:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def _same_file(a: str, b: str) -> bool:
    """Whether the paths name one file: by identity when both exist (links, ``./``), by resolved path when not."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def import_capture(opts: ImportOptions) -> Imported:
    try:
        return Importer(open_capture(opts.capture), opts).run()
    except CaptureError as e:
        raise ImportFailed(f"{opts.capture}: {e}") from None


def main(opts: ImportOptions, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The ``simstack import`` command: 0 written, 2 when the capture or the options cannot be used."""
    out = out or sys.stdout
    err = err or sys.stderr
    if _same_file(opts.capture, opts.out):
        print(f"simstack import: -o {opts.out} is the capture itself; writing the scenario would destroy it", file=err)
        return EXIT_INVALID
    try:
        importer = Importer(open_capture(opts.capture), opts)
        result = importer.prepare()
    except CaptureError as e:
        print(f"simstack import: {opts.capture}: {e}", file=err)
        return EXIT_INVALID
    except ImportFailed as e:
        print(f"simstack import: {e}", file=err)
        return EXIT_INVALID
    # "-": standard output carries the scenario; the summary goes beside it, to stderr
    try:
        if opts.out == "-":
            importer.write(out)
            out.flush()
            out = err
        else:
            with Path(opts.out).open("w") as stream:
                importer.write(stream)
    except OSError as e:
        print(f"simstack import: cannot write {opts.out}: {e.strerror}", file=err)
        return EXIT_INVALID
    for warning in result.warnings:
        print(f"simstack import: warning: {warning}", file=err)
    print(result.summary(opts.capture, opts.out), file=out)
    return EXIT_OK
