"""The scenario language's TCP: letters, words and relative numbers, held to scapy's encoder and decoder.

scapy is the independent oracle: segments the language builds must read back
in scapy as the scenario wrote them, and segments scapy builds must decode
into the fields a scenario would write. The loader's checks are tested by
their ``file:line:`` messages, and the stream socket steps by what they
make the stack do.
"""

import textwrap

import pytest
from scapy.all import IP, TCP, Ether, raw

from simstack.engine.scenario.fields import Context, Host, build_frame, compare, decode_frame, normalize_spec
from simstack.engine.scenario.isn import Isns, Rel
from simstack.engine.scenario.loader import ScenarioError, loads
from simstack.engine.scenario.runner import Runner
from simstack.engine.scenario.tcp_words import ANY_OPTIONS, flags_text, parse_flags, parse_option, parse_options
from simstack.protocols import tcp
from simstack.protocols.addresses import ip_to_bytes, mac_to_bytes

STACK = Host("stack", mac_to_bytes("aa:bb:cc:dd:ee:ff"), ip_to_bytes("10.0.0.1"))
PEER = Host("peer", mac_to_bytes("02:00:00:00:00:02"), ip_to_bytes("10.0.0.2"))
CTX = Context(STACK, {"peer": PEER}, PEER)


def build(spec: dict[str, object], isns: Isns | None = None) -> bytes:
    return build_frame(normalize_spec(spec, CTX), CTX, isns)


# -- letters and words ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("letters", "scapy_flags"), [
    ("S", "S"), ("S.", "SA"), (".", "A"), ("P.", "PA"), ("F.", "FA"), ("R", "R"), ("R.", "RA"), ("FP.", "FPA"),
    (".PF", "FPA"), ("SEW", "SEC"), ("U.", "UA"), ("none", ""),
])
def test_flag_letters_are_the_bits_scapy_sees(letters: str, scapy_flags: str) -> None:
    frame = build({"tcp": {"sport": 1, "dport": 2, "flags": letters}})
    assert Ether(frame)[TCP].flags == scapy_flags
    if letters != "none":
        assert flags_text(parse_flags(letters)) == flags_text(parse_flags("".join(sorted(letters))))  # order-free
    assert decode_frame(frame).fields["tcp.flags"] == parse_flags(letters)


def test_flags_print_in_tcpdumps_order() -> None:
    assert flags_text(tcp.FIN | tcp.PSH | tcp.ACK) == "FP."
    assert flags_text(tcp.SYN | tcp.ACK | tcp.ECE | tcp.CWR) == "S.EW"
    assert flags_text(0) == "none"
    for bad in ("A", "SS", "", "s"):
        with pytest.raises(ValueError):
            parse_flags(bad)


@pytest.mark.parametrize(("words", "scapy_options"), [
    (["mss 1460", "sackOK", "TS val 100 ecr 0", "nop", "wscale 7"],
     [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (100, 0)), ("NOP", None), ("WScale", 7)]),
    (["sack 10:20 30:40", "opt 30 0102", "nop", "eol"],
     [("SAck", (10, 20, 30, 40)), (30, b"\x01\x02"), ("NOP", None), ("EOL", None)]),
])
def test_option_words_are_the_options_scapy_sees(words: list[str], scapy_options: list[object]) -> None:
    frame = build({"tcp": {"sport": 1, "dport": 2, "flags": "S", "options": words}})
    assert Ether(frame)[TCP].options == scapy_options
    assert list(decode_frame(frame).fields["tcp.options"]) == [parse_option(w) for w in words if w != "eol"]


def test_option_wildcards_match_what_the_stack_chose() -> None:
    frame = raw(Ether(dst="02:00:00:00:00:02", src="aa:bb:cc:dd:ee:ff") / IP(src="10.0.0.1", dst="10.0.0.2")
                / TCP(sport=80, dport=40000, flags="SA", options=[("MSS", 1400), ("Timestamp", (777, 100))]))
    got = decode_frame(bytes(frame))
    for words, matches in ((["mss *", "TS val * ecr 100"], True), (["mss 1400", "TS val 777 ecr *"], True),
                           (["mss *", "TS val * ecr 0"], False), (["mss *"], False), ("any", True), ([], False)):
        want = normalize_spec({"tcp": {"options": words}}, CTX)
        assert (compare(want, got) == []) is matches, words
    assert parse_options("*") is ANY_OPTIONS


