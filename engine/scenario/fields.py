"""Frames described by fields, the language of scenarios.

Each protocol module says what its header's fields are called here, what
values they take and how they read (``ipv4.FIELDS``, protocols/fieldspec.py);
``LAYERS`` gathers those descriptions and this module keeps no list of fields
of its own. The same descriptions validate scenario files, build frames to
inject, decode frames the stack sent, and print diffs, so a name means one
thing in every direction. Building and decoding go through
``simstack.protocols``: the formats are declared once, there.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from operator import itemgetter
from typing import Any

from simstack.protocols import arp, ethernet, fieldspec, icmp, ipv4, tcp, udp
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
from simstack.protocols.fieldspec import NO_DEFAULT, Header

from . import ipv6_text
from .isn import MASK, Isns, Rel
from .tcp_words import OptionsPattern, flags_text, options_text, parse_flags, parse_options


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


class TcpFlagsKind(Kind):
    """Control bits in tcpdump's letters (``S.``), or a number."""

    def normalize(self, value: Any, ctx: Context, path: str) -> int:
        if isinstance(value, str):
            try:
                return parse_flags(value)
            except ValueError as e:
                raise SpecError(path, str(e)) from None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
            raise SpecError(path, f"want flag letters like S, S., P., F., R. or a number from 0 to 255, got {value!r}")
        return value

    def show(self, value: Any) -> str:
        return flags_text(value)


class SeqKind(Kind):
    """A sequence number relative to an ISN (``1001``, ``-1``), or absolute (``{abs: N}``)."""

    def normalize(self, value: Any, ctx: Context, path: str) -> int:
        if isinstance(value, Mapping) and set(value) == {"abs"}:
            n = value["abs"]
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MASK:
                raise SpecError(path, f"abs must be an integer from 0 to {MASK}, got {n!r}")
            return n
        if isinstance(value, bool) or not isinstance(value, int) or not -(1 << 31) <= value <= MASK:
            raise SpecError(path, f"want a sequence number relative to the ISN (from {-(1 << 31)} to {MASK}) "
                                  f"or {{abs: N}}, got {value!r}")
        return Rel(value & MASK)

    def show(self, value: Any) -> str:
        return str(int(value)) if isinstance(value, Rel) else f"{{abs: {value}}}"


class TcpOptionsKind(Kind):
    """An ordered list of options in packetdrill's words; ``*`` and ``any`` only in expectations."""

    def normalize(self, value: Any, ctx: Context, path: str) -> Any:
        try:
            return parse_options(value)
        except ValueError as e:
            raise SpecError(path, str(e)) from None

    def show(self, value: Any) -> str:
        return repr(value) if isinstance(value, OptionsPattern) else options_text(value)


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
SEQ = SeqKind()
_SCALAR_KINDS: dict[fieldspec.Scalar, Kind] = {
    fieldspec.MAC: MAC, fieldspec.IPV4_ADDRESS: IP, fieldspec.BOOL: BOOL, fieldspec.BYTES: BYTES,
    fieldspec.TCP_FLAGS: TcpFlagsKind(), fieldspec.TCP_OPTIONS: TcpOptionsKind(),
}


def _kind(t: fieldspec.FieldType) -> Kind:
    if isinstance(t, fieldspec.Int):
        return IntKind(t.bits, t.names)
    if isinstance(t, fieldspec.SeqNum):
        return SEQ
    return _SCALAR_KINDS[t]


# Every header a scenario can name, in the order frames nest and diffs print.
LAYERS: dict[str, Header] = {
    h.layer: h for h in (ethernet.FIELDS, arp.FIELDS, ipv4.FIELDS, icmp.FIELDS, udp.FIELDS, tcp.FIELDS)
}
TRANSPORTS = (icmp.FIELDS.layer, udp.FIELDS.layer, tcp.FIELDS.layer)  # layers that sit on IPv4
LAYER_ORDER = (*LAYERS, "payload")  # "payload": the bytes above the last header simstack decodes
# layer -> field name -> kind, read off LAYERS; the payload layer has one field with no name.
KINDS: dict[str, dict[str, Kind]] = {
    **{layer: {f.name: _kind(f.type) for f in h.fields} for layer, h in LAYERS.items()},
    "payload": {"": BYTES},
}


def field_of(key: str) -> fieldspec.Field | None:
    """The description of ``ipv4.id``; None for the payload, which no header describes."""
    layer, _, name = key.partition(".")
    header = LAYERS.get(layer)
    return None if header is None else header.by_name.get(name)


