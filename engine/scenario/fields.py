"""Frames described by fields, the language of scenarios.

One table (``FIELDS``) names every field a scenario may set or expect, with its
kind. The same table validates scenario files, builds frames to inject,
decodes frames the stack sent, and prints diffs, so a name means one thing in
every direction. Building and decoding go through ``simstack.protocols``: the
formats are declared once, there.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from simstack.protocols import arp, ethernet, icmp, ipv4, udp
from simstack.protocols.addresses import (
    BROADCAST_IP,
    BROADCAST_MAC,
    ZERO_IP,
    ZERO_MAC,
    ip_to_bytes,
    ip_to_str,
    mac_to_bytes,
    mac_to_str,
)
from simstack.protocols.checksum import verify
from simstack.protocols.errors import Malformed


class SpecError(ValueError):
    """A field description is wrong; ``path`` names the field (``icmp.seq``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


@dataclass(frozen=True)
class Host:
    name: str
    mac: bytes | None = None
    ip: bytes | None = None


@dataclass
class Context:
    """Host names usable as field values; ``peer`` supplies the defaults."""

    stack: Host
    hosts: dict[str, Host] = field(default_factory=dict)
    peer: Host | None = None

    def host(self, name: str) -> Host | None:
        if name == "stack":
            return self.stack
        return self.hosts.get(name)


# -- field kinds ------------------------------------------------------------
class Kind:
    def normalize(self, value: Any, ctx: Context, path: str) -> Any:
        raise NotImplementedError

    def show(self, value: Any) -> str:
        return str(value)


class AddressKind(Kind):
    """A MAC or IPv4 address, written as text, a host name, or a special word."""

    def __init__(self, what: str, attr: str, specials: Mapping[str, bytes], parse: Callable[[str], bytes],
                 text: Callable[[bytes], str]) -> None:
        self.what = what
        self.attr = attr  # "mac" or "ip": which of a host's addresses the name stands for
        self.specials = dict(specials)
        self.parse = parse
        self.text = text

    def normalize(self, value: Any, ctx: Context, path: str) -> bytes:
        if not isinstance(value, str):
            raise SpecError(path, f"want {self.what} or host name, got {value!r}")
        special = self.specials.get(value)
        if special is not None:
            return special
        host = ctx.host(value)
        if host is not None:
            address: bytes | None = getattr(host, self.attr)
            if address is None:
                raise SpecError(path, f"host {value!r} has no {self.attr}")
            return address
        try:
            return self.parse(value)
        except ValueError as e:
            raise SpecError(path, f"{e}, or a host name ({', '.join(['stack', *ctx.hosts])})") from None

    def show(self, value: Any) -> str:
        return self.text(value)


class IntKind(Kind):
    def __init__(self, bits: int, names: Mapping[str, int] | None = None) -> None:
        self.bits = bits
        self.names = dict(names or {})
        # Show a name beside a number only where the number has one name.
        values = list(self.names.values())
        self.by_value = {v: k for k, v in self.names.items() if values.count(v) == 1}

    def normalize(self, value: Any, ctx: Context, path: str) -> int:
        if isinstance(value, str) and value in self.names:
            return self.names[value]
        if isinstance(value, bool) or not isinstance(value, int):
            choices = f" or one of {', '.join(self.names)}" if self.names else ""
            raise SpecError(path, f"want an integer{choices}, got {value!r}")
        if not 0 <= value < (1 << self.bits):
            raise SpecError(path, f"{value} does not fit in {self.bits} bits")
        return value

    def show(self, value: Any) -> str:
        name = self.by_value.get(value)
        return f"{value} ({name})" if name else str(value)


class BoolKind(Kind):
    def normalize(self, value: Any, ctx: Context, path: str) -> bool:
        if not isinstance(value, bool):
            raise SpecError(path, f"want true or false, got {value!r}")
        return value


class BytesKind(Kind):
    """Payload forms: ``"text"``, ``{hex: "0a0b"}``, ``{size: N}`` or ``{size: N, fill: "ab"}``."""

    def normalize(self, value: Any, ctx: Context, path: str) -> bytes:
        return payload_bytes(value, path)

    def show(self, value: Any) -> str:
        if len(value) <= 24:
            return f"{value.hex()} ({len(value)} bytes)" if value else "(empty)"
        return f"{value[:12].hex()}... ({len(value)} bytes)"


def payload_bytes(value: Any, path: str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, Mapping):
        keys = set(value)
        if keys == {"hex"}:
            text = str(value["hex"]).replace(" ", "").replace(":", "").replace("\n", "")
            try:
                return bytes.fromhex(text)
            except ValueError:
                raise SpecError(path, f"bad hex {value['hex']!r}") from None
        if keys <= {"size", "fill"} and "size" in keys:
            size = value["size"]
            if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= 65535:
                raise SpecError(path, f"size must be an integer from 0 to 65535, got {size!r}")
            if "fill" in value:
                fill = payload_bytes(value["fill"], path)
                if not fill:
                    raise SpecError(path, "fill must not be empty")
                return (fill * (size // len(fill) + 1))[:size]
            return bytes(i & 0xFF for i in range(size))
    raise SpecError(path, f"want text, {{hex: ...}} or {{size: N, fill: ...}}, got {value!r}")


MAC = AddressKind("a MAC address", "mac", {"broadcast": BROADCAST_MAC, "zero": ZERO_MAC}, mac_to_bytes, mac_to_str)
IP = AddressKind("an IPv4 address", "ip", {"broadcast": BROADCAST_IP, "any": ZERO_IP}, ip_to_bytes, ip_to_str)
BOOL = BoolKind()
BYTES = BytesKind()
ETHERTYPES = {"ipv4": ethernet.TYPE_IPV4, "arp": ethernet.TYPE_ARP, "vlan": ethernet.TYPE_VLAN}
ARP_OPS = {"request": arp.REQUEST, "reply": arp.REPLY}
IP_PROTOS = {"icmp": ipv4.PROTO_ICMP, "tcp": ipv4.PROTO_TCP, "udp": ipv4.PROTO_UDP}
ICMP_TYPES = {
    "echo-reply": icmp.ECHO_REPLY,
    "dest-unreachable": icmp.DEST_UNREACHABLE,
    "echo-request": icmp.ECHO_REQUEST,
    "time-exceeded": icmp.TIME_EXCEEDED,
    "parameter-problem": icmp.PARAMETER_PROBLEM,
}
ICMP_CODES = {
    "net-unreachable": icmp.NET_UNREACHABLE,
    "host-unreachable": icmp.HOST_UNREACHABLE,
    "protocol-unreachable": icmp.PROTOCOL_UNREACHABLE,
    "port-unreachable": icmp.PORT_UNREACHABLE,
    "frag-needed": icmp.FRAG_NEEDED,
    "ttl-exceeded": icmp.TTL_EXCEEDED,
    "reassembly-timeout": icmp.REASSEMBLY_EXCEEDED,
}

# Every field a scenario can name. Order is the order diffs print in.
FIELDS: dict[str, dict[str, Kind]] = {
    "eth": {"dst": MAC, "src": MAC, "type": IntKind(16, ETHERTYPES), "vlan": IntKind(12), "pcp": IntKind(3)},
    "arp": {
        "op": IntKind(16, ARP_OPS),
        "sha": MAC,
        "spa": IP,
        "tha": MAC,
        "tpa": IP,
        "htype": IntKind(16),
        "ptype": IntKind(16),
        "hlen": IntKind(8),
        "plen": IntKind(8),
    },
    "ipv4": {
        "src": IP,
        "dst": IP,
        "proto": IntKind(8, IP_PROTOS),
        "ttl": IntKind(8),
        "id": IntKind(16),
        "tos": IntKind(8),
        "df": BOOL,
        "mf": BOOL,
        "frag": IntKind(16),
        "ihl": IntKind(4),
        "len": IntKind(16),
        "checksum": IntKind(16),
        "options": BYTES,
    },
    "icmp": {
        "type": IntKind(8, ICMP_TYPES),
        "code": IntKind(8, ICMP_CODES),
        "id": IntKind(16),
        "seq": IntKind(16),
        "mtu": IntKind(16),
        "pointer": IntKind(8),
        "checksum": IntKind(16),
        "data": BYTES,
    },
    "udp": {
        "sport": IntKind(16),
        "dport": IntKind(16),
        "len": IntKind(16),
        "checksum": IntKind(16),
        "data": BYTES,
    },
    "payload": {"": BYTES},  # bytes above the last header simstack decodes
}
TRANSPORTS = ("icmp", "udp")  # layers that sit on IPv4
LAYER_ORDER = ("eth", "arp", "ipv4", *TRANSPORTS, "payload")


def kind_of(key: str) -> Kind:
    layer, _, name = key.partition(".")
    return FIELDS[layer][name]


def normalize_spec(spec: Any, ctx: Context, path: str = "") -> dict[str, Any]:
    """Check a layered description and flatten it to ``{"icmp.seq": 1, ...}``."""
    if not isinstance(spec, Mapping):
        raise SpecError(path, f"want a mapping of layers ({', '.join(LAYER_ORDER)}), got {spec!r}")
    flat: dict[str, Any] = {}
    for layer, fields in spec.items():
        table = FIELDS.get(layer)
        if table is None:
            raise SpecError(f"{path}{layer}", f"unknown layer; known: {', '.join(LAYER_ORDER)}, raw")
        if layer == "payload":
            flat["payload."] = BYTES.normalize(fields, ctx, f"{path}payload")
            continue
        if fields is None:
            fields = {}
        if not isinstance(fields, Mapping):
            raise SpecError(f"{path}{layer}", f"want a mapping of fields, got {fields!r}")
        flat[f"{layer}."] = True  # the layer is there, even with no field named
        for name, value in fields.items():
            kind = table.get(name)
            if kind is None:
                raise SpecError(f"{path}{layer}.{name}", f"unknown field; {layer} has {', '.join(table)}")
            flat[f"{layer}.{name}"] = kind.normalize(value, ctx, f"{path}{layer}.{name}")
    if not flat:
        raise SpecError(path, f"name at least one layer ({', '.join(LAYER_ORDER)})")
    layers = {k.partition(".")[0] for k in flat}
    if "arp" in layers and layers & {"ipv4", *TRANSPORTS}:
        raise SpecError(path, "a frame carries arp or ipv4, not both")
    if len(layers & set(TRANSPORTS)) > 1:
        raise SpecError(path, f"a frame carries one of {', '.join(TRANSPORTS)}")
    return flat


# -- building ------------------------------------------------------------------
def build_frame(flat: Mapping[str, Any], ctx: Context) -> bytes:
    """Build a frame from normalized fields; unnamed fields take peer-to-stack defaults."""
    g = flat.get
    peer = ctx.peer or Host("peer")
    layers = {k.partition(".")[0] for k in flat}
    if "arp" in layers:
        op = g("arp.op", arp.REQUEST)
        sha = g("arp.sha", g("eth.src", peer.mac or ZERO_MAC))
        tha = g("arp.tha", ZERO_MAC if op == arp.REQUEST else ctx.stack.mac or ZERO_MAC)
        body = arp.emit(
            arp.Arp(
                op,
                sha,
                g("arp.spa", peer.ip or ZERO_IP),
                tha,
                g("arp.tpa", ctx.stack.ip or ZERO_IP),
                g("arp.htype", arp.HTYPE_ETHERNET),
                g("arp.ptype", arp.PTYPE_IPV4),
                g("arp.hlen", 6),
                g("arp.plen", 4),
            )
        )
        ethertype = ethernet.TYPE_ARP
        default_dst = BROADCAST_MAC if op == arp.REQUEST else ctx.stack.mac
    elif "ipv4" in layers or layers & set(TRANSPORTS):
        upper, proto = _build_transport(flat)
        body = _build_ipv4(flat, ctx, peer, upper, proto)
        ethertype = ethernet.TYPE_IPV4
        default_dst = ctx.stack.mac
    else:
        body = g("payload.", b"")
        ethertype = g("eth.type", ethernet.TYPE_IPV4)
        default_dst = ctx.stack.mac
    eth = ethernet.Ethernet(
        g("eth.dst", default_dst or BROADCAST_MAC),
        g("eth.src", peer.mac or ZERO_MAC),
        g("eth.type", ethertype),
        body,
        g("eth.vlan"),
        g("eth.pcp", 0),
    )
    try:
        return ethernet.emit(eth, pad=False)
    except ValueError as e:
        raise SpecError("eth", str(e)) from None


def _build_transport(flat: Mapping[str, Any]) -> tuple[bytes, int]:
    g = flat.get
    if any(k.startswith("icmp.") for k in flat):
        msg = icmp.Icmp(
            g("icmp.type", icmp.ECHO_REQUEST),
            g("icmp.code", 0),
            g("icmp.data", b""),
            g("icmp.id", 0),
            g("icmp.seq", 0),
            g("icmp.mtu", 0),
            g("icmp.pointer", 0),
            g("icmp.checksum"),
        )
        return icmp.emit(msg) + g("payload.", b""), ipv4.PROTO_ICMP
    if any(k.startswith("udp.") for k in flat):
        return b"", ipv4.PROTO_UDP  # built in _build_ipv4, which knows the addresses
    return g("payload.", b""), g("ipv4.proto", 0)


def _build_ipv4(flat: Mapping[str, Any], ctx: Context, peer: Host, upper: bytes, proto: int) -> bytes:
    g = flat.get
    src = g("ipv4.src", peer.ip or ZERO_IP)
    dst = g("ipv4.dst", ctx.stack.ip or ZERO_IP)
    if proto == ipv4.PROTO_UDP and any(k.startswith("udp.") for k in flat):
        dgram = udp.Udp(g("udp.sport", 0), g("udp.dport", 0), g("udp.data", b""), g("udp.len"), g("udp.checksum"))
        upper = udp.emit(dgram, src, dst) + g("payload.", b"")
    pkt = ipv4.Ipv4(
        src,
        dst,
        g("ipv4.proto", proto),
        upper,
        g("ipv4.ttl", 64),
        g("ipv4.id", 0),
        g("ipv4.tos", 0),
        g("ipv4.df", False),
        g("ipv4.mf", False),
        g("ipv4.frag", 0),
        g("ipv4.options", b""),
        False,
        g("ipv4.ihl"),
        g("ipv4.len"),
        g("ipv4.checksum"),
    )
    if pkt.ihl is not None and pkt.ihl * 4 != pkt.header_len:
        raise SpecError("ipv4.ihl", f"IHL {pkt.ihl} needs {pkt.ihl * 4 - 20} bytes of options; use raw: for a lying IHL")
    try:
        return ipv4.emit(pkt)
    except ValueError as e:
        raise SpecError("ipv4", str(e)) from None


# -- decoding ------------------------------------------------------------------
@dataclass
class Decoded:
    fields: dict[str, Any]
    summary: str
    bad_checksums: list[str] = field(default_factory=list)


def decode_frame(frame: bytes) -> Decoded:
    """Every field simstack can read from ``frame``; never raises."""
    out: dict[str, Any] = {}
    bad: list[str] = []
    try:
        eth = ethernet.parse(frame)
    except Malformed as e:
        return Decoded(out, f"[malformed ethernet: {e}] length {len(frame)}")
    out["eth."] = True
    out["eth.dst"] = eth.dst
    out["eth.src"] = eth.src
    out["eth.type"] = eth.ethertype
    prefix = ""
    if eth.vlan is not None:
        out["eth.vlan"] = eth.vlan
        out["eth.pcp"] = eth.pcp
        prefix = f"vlan {eth.vlan}, "
    if eth.ethertype == ethernet.TYPE_ARP:
        return Decoded(out, prefix + _decode_arp(eth.payload, out), bad)
    if eth.ethertype != ethernet.TYPE_IPV4:
        out["payload."] = eth.payload
        return Decoded(out, f"{prefix}ethertype {eth.ethertype:#06x}, length {len(frame)}", bad)
    return Decoded(out, prefix + _decode_ipv4(eth.payload, out, bad), bad)


def _decode_arp(data: bytes, out: dict[str, Any]) -> str:
    try:
        a = arp.parse(data)
    except Malformed as e:
        return f"ARP [malformed: {e}]"
    out.update({"arp.": True, "arp.op": a.op, "arp.sha": a.sha, "arp.spa": a.spa, "arp.tha": a.tha, "arp.tpa": a.tpa,
                "arp.htype": a.htype, "arp.ptype": a.ptype, "arp.hlen": a.hlen, "arp.plen": a.plen})
    if a.op == arp.REQUEST:
        return f"ARP, Request who-has {ip_to_str(a.tpa)} tell {ip_to_str(a.spa)}, length {arp.LENGTH}"
    if a.op == arp.REPLY:
        return f"ARP, Reply {ip_to_str(a.spa)} is-at {mac_to_str(a.sha)}, length {arp.LENGTH}"
    return f"ARP, op {a.op}, length {len(data)}"


def _decode_ipv4(data: bytes, out: dict[str, Any], bad: list[str]) -> str:
    try:
        ip = ipv4.parse(data, verify_checksum=False)
    except Malformed as e:
        return f"IP [malformed: {e}]"
    assert ip.ihl is not None
    if not verify(data[: ip.ihl * 4]):
        bad.append("ipv4.checksum")
    out.update({"ipv4.": True, "ipv4.src": ip.src, "ipv4.dst": ip.dst, "ipv4.proto": ip.protocol, "ipv4.ttl": ip.ttl,
                "ipv4.id": ip.identification, "ipv4.tos": ip.tos, "ipv4.df": ip.df, "ipv4.mf": ip.mf,
                "ipv4.frag": ip.frag_offset, "ipv4.ihl": ip.ihl, "ipv4.len": ip.total_length,
                "ipv4.checksum": ip.checksum, "ipv4.options": ip.options})
    head = f"IP {ip_to_str(ip.src)} > {ip_to_str(ip.dst)}: "
    if ip.frag_offset or ip.mf:
        out["payload."] = ip.payload
        return head + (f"ip-proto-{ip.protocol} (frag {ip.identification}:{len(ip.payload)}@{ip.frag_offset}"
                       f"{'+' if ip.mf else ''})")
    decoder = _TRANSPORT_DECODERS.get(ip.protocol)
    if decoder is None:
        out["payload."] = ip.payload
        return head + f"ip-proto-{ip.protocol} {len(ip.payload)}"
    return decoder(ip, out, bad)


def _decode_icmp(ip: ipv4.Ipv4, out: dict[str, Any], bad: list[str]) -> str:
    head = f"IP {ip_to_str(ip.src)} > {ip_to_str(ip.dst)}: ICMP "
    try:
        m = icmp.parse(ip.payload, verify_checksum=False)
    except Malformed as e:
        out["payload."] = ip.payload
        return head + f"[malformed: {e}]"
    if not verify(ip.payload):
        bad.append("icmp.checksum")
    out.update({"icmp.": True, "icmp.type": m.type, "icmp.code": m.code, "icmp.checksum": m.checksum, "icmp.data": m.data})
    if m.type in (icmp.ECHO_REQUEST, icmp.ECHO_REPLY):
        out["icmp.id"] = m.identifier
        out["icmp.seq"] = m.sequence
        word = "request" if m.type == icmp.ECHO_REQUEST else "reply"
        return head + f"echo {word}, id {m.identifier}, seq {m.sequence}, length {len(ip.payload)}"
    if m.type == icmp.DEST_UNREACHABLE:
        out["icmp.mtu"] = m.next_hop_mtu
        return head + f"{_quoted(m.data)} unreachable (code {m.code}), length {len(ip.payload)}"
    if m.type == icmp.TIME_EXCEEDED:
        what = "ip reassembly time exceeded" if m.code == 1 else "time exceeded in-transit"
        return head + f"{what}, length {len(ip.payload)}"
    if m.type == icmp.PARAMETER_PROBLEM:
        out["icmp.pointer"] = m.pointer
    return head + f"type {m.type}, code {m.code}, length {len(ip.payload)}"


def _quoted(data: bytes) -> str:
    if len(data) < 20:
        return "?"
    proto = data[9]
    dst = ip_to_str(data[16:20])
    hlen = (data[0] & 0x0F) * 4
    if proto == ipv4.PROTO_UDP and len(data) >= hlen + 4:
        return f"{dst} udp port {int.from_bytes(data[hlen + 2:hlen + 4], 'big')}"
    return f"{dst} protocol {proto}"


def _decode_udp(ip: ipv4.Ipv4, out: dict[str, Any], bad: list[str]) -> str:
    head = f"IP {ip_to_str(ip.src)}"
    try:
        d = udp.parse(ip.payload, ip.src, ip.dst, verify_checksum=False)
    except Malformed as e:
        out["payload."] = ip.payload
        return f"{head} > {ip_to_str(ip.dst)}: UDP [malformed: {e}]"
    if not udp.checksum_ok(ip.payload[: d.length], ip.src, ip.dst):
        bad.append("udp.checksum")
    out.update({"udp.": True, "udp.sport": d.src_port, "udp.dport": d.dst_port, "udp.len": d.length, "udp.checksum": d.checksum,
                "udp.data": d.payload})
    return f"{head}.{d.src_port} > {ip_to_str(ip.dst)}.{d.dst_port}: UDP, length {len(d.payload)}"


_TRANSPORT_DECODERS = {ipv4.PROTO_ICMP: _decode_icmp, ipv4.PROTO_UDP: _decode_udp}


# -- comparing -------------------------------------------------------------------
def show(key: str, value: Any) -> str:
    if value is None:
        return "(absent)"
    if key.endswith(".") and key != "payload.":
        return "present"
    return kind_of(key).show(value)


def compare(expected: Mapping[str, Any], actual: Decoded) -> list[tuple[str, str, str]]:
    """Rows (field, expected, actual) that differ; empty when the frame matches.

    Only named fields count, but a bad checksum always does unless the
    scenario names that checksum itself.
    """
    rows = []
    got = actual.fields
    for key, want in expected.items():
        have = got.get(key)
        if have != want:
            rows.append((key, show(key, want), show(key, have)))
    for key in actual.bad_checksums:
        if key not in expected:
            rows.append((key, "valid", f"{got.get(key, 0):#06x} (invalid)"))
    return rows
