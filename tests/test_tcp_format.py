"""The TCP wire format (``protocols/tcp.py``) against scapy, construct, and a table of bad segments.

(a) scapy builds, simstack parses: random ports, numbers, flags (NS and the
    reserved bits too, which simstack must ignore), options of every kind we
    know and of kinds we do not, EOL anywhere, payload. ``parse`` verifies
    scapy's checksum and must report what scapy was asked to write.
(b) simstack emits, scapy dissects: every field scapy reads is what simstack was
    asked to write, and scapy's own ``in4_chksum`` over the pseudo-header agrees
    with the checksum ``emit`` wrote.
(c) the struct codec ``layout`` derives against construct's interpreted
    ``HEADER.parse``/``HEADER.build`` of the same declaration.
(d) gVisor-style: each row a description, the bytes, and the exact
    ``Malformed.reason``. Rows are built with construct and scapy's checksum,
    not with ``emit``, so a bug in ``emit`` cannot hide one in ``parse``.

Addresses go through the socket module, never through simstack's helpers.
"""

import socket
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, TCPOptions, in4_chksum
from scapy.utils import checksum as scapy_checksum

from simstack.protocols import tcp
from simstack.protocols.errors import Malformed
from simstack.protocols.tcp import Option

EXAMPLES = settings(max_examples=300, deadline=None, derandomize=True)

SRC = socket.inet_aton("10.0.0.2")
DST = socket.inet_aton("10.0.0.1")

ips = st.binary(min_size=4, max_size=4)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)

KNOWN = (tcp.OPT_EOL, tcp.OPT_NOP, tcp.OPT_MSS, tcp.OPT_WSCALE, tcp.OPT_SACK_PERMITTED, tcp.OPT_SACK, tcp.OPT_TIMESTAMP)
# Kinds simstack keeps as raw bytes; scapy writes an int kind raw whatever it is.
UNKNOWN_KINDS = [k for k in range(256) if k not in KNOWN]
# Of those, the ones scapy also dissects as raw (kind, bytes), for direction (b).
SCAPY_RAW_KINDS = [k for k in UNKNOWN_KINDS if k not in TCPOptions[0]]


def scapy_binds_port(port: int) -> bool:
    """Whether scapy, as loaded right now, dissects a TCP payload for this port."""
    return any(fields.get(f) == port for cls in TCP.aliastypes for fields, _ in getattr(cls, "payload_guess", [])
               for f in ("sport", "dport"))


raw_ports = u16.filter(lambda p: not scapy_binds_port(p))


# -- option strategies -------------------------------------------------------------
def encoded_len(opt: Option) -> int:
    """The option's length on the wire, by RFC 9293 3.2, independent of tcp.emit_options."""
    kind, value = opt
    if kind in (tcp.OPT_EOL, tcp.OPT_NOP):
        return 1
    if kind == tcp.OPT_SACK:
        return 2 + 8 * len(value)
    if kind in tcp.OPTION_LENGTH:
        return tcp.OPTION_LENGTH[kind]
    return 2 + len(value)


def one_option(unknown_kinds: list[int]) -> st.SearchStrategy[Option]:
    edges = st.tuples(u32, u32)
    return st.one_of(
        st.just(Option(tcp.OPT_NOP)),
        u16.map(lambda v: Option(tcp.OPT_MSS, v)),
        u8.map(lambda v: Option(tcp.OPT_WSCALE, v)),
        st.just(Option(tcp.OPT_SACK_PERMITTED)),
        st.lists(edges, min_size=1, max_size=4).map(lambda b: Option(tcp.OPT_SACK, tuple(b))),
        st.tuples(u32, u32).map(lambda v: Option(tcp.OPT_TIMESTAMP, v)),
        st.tuples(st.sampled_from(unknown_kinds), st.binary(max_size=12)).map(lambda kv: Option(kv[0], kv[1])),
    )


