"""Recording: the frames a stack received and sent, written back as a scenario.

A session on a TAP (``simstack live tap0 --record OUT.yaml``) or a replay
traced by ``Runner(scenario, trace=recorder.record)`` becomes a scenario file
that replays the same exchange: frames the stack received are injected byte
for byte, frames it sent are expected field by field. So a bug met live
becomes a regression test without writing a line of YAML.

The file is meant to be read and edited, so it speaks the scenario language
(``engine/fields.py``) rather than hex: host names instead of addresses,
named opcodes and types, payloads as text, ``{size: N}`` or ``{hex: ...}``.
Every inject is checked by building it back with ``fields.build_frame``; a
frame the field language cannot reproduce exactly becomes ``raw:`` hex.

TCP is written as a person writes it: flags in tcpdump's letters, sequence
and acknowledgment numbers relative to each side's ISN (``isn.py``, learned
as the runner learns them), options in packetdrill's words; and the
applications behind the segments (a listener, a connect, the writes and
reads, the close) become ``app:`` steps (``tcp_apps.py``).

The writer here (``HostTable``, ``inject_spec``, ``render_scenario``) is
shared with ``engine/importer.py``, which makes scenarios out of captures.
"""

import json
import math
import textwrap
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from simstack.protocols import arp, ethernet, fieldspec, icmp, tcp
from simstack.protocols.addresses import (
    BROADCAST_IP,
    BROADCAST_MAC,
    ZERO_IP,
    ZERO_MAC,
    ip_to_str,
    is_multicast_mac,
    mac_to_str,
)
from simstack.protocols.arp_cache import ArpConfig
from simstack.protocols.fieldspec import NO_DEFAULT, Expect
from simstack.protocols.fragments import ReassemblyConfig
from simstack.protocols.stack import StackConfig
from simstack.protocols.tcp_conn import TcpConfig

from ..api.services import SERVICES
from .defrag import is_fragment
from .fields import (
    KINDS,
    LAYER_ORDER,
    LAYERS,
    Context,
    Decoded,
    Host,
    SpecError,
    build_frame,
    decode_frame,
    field_of,
)
from .isn import Isns, Rel
from .tcp_apps import AppCall, infer
from .tcp_words import OptionsPattern, flags_text, option_text

DEFAULT_TOLERANCE = 0.05
# Frames a recording keeps (simstack live --record-limit): minutes of ordinary traffic, a second to write,
# and a file replay reads (loader.MAX_FILE_BYTES) even when every frame is a full one written in hex.
DEFAULT_RECORD_LIMIT = 5_000
MAX_RECORD_LIMIT = 1_000_000
HEX_PER_LINE = 64
FLOW_WIDTH = 128  # a layer longer than this on one line is written one field per line
TEXT_MAX = 200  # printable payloads longer than this are written as hex

_ALL_FIELDS = tuple(f for header in LAYERS.values() for f in header.fields)
# Fields emit() computes; an inject names them only when the frame lies about them.
_COMPUTED = tuple(f.key for f in _ALL_FIELDS if f.computed is not None)
# What a recorded expectation holds: every field the stack chose (checksums are always checked anyway).
RECORDED = frozenset({Expect.DUTY, Expect.CHOICE, Expect.DETAIL})


# -- hosts ------------------------------------------------------------------------------------
@dataclass
class _Seen:
    mac: bytes | None = None
    ip: bytes | None = None
    order: int = 0