def test_an_inject_needs_every_option_value() -> None:
    with pytest.raises(ScenarioError, match=r"^t.yaml:4: tcp.options: a segment to inject needs every option value"):
        loads(textwrap.dedent("""\
            description: a wildcard cannot be sent
            steps:
              - inject:
                  tcp: {sport: 1, dport: 2, flags: S, options: [mss *]}
            """), "t.yaml")


def test_decoded_segments_read_like_scapys() -> None:
    pkt = (Ether(dst="aa:bb:cc:dd:ee:ff", src="02:00:00:00:00:02") / IP(src="10.0.0.2", dst="10.0.0.1")
           / TCP(sport=40000, dport=80, seq=1234, ack=99, flags="PA", window=512, urgptr=0,
                 options=[("NOP", None), ("NOP", None), ("Timestamp", (5, 6))]) / b"payload")
    fields = decode_frame(bytes(raw(pkt))).fields
    assert (fields["tcp.sport"], fields["tcp.dport"], fields["tcp.seq"], fields["tcp.ack"], fields["tcp.win"]) == \
        (40000, 80, 1234, 99, 512)
    assert fields["tcp.data"] == b"payload" and fields["tcp.len"] == 7 and fields["tcp.off"] == 8
    assert fields["tcp.checksum"] == Ether(bytes(raw(pkt)))[TCP].chksum
    bad = bytearray(raw(pkt))
    bad[-1] ^= 0xFF
    got = decode_frame(bytes(bad))
    assert got.bad_checksums == ["tcp.checksum"]
    assert compare(normalize_spec({"tcp": {"sport": 40000}}, CTX), got)  # a bad checksum always fails


def test_data_length_builds_counting_bytes_and_matches_any_bytes() -> None:
    frame = build({"tcp": {"sport": 1, "dport": 2, "flags": "P.", "len": 300}})
    assert bytes(Ether(frame)[TCP].payload) == bytes(i & 0xFF for i in range(300))
    assert compare(normalize_spec({"tcp": {"len": 300}}, CTX), decode_frame(frame)) == []
    with pytest.raises(ScenarioError, match=r"^t.yaml:4: tcp.len: len 3 but data holds 2 bytes"):
        loads("description: x\nsteps:\n  - inject:\n      tcp: {sport: 1, len: 3,\n            data: ab}\n", "t.yaml")


# -- relative numbers ---------------------------------------------------------------------------------------------
def _syn(src: str, dst: str, sport: int, dport: int, seq: int, ack: int = 0, flags: str = "S") -> bytes:
    macs = {"10.0.0.1": "aa:bb:cc:dd:ee:ff", "10.0.0.2": "02:00:00:00:00:02"}
    return bytes(raw(Ether(src=macs[src], dst=macs[dst]) / IP(src=src, dst=dst)
                     / TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags)))


def test_relative_numbers_count_from_each_sides_isn() -> None:
    isns = Isns()
    isns.see(_syn("10.0.0.2", "10.0.0.1", 40000, 80, 1000), "<")
    isns.see(_syn("10.0.0.1", "10.0.0.2", 80, 40000, 4_000_000_000, 1001, "SA"), ">")
    data = build({"tcp": {"sport": 40000, "dport": 80, "flags": "P.", "seq": 1, "ack": 1, "data": "x"}}, isns)
    assert (Ether(data)[TCP].seq, Ether(data)[TCP].ack) == (1001, 4_000_000_001)
    wrap = build({"tcp": {"sport": 40000, "dport": 80, "flags": ".", "ack": 300_000_000}}, isns)
    assert Ether(wrap)[TCP].ack == (4_000_000_000 + 300_000_000) % 2**32  # modulo 2^32
    below = build({"tcp": {"sport": 40000, "dport": 80, "flags": ".", "seq": -1, "ack": {"abs": 5}}}, isns)
    assert (Ether(below)[TCP].seq, Ether(below)[TCP].ack) == (999, 5)
    reply = decode_frame(_syn("10.0.0.1", "10.0.0.2", 80, 40000, 4_000_000_010, 1001, "A"))
    assert isns.relative(reply.fields)["tcp.seq"] == Rel(10) and isns.relative(reply.fields)["tcp.ack"] == Rel(1)
    assert compare(normalize_spec({"tcp": {"seq": 10, "ack": 1}}, CTX), reply, isns) == []
    assert compare(normalize_spec({"tcp": {"seq": 11}}, CTX), reply, isns) == [("tcp.seq", "11", "10 (abs 4000000010)")]