@st.composite
def option_lists(draw: st.DrawFn, unknown_kinds: list[int], eol_anywhere: bool) -> list[Option]:
    """Options whose encoding, padded to 32 bits, fits the 40 bytes; an EOL at the end, or anywhere."""
    out: list[Option] = []
    size = 0
    for _ in range(draw(st.integers(0, 12))):
        opt = draw(one_option(unknown_kinds))
        n = encoded_len(opt)
        if size + n > tcp.MAX_OPTIONS:
            continue
        out.append(opt)
        size += n
    if size < tcp.MAX_OPTIONS and draw(st.booleans()):
        at = draw(st.integers(0, len(out))) if eol_anywhere else len(out)
        out.insert(at, Option(tcp.OPT_EOL))
    return out


def as_scapy(opt: Option) -> tuple[Any, Any]:
    """The (name, value) scapy uses for an option, as its TCPOptionsField documents."""
    kind, value = opt
    if kind == tcp.OPT_EOL:
        return ("EOL", None)
    if kind == tcp.OPT_NOP:
        return ("NOP", None)
    if kind == tcp.OPT_MSS:
        return ("MSS", value)
    if kind == tcp.OPT_WSCALE:
        return ("WScale", value)
    if kind == tcp.OPT_SACK_PERMITTED:
        return ("SAckOK", b"")
    if kind == tcp.OPT_SACK:
        return ("SAck", tuple(edge for block in value for edge in block))
    if kind == tcp.OPT_TIMESTAMP:
        return ("Timestamp", tuple(value))
    return (kind, value)


def as_parsed(options: list[Option]) -> tuple[Option, ...]:
    """What parse must report for ``options`` written and zero-padded: up to the first EOL, padding an EOL."""
    out: list[Option] = []
    for opt in options:
        kind, value = opt
        if kind == tcp.OPT_SACK:
            opt = Option(kind, tuple(tuple(b) for b in value))
        elif kind == tcp.OPT_TIMESTAMP:
            opt = Option(kind, tuple(value))
        out.append(opt)
        if kind == tcp.OPT_EOL:
            return tuple(out)
    if sum(encoded_len(o) for o in options) % 4:
        out.append(Option(tcp.OPT_EOL))
    return tuple(out)


# -- (a) scapy builds, simstack parses ---------------------------------------------
@EXAMPLES
@given(src=ips, dst=ips, sport=u16, dport=u16, seq=u32, ack=u32, flags=st.integers(0, 0x1FF), reserved=st.integers(0, 7),
       window=u16, urgent=u16, options=option_lists(UNKNOWN_KINDS, eol_anywhere=True), payload=st.binary(max_size=1460))
def test_scapy_to_simstack(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, reserved: int,
                           window: int, urgent: int, options: list[Option], payload: bytes) -> None:
    built = IP(src=socket.inet_ntoa(src), dst=socket.inet_ntoa(dst)) / TCP(
        sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, reserved=reserved, window=window, urgptr=urgent,
        options=[as_scapy(o) for o in options]) / payload
    view = IP(bytes(built))[TCP]  # scapy's computed dataofs and chksum
    segment = bytes(view)
    seg = tcp.parse(segment, src, dst)  # raises on a checksum scapy got right and we did not
    assert seg.src_port == sport
    assert seg.dst_port == dport
    assert seg.seq == seq
    assert seg.ack == ack
    assert seg.flags == flags & 0xFF  # NS (scapy's ninth flag) is a reserved bit in RFC 9293
    assert seg.window == window
    assert seg.urgent == urgent
    assert seg.options == as_parsed(options)
    assert seg.payload == payload
    assert seg.data_offset == view.dataofs
    assert seg.checksum == view.chksum
    rebuilt = tcp.emit(seg, src, dst)
    if reserved or flags & 0x100 or Option(tcp.OPT_EOL) in options[:-1]:
        # reserved bits go out as zero; after an EOL, emit writes zeros, not what scapy wrote
        assert rebuilt[12] == segment[12] & 0xF0
    else:
        assert rebuilt == segment  # what we parsed builds the same bytes again