class HostTable:
    """Every other MAC and IPv4 address in the frames, paired and named, for ``hosts:``.

    An address pairs with a MAC when one frame states both for the same host:
    an ARP sender (or a reply's target), or the Ethernet and IPv4 source of a
    frame from an on-link address (an off-link source arrives with its
    router's MAC, which is no pairing). Hosts are named after the last octet
    of their address (``host2`` for 10.0.0.2), longer only when that is
    ambiguous; a MAC that never showed an address is ``peer1``, ``peer2``...
    """

    def __init__(self, stack: Host, config: StackConfig | None = None) -> None:
        self.stack = stack
        self.config = config
        self._by_ip: dict[bytes, _Seen] = {}
        self._macs: dict[bytes, int] = {}  # every unicast MAC seen, in order
        self._count = 0
        self._hosts: dict[str, Host] | None = None

    def _on_link(self, ip: bytes) -> bool:
        return self.config is None or self.config.on_link(ip)

    def _usable_mac(self, mac: bytes | None) -> bool:
        return mac is not None and mac != self.stack.mac and mac not in (BROADCAST_MAC, ZERO_MAC) \
            and not is_multicast_mac(mac)

    def _usable_ip(self, ip: bytes | None) -> bool:
        return ip is not None and ip != self.stack.ip and ip not in (BROADCAST_IP, ZERO_IP) and not 224 <= ip[0] <= 239 \
            and (self.config is None or ip != self.config.subnet_broadcast)

    def _see_mac(self, mac: bytes | None) -> None:
        if mac is not None and self._usable_mac(mac) and mac not in self._macs:
            self._count += 1
            self._macs[mac] = self._count

    def _see(self, ip: bytes | None, mac: bytes | None = None) -> None:
        self._hosts = None
        self._see_mac(mac)
        if ip is None or not self._usable_ip(ip):
            return
        seen = self._by_ip.get(ip)
        if seen is None:
            self._count += 1
            seen = self._by_ip[ip] = _Seen(ip=ip, order=self._count)
        if seen.mac is None and mac is not None and self._usable_mac(mac) and self._on_link(ip):
            seen.mac = mac

    def learn(self, fields: Mapping[str, Any]) -> None:
        g = fields.get
        self._hosts = None
        self._see_mac(g("eth.src"))
        self._see_mac(g("eth.dst"))
        if "arp.op" in fields:
            if g("arp.spa") != ZERO_IP:
                self._see(g("arp.spa"), g("arp.sha"))
            if g("arp.op") == arp.REPLY and g("arp.tha") != ZERO_MAC:
                self._see(g("arp.tpa"), g("arp.tha"))
            else:
                self._see(g("arp.tpa"))
        elif "ipv4.src" in fields:
            from_stack = g("eth.src") == self.stack.mac
            self._see(g("ipv4.src"), None if from_stack else g("eth.src"))
            self._see(g("ipv4.dst"), g("eth.dst") if from_stack else None)

    @property
    def hosts(self) -> dict[str, Host]:
        """Name -> Host, in order of first appearance."""
        if self._hosts is not None:
            return self._hosts
        entries: list[tuple[int, bytes | None, bytes | None]] = [
            (min(s.order, self._macs.get(s.mac, s.order)) if s.mac else s.order, s.mac, s.ip) for s in self._by_ip.values()
        ]
        paired = {s.mac for s in self._by_ip.values() if s.mac is not None}
        entries += [(order, mac, None) for mac, order in self._macs.items() if mac not in paired]
        entries.sort(key=lambda e: e[0])
        ips = [ip for _, _, ip in entries if ip is not None]
        hosts: dict[str, Host] = {}
        peers = 0
        for _, mac, ip in entries:
            if ip is None:
                peers += 1
                name = f"peer{peers}"
            else:
                name = _ip_name(ip, ips)
            hosts[name] = Host(name, mac, ip)
        self._hosts = hosts
        return hosts

    def mac_name(self, mac: bytes) -> str | None:
        if mac == self.stack.mac:
            return "stack"
        return next((h.name for h in self.hosts.values() if h.mac == mac), None)

    def ip_name(self, ip: bytes) -> str | None:
        if ip == self.stack.ip:
            return "stack"
        return next((h.name for h in self.hosts.values() if h.ip == ip), None)

    def context(self) -> Context:
        hosts = self.hosts
        return Context(self.stack, dict(hosts), next(iter(hosts.values()), None))


def _ip_name(ip: bytes, all_ips: list[bytes]) -> str:
    for width in (1, 2, 4):
        if sum(1 for other in all_ips if other[-width:] == ip[-width:]) == 1:
            return "host" + "_".join(str(b) for b in ip[-width:])
    return "host" + "_".join(str(b) for b in ip)


# -- what a step says ------------------------------------------------------------------------------
@dataclass
class InjectSpec:
    """How to write a received frame: fields that rebuild it, or raw bytes."""

    fields: dict[str, Any] | None
    raw: bytes | None = None
    note: str = ""


