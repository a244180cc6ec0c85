"""The derived struct codecs against construct's own reading of the same declarations.

``protocols/layout.py`` turns the fixed-size part of each construct declaration
into one ``struct``; the protocol modules run that and handle the variable tail
themselves. These tests hold the result to the declaration it came from:

- for each of the four formats, random valid headers parse and build to the
  same fields and bytes through the derived codec as through construct's
  *interpreted* ``HEADER.parse``/``HEADER.build`` (not even the compiled
  variant, whose generated code is a derivation of its own);
- ``derive`` refuses, at import time, declarations it cannot express instead of
  deriving something else;
- the fast path never reads short: a truncated buffer is ``Malformed``, never a
  ``struct.error`` or a short field, and whatever it does parse from damaged
  bytes, construct reads the same way;
- the construct-compiled codec the replay benchmark patches in as its baseline
  (tests/construct_reference.py) replays a scenario to the same frames;
- each header's field description (``FIELDS``) matches its declaration: the
  bit widths it gives scenarios are the widths the format has;
- the checksum the codecs use agrees with a word-by-word RFC 1071 sum.
"""

import struct
from collections.abc import Callable
from typing import Any

import construct_reference as ref
import pytest
from conftest import SCENARIOS
from construct import (
    BitStruct,
    Bytes,
    BytesInteger,
    Const,
    Default,
    Enum,
    FormatField,
    GreedyBytes,
    If,
    IfThenElse,
    Int8ub,
    Int16ub,
    Int16ul,
    Padding,
    Struct,
    Switch,
    this,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from simstack.engine.scenario.loader import load
from simstack.engine.scenario.runner import Runner
from simstack.protocols import arp, checksum, ethernet, fieldspec, icmp, ipv4, layout, udp
from simstack.protocols.errors import Malformed
from simstack.protocols.layout import COMPUTED, LayoutError, derive, member

EXAMPLES = settings(max_examples=200, deadline=None)

macs = st.binary(min_size=6, max_size=6)
ips = st.binary(min_size=4, max_size=4)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
payloads = st.binary(max_size=200)


def outcome(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Malformed as e:
        return ("Malformed", e.reason, e.detail)


def fields_of(container: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: container[name] for name in names}


# -- Ethernet --------------------------------------------------------------------
@st.composite
def ethernet_fields(draw: st.DrawFn) -> dict[str, Any]:
    tagged = draw(st.booleans())
    fields: dict[str, Any] = {"dst": draw(macs), "src": draw(macs), "payload": draw(payloads)}
    if tagged:
        fields["ethertype"] = ethernet.TYPE_VLAN
        fields["tag"] = {"tci": draw(u16), "ethertype": draw(u16)}
    else:
        fields["ethertype"] = draw(u16.filter(lambda t: t != ethernet.TYPE_VLAN))
        fields["tag"] = None
    return fields


@EXAMPLES
@given(ethernet_fields())
def test_ethernet_agrees_with_construct(f: dict[str, Any]) -> None:
    wire: bytes = ethernet.HEADER.build(f)
    c = ethernet.HEADER.parse(wire)
    e = ethernet.parse(wire)
    # the derived layouts, field for field
    assert ethernet._HEAD.parse(wire) == fields_of(c, ethernet._HEAD.names)
    tag = c.tag
    if tag is None:
        assert (e.dst, e.src, e.ethertype, e.payload, e.vlan) == (c.dst, c.src, c.ethertype, c.payload, None)
    else:
        assert ethernet._TAG.parse(wire, ethernet.HEADER_LEN) == fields_of(tag, ethernet._TAG.names)
        assert (e.dst, e.src, e.ethertype, e.payload) == (c.dst, c.src, tag.ethertype, c.payload)
        assert (e.vlan, e.pcp, e.dei) == (tag.tci & 0x0FFF, tag.tci >> 13, bool(tag.tci & 0x1000))
    assert e == ref.decode(ethernet, wire)
    # building the parsed value gives construct's bytes back
    assert ethernet.emit(e, pad=False) == wire == ethernet.HEADER.build(ref.ethernet_fields(e))


def test_ethernet_untagged_tpid_refused_like_construct() -> None:
    # HEADER reads a tag after 0x8100, so neither codec builds one without it.
    frame = ethernet.Ethernet(dst=b"\x01" * 6, src=b"\x02" * 6, ethertype=ethernet.TYPE_VLAN, payload=b"abcd")
    with pytest.raises(ValueError):
        ethernet.emit(frame)
    with pytest.raises(KeyError):  # construct wants the tag's fields
        ethernet.HEADER.build({"dst": frame.dst, "src": frame.src, "ethertype": frame.ethertype, "tag": None,
                               "payload": frame.payload})


# -- ARP -------------------------------------------------------------------------
@st.composite
def arp_fields(draw: st.DrawFn, valid: bool) -> dict[str, Any]:
    fields = {"op": draw(u16), "sha": draw(macs), "spa": draw(ips), "tha": draw(macs), "tpa": draw(ips)}
    if valid:
        fields.update(htype=arp.HTYPE_ETHERNET, ptype=arp.PTYPE_IPV4, hlen=6, plen=4)
    else:
        fields.update(htype=draw(u16), ptype=draw(u16), hlen=draw(u8), plen=draw(u8))
    return fields


@EXAMPLES
@given(arp_fields(valid=False), st.binary(max_size=18))
def test_arp_layout_agrees_with_construct(f: dict[str, Any], trailer: bytes) -> None:
    wire: bytes = arp.HEADER.build(f)
    assert arp._LAYOUT.build(f) == wire
    assert arp._LAYOUT.parse(wire + trailer) == fields_of(arp.HEADER.parse(wire + trailer), arp._LAYOUT.names)
    c = arp.HEADER.parse(wire + trailer)
    if (c.htype, c.ptype, c.hlen, c.plen) == (arp.HTYPE_ETHERNET, arp.PTYPE_IPV4, 6, 4):
        assert arp.parse(wire + trailer) == ref.arp_value(c)
    else:
        with pytest.raises(Malformed, match="unsupported_format"):
            arp.parse(wire + trailer)


@EXAMPLES
@given(arp_fields(valid=True), st.binary(max_size=18))
def test_arp_agrees_with_construct(f: dict[str, Any], trailer: bytes) -> None:
    wire: bytes = arp.HEADER.build(f)
    c = arp.HEADER.parse(wire)
    a = arp.parse(wire + trailer)  # Ethernet padding after the 28 bytes is ignored
    assert (a.op, a.sha, a.spa, a.tha, a.tpa, a.htype, a.ptype, a.hlen, a.plen) == tuple(
        c[k] for k in ("op", "sha", "spa", "tha", "tpa", "htype", "ptype", "hlen", "plen")
    )
    assert a == ref.arp_value(c)
    assert arp.emit(a) == wire == arp.HEADER.build(ref.arp_fields(a))


def test_arp_constant_defaults_come_from_the_declaration() -> None:
    defaults = {f.name: f.default for f in arp._LAYOUT.fields}
    assert defaults == {"htype": 1, "ptype": 0x0800, "hlen": 6, "plen": 4, "op": layout.MISSING, "sha": layout.MISSING,
                        "spa": layout.MISSING, "tha": layout.MISSING, "tpa": layout.MISSING}
    f = {"op": 1, "sha": b"\x02" * 6, "spa": b"\x0a\0\0\2", "tha": bytes(6), "tpa": b"\x0a\0\0\1"}
    assert arp._LAYOUT.build(f) == arp.HEADER.build(f)


# -- IPv4 ------------------------------------------------------------------------
@st.composite
def ipv4_fields(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "tos": draw(u8),
        "identification": draw(u16),
        "flags_fragment": draw(u16),
        "ttl": draw(u8),
        "protocol": draw(u8),
        "checksum": draw(u16),
        "src": draw(ips),
        "dst": draw(ips),
        "options": draw(st.integers(0, 10).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n))),
        "payload": draw(payloads),
    }