# -- (b) simstack emits, scapy dissects --------------------------------------------
@EXAMPLES
@given(src=ips, dst=ips, sport=raw_ports, dport=raw_ports, seq=u32, ack=u32, flags=u8, window=u16, urgent=u16,
       options=option_lists(SCAPY_RAW_KINDS, eol_anywhere=False), payload=st.binary(max_size=1460))
def test_simstack_to_scapy(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, window: int,
                           urgent: int, options: list[Option], payload: bytes) -> None:
    segment = tcp.emit(tcp.Tcp(sport, dport, seq, ack, flags, window, urgent, tuple(options), payload), src, dst)
    p = TCP(segment)
    assert p.sport == sport
    assert p.dport == dport
    assert p.seq == seq
    assert p.ack == ack
    assert p.reserved == 0
    assert int(p.flags) == flags
    assert p.window == window
    assert p.urgptr == urgent
    padded = (sum(encoded_len(o) for o in options) + 3) // 4 * 4
    assert p.dataofs == 5 + padded // 4
    assert [tuple(o) for o in p.options] == [as_scapy(o) for o in as_parsed(options)]
    assert bytes(p.payload) == payload
    # scapy's checksum over its own pseudo-header, with the field zeroed
    pseudo_ip = IP(src=socket.inet_ntoa(src), dst=socket.inet_ntoa(dst), proto=socket.IPPROTO_TCP)
    zeroed = segment[:16] + b"\0\0" + segment[18:]
    assert p.chksum == in4_chksum(socket.IPPROTO_TCP, pseudo_ip, zeroed)
    # and scapy's own build of the dissected segment inside IP agrees
    again = IP(src=socket.inet_ntoa(src), dst=socket.inet_ntoa(dst)) / TCP(segment)
    del again[TCP].chksum
    assert IP(bytes(again))[TCP].chksum == p.chksum


@settings(max_examples=300, deadline=None, derandomize=True)
@given(sport=u16, dport=u16, seq=u32, ack=u32, flags=u8, window=u16, urgent=u16,
       options=option_lists(UNKNOWN_KINDS, eol_anywhere=True), payload=st.binary(max_size=300))
def test_parse_of_emit(sport: int, dport: int, seq: int, ack: int, flags: int, window: int, urgent: int,
                       options: list[Option], payload: bytes) -> None:
    seg = tcp.Tcp(sport, dport, seq, ack, flags, window, urgent, tuple(options), payload)
    wire = tcp.emit(seg, SRC, DST)
    back = tcp.parse(wire, SRC, DST)
    # what follows an EOL is padding: written, but not options any more
    assert back.options == as_parsed(options)
    assert (back.src_port, back.dst_port, back.seq, back.ack, back.flags, back.window, back.urgent, back.payload) == (
        sport, dport, seq, ack, flags, window, urgent, payload)
    assert back.data_offset == len(wire[: len(wire) - len(payload)]) // 4
    if Option(tcp.OPT_EOL) not in options[:-1]:
        assert tcp.emit(back, SRC, DST) == wire  # data offset and checksum as parsed rebuild the same bytes


# -- (c) the derived codec against construct's reading of HEADER --------------------
@st.composite
def header_fields(draw: st.DrawFn) -> dict[str, Any]:
    options = tcp.emit_options(draw(option_lists(UNKNOWN_KINDS, eol_anywhere=False)))
    return {"src_port": draw(u16), "dst_port": draw(u16), "seq": draw(u32), "ack": draw(u32), "flags": draw(u8),
            "window": draw(u16), "checksum": draw(u16), "urgent": draw(u16), "options": options,
            "payload": draw(st.binary(max_size=200)), "reserved": draw(st.integers(0, 15))}