def test_a_syn_inside_a_known_connection_leaves_its_isn() -> None:
    isns = Isns()
    direction = (ip_to_bytes("10.0.0.2"), 40000, ip_to_bytes("10.0.0.1"), 80)
    isns.see(_syn("10.0.0.2", "10.0.0.1", 40000, 80, 1000), "<")
    isns.see(_syn("10.0.0.2", "10.0.0.1", 40000, 80, 1020), "<")  # an RFC 5961 4.2 probe: not a new ISN
    assert isns.base(direction) == 1000
    isns.see(_syn("10.0.0.1", "10.0.0.2", 80, 40000, 7, 50001, "SA"), ">")  # the stack accepts a new incarnation
    assert isns.base(direction) == 50000
    isns.learn_syn(_syn("10.0.0.2", "10.0.0.1", 40000, 80, 123))  # written {abs: 123}
    assert isns.base(direction) == 123


# -- the loader's checks --------------------------------------------------------------------------------------------
HEAD = 'description: checks\nhosts:\n  peer: {mac: "02:00:00:00:00:02", ip: 10.0.0.2}\n'


@pytest.mark.parametrize(("body", "message"), [
    ("steps:\n  - inject: {tcp: {flags: SA}}\n", "t.yaml:5: tcp.flags: 'A' is not a flag letter"),
    ("steps:\n  - inject: {tcp: {options: [mss]}}\n", "t.yaml:5: tcp.options: 'mss': write it as 'mss N'"),
    ("steps:\n  - inject: {tcp: {options: [window 5]}}\n", "t.yaml:5: tcp.options: unknown option 'window'"),
    ("steps:\n  - inject: {tcp: {seq: {rel: 5}}}\n", "t.yaml:5: tcp.seq: want a sequence number relative to the ISN"),
    ("steps:\n  - at: 0~1\n    inject: {tcp: {flags: S}}\n", "t.yaml:5: a time range (at: A~B) goes with expect"),
    ("steps:\n  - at: +0.5~+0.1\n    expect: {tcp: {flags: S}}\n", "t.yaml:5: at: the range '+0.5~+0.1' ends before"),
    ("steps:\n  - at: +0.5~0.9\n    expect: {tcp: {flags: S}}\n", "t.yaml:5: at: both ends of '+0.5~0.9' must be"),
    ("stack:\n  tcp: {msl: 0}\nsteps:\n  - expect: nothing\n    for: 1\n",
     "t.yaml:5: tcp.msl must be a number of seconds from 0.001 to 3600, got 0"),
    ("stack:\n  tcp: {rto_min: 2}\nsteps:\n  - expect: nothing\n    for: 1\n",
     "t.yaml:5: stack.tcp: need 0 < rto_min <= rto_initial <= rto_max"),
    ("stack:\n  tcp: {rfc5961: 1}\nsteps:\n  - expect: nothing\n    for: 1\n", "t.yaml:5: tcp.rfc5961 must be true or false"),
    ("stack:\n  tcp: {nagle: true}\nsteps:\n  - expect: nothing\n    for: 1\n", "t.yaml:5: unknown key 'nagle' in stack.tcp"),
    ("steps:\n  - app: socket\n    socket: u\n  - app: listen\n    socket: u\n",
     "t.yaml:7: app: listen needs a stream socket; 'u' is a datagram socket (type: stream)"),
    ("steps:\n  - app: socket\n    socket: s\n    type: stream\n  - app: accept\n    socket: s\n",
     "t.yaml:8: app: accept needs as"),
    ("steps:\n  - app: socket\n    socket: s\n    type: stream\n  - app: accept\n    socket: s\n    as: s\n",
     "t.yaml:8: socket 's' is already open; accept names a new socket"),
    ("steps:\n  - app: socket\n    socket: s\n    type: stream\n  - app: setsockopt\n    socket: s\n"
     "    option: error\n    value: 1\n", "t.yaml:10: option must be one of nodelay, reuseaddr, rcvbuf, sndbuf, keepalive"),
    ("steps:\n  - app: socket\n    socket: s\n    type: stream\n  - app: shutdown\n    socket: s\n    how: both\n",
     "t.yaml:10: how must be one of rd, wr, rdwr, got 'both'"),
    ("steps:\n  - app: socket\n    socket: u\n  - app: send\n    socket: u\n    within: 1\n",
     "t.yaml:7: app: send on a datagram socket never blocks"),
])
def test_tcp_mistakes_are_caught_at_load_with_their_line(body: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        loads(HEAD + body, "t.yaml")
    assert str(info.value).startswith(message), str(info.value)


# -- stream socket steps ----------------------------------------------------------------------------------------------
PRELUDE = HEAD + """stack:
  tcp: {rto_min: 0.2}
steps:
  - at: 0
    inject: {arp: {op: request}}
  - expect: {arp: {op: reply}}
  - app: socket
    socket: c
    type: stream
  - app: bind
    socket: c
    addr: [any, 50000]
"""


def run(steps: str) -> tuple[bool, str]:
    result = Runner(loads(PRELUDE + textwrap.indent(textwrap.dedent(steps), "  "), "t.yaml")).run()
    return result.passed, result.report


def test_a_stream_call_that_would_block_says_how_to_wait() -> None:
    ok, report = run("""
        - app: listen
          socket: c
        - app: accept
          socket: c
          as: x
    """)
    assert not ok and "accept would block: give until or within" in report, report


def test_non_blocking_connect_reports_progress_then_the_refusal() -> None:
    ok, report = run("""
        - app: setblocking
          socket: c
          blocking: false
        - app: connect
          socket: c
          addr: [peer, 80]
          error: EINPROGRESS
        - app: connect
          socket: c
          addr: [peer, 80]
          error: EALREADY
        - expect: {tcp: {flags: S, seq: 0}}
        - inject: {tcp: {sport: 80, dport: 50000, flags: R., ack: 1}}
        - app: getsockopt
          socket: c
          option: error
          value: ECONNREFUSED
        - app: getsockopt
          socket: c
          option: error
          value: 0
    """)
    assert ok, report


def test_a_blocking_send_waits_for_room_and_returns_the_whole_count() -> None:
    ok, report = run("""
        - app: setsockopt
          socket: c
          option: sndbuf
          value: 1000
        - app: connect
          socket: c
          addr: [peer, 80]
          within: 1
        - expect: {tcp: {flags: S}}
        - inject: {tcp: {sport: 80, dport: 50000, flags: S., ack: 1, options: [mss 500]}}
        - expect: {tcp: {flags: .}}
        - app: send
          socket: c
          data: {size: 1500}
          returns: 1500
          until: +0.1
        - expect: {tcp: {flags: ., seq: 1, len: 500}}
        - expect: {tcp: {flags: P., seq: 501, len: 500}}
        - at: +0.1
          inject: {tcp: {sport: 80, dport: 50000, flags: ., seq: 1, ack: 1001}}
        - expect: {tcp: {flags: P., seq: 1001, len: 500}}
        - inject: {tcp: {sport: 80, dport: 50000, flags: ., seq: 1, ack: 1501}}
    """)
    assert ok, report


def test_an_expect_range_reports_the_window_it_missed() -> None:
    ok, report = run("""
        - app: connect
          socket: c
          addr: [peer, 80]
          within: 5
        - at: +0.5~+0.6
          expect: {tcp: {flags: S}}
    """)
    assert not ok and "time   0.500000~0.600000  0.000000" in report, report