def _base_inject_fields(decoded: Decoded) -> dict[str, Any]:
    f = dict(decoded.fields)
    for spec in _ALL_FIELDS:
        key = spec.key
        if key not in f:
            continue
        # What the builder computes, and (terse fields) the builder's default: leaving them out keeps an inject short.
        if spec.computed is not None or spec.measures or \
                (spec.terse and spec.default is not NO_DEFAULT and f[key] == spec.default):
            del f[key]
    layers = {k.partition(".")[0] for k in f}
    if ("arp" in layers and f.get("eth.type") == ethernet.TYPE_ARP) or \
            (layers & {"ipv4", "icmp", "udp", "tcp"} and f.get("eth.type") == ethernet.TYPE_IPV4):
        f.pop("eth.type")
    if f.get("icmp.code") == 0 and f.get("icmp.type") in (icmp.ECHO_REQUEST, icmp.ECHO_REPLY):
        f.pop("icmp.code")
    return f


def _builds(flat: Mapping[str, Any], ctx: Context, isns: Isns | None = None) -> bytes | None:
    try:
        return build_frame(flat, ctx, isns)
    except (SpecError, ValueError, TypeError, KeyError):
        return None


def _padding(built: bytes, frame: bytes) -> int | None:
    """How many zero bytes of Ethernet padding ``frame`` has beyond ``built``, or None if it is not that."""
    if built == frame:
        return 0
    extra = len(frame) - len(built)
    if extra > 0 and frame.startswith(built) and len(frame) <= ethernet.MIN_FRAME + ethernet.TAG_LEN \
            and not any(frame[len(built):]):
        return extra
    return None


def inject_spec(frame: bytes, ctx: Context, decoded: Decoded | None = None, isns: Isns | None = None) -> InjectSpec:
    """The fields that rebuild ``frame`` exactly (checked by building it), else raw bytes.

    Checksums, lengths and the IHL are left to the builder unless the frame
    carries values the builder would not compute (a bad checksum, a UDP
    checksum of zero, a length that lies); then the fewest such fields that
    reproduce the frame are named. Zero padding up to the Ethernet minimum
    is the one difference allowed, with a note: the builder does not pad and
    the stack ignores padding. With ``isns``, TCP numbers are written relative
    to the ISNs known before this frame. A SYN-ACK that brings a new ISN for a
    connection whose ISN is known (a new incarnation) is written absolute, so
    that it teaches it; a bare SYN needs not, since the stack's SYN-ACK will
    teach its ISN, and a SYN inside a connection (RFC 5961 4.2) must not.
    """
    decoded = decoded or decode_frame(frame)
    base = _base_inject_fields(decoded)
    if isns is not None and "tcp.seq" in base:
        absolute = base
        base = isns.relative(base)
        if absolute["tcp.flags"] & (tcp.SYN | tcp.ACK) == tcp.SYN | tcp.ACK:
            direction = (absolute["ipv4.src"], absolute["tcp.sport"], absolute["ipv4.dst"], absolute["tcp.dport"])
            if isns.known(direction) and isns.base(direction) != absolute["tcp.seq"]:
                base["tcp.seq"] = absolute["tcp.seq"]
    computed = {k: decoded.fields[k] for k in _COMPUTED if k in decoded.fields}
    candidates = [base]
    if computed:
        full = {**base, **computed}
        candidates.append(full)
    for flat in candidates:
        built = _builds(flat, ctx, isns)
        if built is None:
            continue
        pad = _padding(built, frame)
        if pad is None:
            continue
        if flat is not base:
            for key in _COMPUTED:  # drop what the builder gets right by itself
                if key in flat:
                    trial = {k: v for k, v in flat.items() if k != key}
                    again = _builds(trial, ctx, isns)
                    if again is not None and _padding(again, frame) == pad:
                        flat = trial
        note = f"the captured frame ends in {pad} bytes of Ethernet padding, not rebuilt (the stack ignores them)" \
            if pad else ""
        return InjectSpec(dict(flat), None, note)
    return InjectSpec(None, frame, "raw: the field language cannot rebuild this frame exactly")


def expect_fields(decoded: Decoded, expect: Collection[Expect] = RECORDED) -> dict[str, Any]:
    """The decoded fields whose ``Expect`` is in ``expect``, and the payload, in layer and field order."""
    have = decoded.fields
    out = {f.key: have[f.key] for f in _ALL_FIELDS if f.expect in expect and f.key in have}
    if "payload." in have:
        out["payload."] = have["payload."]
    if out.get("ipv4.options") == b"":
        out.pop("ipv4.options")
    if out.get("tcp.urg") == 0:
        out.pop("tcp.urg")
    return out