def ipv4_value(f: dict[str, Any], **over: Any) -> ipv4.Ipv4:
    ff = f["flags_fragment"]
    kw: dict[str, Any] = dict(
        src=f["src"], dst=f["dst"], protocol=f["protocol"], payload=f["payload"], ttl=f["ttl"],
        identification=f["identification"], tos=f["tos"], df=bool(ff & ipv4.FLAG_DF), mf=bool(ff & ipv4.FLAG_MF),
        frag_offset=(ff & 0x1FFF) * 8, options=f["options"], reserved_flag=bool(ff & ipv4.FLAG_RESERVED),
        checksum=f["checksum"],
    )
    kw.update(over)
    return ipv4.Ipv4(**kw)


@EXAMPLES
@given(ipv4_fields(), st.binary(max_size=30))
def test_ipv4_agrees_with_construct(f: dict[str, Any], padding: bytes) -> None:
    # construct computes IHL and Total Length from its Defaults
    wire: bytes = ipv4.HEADER.build({**f, "version_ihl": None, "total_length": None})
    assert ipv4.emit(ipv4_value(f)) == wire  # emit computes them the same way
    c = ipv4.HEADER.parse(wire)
    assert ipv4._FIXED.parse(wire + padding) == fields_of(c, ipv4._FIXED.names)
    p = ipv4.parse(wire + padding, verify_checksum=False)  # padding past Total Length is dropped
    ff = c.flags_fragment
    assert (p.src, p.dst, p.protocol, p.payload, p.ttl, p.identification, p.tos, p.options, p.checksum) == (
        c.src, c.dst, c.protocol, c.payload, c.ttl, c.identification, c.tos, c.options, c.checksum
    )
    assert (p.ihl, p.total_length) == (c.version_ihl & 0x0F, c.total_length)
    assert (p.df, p.mf, p.reserved_flag, p.frag_offset) == (
        bool(ff & ipv4.FLAG_DF), bool(ff & ipv4.FLAG_MF), bool(ff & ipv4.FLAG_RESERVED), (ff & 0x1FFF) * 8
    )
    assert p == ref.decode(ipv4, wire + padding)
    assert ipv4.emit(p) == wire  # with IHL, Total Length and the checksum as parsed