def kind_of(key: str) -> Kind:
    layer, _, name = key.partition(".")
    return KINDS[layer][name]


def normalize_spec(spec: Any, ctx: Context, path: str = "") -> dict[str, Any]:
    """Check a layered description and flatten it to ``{"icmp.seq": 1, ...}``."""
    if not isinstance(spec, Mapping):
        raise SpecError(path, f"want a mapping of layers ({', '.join(LAYER_ORDER)}), got {spec!r}")
    flat: dict[str, Any] = {}
    for layer, fields in spec.items():
        table = KINDS.get(layer)
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
    if "tcp.len" in flat and "tcp.data" in flat and flat["tcp.len"] != len(flat["tcp.data"]):
        raise SpecError(f"{path}tcp.len", f"len {flat['tcp.len']} but data holds {len(flat['tcp.data'])} bytes")
    return flat


# -- building ------------------------------------------------------------------
def _value(header: Header, flat: Mapping[str, Any], **given: Any) -> Any:
    """``header``'s value from the fields ``flat`` names; the rest from ``given`` (by attribute), else their defaults."""
    kw = dict(given)
    for f in header.fields:
        if f.measures:
            continue  # a view of another field (tcp.len): the builder turns it into that field
        if f.key in flat:
            kw[f.attr] = flat[f.key]
        elif f.attr not in kw and f.default is not NO_DEFAULT:
            kw[f.attr] = f.default
    return header.value(**kw)


def build_frame(flat: Mapping[str, Any], ctx: Context, isns: Isns | None = None) -> bytes:
    """Build a frame from normalized fields; unnamed fields take peer-to-stack defaults.

    TCP sequence numbers written relative count from the ISNs in ``isns``
    (from 0 without it), so a TCP frame is built when its step runs.
    """
    g = flat.get
    peer = ctx.peer or Host("peer")
    layers = {k.partition(".")[0] for k in flat}
    if "arp" in layers:
        op = g("arp.op", arp.FIELDS.by_name["op"].default)
        body = arp.emit(
            _value(
                arp.FIELDS,
                flat,
                sha=g("eth.src", peer.mac or ZERO_MAC),
                spa=peer.ip or ZERO_IP,
                tha=ZERO_MAC if op == arp.REQUEST else ctx.stack.mac or ZERO_MAC,
                tpa=ctx.stack.ip or ZERO_IP,
            )
        )
        ethertype = ethernet.TYPE_ARP
        default_dst = BROADCAST_MAC if op == arp.REQUEST else ctx.stack.mac
    elif "ipv4" in layers or layers & set(TRANSPORTS):
        upper, proto = _build_transport(flat)
        body = _build_ipv4(flat, ctx, peer, upper, proto, isns)
        ethertype = ethernet.TYPE_IPV4
        default_dst = ctx.stack.mac
    else:
        body = g("payload.", b"")
        ethertype = ethernet.TYPE_IPV4
        default_dst = ctx.stack.mac
    eth = _value(
        ethernet.FIELDS,
        flat,
        dst=default_dst or BROADCAST_MAC,
        src=peer.mac or ZERO_MAC,
        ethertype=ethertype,
        payload=body,
    )
    try:
        return ethernet.emit(eth, pad=False)
    except ValueError as e:
        raise SpecError("eth", str(e)) from None


def _build_transport(flat: Mapping[str, Any]) -> tuple[bytes, int]:
    g = flat.get
    if any(k.startswith("icmp.") for k in flat):
        return icmp.emit(_value(icmp.FIELDS, flat)) + g("payload.", b""), ipv4.PROTO_ICMP
    if any(k.startswith("udp.") for k in flat):
        return b"", ipv4.PROTO_UDP  # built in _build_ipv4, which knows the addresses
    if any(k.startswith("tcp.") for k in flat):
        return b"", ipv4.PROTO_TCP  # likewise
    return g("payload.", b""), g("ipv4.proto", 0)