# -- rendering ------------------------------------------------------------------------------------------
def _quote(text: str) -> str:
    """A YAML double-quoted scalar (JSON's escapes are YAML's)."""
    return json.dumps(text)


def _repeat_unit(value: bytes) -> bytes | None:
    n = len(value)
    for unit in range(1, 9):
        if n >= max(8, 4 * unit) and (value[:unit] * (n // unit + 1))[:n] == value:
            return value[:unit]
    return None


def _printable(value: bytes) -> bool:
    return all(0x20 <= b < 0x7F or b in (9, 10, 13) for b in value)


def render_bytes(value: bytes) -> str | list[str]:
    """A payload as one flow value, or (long hex) as lines of a block mapping."""
    n = len(value)
    if n == 0:
        return '""'
    if value == bytes(i & 0xFF for i in range(n)):
        return f"{{size: {n}}}"
    unit = _repeat_unit(value)
    if unit is not None:
        fill = _quote(unit.decode("ascii")) if _printable(unit) else f'{{hex: "{unit.hex()}"}}'
        return f"{{size: {n}, fill: {fill}}}"
    if _printable(value) and n <= TEXT_MAX:
        return _quote(value.decode("ascii"))
    text = value.hex()
    if len(text) <= HEX_PER_LINE:
        return f'{{hex: "{text}"}}'
    return ["hex: >-", *(text[i:i + HEX_PER_LINE] for i in range(0, len(text), HEX_PER_LINE))]


def render_value(key: str, value: Any, hosts: HostTable, context: Mapping[str, Any] | None = None) -> str | list[str]:
    """One field value in the scenario language; host names where a host is known.

    ``context`` is the rest of the frame's fields, for words that depend on
    another field (an ICMP code's name depends on the type).
    """
    spec = field_of(key)
    t = fieldspec.BYTES if spec is None else spec.type  # the payload layer is bytes
    if t is fieldspec.MAC:
        if value == BROADCAST_MAC:
            return "broadcast"
        if value == ZERO_MAC:
            return "zero"
        return hosts.mac_name(value) or _quote(mac_to_str(value))
    if t is fieldspec.IPV4_ADDRESS:
        name = hosts.ip_name(value)
        if name:
            return name
        return "broadcast" if value == BROADCAST_IP else ip_to_str(value)
    if t is fieldspec.BYTES:
        return render_bytes(value)
    if t is fieldspec.BOOL:
        return "true" if value else "false"
    if t is fieldspec.TCP_FLAGS:
        return flags_text(value)
    if t is fieldspec.TCP_OPTIONS:
        if isinstance(value, OptionsPattern):
            return repr(value)
        return "[" + ", ".join(option_text(o) for o in value) + "]"
    if isinstance(t, fieldspec.SeqNum):
        return str(int(value)) if isinstance(value, Rel) else f"{{abs: {value}}}"
    assert spec is not None and isinstance(t, fieldspec.Int)
    names = t.names
    if t.names_by is not None:
        other = LAYERS[spec.layer].by_attr[t.names_by[0]].key
        names = t.names_in((context or {}).get(other))
    name = next((k for k, v in names.items() if v == value), None)
    if name:
        return name
    return f"{value:#06x}" if t.hex else str(value)


def render_fields(flat: Mapping[str, Any], hosts: HostTable, indent: int) -> list[str]:
    """Layers as ``layer: {field: value, ...}`` lines, one field per line when a layer is long."""
    pad = " " * indent
    lines: list[str] = []
    for layer in LAYER_ORDER:
        present = f"{layer}." in flat
        keys = [k for k in flat if k.partition(".")[0] == layer and (k != f"{layer}." or layer == "payload")]
        if not keys:
            if present:
                lines.append(f"{pad}{layer}: {{}}")  # the layer, with no field to name
            continue
        if layer == "payload":
            v = render_value("payload.", flat["payload."], hosts)
            if isinstance(v, str):
                lines.append(f"{pad}payload: {v}")
            else:
                lines.append(f"{pad}payload:")
                lines.extend(_block(v, indent + 2))
            continue
        order = list(KINDS[layer])
        keys.sort(key=lambda k: order.index(k.partition(".")[2]))
        values = [(k.partition(".")[2], render_value(k, flat[k], hosts, flat)) for k in keys]
        flow = f"{pad}{layer}: {{" + ", ".join(f"{name}: {v}" for name, v in values if isinstance(v, str)) + "}"
        if all(isinstance(v, str) for _, v in values) and len(flow) <= FLOW_WIDTH:
            lines.append(flow)
            continue
        lines.append(f"{pad}{layer}:")
        for name, v in values:
            if isinstance(v, str):
                lines.append(f"{pad}  {name}: {v}")
            else:
                lines.append(f"{pad}  {name}:")
                lines.extend(_block(v, indent + 4))
    return lines


def _block(lines: list[str], indent: int) -> list[str]:
    """``hex: >-`` and its folded lines, indented under their key."""
    pad = " " * indent
    head, *rest = lines
    return [f"{pad}{head}", *(f"{pad}  {line}" for line in rest)]


@dataclass
class OutStep:
    """One step of a written scenario, before rendering."""

    action: str  # inject | expect | app
    at: str | None = None  # rendered: "0.5" absolute, "+0.5" relative
    flat: dict[str, Any] = field(default_factory=dict)  # inject / expect fields
    raw: bytes | None = None  # inject: bytes the fields cannot express
    comment: str = ""  # a YAML comment line above the step: time, direction, decoded summary
    note: str = ""
    optional: bool = False
    within: float | None = None
    fragments: int = 0  # expect: the stack sends the datagram in this many fragments
    app: str = ""
    args: list[tuple[str, str | list[str]]] = field(default_factory=list)  # app arguments, rendered (list: block)


def render_step(step: OutStep, hosts: HostTable) -> list[str]:
    """A step as YAML lines: its comment, ``- at:``/``note:``/... keys, then the action and its body."""
    keys: list[list[str]] = []  # each key with the lines that belong under it, indented relative to the key
    if step.at is not None:
        keys.append([f"at: {step.at}"])
    if step.note:
        keys.append([f"note: {_quote(step.note)}"])
    if step.optional:
        keys.append(["optional: true"])
    if step.within is not None:
        keys.append([f"within: {_number(step.within)}"])
    if step.fragments:
        keys.append([f"fragments: {step.fragments}"])
    if step.action == "app":
        keys.append([f"app: {step.app}"])
        for name, value in step.args:
            keys.append([f"{name}: {value}"] if isinstance(value, str) else [f"{name}:", *_block(value, 2)])
    elif step.raw is not None:
        text = step.raw.hex()
        if len(text) <= HEX_PER_LINE:
            keys.append(["inject:", f'  raw: "{text}"'])
        else:
            keys.append(["inject:", "  raw: >-", *(f"    {text[i:i + HEX_PER_LINE]}" for i in range(0, len(text), HEX_PER_LINE))])
    else:
        keys.append([f"{step.action}:", *render_fields(step.flat, hosts, 2)])
    lines = [f"  # {step.comment}"] if step.comment else []
    for i, key in enumerate(keys):
        lines.append(("  - " if i == 0 else "    ") + key[0])
        lines.extend("    " + line for line in key[1:])
    return lines


def _setting(x: Any) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, tuple):
        return "[" + ", ".join(_setting(v) for v in x) + "]"
    return _number(x)


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def time_text(prev: float, t: float, digits: int | None = None) -> str:
    """``at:`` for a step at ``t`` when the replay's clock stands at ``prev``: ``+delta``, as short as exact.

    The runner computes ``prev + delta`` in floating point, so a decimal whose
    sum lands exactly on ``t`` is written: up to nine places when one does,
    else the full float. A trace from a replay then replays on the very same
    instants (a frame injected at the instant a timer fires stays on the same
    side of it).
    """
    d = t - prev
    if d <= 0:
        return "+0"
    if digits is not None:  # times were rounded when recorded: keep them round
        return "+" + (f"{d:.{digits}f}".rstrip("0").rstrip(".") or "0")
    for digits in range(6, 10):
        text = f"{d:.{digits}f}".rstrip("0").rstrip(".")
        if prev + float(text) == t:
            return "+" + text
    for near in (d, math.nextafter(d, math.inf), math.nextafter(d, 0.0)):
        if prev + near == t:
            return "+" + repr(near)
    return "+" + (f"{d:.9f}".rstrip("0").rstrip(".") or "0")


def _config_lines(config: StackConfig, seed: int, services: Iterable[str]) -> list[str]:
    first = config.ifaces[0]
    if first.offload:  # only an interface can say so: the list form, with the one interface
        vlan = f", vlan: {first.vlan}" if first.vlan is not None else ""
        lines = ["stack:", "  interfaces:",
                 f"    - {{name: {first.name or 'lan'}, mac: {_quote(mac_to_str(first.mac))}, "
                 f"ip: {ip_to_str(first.ip)}/{first.prefix_len}, mtu: {first.mtu}{vlan}, offload: true}}"]
    else:
        lines = [
            "stack:",
            f"  mac: {_quote(mac_to_str(config.mac))}",
            f"  ip: {ip_to_str(config.ip)}/{config.prefix_len}",
        ]
    if config.gateway is not None:
        lines.append(f"  gateway: {ip_to_str(config.gateway)}")
    if not first.offload:
        lines.append(f"  mtu: {config.mtu}")
    if config.ttl != 64:
        lines.append(f"  ttl: {config.ttl}")
    if config.vlan is not None and not first.offload:
        lines.append(f"  vlan: {config.vlan}")
    lines.append(f"  seed: {seed}")
    names = list(services)
    if names:
        lines.append(f"  services: [{', '.join(names)}]")
    for key, value, default in (("arp", config.arp, ArpConfig()), ("reassembly", config.reassembly, ReassemblyConfig()),
                                ("tcp", config.tcp, TcpConfig())):
        changed = [(f.name, getattr(value, f.name)) for f in fields(value) if getattr(value, f.name) != getattr(default, f.name)]
        if changed:
            lines.append(f"  {key}: {{" + ", ".join(f"{name}: {_setting(v)}" for name, v in changed) + "}")
    return lines


def _host_lines(hosts: HostTable) -> list[str]:
    if not hosts.hosts:
        return []
    lines = ["hosts:"]
    for name, host in hosts.hosts.items():
        parts = []
        if host.mac is not None:
            parts.append(f"mac: {_quote(mac_to_str(host.mac))}")
        if host.ip is not None:
            parts.append(f"ip: {ip_to_str(host.ip)}")
        lines.append(f"  {name}: {{{', '.join(parts)}}}")
    return lines


def render_scenario(description: str, config: StackConfig, seed: int, services: Iterable[str], hosts: HostTable,
                    options: Sequence[tuple[str, str]], steps: Sequence[OutStep], header: str = "") -> str:
    """The whole scenario file: description, stack, hosts, options, steps."""
    out: list[str] = []
    if header:
        out += [f"# {line}" if line else "#" for line in header.splitlines()]
    out.append("description: >")
    out += ["  " + line for line in textwrap.wrap(" ".join(description.split()), 100)]
    out.append("")
    out += _config_lines(config, seed, services)
    host_lines = _host_lines(hosts)
    if host_lines:
        out += ["", *host_lines]
    if options:
        out += ["", "options:", *(f"  {k}: {v}" for k, v in options)]
    out += ["", "steps:"]
    for i, step in enumerate(steps):
        if i:
            out.append("")
        out += render_step(step, hosts)
    return "\n".join(out) + "\n"


def protocols_of(decoded: Iterable[Decoded]) -> list[str]:
    """The protocol names in the frames, for a description: ARP, IPv4, ICMP, UDP, then other ethertypes."""
    names: list[str] = []
    for d in decoded:
        f = d.fields
        found = []
        if "arp.op" in f:
            found.append("ARP")
        if "ipv4.src" in f:
            found.append("IPv4")
            if f.get("ipv4.mf") or f.get("ipv4.frag"):
                found.append("IPv4 fragments")
        if "icmp.type" in f:
            found.append("ICMP")
        if "udp.sport" in f:
            found.append("UDP")
        if "tcp.sport" in f:
            found.append("TCP")
        if not found and "eth.type" in f and f["eth.type"] not in (ethernet.TYPE_ARP, ethernet.TYPE_IPV4):
            found.append(f"ethertype {f['eth.type']:#06x}")
        if not f:
            found.append("malformed frames")
        for name in found:
            if name not in names:
                names.append(name)
    return names


def join_words(words: Sequence[str]) -> str:
    if not words:
        return "nothing"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " and " + words[-1]


# -- the recorder ----------------------------------------------------------------------------------------------
class Recorder:
    """Collects ``(t, direction, frame)`` and writes them as a scenario.

    ``direction`` is ``"<"`` for a frame the stack received and ``">"`` for
    one it sent; ``record`` has the signature of the runner's trace hook, so
    ``Runner(scenario, trace=recorder.record)`` records a replay. ``start``
    is the stack's time zero (live mode passes the clock reading at which it
    created the stack, since the stack's timers count from there); ``when``
    and ``source`` only go into the description. ``digits`` rounds recorded
    times (live clocks have nanoseconds nobody should read in a scenario).

    ``limit`` caps the frames kept, since a flood would otherwise grow the
    recording without end: the frames after it are counted (``dropped``) and
    not kept, and ``on_full`` hears of the first of them.
    """

    def __init__(self, config: StackConfig, seed: int, services: Iterable[str] = (), *, start: float = 0.0,
                 when: str | None = None, source: str | None = None, tolerance: float = DEFAULT_TOLERANCE,
                 digits: int | None = None, limit: int | None = None,
                 on_full: Callable[[int], None] | None = None) -> None:
        self.digits = digits
        self.config = config
        self.seed = seed
        self.services = tuple(services)
        self.start = start
        self.when = when
        self.source = source
        self.tolerance = tolerance
        self.events: list[tuple[float, str, bytes]] = []
        self.limit = limit
        self.on_full = on_full
        self.dropped = 0  # frames that came after the limit

    def record(self, t: float, direction: str, frame: bytes) -> None:
        if direction not in ("<", ">"):
            raise ValueError(f"direction must be '<' (received) or '>' (sent), got {direction!r}")
        if self.limit is not None and len(self.events) >= self.limit:
            self.dropped += 1
            if self.dropped == 1 and self.on_full is not None:
                self.on_full(self.limit)
            return
        rel = t - self.start if self.digits is None else round(t - self.start, self.digits)
        self.events.append((rel, direction, bytes(frame)))

    def to_yaml(self) -> str:
        stack = Host("stack", self.config.mac, self.config.ip)
        hosts = HostTable(stack, self.config)
        decoded = [decode_frame(frame) for _, _, frame in self.events]
        for d in decoded:
            hosts.learn(d.fields)
        ctx = hosts.context()
        starts = _ping_starts(self.events, decoded)
        apps: dict[int, list[AppCall]] = {}
        for call in infer([(t, direction, d.fields) for (t, direction, _), d in zip(self.events, decoded, strict=True)],
                          self.config.ip, service_ports(self.services)):
            apps.setdefault(call.before, []).append(call)
        isns = Isns()  # learned as the runner will learn them, frame by frame
        steps: list[OutStep] = []
        prev = 0.0
        for i, ((t, direction, frame), d) in enumerate(zip(self.events, decoded, strict=True)):
            for call in apps.get(i, ()):
                steps.append(app_step(call, hosts, time_text(prev, call.t, self.digits) if steps else _first_time(call.t)))
                prev = max(prev, call.t)
            for ping in starts.get(i, ()):
                steps.append(_ping_step(decoded[ping], hosts, time_text(prev, t, self.digits) if steps else _first_time(t)))
                prev = t
            at = time_text(prev, t, self.digits) if steps else _first_time(t)
            prev = t
            if direction == "<":
                spec = inject_spec(frame, ctx, d, isns)
                summary = decode_frame(frame, isns).summary
                steps.append(OutStep("inject", at, spec.fields or {}, spec.raw, f"{t:.6f} < {summary}", spec.note))
                if spec.fields is not None and isinstance(spec.fields.get("tcp.seq"), int) \
                        and not isinstance(spec.fields["tcp.seq"], Rel):
                    isns.learn_syn(frame)
                isns.see(frame, direction)
            else:
                isns.see(frame, direction)
                summary = decode_frame(frame, isns).summary
                steps.append(OutStep("expect", at, isns.relative(expect_fields(d)), None, f"{t:.6f} > {summary}"))
        for call in apps.get(len(self.events), ()):
            steps.append(app_step(call, hosts, time_text(prev, call.t, self.digits) if steps else _first_time(call.t)))
        return render_scenario(self._description(decoded), self.config, self.seed, self.services, hosts,
                               [("tolerance", _number(self.tolerance))], steps,
                               header="Recorded by simstack: received frames are injected as they came, sent frames\n"
                                      "are expected with every field the stack chose.")

    def _description(self, decoded: list[Decoded]) -> str:
        received = sum(1 for _, d, _ in self.events if d == "<")
        sent = len(self.events) - received
        span = self.events[-1][0] - self.events[0][0] if self.events else 0.0
        where = f" {self.source}" if self.source else ""
        when = f" on {self.when}" if self.when else ""
        protos = join_words(protocols_of(decoded))
        return (f"Recorded{where}{when}: {len(self.events)} frames over {_seconds(span)}, {received} received by the "
                f"stack at {ip_to_str(self.config.ip)} and {sent} sent by it, carrying {protos}. Each received frame "
                f"is injected byte for byte at the time it came; each frame the stack sent is expected with every "
                f"field the stack chose, within {_number(self.tolerance)} s of the time it left."
                + (f" The recording stopped at its limit of {self.limit} frames: the {self.dropped} frames after "
                   f"them are not here." if self.dropped else ""))

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())