@EXAMPLES
@given(ipv4_fields())
def test_ipv4_checksum_computed_when_none(f: dict[str, Any]) -> None:
    wire = ipv4.emit(ipv4_value(f, checksum=None))
    hlen = ipv4.MIN_HEADER + len(f["options"])
    assert checksum.verify(wire[:hlen])
    expected: bytes = ipv4.HEADER.build({**f, "version_ihl": None, "total_length": None, "checksum": 0})
    assert wire[:10] + wire[12:] == expected[:10] + expected[12:]
    assert ipv4.parse(wire) == ipv4.parse(wire, verify_checksum=False)


@EXAMPLES
@given(ipv4_fields(), st.integers(0, 15), u16)
def test_ipv4_explicit_ihl_and_length_like_construct(f: dict[str, Any], ihl: int, total: int) -> None:
    # A scenario may set IHL and Total Length to lie; emit writes them as given and
    # checksums the first IHL * 4 bytes. construct's interpreted build checks the
    # options against the IHL, so it can only be asked when the IHL is honest; its
    # reading of the fixed twenty bytes holds either way.
    value = ipv4_value(f, ihl=ihl, total_length=total, checksum=None)
    d = ipv4.emit(value)
    fixed = Struct(*ipv4.HEADER.subcons[:10]).parse(d)
    assert (fixed.version_ihl, fixed.total_length) == (0x40 | ihl, total)
    assert {k: fixed[k] for k in ("tos", "identification", "ttl", "protocol", "src", "dst")} == {
        k: f[k] for k in ("tos", "identification", "ttl", "protocol", "src", "dst")}
    assert fixed.flags_fragment == f["flags_fragment"]
    assert d[ipv4.MIN_HEADER:] == f["options"] + f["payload"]
    assert checksum.verify(d[: ihl * 4]) or ihl * 4 < 12  # below 12 the checksum field is not covered
    if ihl * 4 == ipv4.MIN_HEADER + len(f["options"]):
        wire: bytes = ipv4.HEADER.build({**f, "version_ihl": 0x40 | ihl, "total_length": total, "checksum": 0})
        assert d[:10] + d[12:] == wire[:10] + wire[12:]