def _build_ipv4(flat: Mapping[str, Any], ctx: Context, peer: Host, upper: bytes, proto: int,
                isns: Isns | None = None) -> bytes:
    g = flat.get
    src = g("ipv4.src", peer.ip or ZERO_IP)
    dst = g("ipv4.dst", ctx.stack.ip or ZERO_IP)
    if proto == ipv4.PROTO_UDP and any(k.startswith("udp.") for k in flat):
        upper = udp.emit(_value(udp.FIELDS, flat), src, dst) + g("payload.", b"")
    elif proto == ipv4.PROTO_TCP and any(k.startswith("tcp.") for k in flat):
        upper = _build_tcp(flat, src, dst, isns) + g("payload.", b"")
    pkt: ipv4.Ipv4 = _value(ipv4.FIELDS, flat, src=src, dst=dst, protocol=proto, payload=upper)
    if pkt.ihl is not None and pkt.ihl * 4 != pkt.header_len:
        raise SpecError("ipv4.ihl", f"IHL {pkt.ihl} needs {pkt.ihl * 4 - 20} bytes of options; use raw: for a lying IHL")
    try:
        return ipv4.emit(pkt)
    except ValueError as e:
        raise SpecError("ipv4", str(e)) from None


def _build_tcp(flat: Mapping[str, Any], src: bytes, dst: bytes, isns: Isns | None) -> bytes:
    if isns is not None:
        flat = isns.absolute(flat, src, flat.get("tcp.sport", 0), dst, flat.get("tcp.dport", 0))
    if isinstance(flat.get("tcp.options"), OptionsPattern):
        raise SpecError("tcp.options", "a segment to inject needs every option value: '*' and any are for expect")
    payload = flat["tcp.data"] if "tcp.data" in flat else bytes(i & 0xFF for i in range(flat.get("tcp.len", 0)))
    try:
        return tcp.emit(_value(tcp.FIELDS, flat, payload=payload), src, dst)
    except ValueError as e:
        raise SpecError("tcp.options", str(e)) from None


# -- decoding ------------------------------------------------------------------
class _Decoder:
    """Copies a parsed value into flat fields, as its header's description says.

    The fields every value has are picked by position in one C call; those
    that exist only beside a given value of another field (``When``) are
    tested one by one.
    """

    def __init__(self, header: Header) -> None:
        always = [f for f in header.fields if f.when is None and not f.measures]
        self.marker = f"{header.layer}."
        self.keys = tuple(f.key for f in always)
        picks = [header.index[f.attr] for f in always]
        getter = itemgetter(*picks)
        self.pick: Callable[[tuple[Any, ...]], tuple[Any, ...]] = getter if len(picks) > 1 else lambda v: (getter(v),)
        self.sometimes = tuple(
            (f.key, header.index[f.attr], header.index[f.when.attr], f.when.values) for f in header.fields if f.when
        )
        self.lengths = tuple((f.key, header.index[f.attr]) for f in header.fields if f.measures)

    def __call__(self, value: tuple[Any, ...], out: dict[str, Any]) -> None:
        out[self.marker] = True
        out.update(zip(self.keys, self.pick(value), strict=False))  # keys and pick are built from one list
        for key, i, j, values in self.sometimes:
            other = value[j]
            if (other is not None) if values is None else (other in values):
                out[key] = value[i]
        for key, i in self.lengths:
            out[key] = len(value[i])


_ETH = _Decoder(ethernet.FIELDS)
_ARP = _Decoder(arp.FIELDS)
_IPV4 = _Decoder(ipv4.FIELDS)
_ICMP = _Decoder(icmp.FIELDS)
_UDP = _Decoder(udp.FIELDS)
_TCP = _Decoder(tcp.FIELDS)

Summary = str | Callable[[], str]  # a summary, or what writes it when it is read


class Decoded:
    """Every field simstack read from a frame, the checksums that were wrong, and a one-line summary.

    The summary (in tcpdump's words) is written when first read: a replay
    reads it to report a failure or write a recording, not for every frame
    that matches.
    """

    __slots__ = ("_summary", "bad_checksums", "fields")

    def __init__(self, fields: dict[str, Any], summary: Summary, bad_checksums: list[str] | None = None) -> None:
        self.fields = fields
        self.bad_checksums: list[str] = [] if bad_checksums is None else bad_checksums
        self._summary = summary

    @property
    def summary(self) -> str:
        text = self._summary
        if not isinstance(text, str):
            text = self._summary = text()
        return text

    def __repr__(self) -> str:
        return f"Decoded({self.summary!r}, {self.fields!r}, bad_checksums={self.bad_checksums!r})"


def _text(summary: Summary) -> str:
    return summary if isinstance(summary, str) else summary()