def service_ports(names: Iterable[str]) -> set[int]:
    """The ports the stack's own services serve, which no inferred application may take."""
    ports = {getattr(SERVICES.get(name), "port", None) for name in names}
    return {p for p in ports if isinstance(p, int)}


def app_step(call: AppCall, hosts: HostTable, at: str | None) -> OutStep:
    """An inferred application call (tcp_apps.AppCall) as a step."""
    args: list[tuple[str, str | list[str]]] = []
    for name, value in call.args:
        if name == "addr":
            ip, port = value
            host = "any" if ip in (b"", ZERO_IP) else hosts.ip_name(ip) or ip_to_str(ip)
            args.append((name, f"[{host}, {port}]"))
        elif isinstance(value, bytes):
            args.append((name, render_bytes(value)))
        elif isinstance(value, bool):
            args.append((name, "true" if value else "false"))
        else:
            args.append((name, str(value)))
    return OutStep("app", at, {}, None, "", call.note, app=call.op, args=args)


def _first_time(t: float) -> str:
    return _number(t) if t > 0 else "0"


def _ping_starts(events: Sequence[tuple[float, str, bytes]], decoded: Sequence[Decoded]) -> dict[int, list[int]]:
    """Where to start each echo request the stack sent: event index -> indexes of the requests started there.

    An echo request leaves the stack because an application pinged (``simstack
    live --ping``), so the replay needs an ``app: ping`` step. It goes where
    the ping began: before the broadcast ARP requests the stack sent to
    resolve the destination since it last sent that destination anything,
    else right before the request itself.
    """
    starts: dict[int, list[int]] = {}
    for i, d in enumerate(decoded):
        f = d.fields
        if events[i][1] != ">" or f.get("icmp.type") != icmp.ECHO_REQUEST or is_fragment(f):
            continue
        dst = f["ipv4.dst"]
        at = i
        for j in range(i - 1, -1, -1):
            g = decoded[j].fields
            if events[j][1] != ">":
                continue
            if g.get("ipv4.dst") == dst:
                break
            if g.get("arp.op") == arp.REQUEST and g.get("arp.tpa") == dst and g.get("eth.dst") == BROADCAST_MAC:
                at = j
        starts.setdefault(at, []).append(i)
    return starts


def _ping_step(d: Decoded, hosts: HostTable, at: str) -> OutStep:
    f = d.fields
    dst = hosts.ip_name(f["ipv4.dst"]) or ip_to_str(f["ipv4.dst"])
    args: list[tuple[str, str | list[str]]] = [
        ("dst", dst), ("id", render_value("icmp.id", f["icmp.id"], hosts)), ("seq", str(f["icmp.seq"])),
        ("data", render_bytes(f.get("icmp.data", b"")))]
    return OutStep("app", at, {}, None, f"the stack's application pings: {d.summary}",
                   "an application on the stack sent this echo request", app="ping", args=args)


def _seconds(span: float) -> str:
    if span < 1:
        return f"{span * 1000:.3g} ms" if span else "0 s"
    return f"{span:.3g} s" if math.isfinite(span) else "?"