@EXAMPLES
@given(header_fields())
def test_derived_codec_agrees_with_construct(f: dict[str, Any]) -> None:
    reserved = f.pop("reserved")
    # construct computes the data offset from its Default...
    wire: bytes = tcp.HEADER.build({**f, "offset_reserved": None})
    c = tcp.HEADER.parse(wire)
    assert c.offset_reserved >> 4 == 5 + len(f["options"]) // 4
    # ...and emit computes it the same way
    seg = tcp.Tcp(f["src_port"], f["dst_port"], f["seq"], f["ack"], f["flags"], f["window"], f["urgent"],
                  tcp.parse_options(f["options"], 0, len(f["options"])), f["payload"], checksum=f["checksum"])
    assert tcp.emit(seg, SRC, DST) == wire
    # the derived struct reads the fixed part as construct does, reserved bits and all
    lying = wire[:12] + bytes((c.offset_reserved | reserved,)) + wire[13:]
    c = tcp.HEADER.parse(lying)
    assert tcp._FIXED.parse(lying) == {name: c[name] for name in tcp._FIXED.names}
    p = tcp.parse(lying, SRC, DST, verify_checksum=False)
    assert (p.src_port, p.dst_port, p.seq, p.ack, p.flags, p.window, p.urgent, p.checksum) == (
        c.src_port, c.dst_port, c.seq, c.ack, c.flags, c.window, c.urgent, c.checksum)
    assert p.data_offset == c.offset_reserved >> 4
    assert p.payload == c.payload
    assert tcp.emit_options(p.options) == c.options  # the options area construct cut, re-read and rebuilt


def test_declaration_derives_the_twenty_fixed_bytes() -> None:
    assert tcp._FIXED.size == tcp.HEADER_LEN
    assert tcp._FIXED.names == ("src_port", "dst_port", "seq", "ack", "offset_reserved", "flags", "window", "checksum",
                                "urgent")
    assert tcp._FIXED.tail == ("options", "payload")


# -- (d) bad segments, gVisor style ------------------------------------------------
def segment(options: bytes = b"", payload: bytes = b"", offset: int | None = None, flags: int = tcp.ACK,
            src: bytes = SRC, dst: bytes = DST) -> bytes:
    """A segment built by construct, its checksum by scapy's RFC 1071 sum over the pseudo-header.

    ``offset`` replaces the data offset construct computed, to lie about it.
    """
    fields = {"src_port": 40000, "dst_port": 80, "seq": 0x01020304, "ack": 0x05060708, "flags": flags, "window": 512,
              "checksum": 0, "urgent": 0, "options": options, "payload": payload, "offset_reserved": None}
    built: bytes = tcp.HEADER.build(fields)
    if offset is not None:
        built = built[:12] + bytes((offset << 4,)) + built[13:]
    pseudo = src + dst + struct.pack(">BBH", 0, socket.IPPROTO_TCP, len(built))
    csum = scapy_checksum(pseudo + built)
    return built[:16] + struct.pack(">H", csum) + built[18:]


SYN_OPTIONS = bytes.fromhex("020405b4" "0402" "080a0000000100000000" "01" "030307")  # Linux's SYN, 20 bytes
SYN = segment(SYN_OPTIONS, flags=tcp.SYN)
assert len(SYN) == 40


def pad(options: bytes) -> bytes:
    return options + bytes(-len(options) % 4)


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes((data[at] ^ 0x01,)) + data[at + 1 :]


