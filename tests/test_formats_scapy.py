"""Every simstack header format against scapy, in both directions, field by field.

(a) scapy builds, simstack parses: every field simstack reports must be the value
    scapy was asked to write (and ``parse`` must not raise, so the checksum
    verification passed on scapy's checksum).
(b) simstack emits, scapy dissects: every field scapy reads must be the value
    simstack was asked to write, and the checksums are recomputed by scapy
    (delete ``chksum``, rebuild, dissect again) and compared.

In direction (a) construct's own reading of scapy's bytes (``HEADER.parse``,
tests/construct_reference.py) must give the same value as ``parse``, so the
declaration and the struct codec derived from it are both held to scapy.

Addresses go through scapy's converters (``mac2str``/``str2mac``) and the socket
module, never through simstack's, so neither side grades its own work.

Where scapy would dissect a payload further (an EtherType, IP protocol or UDP
port it has a layer for), direction (b) picks values scapy leaves as Raw: the
payload is opaque to the format under test. The bindings are read when a value
is drawn, since importing ``scapy.all`` elsewhere in the session adds more.

ICMP errors in direction (b) stay under 144 bytes. scapy dissects bytes 136
onward of any longer type 3/11/12 message as an RFC 4884 extension even when
the Length field is 0: the checksum test in ``_ICMPExtensionField.getfield``
compares an int with bytes, so it never rejects. That would split the quoted
datagram in scapy's view; scapy is the odd one out there, not simstack.
"""

import socket
from typing import Any

import construct_reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP, IPOption
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw
from scapy.utils import checksum as scapy_checksum
from scapy.utils import mac2str, str2mac

from simstack.protocols import arp, ethernet, icmp, ipv4, udp

EXAMPLES = settings(max_examples=200, deadline=None)


# -- strategies ----------------------------------------------------------------
macs = st.binary(min_size=6, max_size=6)
ips = st.binary(min_size=4, max_size=4)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)


def scapy_binds(layer: Any, field: str, value: int) -> bool:
    """Whether scapy, as loaded right now, dissects ``layer``'s payload for field == value."""
    return any(fields.get(field) == value for cls in layer.aliastypes for fields, _ in getattr(cls, "payload_guess", []))


# Ethernet II: a value of 1536 or more is an EtherType (IEEE 802.3 3.2.6); below
# that it is an 802.3 length, which scapy dissects as Dot3, another format.
ETHERTYPE_MIN = 0x0600
ethertypes = st.integers(ETHERTYPE_MIN, 0xFFFF).filter(lambda t: t != ethernet.TYPE_VLAN)
raw_ethertypes = ethertypes.filter(lambda t: not scapy_binds(Ether, "type", t) and not scapy_binds(Dot1Q, "type", t))
raw_protocols = u8.filter(lambda p: not scapy_binds(IP, "proto", p))
raw_ports = u16.filter(lambda p: not scapy_binds(UDP, "sport", p) and not scapy_binds(UDP, "dport", p))

# IP option numbers (low 5 bits of the type octet) scapy has no special class for,
# so it dissects them as generic type-length-value options.
_GENERIC_OPTION_NUMBERS = [n for n in range(2, 32) if n not in IPOption.registered_ip_options]
IPOPT_NOP = 1
MAX_OPTIONS = 40


@st.composite
def ip_options(draw: st.DrawFn) -> bytes:
    """Well-formed option lists (NOPs and TLVs), EOL-padded to a multiple of 4, at most 40 bytes."""
    out = bytearray()
    budget = draw(st.integers(0, MAX_OPTIONS))
    while len(out) < budget:
        room = MAX_OPTIONS - len(out)
        if room < 2 or draw(st.booleans()):
            out.append(IPOPT_NOP)
            continue
        number = draw(st.sampled_from(_GENERIC_OPTION_NUMBERS))
        copy_class = draw(st.integers(0, 7)) << 5
        value = draw(st.binary(max_size=room - 2))
        out += bytes((copy_class | number, 2 + len(value))) + value
    out += bytes(-len(out) % 4)  # End of Option List octets
    return bytes(out)