def test_ipv4_computed_defaults_are_marked() -> None:
    defaults = {f.name: f.default for f in ipv4._FIXED.fields}
    assert defaults["version_ihl"] is COMPUTED
    assert defaults["total_length"] is COMPUTED
    assert ipv4._FIXED.tail == ("options", "payload")
    with pytest.raises(ValueError, match="version_ihl"):
        ipv4._FIXED.fill([None] * len(ipv4._FIXED.fields))


# -- ICMP ------------------------------------------------------------------------
@st.composite
def icmp_fields(draw: st.DrawFn) -> dict[str, Any]:
    t = draw(st.sampled_from([icmp.ECHO_REPLY, icmp.ECHO_REQUEST, icmp.DEST_UNREACHABLE, icmp.PARAMETER_PROBLEM]) | u8)
    if t in (icmp.ECHO_REQUEST, icmp.ECHO_REPLY):
        rest = {"identifier": draw(u16), "sequence": draw(u16)}
    elif t == icmp.DEST_UNREACHABLE:
        rest = {"unused": draw(u16), "next_hop_mtu": draw(u16)}
    elif t == icmp.PARAMETER_PROBLEM:
        rest = {"pointer": draw(u8), "unused": draw(u8), "unused2": draw(u16)}
    else:
        rest = {"unused": draw(u32)}
    return {"type": t, "code": draw(u8), "checksum": draw(u16), "rest": rest, "data": draw(payloads)}


_ICMP_LAYOUTS = {
    icmp.ECHO_REQUEST: icmp._ECHO_L,
    icmp.ECHO_REPLY: icmp._ECHO_L,
    icmp.DEST_UNREACHABLE: icmp._UNREACH_L,
    icmp.PARAMETER_PROBLEM: icmp._PARAM_L,
}


@EXAMPLES
@given(icmp_fields())
def test_icmp_agrees_with_construct(f: dict[str, Any]) -> None:
    wire: bytes = icmp.HEADER.build(f)
    c = icmp.HEADER.parse(wire)
    lay = _ICMP_LAYOUTS.get(f["type"], icmp._OTHER_L)
    expected = {"type": c.type, "code": c.code, "checksum": c.checksum, **fields_of(c.rest, lay.names[3:])}
    assert lay.parse(wire) == expected
    m = icmp.parse(wire, verify_checksum=False)
    assert (m.type, m.code, m.checksum, m.data) == (c.type, c.code, c.checksum, c.data)
    rest = c.rest
    t = c.type
    echo = t in (icmp.ECHO_REQUEST, icmp.ECHO_REPLY)
    assert (m.identifier, m.sequence) == ((rest.identifier, rest.sequence) if echo else (0, 0))
    assert m.next_hop_mtu == (rest.next_hop_mtu if t == icmp.DEST_UNREACHABLE else 0)
    assert m.pointer == (rest.pointer if t == icmp.PARAMETER_PROBLEM else 0)
    assert m == ref.decode(icmp, wire)
    # emit writes the unused bits as zero, as construct does from the same rest
    zeroed = {k: (0 if k.startswith("unused") else v) for k, v in f["rest"].items()}
    assert icmp.emit(m) == icmp.HEADER.build({**f, "rest": zeroed}) == icmp.HEADER.build(ref.icmp_fields(m))
    computed = icmp.emit(m._replace(checksum=None))
    assert checksum.verify(computed)
    assert computed[:2] + computed[4:] == icmp.emit(m)[:2] + icmp.emit(m)[4:]


# -- the derivation refuses what it cannot express ---------------------------------
def test_derive_needs_a_struct() -> None:
    with pytest.raises(LayoutError):
        derive(Int8ub)
    with pytest.raises(LayoutError):
        derive(ipv4.HEADER.compile())