BAD: list[tuple[str, bytes, str]] = [
    ("empty", b"", "truncated"),
    *[(f"SYN with options cut to {k} bytes", SYN[:k], "truncated") for k in range(1, tcp.HEADER_LEN)],
    *[(f"SYN with options cut to {k} bytes (data offset 10 past the end)", SYN[:k], "bad_data_offset")
      for k in range(tcp.HEADER_LEN, len(SYN))],
    *[(f"data offset {d}, below the header", segment(offset=d), "bad_data_offset") for d in range(5)],
    ("data offset 6, 20 bytes present", segment(offset=6), "bad_data_offset"),
    ("data offset 15, 40 bytes present", segment(bytes(20), offset=15), "bad_data_offset"),
    ("data offset 11 on a 40-byte SYN", segment(SYN_OPTIONS, offset=11), "bad_data_offset"),
    ("checksum off by one bit in the header", flip(SYN, 4), "bad_checksum"),
    ("checksum off by one bit in the options", flip(SYN, 25), "bad_checksum"),
    ("checksum off by one bit in the payload", flip(segment(payload=b"hello"), 22), "bad_checksum"),
    ("checksum field zero (TCP has no 'no checksum')", segment(payload=b"x")[:16] + b"\0\0" + segment(payload=b"x")[18:],
     "bad_checksum"),
    ("checksum over another destination's pseudo-header", segment(payload=b"x", dst=socket.inet_aton("10.0.0.3")),
     "bad_checksum"),
    ("checksum over another source's pseudo-header", segment(payload=b"x", src=socket.inet_aton("10.0.0.4")),
     "bad_checksum"),
    # options: a kind that needs a length octet at the last byte of the area
    ("MSS kind at the last byte of the options area", segment(bytes((1, 1, 1, tcp.OPT_MSS)), payload=b"\x04\x05\xb4"),
     "bad_option"),
    ("unknown kind 99 at the last byte of the options area", segment(bytes((1, 1, 1, 99))), "bad_option"),
    # options: length 0 and 1 on every kind that needs a length
    *[(f"option {kind} with length {n}", segment(pad(bytes((kind, n)) + bytes(8))), "bad_option")
      for kind in (tcp.OPT_MSS, tcp.OPT_WSCALE, tcp.OPT_SACK_PERMITTED, tcp.OPT_SACK, tcp.OPT_TIMESTAMP, 30, 99, 254)
      for n in (0, 1)],
    # options: every wrong length, inside the area, for each fixed-length kind
    *[(f"option {kind} with length {n}, RFC says {want}", segment(pad(bytes((kind, n)) + bytes(n - 2))), "bad_option")
      for kind, want in tcp.OPTION_LENGTH.items() for n in range(2, tcp.MAX_OPTIONS + 1) if n != want],
    # options: SACK lengths that are not 2 + 8n, n in 1..4
    *[(f"SACK with length {n}", segment(pad(bytes((tcp.OPT_SACK, n)) + bytes(n - 2))), "bad_option")
      for n in range(2, tcp.MAX_OPTIONS + 1) if n not in (10, 18, 26, 34)],
    # options: lengths that run past the options area (into the payload, or past the buffer)
    ("MSS length 4 with 2 bytes of area left", segment(bytes((1, 1, tcp.OPT_MSS, 4)), payload=b"\x05\xb4"), "bad_option"),
    ("timestamps running into the payload", segment(bytes((1, 1, 1, 1, 1, 1, tcp.OPT_TIMESTAMP, 10)), payload=bytes(8)),
     "bad_option"),
    ("SACK of 2 blocks in an area of 12", segment(pad(bytes((tcp.OPT_SACK, 18)) + bytes(8))), "bad_option"),
    ("unknown option 99 of length 40 in an area of 8", segment(bytes((99, 40)) + bytes(6), payload=bytes(40)), "bad_option"),
    ("unknown option 99 of length 255", segment(bytes((99, 255)) + bytes(38)), "bad_option"),
    ("good MSS then a length-0 option", segment(bytes.fromhex("020405b4" "1e00" "0000")), "bad_option"),
]

GOOD: list[tuple[str, bytes, tuple[Option, ...]]] = [
    ("SYN with MSS, SACK-permitted, timestamps, NOP, window scale", SYN,
     (Option(2, 1460), Option(4), Option(8, (1, 0)), Option(1), Option(3, 7))),
    ("no options", segment(), ()),
    ("NOP NOP TS", segment(bytes.fromhex("0101080a" "00000005" "00000006")), (Option(1), Option(1), Option(8, (5, 6)))),
    ("TS NOP NOP", segment(bytes.fromhex("080a" "00000005" "00000006" "0101")), (Option(8, (5, 6)), Option(1), Option(1))),
    ("unknown kind skipped by its length, kept raw", segment(bytes.fromhex("1e06abcdef01" "0101")),
     (Option(30, bytes.fromhex("abcdef01")), Option(1), Option(1))),
    ("unknown kind of length 2, no data", segment(bytes.fromhex("fe02" "0000")), (Option(254, b""), Option(0))),
    ("EOL then garbage: the rest is padding", segment(bytes.fromhex("00ff00ff")), (Option(0),)),
    ("forty NOPs", segment(bytes(40 * [1])), (Option(1),) * 40),
    ("SACK of four blocks, NOP NOP", segment(bytes.fromhex("0101" "0522") + bytes(range(32))),
     (Option(1), Option(1), Option(5, tuple(struct.unpack(">8I", bytes(range(32)))[i : i + 2] for i in (0, 2, 4, 6))))),
    ("window scale above 14 is the connection's business", segment(bytes.fromhex("0303ff00")), (Option(3, 255), Option(0))),
    ("option fills the area exactly, payload after", segment(bytes.fromhex("020405b4"), payload=b"\x02\x04"),
     (Option(2, 1460),)),
]