def decode_frame(frame: bytes, isns: Isns | None = None) -> Decoded:
    """Every field simstack can read from ``frame``; never raises.

    The fields hold absolute TCP sequence numbers; ``isns`` only makes the
    summary count them from each side's ISN, as tcpdump does.
    """
    out: dict[str, Any] = {}
    bad: list[str] = []
    try:
        eth = ethernet.parse(frame)
    except Malformed as e:
        return Decoded(out, f"[malformed ethernet: {e}] length {len(frame)}")
    _ETH(eth, out)
    rest: Summary
    if eth.ethertype == ethernet.TYPE_ARP:
        rest = _decode_arp(eth.payload, out)
    elif eth.ethertype == ipv6_text.TYPE_IPV6:  # not spoken, but shown as tcpdump shows it
        out["payload."] = eth.payload
        rest = partial(ipv6_text.summary, eth.payload)
    elif eth.ethertype != ethernet.TYPE_IPV4:
        out["payload."] = eth.payload
        rest = partial(_ethertype_text, eth.ethertype, len(frame))
    else:
        rest = _decode_ipv4(eth.payload, out, bad, isns)
    if eth.vlan is not None:
        rest = partial(_tagged_text, eth.vlan, rest)
    return Decoded(out, rest, bad)


def _tagged_text(vlan: int, rest: Summary) -> str:
    return f"vlan {vlan}, {_text(rest)}"


def _ethertype_text(ethertype: int, length: int) -> str:
    return f"ethertype {ethertype:#06x}, length {length}"


def _decode_arp(data: bytes, out: dict[str, Any]) -> Summary:
    try:
        a = arp.parse(data)
    except Malformed as e:
        return f"ARP [malformed: {e}]"
    _ARP(a, out)
    return partial(_arp_text, a, len(data))


def _arp_text(a: arp.Arp, length: int) -> str:
    # length: what follows the Ethernet header, padding included, as tcpdump counts it
    if a.op == arp.REQUEST:
        return f"ARP, Request who-has {ip_to_str(a.tpa)} tell {ip_to_str(a.spa)}, length {length}"
    if a.op == arp.REPLY:
        return f"ARP, Reply {ip_to_str(a.spa)} is-at {mac_to_str(a.sha)}, length {length}"
    return f"ARP, op {a.op}, length {length}"


def _decode_ipv4(data: bytes, out: dict[str, Any], bad: list[str], isns: Isns | None = None) -> Summary:
    try:
        ip = ipv4.parse(data, verify_checksum=False)
    except Malformed as e:
        return f"IP [malformed: {e}]"
    assert ip.ihl is not None
    if not verify(data[: ip.ihl * 4]):
        bad.append("ipv4.checksum")
    _IPV4(ip, out)
    if ip.frag_offset or ip.mf:
        out["payload."] = ip.payload
        return partial(_fragment_text, ip)
    decoder = _TRANSPORT_DECODERS.get(ip.protocol)
    if decoder is None:
        out["payload."] = ip.payload
        return partial(_ip_proto_text, ip)
    if decoder is _decode_tcp:
        return _decode_tcp(ip, out, bad, isns)
    return decoder(ip, out, bad)


def _ip_head(ip: ipv4.Ipv4) -> str:
    return f"IP {ip_to_str(ip.src)} > {ip_to_str(ip.dst)}: "


def _fragment_text(ip: ipv4.Ipv4) -> str:
    if ip.frag_offset == 0:
        first = _first_fragment_text(ip)
        if first is not None:
            return first
    return _ip_head(ip) + (f"ip-proto-{ip.protocol} (frag {ip.identification}:{len(ip.payload)}@{ip.frag_offset}"
                           f"{'+' if ip.mf else ''})")


def _first_fragment_text(ip: ipv4.Ipv4) -> str | None:
    """A first fragment carries the transport header: tcpdump decodes it as if the datagram were whole.

    The lengths are the header's: ICMP counts the fragment's bytes, UDP its
    length field less 8, TCP the data in this fragment. None when the header
    does not fit in the fragment.
    """
    data = ip.payload
    if ip.protocol == ipv4.PROTO_ICMP and len(data) >= icmp.HEADER_LEN:
        try:
            return _icmp_text(ip, icmp.parse(data, verify_checksum=False))
        except Malformed:
            return None
    if ip.protocol == ipv4.PROTO_UDP and len(data) >= udp.HEADER_LEN:
        sport, dport, length = int.from_bytes(data[0:2]), int.from_bytes(data[2:4]), int.from_bytes(data[4:6])
        return f"IP {ip_to_str(ip.src)}.{sport} > {ip_to_str(ip.dst)}.{dport}: UDP, length {max(length - 8, 0)}"
    if ip.protocol == ipv4.PROTO_TCP and len(data) >= tcp.HEADER_LEN:
        try:
            return _tcp_text(ip, tcp.parse(data, ip.src, ip.dst, verify_checksum=False), 0, 0)
        except Malformed:
            return None
    return None