@pytest.mark.parametrize(
    "declaration",
    [
        Struct("a" / Int8ub, "b" / Bytes(this.a)),  # sized by the context
        Struct("a" / Int8ub, "rest" / GreedyBytes),
        Struct("t" / Int8ub, "x" / If(this.t == 1, Int8ub)),
        Struct("t" / Int8ub, "x" / Switch(this.t, {1: Int8ub})),
        Struct("a" / Int16ub, "b" / Int16ul),  # one struct has one byte order
        Struct("a" / Int8ub, "b" / BytesInteger(3)),  # 24-bit: not a struct code
        Struct("a" / Int8ub, "op" / Enum(Int16ub, request=1)),  # an adapter maps values
        Struct("a" / Int8ub, "bits" / BitStruct("x" / Int8ub)),
        Struct("a" / Int8ub, Padding(2)),  # unnamed
        Struct("a" / Int8ub, "n" / Struct("x" / Int8ub)),  # nested: not flattened
    ],
)
def test_derive_refuses_an_unhandled_remainder(declaration: Any) -> None:
    with pytest.raises(LayoutError):
        derive(declaration)


def test_derive_stops_where_the_caller_takes_over() -> None:
    lay = derive(Struct("a" / Int16ub, "b" / Int16ul, "c" / Bytes(this.a)), tail={"b": FormatField, "c": Bytes})
    assert lay.names == ("a",)
    assert lay.tail == ("b", "c")
    with pytest.raises(LayoutError, match="caller handles"):
        derive(Struct("a" / Int8ub, "b" / Bytes(this.a)), tail={"b": GreedyBytes})  # wrong kind
    with pytest.raises(LayoutError):
        derive(Struct("a" / Int8ub, "b" / Bytes(this.a)), tail={"c": Bytes})  # wrong name


@pytest.mark.parametrize(
    "declaration",
    [
        Struct("payload" / GreedyBytes),  # nothing fixed at the front
        Struct(Const(b"AB"), "x" / Int8ub),  # an unnamed leading member
        Struct("a" / Int8ub * (lambda obj, ctx: None)),  # a parsed hook would not run
    ],
)
def test_derive_refuses_an_empty_run(declaration: Any) -> None:
    with pytest.raises(LayoutError):
        derive(declaration, tail={sc.name: type(sc.subcon) for sc in declaration.subcons if sc.name})


def test_a_changed_declaration_is_refused_at_import() -> None:
    # What ipv4.py would do at import if a member were added after the payload.
    changed = Struct(*ipv4.HEADER.subcons, "trailer" / Int8ub)
    with pytest.raises(LayoutError):
        derive(changed, tail={"options": Bytes, "payload": GreedyBytes})
    # ... or if the options stopped being bytes
    changed = Struct(*ipv4.HEADER.subcons[:10], "options" / GreedyBytes, "payload" / GreedyBytes)
    with pytest.raises(LayoutError):
        derive(changed, tail={"options": Bytes, "payload": GreedyBytes})
    assert isinstance(member(ethernet.HEADER, "tag"), IfThenElse)
    with pytest.raises(LayoutError):
        member(ethernet.HEADER, "vlan")


def test_const_checked_on_parse_and_build() -> None:
    lay = derive(Struct("magic" / Const(b"SS"), "v" / Const(2, Int8ub), "n" / Default(Int16ub, 7)))
    assert lay.format == ">2sBH"
    assert lay.build({}) == b"SS\x02\x00\x07" == Struct("magic" / Const(b"SS"), "v" / Const(2, Int8ub),
                                                          "n" / Default(Int16ub, 7)).build({})
    assert lay.parse(b"SS\x02\x00\x09") == {"magic": b"SS", "v": 2, "n": 9}
    with pytest.raises(Malformed) as e:
        lay.unpack_from(b"SX\x02\x00\x09")
    assert e.value.reason == "bad_constant"
    with pytest.raises(ValueError):
        lay.pack(b"SS", 3, 0)


def test_pack_refuses_wrong_byte_lengths() -> None:
    # struct would pad or cut "6s" silently; Bytes(6) means six bytes.
    with pytest.raises(ValueError, match="dst"):
        ethernet._HEAD.pack(b"\x01" * 5, b"\x02" * 6, 0x0800)
    with pytest.raises(ValueError, match="sha"):
        arp.emit(arp.Arp(op=arp.REQUEST, sha=b"\x02" * 7, spa=bytes(4), tha=bytes(6), tpa=bytes(4)))