@pytest.mark.parametrize(("description", "data", "reason"), BAD, ids=[row[0] for row in BAD])
def test_bad_segment_rejected(description: str, data: bytes, reason: str) -> None:
    with pytest.raises(Malformed) as e:
        tcp.parse(data, SRC, DST)
    assert e.value.reason == reason, e.value


@pytest.mark.parametrize(("description", "data", "options"), GOOD, ids=[row[0] for row in GOOD])
def test_control_segment_accepted(description: str, data: bytes, options: tuple[Option, ...]) -> None:
    seg = tcp.parse(data, SRC, DST)
    assert seg.options == options
    assert (seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.window) == (40000, 80, 0x01020304, 0x05060708, 512)
    rebuilt = tcp.emit(seg, SRC, DST)
    if description.startswith("EOL then garbage"):
        # after an EOL the area is padding: emit writes zeros, under the same data offset
        assert rebuilt[20:] == bytes(4)
        fresh = tcp.emit(seg._replace(checksum=None), SRC, DST)
        assert fresh == segment(bytes(4)), "the segment construct and scapy build with a zero area"
    else:
        assert rebuilt == data


def test_bad_option_rows_pass_the_checksum() -> None:
    # Each bad-option row would be bad_option only: with the checksum unchecked, the verdict does not change.
    for description, data, reason in BAD:
        if reason == "bad_option":
            with pytest.raises(Malformed) as e:
                tcp.parse(data, SRC, DST, verify_checksum=False)
            assert e.value.reason == "bad_option", description


def test_checksum_failure_found_before_the_options() -> None:
    # A bad option in a segment with a bad checksum: RFC 9293 3.10.7 drops it for the checksum, never reading options.
    bad = flip(segment(bytes((tcp.OPT_MSS, 0, 0, 0))), 4)
    with pytest.raises(Malformed) as e:
        tcp.parse(bad, SRC, DST)
    assert e.value.reason == "bad_checksum"


def test_verify_checksum_false_accepts_a_bad_checksum() -> None:
    seg = tcp.parse(flip(SYN, 17), SRC, DST, verify_checksum=False)
    assert seg.checksum == struct.unpack(">H", SYN[16:18])[0] ^ 0x01


def test_buffer_types_other_than_bytes_parse_the_same() -> None:
    want = tcp.parse(SYN, SRC, DST)
    assert tcp.parse(bytearray(SYN), SRC, DST) == want  # type: ignore[arg-type]
    assert tcp.parse(memoryview(SYN), SRC, DST) == want  # type: ignore[arg-type]
    assert type(tcp.parse(bytearray(segment(payload=b"abc")), SRC, DST).payload) is bytes  # type: ignore[arg-type]


# -- emit's refusals and choices ----------------------------------------------------
@pytest.mark.parametrize(("description", "options"), [
    ("41 NOPs", (Option(1),) * 41),
    ("SACK of four blocks and timestamps: 44 bytes", (Option(5, ((1, 2),) * 4), Option(8, (1, 2)))),
    ("39 NOPs and an MSS", (Option(1),) * 39 + (Option(2, 1460),)),
    ("38 NOPs and window scale: 41 bytes", (Option(1),) * 38 + (Option(3, 7),)),
    ("raw option of 39 data bytes", (Option(99, bytes(39)),)),
    ("MSS above 65535", (Option(2, 65536),)),
    ("window scale above 255", (Option(3, 256),)),
    ("SACK of no blocks", (Option(5, ()),)),
    ("SACK of five blocks", (Option(5, ((1, 2),) * 5),)),
    ("timestamps of one number", (Option(8, (1,)),)),
    ("timestamp above 2**32", (Option(8, (1 << 32, 0)),)),
    ("unknown kind with a non-bytes value", (Option(99, 5),)),
    ("kind above 255", (Option(256, b""),)),
])
def test_emit_refuses(description: str, options: tuple[Option, ...]) -> None:
    with pytest.raises(ValueError):
        tcp.emit(tcp.Tcp(1, 2, options=options), SRC, DST)