def _ip_proto_text(ip: ipv4.Ipv4) -> str:
    return _ip_head(ip) + f"ip-proto-{ip.protocol} {len(ip.payload)}"


def _decode_icmp(ip: ipv4.Ipv4, out: dict[str, Any], bad: list[str]) -> Summary:
    try:
        m = icmp.parse(ip.payload, verify_checksum=False)
    except Malformed as e:
        out["payload."] = ip.payload
        return _ip_head(ip) + f"ICMP [malformed: {e}]"
    if not verify(ip.payload):
        bad.append("icmp.checksum")
    _ICMP(m, out)
    return partial(_icmp_text, ip, m)


def _icmp_text(ip: ipv4.Ipv4, m: icmp.Icmp) -> str:
    head = _ip_head(ip) + "ICMP "
    if m.type in (icmp.ECHO_REQUEST, icmp.ECHO_REPLY):
        word = "request" if m.type == icmp.ECHO_REQUEST else "reply"
        return head + f"echo {word}, id {m.identifier}, seq {m.sequence}, length {len(ip.payload)}"
    if m.type == icmp.DEST_UNREACHABLE:
        code = "" if m.code in (icmp.PROTOCOL_UNREACHABLE, icmp.PORT_UNREACHABLE) else f" (code {m.code})"  # tcpdump's
        return head + f"{_quoted(m.data)} unreachable{code}, length {len(ip.payload)}"
    if m.type == icmp.TIME_EXCEEDED:
        what = "ip reassembly time exceeded" if m.code == icmp.REASSEMBLY_EXCEEDED else "time exceeded in-transit"
        return head + f"{what}, length {len(ip.payload)}"
    return head + f"type {m.type}, code {m.code}, length {len(ip.payload)}"


def _quoted(data: bytes) -> str:
    if len(data) < 20:
        return "?"
    proto = data[9]
    dst = ip_to_str(data[16:20])
    hlen = (data[0] & 0x0F) * 4
    if proto in (ipv4.PROTO_UDP, ipv4.PROTO_TCP) and len(data) >= hlen + 4:
        name = "udp" if proto == ipv4.PROTO_UDP else "tcp"
        return f"{dst} {name} port {int.from_bytes(data[hlen + 2:hlen + 4], 'big')}"
    return f"{dst} protocol {proto}"


def _decode_udp(ip: ipv4.Ipv4, out: dict[str, Any], bad: list[str]) -> Summary:
    try:
        d = udp.parse(ip.payload, ip.src, ip.dst, verify_checksum=False)
    except Malformed as e:
        out["payload."] = ip.payload
        return f"IP {ip_to_str(ip.src)} > {ip_to_str(ip.dst)}: UDP [malformed: {e}]"
    if not udp.checksum_ok(ip.payload[: d.length], ip.src, ip.dst):
        bad.append("udp.checksum")
    _UDP(d, out)
    return partial(_udp_text, ip, d)


def _udp_text(ip: ipv4.Ipv4, d: udp.Udp) -> str:
    return f"IP {ip_to_str(ip.src)}.{d.src_port} > {ip_to_str(ip.dst)}.{d.dst_port}: UDP, length {len(d.payload)}"


def _decode_tcp(ip: ipv4.Ipv4, out: dict[str, Any], bad: list[str], isns: Isns | None = None) -> Summary:
    try:
        s = tcp.parse(ip.payload, ip.src, ip.dst, verify_checksum=False)
    except Malformed as e:
        out["payload."] = ip.payload
        return _ip_head(ip) + f"TCP [malformed: {e}]"
    if not verify(ip.payload, ipv4.pseudo_header_sum(ip.src, ip.dst, ipv4.PROTO_TCP, len(ip.payload))):
        bad.append("tcp.checksum")
    options = s.options
    if options and options[-1].kind == tcp.OPT_EOL and s.data_offset is not None \
            and tcp.emit_options(options[:-1]) == ip.payload[tcp.HEADER_LEN:s.data_offset * 4]:
        # the End of Option List that only pads the area (RFC 9293 3.1), which emit writes again by itself
        s = s._replace(options=options[:-1])
    _TCP(s, out)
    seq_base, ack_base = (0, 0) if isns is None else isns.bases(ip.src, s.src_port, ip.dst, s.dst_port)
    return partial(_tcp_text, ip, s, seq_base, ack_base)