def test_join_refuses_mixed_orders_and_duplicate_names() -> None:
    big = derive(Struct("a" / Int16ub))
    little = derive(Struct("b" / Int16ul))
    with pytest.raises(LayoutError):
        _ = big + little
    with pytest.raises(LayoutError):
        _ = big + big
    one_byte = derive(Struct("c" / Int8ub))
    assert (little + one_byte).format == "<HB"


# -- never reading short -----------------------------------------------------------
PARSERS: dict[str, Callable[[bytes], Any]] = {
    "ethernet": ethernet.parse,
    "arp": arp.parse,
    "ipv4": ipv4.parse,
    "icmp": icmp.parse,
}
MINIMUM = {"ethernet": ethernet.HEADER_LEN, "arp": arp.LENGTH, "ipv4": ipv4.MIN_HEADER, "icmp": icmp.HEADER_LEN}


def _valid(name: str) -> bytes:
    echo = icmp.emit(icmp.Icmp(type=icmp.ECHO_REQUEST, data=bytes(range(56)), identifier=0x1C2D, sequence=1))
    packet = ipv4.emit(ipv4.Ipv4(src=b"\x0a\0\0\2", dst=b"\x0a\0\0\1", protocol=ipv4.PROTO_ICMP, payload=echo,
                                 options=b"\x01\x01\x01\x00"))
    if name == "ethernet":
        return ethernet.emit(ethernet.Ethernet(dst=b"\x02" * 6, src=b"\x04" * 6, ethertype=ethernet.TYPE_IPV4,
                                               payload=packet, vlan=5))
    if name == "arp":
        return arp.emit(arp.Arp(op=arp.REQUEST, sha=b"\x02" * 6, spa=b"\x0a\0\0\2", tha=bytes(6), tpa=b"\x0a\0\0\1"))
    return packet if name == "ipv4" else echo


@pytest.mark.parametrize("name", list(PARSERS))
def test_truncated_buffers_are_malformed(name: str) -> None:
    parse = PARSERS[name]
    whole = _valid(name)
    parse(whole)
    for n in range(MINIMUM[name]):
        with pytest.raises(Malformed) as e:
            parse(whole[:n])
        assert e.value.reason == "truncated"
    if name == "ethernet":  # the 802.1Q tag needs four more bytes
        for n in range(ethernet.HEADER_LEN, ethernet.HEADER_LEN + ethernet.TAG_LEN):
            with pytest.raises(Malformed, match=r"802\.1Q"):
                parse(whole[:n])


@pytest.mark.parametrize("name", list(PARSERS))
def test_layouts_never_read_short(name: str) -> None:
    lay = {"ethernet": ethernet._HEAD, "arp": arp._LAYOUT, "ipv4": ipv4._FIXED, "icmp": icmp._ECHO_L}[name]
    whole = _valid(name)
    for n in range(lay.size):
        with pytest.raises(struct.error):
            lay.unpack_from(whole[:n])
        with pytest.raises(Malformed):
            lay.parse(whole[:n])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(PARSERS)), st.data())
def test_any_cut_or_damage_parses_as_construct_reads_it(name: str, data: st.DataObject) -> None:
    """On any prefix of a valid header with any byte changed: Malformed, or the value construct reads too."""
    whole = _valid(name)
    cut = whole[: data.draw(st.integers(0, len(whole)))]
    if cut:
        at = data.draw(st.integers(0, len(cut) - 1))
        cut = cut[:at] + bytes([data.draw(u8)]) + cut[at + 1 :]
    try:
        got = PARSERS[name](cut)  # any exception but Malformed fails the test
    except Malformed:
        return
    module = {"ethernet": ethernet, "arp": arp, "ipv4": ipv4, "icmp": icmp}[name]
    assert got == ref.decode(module, cut)