def flags_of(reserved: bool, df: bool, mf: bool) -> int:
    """scapy's IP flags value: MF is 1, DF is 2, the reserved ("evil") bit is 4."""
    return (4 if reserved else 0) | (2 if df else 0) | (1 if mf else 0)


def ip_text(addr: bytes) -> str:
    return socket.inet_ntoa(addr)


def ip_bytes(text: str) -> bytes:
    return socket.inet_aton(text)


def raw_load(layer: Any) -> bytes:
    return bytes(layer[Raw].load) if Raw in layer else b""


def recomputed_checksum(layer: Any) -> int:
    """scapy's own checksum for ``layer``: drop the field, build, dissect again."""
    copy = layer.copy()
    del copy.chksum
    return int(copy.__class__(bytes(copy)).chksum)


# -- Ethernet II ---------------------------------------------------------------
@EXAMPLES
@given(dst=macs, src=macs, ethertype=ethertypes, payload=st.binary(max_size=1500))
def test_ethernet_scapy_to_simstack(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> None:
    frame = bytes(Ether(dst=str2mac(dst), src=str2mac(src), type=ethertype) / Raw(load=payload))
    eth = ethernet.parse(frame)
    assert eth == ref.decode(ethernet, frame)
    assert eth.dst == dst
    assert eth.src == src
    assert eth.ethertype == ethertype
    assert eth.payload == payload
    assert eth.vlan is None
    assert eth.pcp == 0
    assert eth.dei is False


@EXAMPLES
@given(dst=macs, src=macs, ethertype=raw_ethertypes, payload=st.binary(max_size=1500), pad=st.booleans())
def test_ethernet_simstack_to_scapy(dst: bytes, src: bytes, ethertype: int, payload: bytes, pad: bool) -> None:
    frame = ethernet.emit(ethernet.Ethernet(dst=dst, src=src, ethertype=ethertype, payload=payload), pad=pad)
    p = Ether(frame)
    assert type(p) is Ether
    assert mac2str(p.dst) == dst
    assert mac2str(p.src) == src
    assert p.type == ethertype
    assert Dot1Q not in p
    load = raw_load(p)
    assert load[: len(payload)] == payload
    # A NIC pads runts to 60 bytes with zeros; without pad the frame is exact.
    padding = load[len(payload) :]
    assert padding == bytes(len(padding))
    assert len(padding) == (max(0, ethernet.MIN_FRAME - ethernet.HEADER_LEN - len(payload)) if pad else 0)


# -- Ethernet with an 802.1Q tag -----------------------------------------------
dot1q_fields = {
    "dst": macs,
    "src": macs,
    "vid": st.integers(0, 0x0FFF),
    "pcp": st.integers(0, 7),
    "dei": st.booleans(),
    "payload": st.binary(max_size=1500),
}


@EXAMPLES
@given(inner=ethertypes, **dot1q_fields)
def test_dot1q_scapy_to_simstack(
    dst: bytes, src: bytes, vid: int, pcp: int, dei: bool, inner: int, payload: bytes
) -> None:
    built = Ether(dst=str2mac(dst), src=str2mac(src)) / Dot1Q(prio=pcp, dei=int(dei), vlan=vid, type=inner) / Raw(load=payload)
    eth = ethernet.parse(bytes(built))
    assert eth == ref.decode(ethernet, bytes(built))
    assert eth.dst == dst
    assert eth.src == src
    assert eth.vlan == vid
    assert eth.pcp == pcp
    assert eth.dei is dei
    assert eth.ethertype == inner
    assert eth.payload == payload


@EXAMPLES
@given(inner=raw_ethertypes, **dot1q_fields)
def test_dot1q_simstack_to_scapy(
    dst: bytes, src: bytes, vid: int, pcp: int, dei: bool, inner: int, payload: bytes
) -> None:
    eth = ethernet.Ethernet(dst=dst, src=src, ethertype=inner, payload=payload, vlan=vid, pcp=pcp, dei=dei)
    frame = ethernet.emit(eth, pad=False)
    p = Ether(frame)
    assert mac2str(p.dst) == dst
    assert mac2str(p.src) == src
    assert p.type == ethernet.TYPE_VLAN
    tag = p[Dot1Q]
    assert tag.vlan == vid
    assert tag.prio == pcp
    assert tag.dei == int(dei)
    assert tag.type == inner
    assert raw_load(tag) == payload


# -- ARP -------------------------------------------------------------------------
@EXAMPLES
@given(op=u16, sha=macs, spa=ips, tha=macs, tpa=ips)
def test_arp_scapy_to_simstack(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> None:
    built = ARP(op=op, hwsrc=str2mac(sha), psrc=ip_text(spa), hwdst=str2mac(tha), pdst=ip_text(tpa))
    a = arp.parse(bytes(built))
    assert a == ref.decode(arp, bytes(built))
    assert a.htype == 1
    assert a.ptype == 0x0800
    assert a.hlen == 6
    assert a.plen == 4
    assert a.op == op
    assert a.sha == sha
    assert a.spa == spa
    assert a.tha == tha
    assert a.tpa == tpa


@EXAMPLES
@given(op=u16, sha=macs, spa=ips, tha=macs, tpa=ips)
def test_arp_simstack_to_scapy(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> None:
    data = arp.emit(arp.Arp(op=op, sha=sha, spa=spa, tha=tha, tpa=tpa))
    p = ARP(data)
    assert p.hwtype == 1
    assert p.ptype == 0x0800
    assert p.hwlen == 6
    assert p.plen == 4
    assert p.op == op
    assert mac2str(p.hwsrc) == sha
    assert ip_bytes(p.psrc) == spa
    assert mac2str(p.hwdst) == tha
    assert ip_bytes(p.pdst) == tpa
    assert not p.payload  # exactly 28 bytes, nothing left over


# -- IPv4 ------------------------------------------------------------------------
ipv4_fields = {
    "src": ips,
    "dst": ips,
    "tos": u8,
    "ttl": u8,
    "ident": u16,
    "df": st.booleans(),
    "mf": st.booleans(),
    "reserved": st.booleans(),
    "frag_units": st.integers(0, 0x1FFF),
    "options": ip_options(),
    "payload": st.binary(max_size=1480),
}


@EXAMPLES
@given(protocol=u8, trailer=st.binary(max_size=32), **ipv4_fields)
def test_ipv4_scapy_to_simstack(
    src: bytes,
    dst: bytes,
    tos: int,
    ttl: int,
    ident: int,
    df: bool,
    mf: bool,
    reserved: bool,
    frag_units: int,
    options: bytes,
    payload: bytes,
    protocol: int,
    trailer: bytes,
) -> None:
    built = IP(
        src=ip_text(src),
        dst=ip_text(dst),
        tos=tos,
        ttl=ttl,
        id=ident,
        flags=flags_of(reserved, df, mf),
        frag=frag_units,
        proto=protocol,
        options=options,
    ) / Raw(load=payload)
    data = bytes(built)
    view = IP(data)  # scapy's computed ihl, len and chksum
    # ``trailer`` is link-layer padding after Total Length; it is not the datagram's.
    ip = ipv4.parse(data + trailer)
    assert ip == ref.decode(ipv4, data + trailer)
    assert ip.src == src
    assert ip.dst == dst
    assert ip.tos == tos
    assert ip.ttl == ttl
    assert ip.identification == ident
    assert ip.df is df
    assert ip.mf is mf
    assert ip.reserved_flag is reserved
    assert ip.frag_offset == frag_units * 8
    assert ip.protocol == protocol
    assert ip.options == options
    assert ip.options == b"".join(bytes(o) for o in view.options)
    assert ip.payload == payload
    assert ip.ihl == view.ihl == 5 + len(options) // 4
    assert ip.total_length == view.len == 20 + len(options) + len(payload)
    assert ip.checksum == view.chksum


@EXAMPLES
@given(protocol=raw_protocols, **ipv4_fields)
def test_ipv4_simstack_to_scapy(
    src: bytes,
    dst: bytes,
    tos: int,
    ttl: int,
    ident: int,
    df: bool,
    mf: bool,
    reserved: bool,
    frag_units: int,
    options: bytes,
    payload: bytes,
    protocol: int,
) -> None:
    data = ipv4.emit(ipv4.Ipv4(src=src, dst=dst, protocol=protocol, payload=payload, ttl=ttl, identification=ident,
                               tos=tos, df=df, mf=mf, frag_offset=frag_units * 8, options=options, reserved_flag=reserved))
    p = IP(data)
    assert p.version == 4
    assert p.ihl == 5 + len(options) // 4
    assert p.tos == tos
    assert p.len == 20 + len(options) + len(payload)
    assert p.id == ident
    assert bool(p.flags.DF) is df
    assert bool(p.flags.MF) is mf
    assert bool(p.flags.evil) is reserved
    assert p.frag == frag_units
    assert p.ttl == ttl
    assert p.proto == protocol
    assert ip_bytes(p.src) == src
    assert ip_bytes(p.dst) == dst
    assert b"".join(bytes(o) for o in p.options) == options
    assert raw_load(p) == payload
    assert p.chksum == recomputed_checksum(p)
    assert scapy_checksum(data[: p.ihl * 4]) == 0


# -- ICMPv4 ----------------------------------------------------------------------
echo_types = st.sampled_from([icmp.ECHO_REQUEST, icmp.ECHO_REPLY])


@st.composite
def quotes(draw: st.DrawFn, max_size: int) -> bytes:
    """What an ICMP error carries: a real datagram's leading bytes, or anything."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=max_size))
    quoted = (
        IP(src=ip_text(draw(ips)), dst=ip_text(draw(ips)), ttl=draw(u8), id=draw(u16), options=draw(ip_options()))
        / ICMP(type=icmp.ECHO_REQUEST, id=draw(u16), seq=draw(u16))
        / Raw(load=draw(st.binary(max_size=max_size)))
    )
    return bytes(quoted)[: draw(st.integers(0, max_size))]


# Direction (b) stays below scapy's RFC 4884 heuristic (see the module docstring).
SCAPY_SAFE_ERROR_DATA = 144 - icmp.HEADER_LEN - 1
ERROR_QUOTE_MAX = 576 - 20 - icmp.HEADER_LEN


def check_icmp_checksum(p: Any, data: bytes) -> None:
    assert p.chksum == recomputed_checksum(p)
    assert scapy_checksum(data) == 0


@EXAMPLES
@given(type_=echo_types, code=u8, ident=u16, seq=u16, data=st.binary(max_size=1472))
def test_icmp_echo_scapy_to_simstack(type_: int, code: int, ident: int, seq: int, data: bytes) -> None:
    raw = bytes(ICMP(type=type_, code=code, id=ident, seq=seq) / Raw(load=data))
    m = icmp.parse(raw)
    assert m == ref.decode(icmp, raw)
    assert m.type == type_
    assert m.code == code
    assert m.identifier == ident
    assert m.sequence == seq
    assert m.data == data
    assert m.checksum == ICMP(raw).chksum
    assert not m.is_error


@EXAMPLES
@given(type_=echo_types, code=u8, ident=u16, seq=u16, data=st.binary(max_size=1472))
def test_icmp_echo_simstack_to_scapy(type_: int, code: int, ident: int, seq: int, data: bytes) -> None:
    raw = icmp.emit(icmp.Icmp(type=type_, code=code, data=data, identifier=ident, sequence=seq))
    p = ICMP(raw)
    assert p.type == type_
    assert p.code == code
    assert p.id == ident
    assert p.seq == seq
    assert raw_load(p) == data
    check_icmp_checksum(p, raw)


@EXAMPLES
@given(code=u8, mtu=u16, reserved=u8, length=u8, data=quotes(ERROR_QUOTE_MAX))
def test_icmp_unreachable_scapy_to_simstack(code: int, mtu: int, reserved: int, length: int, data: bytes) -> None:
    # The octets simstack does not model (unused, RFC 4884 length) carry noise here:
    # they must not leak into the next-hop MTU.
    raw = bytes(ICMP(type=icmp.DEST_UNREACHABLE, code=code, nexthopmtu=mtu, reserved=reserved, length=length) / Raw(load=data))
    m = icmp.parse(raw)
    assert m == ref.decode(icmp, raw)
    assert m.type == icmp.DEST_UNREACHABLE
    assert m.code == code
    assert m.next_hop_mtu == mtu
    assert m.data == data
    assert m.checksum == ICMP(raw).chksum
    assert m.is_error


@EXAMPLES
@given(code=u8, mtu=u16, data=quotes(SCAPY_SAFE_ERROR_DATA))
def test_icmp_unreachable_simstack_to_scapy(code: int, mtu: int, data: bytes) -> None:
    raw = icmp.emit(icmp.Icmp(type=icmp.DEST_UNREACHABLE, code=code, data=data, next_hop_mtu=mtu))
    p = ICMP(raw)
    assert p.type == icmp.DEST_UNREACHABLE
    assert p.code == code
    assert p.nexthopmtu == mtu
    assert p.reserved == 0
    assert p.length == 0
    assert p.ext is None
    assert bytes(p.payload) == data
    check_icmp_checksum(p, raw)


@EXAMPLES
@given(code=u8, reserved=u8, length=u8, unused=u16, data=quotes(ERROR_QUOTE_MAX))
def test_icmp_time_exceeded_scapy_to_simstack(
    code: int, reserved: int, length: int, unused: int, data: bytes
) -> None:
    raw = bytes(ICMP(type=icmp.TIME_EXCEEDED, code=code, reserved=reserved, length=length, unused=unused) / Raw(load=data))
    m = icmp.parse(raw)
    assert m == ref.decode(icmp, raw)
    assert m.type == icmp.TIME_EXCEEDED
    assert m.code == code
    assert m.data == data
    assert m.checksum == ICMP(raw).chksum
    assert (m.identifier, m.sequence, m.next_hop_mtu, m.pointer) == (0, 0, 0, 0)
    assert m.is_error


@EXAMPLES
@given(code=u8, data=quotes(SCAPY_SAFE_ERROR_DATA))
def test_icmp_time_exceeded_simstack_to_scapy(code: int, data: bytes) -> None:
    raw = icmp.emit(icmp.Icmp(type=icmp.TIME_EXCEEDED, code=code, data=data))
    p = ICMP(raw)
    assert p.type == icmp.TIME_EXCEEDED
    assert p.code == code
    assert (p.reserved, p.length, p.unused) == (0, 0, 0)
    assert p.ext is None
    assert bytes(p.payload) == data
    check_icmp_checksum(p, raw)


@EXAMPLES
@given(code=u8, pointer=u8, length=u8, unused=u16, data=quotes(ERROR_QUOTE_MAX))
def test_icmp_parameter_problem_scapy_to_simstack(
    code: int, pointer: int, length: int, unused: int, data: bytes
) -> None:
    raw = bytes(ICMP(type=icmp.PARAMETER_PROBLEM, code=code, ptr=pointer, length=length, unused=unused) / Raw(load=data))
    m = icmp.parse(raw)
    assert m == ref.decode(icmp, raw)
    assert m.type == icmp.PARAMETER_PROBLEM
    assert m.code == code
    assert m.pointer == pointer
    assert m.data == data
    assert m.checksum == ICMP(raw).chksum
    assert m.is_error


@EXAMPLES
@given(code=u8, pointer=u8, data=quotes(SCAPY_SAFE_ERROR_DATA))
def test_icmp_parameter_problem_simstack_to_scapy(code: int, pointer: int, data: bytes) -> None:
    raw = icmp.emit(icmp.Icmp(type=icmp.PARAMETER_PROBLEM, code=code, data=data, pointer=pointer))
    p = ICMP(raw)
    assert p.type == icmp.PARAMETER_PROBLEM
    assert p.code == code
    assert p.ptr == pointer
    assert (p.length, p.unused) == (0, 0)
    assert p.ext is None
    assert bytes(p.payload) == data
    check_icmp_checksum(p, raw)


# -- UDP -------------------------------------------------------------------------
# The checksum covers a pseudo-header, so scapy builds UDP inside IP to compute it.
@EXAMPLES
@given(
    src=ips,
    dst=ips,
    sport=u16,
    dport=u16,
    payload=st.binary(max_size=1472),
    no_checksum=st.booleans(),
    trailer=st.binary(max_size=16),
)
def test_udp_scapy_to_simstack(
    src: bytes, dst: bytes, sport: int, dport: int, payload: bytes, no_checksum: bool, trailer: bytes
) -> None:
    # RFC 768: checksum 0 means the sender computed none.
    built = IP(src=ip_text(src), dst=ip_text(dst)) / UDP(sport=sport, dport=dport, chksum=0 if no_checksum else None)
    view = IP(bytes(built / Raw(load=payload)))[UDP]
    segment = bytes(built / Raw(load=payload))[20:]
    # ``trailer``: IP carrying more than the UDP Length says; RFC 768's Length rules.
    d = udp.parse(segment + trailer, src, dst)
    assert d == ref.decode(udp, segment + trailer)
    assert d.src_port == sport
    assert d.dst_port == dport
    assert d.payload == payload
    assert d.length == view.len == 8 + len(payload)
    assert d.checksum == view.chksum
    assert (d.checksum == 0) is no_checksum


@EXAMPLES
@given(src=ips, dst=ips, sport=raw_ports, dport=raw_ports, payload=st.binary(max_size=1472))
def test_udp_simstack_to_scapy(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> None:
    segment = udp.emit(udp.Udp(src_port=sport, dst_port=dport, payload=payload), src, dst)
    p = IP(bytes(IP(src=ip_text(src), dst=ip_text(dst), proto=17) / Raw(load=segment)))
    d = p[UDP]
    assert d.sport == sport
    assert d.dport == dport
    assert d.len == 8 + len(payload)
    assert raw_load(d) == payload
    assert d.chksum != 0  # a computed checksum is always sent (0 would mean none)
    rebuilt = p.copy()
    del rebuilt[UDP].chksum
    assert IP(bytes(rebuilt))[UDP].chksum == d.chksum


def test_udp_computed_zero_checksum_goes_out_as_all_ones() -> None:
    """RFC 768: a checksum that computes to zero is transmitted as all ones."""
    src, dst = ip_bytes("192.0.2.1"), ip_bytes("192.0.2.2")
    # Choose the two payload octets that bring the ones' complement sum to 0xFFFF.
    probe = IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1000, dport=2000) / Raw(load=b"\x00\x00")
    fill = int(IP(bytes(probe))[UDP].chksum).to_bytes(2, "big")
    segment = udp.emit(udp.Udp(src_port=1000, dst_port=2000, payload=fill), src, dst)
    parsed = udp.parse(segment, src, dst)
    p = IP(bytes(IP(src="192.0.2.1", dst="192.0.2.2", proto=17) / Raw(load=segment)))
    assert p[UDP].chksum == 0xFFFF
    rebuilt = p.copy()
    del rebuilt[UDP].chksum
    assert IP(bytes(rebuilt))[UDP].chksum == 0xFFFF  # scapy makes the same substitution
    assert parsed.checksum == 0xFFFF
    assert parsed.payload == fill