def _tcp_text(ip: ipv4.Ipv4, s: tcp.Tcp, seq_base: int, ack_base: int) -> str:
    """tcpdump's line: numbers relative to each side's ISN, except in a SYN, which shows them absolute."""
    n = len(s.payload)
    flags = s.flags
    if flags & tcp.SYN:
        seq_base = ack_base = 0
    parts = [f"Flags [{flags_text(flags)}]"]
    seq = (s.seq - seq_base) & MASK
    if n:
        parts.append(f"seq {seq}:{(seq + n) & MASK}")
    elif flags & (tcp.SYN | tcp.FIN | tcp.RST) or not flags & tcp.ACK:
        parts.append(f"seq {seq}")
    if flags & tcp.ACK:
        parts.append(f"ack {(s.ack - ack_base) & MASK}")
    parts.append(f"win {s.window}")
    if flags & tcp.URG:
        parts.append(f"urg {s.urgent}")
    if s.options:
        parts.append(f"options {options_text(s.options, ',')}")
    parts.append(f"length {n}")
    return f"IP {ip_to_str(ip.src)}.{s.src_port} > {ip_to_str(ip.dst)}.{s.dst_port}: " + ", ".join(parts)


_TRANSPORT_DECODERS: dict[int, Callable[[ipv4.Ipv4, dict[str, Any], list[str]], Summary]] = {
    ipv4.PROTO_ICMP: _decode_icmp,
    ipv4.PROTO_UDP: _decode_udp,
    ipv4.PROTO_TCP: _decode_tcp,
}


# -- comparing -------------------------------------------------------------------
_SEQ_KEYS = {"tcp.seq": 0, "tcp.ack": 1}  # which of Isns.bases each counts from

def show(key: str, value: Any) -> str:
    if value is None:
        return "(absent)"
    if key.endswith(".") and key != "payload.":
        return "present"
    return kind_of(key).show(value)


_TEXT_SHOWN = 40  # characters of a text payload a diff shows


def _printable(value: Any) -> bool:
    return isinstance(value, bytes) and bool(value) and all(0x20 <= b < 0x7F for b in value)


def _shown_pair(key: str, want: Any, have: Any) -> tuple[str, str]:
    """Both sides of a diff row; payloads that are both printable text show as text, or else both as hex."""
    if _printable(want) and _printable(have):
        return _show_text(want), _show_text(have)
    return show(key, want), show(key, have)


def _show_text(value: bytes) -> str:
    text = value.decode("ascii")
    shown = text if len(text) <= _TEXT_SHOWN else text[:_TEXT_SHOWN] + "..."
    return f'"{shown}" ({len(value)} bytes)'


def compare(expected: Mapping[str, Any], actual: Decoded, isns: Isns | None = None) -> list[tuple[str, str, str]]:
    """Rows (field, expected, actual) that differ; empty when the frame matches.

    Only named fields count, but a bad checksum always does unless the
    scenario names that checksum itself. Relative TCP numbers count from the
    ISNs ``isns`` learned for the frame's direction (from 0 without it).
    """
    got = actual.fields
    want_all = expected
    bases = (0, 0)
    if isns is not None and "tcp.sport" in got and ("tcp.seq" in expected or "tcp.ack" in expected
                                                     or "tcp.options" in expected):
        src, sport, dst, dport = got["ipv4.src"], got["tcp.sport"], got["ipv4.dst"], got["tcp.dport"]
        want_all = isns.absolute(expected, src, sport, dst, dport)
        bases = isns.bases(src, sport, dst, dport)
    if not actual.bad_checksums and want_all.items() <= got.items():
        return []  # the usual case, decided in C; the loop below finds what differs
    rows = []
    for key, want in want_all.items():
        have = got.get(key)
        if have != want:
            if key in _SEQ_KEYS and have is not None:
                base = bases[_SEQ_KEYS[key]]
                shown = f"{(have - base) & MASK} (abs {have})" if base else str(have)
                rows.append((key, show(key, expected[key]), shown))
                continue
            rows.append((key, *_shown_pair(key, expected[key], have)))
    for key in actual.bad_checksums:
        if key not in expected:
            rows.append((key, "valid", f"{got.get(key, 0):#06x} (invalid)"))
    return rows