def test_emit_fills_the_forty_bytes() -> None:
    wire = tcp.emit(tcp.Tcp(1, 2, options=(Option(5, ((1, 2),) * 4), Option(1), Option(1), Option(2, 1400))), SRC, DST)
    assert len(wire) == tcp.MAX_HEADER
    assert wire[12] >> 4 == 15


def test_emit_pads_with_eol_and_zeros() -> None:
    wire = tcp.emit(tcp.Tcp(1, 2, options=(Option(3, 7),)), SRC, DST)
    assert wire[20:] == bytes((3, 3, 7, 0))
    wire = tcp.emit(tcp.Tcp(1, 2, options=(Option(2, 1460), Option(1))), SRC, DST)
    assert wire[20:] == bytes.fromhex("020405b4" "01000000")


def test_emit_writes_raw_bytes_for_a_known_kind_and_parse_refuses_them() -> None:
    wire = tcp.emit(tcp.Tcp(1, 2, options=(Option(tcp.OPT_MSS, b"\x05"),)), SRC, DST)
    assert wire[20:24] == bytes((2, 3, 5, 0))
    with pytest.raises(Malformed) as e:
        tcp.parse(wire, SRC, DST)
    assert e.value.reason == "bad_option"


def test_emit_keeps_a_set_data_offset_and_checksum() -> None:
    wire = tcp.emit(tcp.Tcp(1, 2, data_offset=7, checksum=0xBEEF), SRC, DST)
    assert wire[12] == 7 << 4
    assert wire[16:18] == b"\xbe\xef"
    with pytest.raises(Malformed) as e:
        tcp.parse(wire, SRC, DST)
    assert e.value.reason == "bad_data_offset"
    with pytest.raises(ValueError):
        tcp.emit(tcp.Tcp(1, 2, data_offset=16), SRC, DST)


def test_option_lookup() -> None:
    seg = tcp.parse(SYN, SRC, DST)
    assert seg.option(tcp.OPT_MSS) == 1460
    assert seg.option(tcp.OPT_SACK_PERMITTED) is True
    assert seg.option(tcp.OPT_TIMESTAMP) == (1, 0)
    assert seg.option(tcp.OPT_WSCALE) == 7
    assert seg.option(tcp.OPT_SACK) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4), st.integers(20, 65535))
def test_the_inline_pseudo_header_is_the_rfc_pseudo_header_sum(src: bytes, dst: bytes, length: int) -> None:
    """parse and emit add the pseudo-header as one number (tcp._pseudo); it must be pseudo_header_sum mod 65535."""
    from simstack.protocols.ipv4 import pseudo_header_sum

    inline = tcp._pseudo(src, dst, length)
    assert inline != 0
    assert inline % 0xFFFF == pseudo_header_sum(src, dst, socket.IPPROTO_TCP, length) % 0xFFFF
    # and a segment checksummed for one pair of addresses fails for another
    seg = tcp.emit(tcp.Tcp(1, 2, 3, 4, tcp.ACK, 5, payload=bytes(length - 20)), src, dst)
    assert tcp.parse(seg, src, dst).checksum == struct.unpack(">H", seg[16:18])[0]
    other = bytes(((dst[0] + 1) & 0xFF,)) + dst[1:]
    if pseudo_header_sum(src, other, 6, length) != pseudo_header_sum(src, dst, 6, length):
        with pytest.raises(Malformed):
            tcp.parse(seg, src, other)