def test_buffers_other_than_bytes_give_bytes() -> None:
    frame = _valid("ethernet")
    for buffer in (bytearray(frame), memoryview(frame)):
        e = ethernet.parse(buffer)  # type: ignore[arg-type]
        assert e == ethernet.parse(frame) and type(e.payload) is bytes
        p = ipv4.parse(bytearray(e.payload))  # type: ignore[arg-type]
        assert type(p.payload) is bytes and type(p.options) is bytes
        m = icmp.parse(memoryview(p.payload))  # type: ignore[arg-type]
        assert type(m.data) is bytes


# -- the checksum ------------------------------------------------------------------
def rfc1071(data: bytes, initial: int = 0) -> int:
    """RFC 1071 4.1, word by word, as the reference."""
    if len(data) % 2:
        data += b"\x00"
    total = initial
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300) | st.sampled_from([b"", b"\0", b"\0\0", b"\xff\xff", b"\xff", b"\xff\xff" * 9]),
       st.sampled_from([0]) | u16)
def test_checksum_matches_rfc1071(data: bytes, initial: int) -> None:
    assert checksum.ones_sum(data, initial) == rfc1071(data, initial)
    assert checksum.internet_checksum(data, initial) == ~rfc1071(data, initial) & 0xFFFF
    assert checksum.verify(data, initial) == (rfc1071(data, initial) == 0xFFFF)
    if len(data) % 2 == 0 and len(data) >= 2:
        zeroed = data[:-2] + b"\0\0"
        filled = data[:-2] + checksum.internet_checksum(zeroed, initial).to_bytes(2, "big")
        assert checksum.verify(filled, initial)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=129, max_size=9000) | st.sampled_from(
    [b"\xff" * 1480, b"\0" * 1480, b"\xff" * 1481, b"\xff\xff" * 4096 + b"\0\x01", b"\x01" + b"\0" * 8191]),
       st.sampled_from([0, 0xFFFF]) | u16)
def test_long_buffers_fold_to_the_rfc1071_sum(data: bytes, initial: int) -> None:
    """Past 128 bytes the sum is folded before the remainder (checksum.py): the same sums, zero and all-ones kept apart."""
    assert checksum.ones_sum(data, initial) == rfc1071(data, initial)
    assert checksum.verify(data, initial) == (rfc1071(data, initial) == 0xFFFF)


@EXAMPLES
@given(u16, u16, st.binary(max_size=1500), st.binary(max_size=8))
def test_udp_agrees_with_construct(sport: int, dport: int, payload: bytes, trailer: bytes) -> None:
    src, dst = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
    built = udp.emit(udp.Udp(src_port=sport, dst_port=dport, payload=payload), src, dst)
    # The length Default and the checksum field as construct builds them from the same declaration.
    reference = udp.HEADER.build({"src_port": sport, "dst_port": dport, "checksum": built[6] << 8 | built[7],
                                  "payload": payload})
    assert built == reference
    parsed = udp.parse(built + trailer, src, dst)
    assert parsed == ref.decode(udp, built + trailer) == udp.Udp(
        src_port=sport, dst_port=dport, payload=payload, length=8 + len(payload), checksum=built[6] << 8 | built[7])


# -- the field descriptions against the declarations ---------------------------------
def _declared_bits(declaration: Any) -> dict[str, int]:
    """Member name -> bits, for every fixed-size integer member of a Struct, nested cases included."""
    out: dict[str, int] = {}
    decl = layout.unwrap(declaration)
    for sc in decl.subcons:
        inner = layout.unwrap(sc)
        while isinstance(inner, Default):
            inner = inner.subcon
        if isinstance(inner, FormatField) and inner.fmtstr[-1] in "BHIQ":
            out[sc.name] = inner.sizeof() * 8
        for case in [*getattr(inner, "cases", {}).values(), getattr(inner, "default", None), getattr(inner, "thensubcon", None)]:
            if isinstance(layout.unwrap(case), Struct):
                out.update(_declared_bits(case))
    return out


HEADERS = {"ethernet": ethernet, "arp": arp, "ipv4": ipv4, "icmp": icmp, "udp": udp}


@pytest.mark.parametrize("name", list(HEADERS))
def test_field_widths_are_the_declaration_s(name: str) -> None:
    """A field the format holds whole has the declared width; the others (split or rescaled) are listed here."""
    module = HEADERS[name]
    declared = _declared_bits(module.HEADER)
    whole = 0
    for f in module.FIELDS.fields:
        if isinstance(f.type, fieldspec.Int) and f.attr in declared:
            assert f.type.bits == declared[f.attr], f"{f.key}: {f.type.bits} bits, {declared[f.attr]} declared"
            whole += 1
    # Fields the value splits out of a declared member, or scales: vlan, pcp (of tci), ihl (of version_ihl),
    # frag (of flags_fragment, in bytes rather than 8-byte units).
    derived = {(f.key, f.type.bits) for f in module.FIELDS.fields
               if isinstance(f.type, fieldspec.Int) and f.attr not in declared}
    assert derived <= {("eth.vlan", 12), ("eth.pcp", 3), ("ipv4.ihl", 4), ("ipv4.frag", 16)}, derived
    assert whole > 0


@pytest.mark.parametrize("name", list(HEADERS))
def test_field_descriptions_fit_the_value_type(name: str) -> None:
    """The value type is a NamedTuple the description covers; defaults a scenario gets are values the field takes."""
    header = HEADERS[name].FIELDS
    assert set(header.value._fields) == {f.attr for f in header.fields} | set(header.unnamed)
    for f in header.fields:
        if isinstance(f.type, fieldspec.Int) and isinstance(f.default, int):
            assert 0 <= f.default < 1 << f.type.bits, f.key
            assert all(0 <= v < 1 << f.type.bits for v in f.type.names.values()), f.key
        if f.computed is not None:
            assert f.default is None, f"{f.key}: emit computes it from None"


def test_a_description_that_misses_a_field_is_refused() -> None:
    fields = [f for f in udp.FIELDS.fields if f.attr != "checksum"]
    with pytest.raises(TypeError, match="checksum"):
        fieldspec.Header("udp", udp.Udp, fields)
    with pytest.raises(TypeError, match="nothing"):
        fieldspec.Header("udp", udp.Udp, [*udp.FIELDS.fields, fieldspec.Field("x", "nothing", fieldspec.BOOL)])
    with pytest.raises(TypeError, match="depends"):
        fieldspec.Header("udp", udp.Udp, [*fields, fieldspec.Field("checksum", "checksum", fieldspec.Int(16),
                                                                    when=fieldspec.When("kind"))])


def test_values_are_immutable_and_build_by_keyword_or_position() -> None:
    by_keyword = ipv4.Ipv4(src=b"\x0a\0\0\2", dst=b"\x0a\0\0\1", protocol=ipv4.PROTO_UDP, identification=7)
    by_position = ipv4.Ipv4(b"\x0a\0\0\2", b"\x0a\0\0\1", ipv4.PROTO_UDP, b"", 64, 7)
    assert by_keyword == by_position
    with pytest.raises(AttributeError):
        by_keyword.ttl = 1  # type: ignore[misc]
    parsed = ipv4.parse(ipv4.emit(by_keyword))
    assert type(parsed) is ipv4.Ipv4 and parsed._replace(ihl=None, total_length=None, checksum=None) == by_keyword


# -- the benchmark's baseline ----------------------------------------------------------------
def test_the_construct_baseline_replays_like_the_derived_codec() -> None:
    """bench/replay_ping.py divides by the compiled construct codec: it must do the same work, to the same frames."""
    scenario = load(SCENARIOS / "ping.yaml")
    frames: list[tuple[float, str, bytes]] = []
    assert Runner(scenario, trace=lambda t, d, f: frames.append((t, d, f))).run().passed
    derived = [ethernet.parse(frame) for _, _, frame in frames]
    baseline: list[tuple[float, str, bytes]] = []
    with ref.construct_codec():
        assert {m.parse.__module__ for m in HEADERS.values()} == {"construct_reference"}
        assert Runner(scenario, trace=lambda t, d, f: baseline.append((t, d, f))).run().passed
        assert [ethernet.parse(frame) for _, _, frame in frames] == derived
    assert baseline == frames
    assert {m.parse.__module__ for m in HEADERS.values()} == {m.__name__ for m in HEADERS.values()}  # restored
