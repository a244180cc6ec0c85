"""The packetdrill reader: every script of the sample, snippets with their AST, broken snippets with their error.

Three kinds of evidence:

- the sample of the two public suites (``../shared/packetdrill/``) reads
  without error, and a second, independent line-by-line reading of the same
  files (regular expressions, nothing shared with the parser) finds the same
  events on the same lines with the same flags, sequence numbers, acks,
  windows, option counts, system calls, errnos and shell commands;
- hand-written snippets, one per construct of the dialect, with the AST
  spelled out, and broken snippets with the exact ``path:line: message``;
- a round trip: random TCP segments written out in the dialect read back
  to the segments they came from.

The parser was also checked by hand against packetdrill's own (google's and
NPLab's, built from source, ``--dry_run``): they accept and reject the same
scripts among all 1,280 of both suites.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from simstack.engine.scenario.packetdrill import PacketdrillError, load, parse
from simstack.engine.scenario.packetdrill_ast import (
    ANY,
    Array,
    BitOr,
    Call,
    Code,
    Command,
    Config,
    Direction,
    Eol,
    Event,
    FastOpen,
    Field,
    IcmpPacket,
    IcmpQuote,
    Int,
    IpInfo,
    Md5,
    Mss,
    Nop,
    Sack,
    SackOk,
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
    Word,
    WScale,
)
from simstack.engine.scenario.packetdrill_census import census, shell_pipelines, sysctl_assignments

SAMPLE = ROOT.parent / "shared" / "packetdrill"
IN, OUT = Direction.INBOUND, Direction.OUTBOUND


def sample_paths() -> list[Path]:
    if not SAMPLE.is_dir():
        pytest.skip(f"no packetdrill sample at {SAMPLE} (see issue 14)")
    paths = sorted(SAMPLE.rglob("*.pkt"))
    assert paths, f"{SAMPLE} holds no .pkt scripts"
    return paths


def one(text: str) -> Event:
    script = parse(text, "t.pkt")
    assert len(script.events) == 1, script.events
    return script.events[0]


def action(text: str) -> object:
    return one(text).action


# -- the sample -----------------------------------------------------------------------


def test_every_sample_script_reads() -> None:
    failures = []
    for path in sample_paths():
        try:
            load(path)
        except PacketdrillError as e:
            failures.append(str(e))
    assert failures == []


# An independent reading for the cross-check: one event per line, as the sample writes them.
_TIME = r"(?:\d+(?:\.\d*)?|\.\d+)"
_EVENT_LINE = re.compile(rf"^\s*(?P<time>\*|\+?\s*{_TIME}(?:~\+?{_TIME})?)(?:\.\.\.{_TIME})?\s*(?P<rest>\S.*)$")
_TCP = re.compile(
    r"^(?P<dir>[<>])\s*(?P<flags>[A-Z.]+|-)\s+(?P<start>\d+):(?P<end>\d+)\((?P<len>\d+)\)"
    r"(?:\s+ack\s+(?P<ack>\d+))?(?:\s+win\s+(?P<win>\d+))?\s*(?:<(?P<opts>[^>]*)>)?\s*(?://.*)?$"
)
_SYSCALL = re.compile(r"^(?P<name>\w+)\(.*\)\s*=\s*(?P<result>\S+)(?:\s+(?P<errno>E[A-Z]+)\b)?")
_COMMAND = re.compile(r"^`(?P<text>[^`]*)`")


def _oracle_lines(text: str) -> dict[int, str]:
    """Line number -> the event text after the time, with #ifdef STANDARD kept and everything else left out."""
    out: dict[int, str] = {}
    taken: list[bool] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#ifdef") or stripped.startswith("#ifndef"):
            name = stripped.split()[1]
            taken.append((name == "STANDARD") == stripped.startswith("#ifdef"))
            continue
        if stripped.startswith("#else"):
            taken[-1] = not taken[-1]
            continue
        if stripped.startswith("#endif"):
            taken.pop()
            continue
        if not all(taken) or stripped.startswith("//") or stripped.startswith("--"):
            continue
        m = _EVENT_LINE.match(line)
        if m:
            out[number] = m.group("rest")
    return out


def test_sample_reads_the_same_as_an_independent_line_reader() -> None:
    checked = 0
    for path in sample_paths():
        text = path.read_text()
        script = load(path)
        events = {e.line: e for e in script.events}
        expected = _oracle_lines(text)
        assert sorted(events) == sorted(expected), path
        for line, rest in expected.items():
            where = f"{path}:{line}"
            act = events[line].action
            if rest.startswith(("<", ">")) and (tcp := _TCP.match(rest)):
                assert isinstance(act, TcpPacket), where
                assert act.direction.value == tcp["dir"], where
                assert act.flags == tcp["flags"].replace("-", ""), where
                seq = (act.seq.start, act.seq.end, act.seq.length)
                assert seq == (int(tcp["start"]), int(tcp["end"]), int(tcp["len"])), where
                assert act.ack == (int(tcp["ack"]) if tcp["ack"] else None), where
                assert act.win == (int(tcp["win"]) if tcp["win"] else None), where
                if tcp["opts"] is None:
                    assert act.options == (), where
                elif tcp["opts"].strip() == "...":
                    assert act.options is ANY, where
                else:
                    assert isinstance(act.options, tuple), where
                    assert len(act.options) == len(tcp["opts"].split(",")), where
            elif rest.startswith(("<", ">")):
                assert isinstance(act, IcmpPacket | UdpPacket), where
                assert rest.split()[1 if rest[1] == " " else 0].lstrip("<>") in ("icmp", "udp"), where
            elif rest.startswith("`"):
                m = _COMMAND.match(rest)
                assert m and isinstance(act, Command) and act.text == m["text"], where
            elif rest.startswith("%{"):
                assert isinstance(act, Code), where
            else:
                m = _SYSCALL.match(rest)
                assert m, where
                assert isinstance(act, Syscall) and act.name == m["name"], where
                assert act.errno == m["errno"], where
                if re.fullmatch(r"-?\d+", m["result"]):
                    assert act.result == Int(int(m["result"])), where
            checked += 1
    assert checked > 1000


def test_sample_sysctls_match_the_text() -> None:
    """The census's sysctl counts against a grep of the active lines."""
    from collections import Counter

    grep: Counter[str] = Counter()
    scripts = []
    for path in sample_paths():
        text = path.read_text()
        for rest in _oracle_lines(text).values():
            grep.update(f"{a}={b}" for a, b in re.findall(r"sysctl -w (\S+?)=(\S+?)`", rest))
        scripts.append(load(path))
    assert grep
    assert census(scripts).sysctls == grep


def test_census_command_line_on_the_sample() -> None:
    paths = sample_paths()
    r = subprocess.run(
        [sys.executable, "-m", "simstack.engine.scenario.packetdrill", "--census", str(SAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{len(paths)} scripts, ")
    assert re.search(r"^\s+\d+\s+net\.inet\.tcp\.insecure_rst=1$", r.stdout, re.M), r.stdout


# -- times ----------------------------------------------------------------------------

TIMES = [
    ("0.100 close(3) = 0", Time(TimeKind.ABSOLUTE, 100_000)),
    ("0 close(3) = 0", Time(TimeKind.ABSOLUTE, 0)),
    ("+0.1 close(3) = 0", Time(TimeKind.RELATIVE, 100_000)),
    ("+.1 close(3) = 0", Time(TimeKind.RELATIVE, 100_000)),
    ("+ 0.00 close(3) = 0", Time(TimeKind.RELATIVE, 0)),
    ("+65.00 close(3) = 0", Time(TimeKind.RELATIVE, 65_000_000)),
    ("+0.57 close(3) = 0", Time(TimeKind.RELATIVE, 570_000)),  # 0.57 * 1e6 is 569999.99... in floating point
    ("+1 close(3) = 0", Time(TimeKind.RELATIVE, 1_000_000)),
    ("0.1~0.2 > . 1:1(0) ack 1", Time(TimeKind.ABSOLUTE_RANGE, 100_000, 200_000)),
    ("+0~+0.1 > . 1:1(0) ack 1", Time(TimeKind.RELATIVE_RANGE, 0, 100_000)),
    ("* > S 0:0(0) <...>", Time(TimeKind.ANY)),
    ("0.0...0.1 read(3, ..., 10) = 10", Time(TimeKind.ABSOLUTE, 0)),
]


@pytest.mark.parametrize(("text", "time"), TIMES, ids=[t for t, _ in TIMES])
def test_times(text: str, time: Time) -> None:
    assert one(text).time == time


def test_blocking_span_keeps_its_end_on_the_start_footing() -> None:
    event = one("+.1...0.200 connect(3, ..., ...) = 0")
    assert event.time == Time(TimeKind.RELATIVE, 100_000)
    assert event.action == Syscall("connect", (Int(3), ANY, ANY), Int(0), end=200_000)


def test_event_line_is_where_its_time_stands() -> None:
    script = parse("// c\n\n+0 setsockopt(3, SOL_SOCKET,\n      SO_REUSEADDR, [1],\n 4) = 0\n+0 close(3) = 0\n", "t.pkt")
    assert [e.line for e in script.events] == [3, 6]
    assert isinstance(script.events[0].action, Syscall) and script.events[0].action.args[2] == Word("SO_REUSEADDR")


# -- packets --------------------------------------------------------------------------

MSS_SACK_TS_WS = (Mss(1460), SackOk(), Timestamp(100, 0), Nop(), WScale(7))
PACKETS = [
    ("0 < S 0:0(0) win 32792", TcpPacket(IN, "S", Seq(0, 0, 0), win=32792)),
    ("0 > S. 0:0(0) ack 1", TcpPacket(OUT, "S.", Seq(0, 0, 0), ack=1)),
    ("0 < . 1:1(0) ack 1 win 257", TcpPacket(IN, ".", Seq(1, 1, 0), ack=1, win=257)),
    ("0 > P. 1:10001(10000) ack 1", TcpPacket(OUT, "P.", Seq(1, 10001, 10000), ack=1)),
    ("0 < F. 800:800(0) ack 1 win 65535", TcpPacket(IN, "F.", Seq(800, 800, 0), ack=1, win=65535)),
    ("0 > R 1:1(0)", TcpPacket(OUT, "R", Seq(1, 1, 0))),
    ("0 < R. 0:0(0) ack 0 win 32767", TcpPacket(IN, "R.", Seq(0, 0, 0), ack=0, win=32767)),
    ("0 < FP. 1:11(10) ack 1", TcpPacket(IN, "FP.", Seq(1, 11, 10), ack=1)),
    ("0 < SF 2:2(0) win 32767", TcpPacket(IN, "SF", Seq(2, 2, 0), win=32767)),
    ("0 < SEW 0:0(0) win 100", TcpPacket(IN, "SEW", Seq(0, 0, 0), win=100)),  # ECN setup SYN, RFC 3168 6.1.1
    ("0 > S.E 0:0(0) ack 1", TcpPacket(OUT, "S.E", Seq(0, 0, 0), ack=1)),
    ("0 < E. 1:1(0) ack 1001 win 320", TcpPacket(IN, "E.", Seq(1, 1, 0), ack=1001, win=320)),
    ("0 > W. 1:1(0) ack 1", TcpPacket(OUT, "W.", Seq(1, 1, 0), ack=1)),
    ("0 < - 1:1(0) win 10", TcpPacket(IN, "", Seq(1, 1, 0), win=10)),
    ("0 < U. 1:2(1) ack 1 win 10 urg 1", TcpPacket(IN, "U.", Seq(1, 2, 1), ack=1, win=10, urg=1)),
    ("0 < S.5 0:0(0) ack 1", TcpPacket(IN, "S.5", Seq(0, 0, 0), ack=1)),  # AccECN's ACE field
    ("0 > R. 0:0(0)! ack 2 win 0", TcpPacket(OUT, "R.", Seq(0, 0, 0, absolute=True), ack=2, win=0)),
    ("0 > P. ...(10) ack 1", TcpPacket(OUT, "P.", Seq(None, None, 10), ack=1)),
    ("0 > . 4294967295:4294967295(0)", TcpPacket(OUT, ".", Seq(4294967295, 4294967295, 0))),
    (
        "0 < S 0:0(0) win 32792 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>",
        TcpPacket(IN, "S", Seq(0, 0, 0), win=32792, options=MSS_SACK_TS_WS),
    ),
    (
        "0 > . 1:1(0) ack 100 win 65535 <nop,nop,sack 400:500 200:300>",
        TcpPacket(OUT, ".", Seq(1, 1, 0), ack=100, win=65535, options=(Nop(), Nop(), Sack(((400, 500), (200, 300))))),
    ),
    (
        "0 > S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,eol,eol>",
        TcpPacket(OUT, "S.", Seq(0, 0, 0), ack=1, win=65535, options=(Mss(1460), SackOk(), Eol(), Eol())),
    ),
    ("0 > S 0:0(0) win 65535 <...>", TcpPacket(OUT, "S", Seq(0, 0, 0), win=65535, options=ANY)),
    (
        "0 > . 1:1(0) ack 1 <nop,nop,TS val ... ecr 7!>",
        TcpPacket(OUT, ".", Seq(1, 1, 0), ack=1, options=(Nop(), Nop(), Timestamp(ANY, 7, ecr_absolute=True))),
    ),
    (
        "0 < S 0:0(0) win 1 <mss 1460,FO abcd1234,nop,nop>",
        TcpPacket(IN, "S", Seq(0, 0, 0), win=1, options=(Mss(1460), FastOpen("abcd1234"), Nop(), Nop())),
    ),
    (
        "0 > R. 0:0(0)! ack 2 win 0 <nop,nop,md5 valid>/udp(9811 > 1)",
        TcpPacket(OUT, "R.", Seq(0, 0, 0, True), ack=2, win=0, options=(Nop(), Nop(), Md5(None)), encap=UdpEncap(9811, 1)),
    ),
    ("0 < [ect0] . 1:1(0) ack 1", TcpPacket(IN, ".", Seq(1, 1, 0), ack=1, ip=IpInfo(ecn="ect0"))),
    ("0 > (tos 0x20) R. 0:0(0) win 0", TcpPacket(OUT, "R.", Seq(0, 0, 0), win=0, ip=IpInfo(tos=0x20))),
    ("0 < (ttl 3) S 0:0(0)", TcpPacket(IN, "S", Seq(0, 0, 0), ip=IpInfo(ttl=3))),
    ("0 < 5000>8080 S 0:0(0) win 9", TcpPacket(IN, "S", Seq(0, 0, 0), win=9, src_port=5000, dst_port=8080)),
    ("0 < udp (100)", UdpPacket(IN, 100)),
    ("0 > udp 5000>6000 (10)", UdpPacket(OUT, 10, src_port=5000, dst_port=6000)),
    (
        "0 < icmp unreachable port_unreachable [4294967295:4294967295(0)]",
        IcmpPacket(
            IN,
            "unreachable",
            "port_unreachable",
            quote=IcmpQuote("tcp", Seq(4294967295, 4294967295, 0)),
            type_value=3,
            code_value=3,
        ),
    ),
    (
        "0 < icmp unreachable frag_needed mtu 1300 [1:1(0)]",
        IcmpPacket(IN, "unreachable", "frag_needed", mtu=1300, quote=IcmpQuote("tcp", Seq(1, 1, 0)), type_value=3, code_value=4),
    ),
    (
        "0 < icmp time_exceeded ttl_exceeded_in_transit [udp (10)]",
        IcmpPacket(IN, "time_exceeded", "ttl_exceeded_in_transit", quote=IcmpQuote("udp", length=10), type_value=11),
    ),
    ("0 < icmp source_quench", IcmpPacket(IN, "source_quench", type_value=4)),
    (
        "0 < icmp unreachable [5000:6000(1000)]",
        IcmpPacket(IN, "unreachable", quote=IcmpQuote("tcp", Seq(5000, 6000, 1000)), type_value=3),
    ),
    ("0 < icmp type_40 code_2", IcmpPacket(IN, "type_40", "code_2", type_value=40, code_value=2)),
]


@pytest.mark.parametrize(("text", "packet"), PACKETS, ids=[t for t, _ in PACKETS])
def test_packets(text: str, packet: object) -> None:
    assert action(text) == packet


def test_icmpv6_names_in_an_ipv6_script() -> None:
    script = parse("--ip_version=ipv6\n0 < icmp unreachable no_route [0:0(0)]\n+0 < icmp packet_too_big mtu 1300\n", "t.pkt")
    icmp = [e.action for e in script.events if isinstance(e.action, IcmpPacket)]
    assert [(p.type_value, p.code_value) for p in icmp] == [(1, 0), (2, 0)]


def test_flags_read_as_tcpdump_letters() -> None:
    packet = action("0 < FP. 1:11(10) ack 1")
    assert isinstance(packet, TcpPacket)
    assert [packet.has(f) for f in "FSRP."] == [True, False, False, True, True]


# -- system calls ---------------------------------------------------------------------

SYSCALLS = [
    (
        "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3",
        Syscall("socket", (ANY, Word("SOCK_STREAM"), Word("IPPROTO_TCP")), Int(3)),
    ),
    (
        "0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)",
        Syscall("connect", (Int(3), ANY, ANY), Int(-1), "EINPROGRESS", "Operation now in progress"),
    ),
    (
        "0 fcntl(3, F_GETFL) = 0x02 (flags O_RDWR)",
        Syscall("fcntl", (Int(3), Word("F_GETFL")), Int(2, hex=True), note="flags O_RDWR"),
    ),
    (
        "0 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0",
        Syscall("fcntl", (Int(3), Word("F_SETFL"), BitOr(Word("O_RDWR"), Word("O_NONBLOCK"))), Int(0)),
    ),
    (
        "0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK|O_APPEND) = 0",
        Syscall("fcntl", (Int(3), Word("F_SETFL"), BitOr(BitOr(Word("O_RDWR"), Word("O_NONBLOCK")), Word("O_APPEND"))), Int(0)),
    ),
    (
        "0 getsockopt(3, SOL_SOCKET, SO_RCVBUF, [65700], [4]) = 0",
        Syscall("getsockopt", (Int(3), Word("SOL_SOCKET"), Word("SO_RCVBUF"), Array((Int(65700),)), Array((Int(4),))), Int(0)),
    ),
    (
        "0 getsockopt(3, SOL_SOCKET, SO_ERROR, [ECONNREFUSED], [4]) = 0",
        Syscall(
            "getsockopt", (Int(3), Word("SOL_SOCKET"), Word("SO_ERROR"), Array((Word("ECONNREFUSED"),)), Array((Int(4),))), Int(0)
        ),
    ),
    (
        "0 setsockopt(3, SOL_SOCKET, SO_LINGER, {l_onoff=1, l_linger=0}, 8) = 0",
        Syscall(
            "setsockopt",
            (
                Int(3),
                Word("SOL_SOCKET"),
                Word("SO_LINGER"),
                Struct((Field(Word("l_onoff"), Int(1)), Field(Word("l_linger"), Int(0)))),
                Int(8),
            ),
            Int(0),
        ),
    ),
    (
        '0 bind(3, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr("192.0.2.1")}, 16) = 0',
        Syscall(
            "bind",
            (
                Int(3),
                Struct(
                    (
                        Field(Word("sa_family"), Word("AF_INET")),
                        Field(Word("sin_port"), Call("htons", (Int(8080),))),
                        Field(Word("sin_addr"), Call("inet_addr", (Str("192.0.2.1"),))),
                    )
                ),
                Int(16),
            ),
            Int(0),
        ),
    ),
    (
        "0 setsockopt(3, SOL_SOCKET, SO_RCVBUF, [65536], sizeof(int)) = 0",
        Syscall(
            "setsockopt",
            (Int(3), Word("SOL_SOCKET"), Word("SO_RCVBUF"), Array((Int(65536),)), Call("sizeof", (Word("int"),))),
            Int(0),
        ),
    ),
    ("0 write(4, ..., 10) = ...", Syscall("write", (Int(4), ANY, Int(10)), ANY)),
    (
        "0 write(4, NULL, 1000) = -1 EFAULT (Bad address)",
        Syscall("write", (Int(4), Word("NULL"), Int(1000)), Int(-1), "EFAULT", "Bad address"),
    ),
    ('0 send(3, "abc" "def"..., 6, 0) = 6', Syscall("send", (Int(3), Str("abcdef", prefix=True), Int(6), Int(0)), Int(6))),
    (
        "0 bind(3, ..., ...) = -1 EADDRNOTAVAIL (Can't assign requested address)",
        Syscall("bind", (Int(3), ANY, ANY), Int(-1), "EADDRNOTAVAIL", "Can't assign requested address"),
    ),
    ("0 read(4, ..., 1000) = -1 EAGAIN", Syscall("read", (Int(4), ANY, Int(1000)), Int(-1), "EAGAIN")),
    ("0 close(3) = 0", Syscall("close", (Int(3),), Int(0))),
    ("0 getpid() = 7", Syscall("getpid", (), Int(7))),
    (
        "0 sendmsg(4, {msg_name(...)=..., msg_iov(1)=[{..., 10}], msg_flags=0}, 0) = 10",
        Syscall(
            "sendmsg",
            (
                Int(4),
                Struct(
                    (
                        Field(Call("msg_name", (ANY,)), ANY),
                        Field(Call("msg_iov", (Int(1),)), Array((Struct((ANY, Int(10))),))),
                        Field(Word("msg_flags"), Int(0)),
                    )
                ),
                Int(0),
            ),
            Int(10),
        ),
    ),
]


@pytest.mark.parametrize(("text", "call"), SYSCALLS, ids=[t for t, _ in SYSCALLS])
def test_syscalls(text: str, call: Syscall) -> None:
    assert action(text) == call


def test_struct_members_by_name() -> None:
    call = action("0 setsockopt(3, SOL_SOCKET, SO_LINGER, {l_onoff=1, l_linger=0}, 8) = 0")
    assert isinstance(call, Syscall) and isinstance(call.args[3], Struct)
    assert (call.args[3].get("l_linger"), call.args[3].get("nothing")) == (Int(0), None)


# -- shell lines and code -------------------------------------------------------------


def test_shell_lines_are_kept_as_written_with_their_lines() -> None:
    script = parse(
        "`../common/defaults.sh`\n"
        " 0.00 `sysctl -w net.inet.tcp.insecure_rst=1`\n"
        "+0.00 `sockstat -4 -P tcp -p 8080 -s | grep -c SYN_RCVD | grep 0`\n"
        "+0 `defaults.sh\n"
        "# a shell comment, not a directive\n"
        "sysctl -q net.ipv4.tcp_early_retrans=0`\n"
        "+0 %{ assert tcpi_state == TCPI_CLOSING }%\n"
        "`cleanup.sh`\n",
        "t.pkt",
    )
    assert script.init_command == Command("../common/defaults.sh", 1)
    assert script.cleanup_command == Command("cleanup.sh", 8)
    assert [(e.line, e.action) for e in script.events] == [
        (2, Command("sysctl -w net.inet.tcp.insecure_rst=1", 2)),
        (3, Command("sockstat -4 -P tcp -p 8080 -s | grep -c SYN_RCVD | grep 0", 3)),
        (4, Command("defaults.sh\n# a shell comment, not a directive\nsysctl -q net.ipv4.tcp_early_retrans=0", 4)),
        (7, Code("assert tcpi_state == TCPI_CLOSING")),
    ]


def test_shell_helpers() -> None:
    sockstat = Command("sockstat -4 -P tcp -s | grep 'a b' | grep -c TIME_WAIT", 1)
    assert [words[0] for words in shell_pipelines(sockstat)] == ["sockstat", "grep", "grep"]
    assert shell_pipelines(sockstat)[1] == ["grep", "a b"]
    linux = Command("../common/defaults.sh\n# comment\nsysctl -q net.ipv4.tcp_sack=0 net.ipv4.tcp_dsack=1", 1)
    assert sysctl_assignments(linux) == [("net.ipv4.tcp_sack", "0"), ("net.ipv4.tcp_dsack", "1")]
    assert sysctl_assignments(Command("sysctl -w kern.ipc.maxsockbuf=2097152", 1)) == [("kern.ipc.maxsockbuf", "2097152")]


# -- options and the harness ----------------------------------------------------------


def test_harness_defaults_when_no_options() -> None:
    script = parse("0 close(3) = 0", "t.pkt")
    assert script.options == ()
    assert script.config == Config()
    assert (script.config.ip_version, script.config.local_ip, script.config.remote_ip) == ("ipv4", "192.168.0.1", "192.0.2.1")
    assert (script.config.tolerance_usecs, script.config.bind_port, script.config.connect_port) == (4000, 8080, 8080)


def test_options_set_the_config_and_the_rest_are_kept() -> None:
    script = parse(
        "--ip_version=ipv4\n"
        "--tolerance_usecs=50000 // a comment\n"
        "--local_ip=192.168.0.2\n--remote_ip=10.248.0.3\n--mss=1000\n"
        "--tcp_ts_tick_usecs=1000\n--tcp_ts_ecr_scaled\n--non_fatal=syscall\n"
        "0 close(3) = 0\n",
        "t.pkt",
    )
    assert [(o.name, o.value, o.line) for o in script.options][:3] == [
        ("ip_version", "ipv4", 1),
        ("tolerance_usecs", "50000", 2),
        ("local_ip", "192.168.0.2", 3),
    ]
    c = script.config
    assert (c.tolerance_usecs, c.local_ip, c.remote_ip, c.mss) == (50000, "192.168.0.2", "10.248.0.3", 1000)
    assert c.extra == {"tcp_ts_tick_usecs": "1000", "tcp_ts_ecr_scaled": None, "non_fatal": "syscall"}


# -- the preprocessor -----------------------------------------------------------------

NESTED = """\
0 close(1) = 0
#ifdef STANDARD
+0 close(3) = 0
#ifdef FreeBSD
+0 close(4) = 0
#else
+0 close(5) = 0
#ifndef Linux
+0 close(6) = 0
#endif
#endif
#else
+0 close(7) = 0
#endif
#ifndef STANDARD
+0 close(8) = 0
#endif // the end
+0 close(9) = 0
"""


def fds(script_text: str, **kw: object) -> list[int]:
    script = parse(script_text, "t.pkt", **kw)  # type: ignore[arg-type]
    out = []
    for e in script.events:
        assert isinstance(e.action, Syscall) and isinstance(e.action.args[0], Int)
        out.append(e.action.args[0].value)
    return out


@pytest.mark.parametrize(
    ("defines", "expected"),
    [
        ({"STANDARD"}, [1, 3, 5, 6, 9]),
        ({"STANDARD", "FreeBSD"}, [1, 3, 4, 9]),
        ({"STANDARD", "Linux"}, [1, 3, 5, 9]),
        (set(), [1, 7, 8, 9]),
        ({"FreeBSD"}, [1, 7, 8, 9]),
    ],
)
def test_ifdef_nesting(defines: set[str], expected: list[int]) -> None:
    assert fds(NESTED, defines=defines) == expected


def test_default_defines_are_standard_only() -> None:
    assert fds(NESTED) == [1, 3, 5, 6, 9]


def test_lines_are_counted_through_skipped_branches_and_comments() -> None:
    text = "#ifdef FreeBSD\n0 junk that would not parse (\n#endif\n/* two\nlines */ 0 close(3) = 0\n# comment\n+0 close(4) = 0"
    script = parse(text, "t.pkt")
    assert [e.line for e in script.events] == [5, 7]


def test_skipped_branch_is_not_read() -> None:
    assert fds("#ifdef FreeBSD\n+0 `tcpdrop -s TIME_WAIT\n#endif\n0 close(3) = 0\n") == [3]


def test_a_define_with_a_value_stands_for_it() -> None:
    with pytest.raises(PacketdrillError, match="expected mss value, found 'MSS'"):
        parse("0 > S. 0:0(0) ack 1 <mss MSS,nop,wscale 8>", "t.pkt")
    script = parse("0 > S. 0:0(0) ack 1 <mss MSS,nop,wscale 8>", "t.pkt", defines={"MSS": "1000", "STANDARD": None})
    assert isinstance(script.events[0].action, TcpPacket)
    assert script.events[0].action.options == (Mss(1000), Nop(), WScale(8))
    assert fds("--define=FOO\n#ifdef FOO\n0 close(3) = 0\n#endif\n+0 close(4) = 0") == [3, 4]


# -- broken scripts -------------------------------------------------------------------

SEGMENT = "a TCP segment is flags start:end(length) [ack N] [win N] [urg N] [<options>]"
ONLY = "(only #ifdef, #ifndef, #else and #endif)"
BROKEN = [
    ("", "t.pkt:1: no events in script"),
    ("// nothing\n--ip_version=ipv4\n", "t.pkt:3: no events in script"),
    ("0 close(3) = 0\n--tolerance_usecs=1000\n", "t.pkt:2: option --tolerance_usecs after the first event: options come first"),
    ("--tolerance_usec=1000\n0 close(3) = 0", "t.pkt:1: unknown option --tolerance_usec"),
    ("--tolerance_usecs=fast\n0 close(3) = 0", "t.pkt:1: bad --tolerance_usecs: fast"),
    ("--tolerance_usecs\n0 close(3) = 0", "t.pkt:1: --tolerance_usecs needs a value"),
    ("--ip_version=ipv5\n0 close(3) = 0", "t.pkt:1: bad --ip_version: ipv5 (one of ipv4, ipv6, ipv4-mapped-ipv6)"),
    ("--remote_ip=192.0.2.\n0 close(3) = 0", "t.pkt:1: bad --remote_ip: 192.0.2."),
    ("--dry_run=yes\n0 close(3) = 0", "t.pkt:1: --dry_run takes no value"),
    ("0 close(3) = 0\nclose(4) = 0", "t.pkt:2: missing time before 'close': an event starts with a time (0.1, +0.1 or *)"),
    ("0 close(3) = 0\n< S 0:0(0)", "t.pkt:2: missing time before '<': an event starts with a time (0.1, +0.1 or *)"),
    ("-1 close(3) = 0", "t.pkt:1: negative time: -1"),
    ("0.2~0.1 > S 0:0(0)", "t.pkt:1: time range is backwards"),
    ("+0~0.1 > S 0:0(0)", "t.pkt:1: expected '+' (a relative time range is +start~+end), found '0.1'"),
    ("* close(3) = 0", "t.pkt:1: event time * can only be used with outbound packets"),
    ("* < S 0:0(0)", "t.pkt:1: event time * can only be used with outbound packets"),
    ("0~1 < S 0:0(0)", "t.pkt:1: a time range can only be used with outbound packets"),
    ("0 < S 0:0(0) <...>", "t.pkt:1: <...> for TCP options can only be used with outbound packets"),
    ("0 < S 1:100(100)", "t.pkt:1: inconsistent TCP sequence numbers and payload size: 1:100(100), 1 + 100 != 100"),
    ("0 < SX 0:0(0)", "t.pkt:1: invalid TCP flag 'X' in 'SX'"),
    ("0 < S 0:0(0) win 65536", "t.pkt:1: TCP window value out of range: 65536"),
    ("0 < . 1:1(0) ack 4294967296", "t.pkt:1: TCP ack sequence number out of range: 4294967296"),
    ("0 < S 0:0(0) win 1 ack 1", f"t.pkt:1: 'ack' out of place: {SEGMENT}"),
    ("0 < S 0:0(0) <mss 1460> win 1", f"t.pkt:1: 'win' out of place: {SEGMENT}"),
    ("0 < S 0:0(0) <mss 1460,nop>", "t.pkt:1: TCP options are not padded to a multiple of 4 bytes: 1 excess bytes"),
    ("0 < S 0:0(0) <mss 1460 nop>", "t.pkt:1: expected ',' or '>' in the TCP option list, found 'nop'"),
    ("0 < S 0:0(0) <mss 1460,wscale 256>", "t.pkt:1: window scale shift count out of range: 256"),
    ("0 < S 0:0(0) <mss 1460,fastopen>", "t.pkt:1: unknown TCP option 'fastopen'"),
    ("0 < S 0:0(0) <FO xyz1,nop,nop>", "t.pkt:1: TCP fast open cookie 'xyz1' is not a valid hex string"),
    ("0 > . 1:1(0) <sack 1:2 3:4 5:6 7:8 9:10,nop,nop>", "t.pkt:1: TCP option list too long: 44 bytes, at most 40"),
    ("0 < . 1:1(0) ack 1 <sack,nop>", "t.pkt:1: expected SACK blocks left:right, found ','"),
    ("0 < S", "t.pkt:1: expected a sequence range start:end(length), found end of file"),
    ("0 < icmp unreachable port_unreachble [0:0(0)]", "t.pkt:1: bad ICMP code 'port_unreachble' for ICMPv4 unreachable"),
    ("0 < icmp packet_too_big mtu 1300", "t.pkt:1: bad ICMP type 'packet_too_big' for ICMPv4"),
    ("0 < icmp unreachable port_unreachable mtu 1300", "t.pkt:1: ICMPv4 MTU is only valid for unreachable frag_needed"),
    ("0 < icmp unreachable [0:0(0)", "t.pkt:1: expected ']' to close the quoted packet, found end of file"),
    ("0 < ipv4 1.2.3.4 > 5.6.7.8: S 0:0(0)", "t.pkt:1: unsupported packet encapsulation 'ipv4'"),
    ("0 < sctp: INIT[]", "t.pkt:1: unsupported packet type 'sctp'"),
    ("0 close(3)", "t.pkt:1: expected '=' and the result of close(), found end of file"),
    ("0 close(3 = 0", "t.pkt:1: expected ',' or ')', found '='"),
    (
        "0 fcntl(3, F_SETFL, O_RDWR |) = 0",
        "t.pkt:1: expected an expression (a number, a name, \"string\", [...], {...} or ...), found ')'",
    ),
    ("0 connect(3, ..., ...) = -1 EINPROGRESS (Operation\n\n", "t.pkt:1: unclosed '(' in the note after a result"),
    ('0 send(3, "abc, 3, 0) = 3', "t.pkt:1: unterminated string"),
    ("0 `sysctl -w a=1\n\n", "t.pkt:1: unterminated `shell command` (no closing backtick)"),
    ("0 close(3) = 0\n/* open\n", "t.pkt:2: unterminated /* comment"),
    ("0 %{ assert x\n", "t.pkt:1: unterminated %{ code block (no }%)"),
    ("#ifdef STANDARD\n0 close(3) = 0\n", "t.pkt:1: #ifdef STANDARD is never closed by #endif"),
    ("#ifdef FreeBSD\n#ifdef Linux\n#endif\n0 close(3) = 0\n", "t.pkt:1: #ifdef FreeBSD is never closed by #endif"),
    ("0 close(3) = 0\n#endif\n", "t.pkt:2: #endif without #ifdef"),
    ("0 close(3) = 0\n#else\n", "t.pkt:2: #else without #ifdef"),
    ("#ifdef A\n#else\n#else\n#endif\n0 close(3) = 0", "t.pkt:3: second #else for #ifdef A (line 1)"),
    ("#ifdef\n#endif\n0 close(3) = 0", "t.pkt:1: #ifdef needs a name"),
    ("#ifdef A B\n#endif\n0 close(3) = 0", "t.pkt:1: #ifdef needs one name, not 'A B'"),
    ("#endif STANDARD\n0 close(3) = 0", "t.pkt:1: unexpected 'STANDARD' after #endif"),
    ("#if STANDARD\n#endif\n0 close(3) = 0", f"t.pkt:1: unsupported directive #if {ONLY}"),
    ("#ifdef FreeBSD\n#include <x>\n#endif\n0 close(3) = 0", f"t.pkt:2: unsupported directive #include {ONLY}"),
]


@pytest.mark.parametrize(("text", "message"), BROKEN, ids=[m for _, m in BROKEN])
def test_broken_scripts(text: str, message: str) -> None:
    with pytest.raises(PacketdrillError) as e:
        parse(text, "t.pkt")
    assert str(e.value) == message
    assert f"{e.value.path}:{e.value.line}: {e.value.message}" == message


@pytest.mark.parametrize("nest", ["[{", "x=", "f("])
def test_deep_nesting_is_an_error_not_a_crash(nest: str) -> None:
    with pytest.raises(PacketdrillError, match=r"^t\.pkt:1: expression nested more than 64 deep$"):
        parse(f"0 f({nest * 2000}) = 0", "t.pkt")
    assert parse(
        f"0 f({nest * 20}1{''.join({'[': ']', '{': '}', '(': ')'}.get(c, '') for c in reversed(nest * 20))}) = 0", "t.pkt"
    )


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(PacketdrillError) as e:
        load(tmp_path / "missing.pkt")
    assert str(e.value).startswith(f"{tmp_path / 'missing.pkt'}:0: cannot read: ")


# -- round trip -----------------------------------------------------------------------

u32 = st.integers(0, 0xFFFFFFFF)
_options = st.lists(
    st.one_of(
        st.just(Nop()),
        st.just(Eol()),
        st.just(SackOk()),
        st.builds(Mss, st.integers(0, 0xFFFF)),
        st.builds(WScale, st.integers(0, 14)),
        st.builds(Timestamp, u32, u32),
        st.builds(lambda blocks: Sack(tuple(blocks)), st.lists(st.tuples(u32, u32), min_size=1, max_size=3)),
    ),
    max_size=6,
)


def _render_option(o: TcpOption) -> str:
    if isinstance(o, Nop | Eol | SackOk):
        return {Nop: "nop", Eol: "eol", SackOk: "sackOK"}[type(o)]
    if isinstance(o, Mss):
        return f"mss {o.value}"
    if isinstance(o, WScale):
        return f"wscale {o.shift}"
    if isinstance(o, Timestamp):
        return f"TS val {o.val} ecr {o.ecr}"
    assert isinstance(o, Sack)
    return "sack " + " ".join(f"{a}:{b}" for a, b in o.blocks)


@st.composite
def segments(draw: st.DrawFn) -> tuple[TcpPacket, str]:
    direction = draw(st.sampled_from([IN, OUT]))
    flags = draw(st.sampled_from(["S", "S.", ".", "P.", "F.", "FP.", "R", "R.", "SEW", "E.", "W.", "U."]))
    start = draw(st.integers(0, 0xFFFFFFFF - 0xFFFF))
    length = draw(st.integers(0, 0xFFFF))
    ack = draw(st.none() | u32)
    win = draw(st.none() | st.integers(0, 0xFFFF))
    options: tuple[TcpOption, ...] = tuple(draw(_options))
    size = sum({Nop: 1, Eol: 1, SackOk: 2, Mss: 4, WScale: 3, Timestamp: 10}.get(type(o), 0) for o in options)
    size += sum(2 + 8 * len(o.blocks) for o in options if isinstance(o, Sack))
    if size > 40:
        options = ()
    else:
        options += (Nop(),) * (-size % 4)
    packet = TcpPacket(direction, flags, Seq(start, start + length, length), ack, win, options=options)
    text = f"{direction.value} {flags} {start}:{start + length}({length})"
    text += f" ack {ack}" if ack is not None else ""
    text += f" win {win}" if win is not None else ""
    text += f" <{','.join(map(_render_option, options))}>" if options else ""
    return packet, text


@settings(max_examples=300, deadline=None, derandomize=True)
@given(segments(), st.sampled_from(["0", "+0.25", "1.5"]))
def test_segments_read_back(segment: tuple[TcpPacket, str], time: str) -> None:
    packet, text = segment
    assert action(f"{time} {text}") == packet


# -- never a traceback ----------------------------------------------------------------

_CHARS = [*'0123456789.+-*~<>:()[]{},=|!/`"%#_ \n\tSFRPEWx', "²", "é", "\r\n"]
_TOKENS = [
    "...",
    "<...>",
    "ack 1",
    "win 9",
    "sack 1:2",
    "mss 1460",
    "TS val 1 ecr 2",
    "FO",
    "0:0(0)",
    "icmp unreachable",
    "udp (1)",
]
_LINES = ["#ifdef A\n", "#ifndef A\n", "#else\n", "#endif\n", "// c\n", "/*", "*/", "%{", "}%", "--mss=", "--define=A"]
_PIECES = st.sampled_from([*_CHARS, *_TOKENS, *_LINES, "close(3) = 0", "= -1 EAGAIN (x)"])


def _reads_or_fails_cleanly(text: str) -> None:
    try:
        parse(text, "f.pkt")
    except PacketdrillError as e:
        assert str(e).startswith("f.pkt:") and e.line >= 1, e


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.lists(_PIECES, max_size=40).map("".join))
def test_any_text_reads_or_fails_with_path_and_line(text: str) -> None:
    _reads_or_fails_cleanly(text)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.data())
def test_damaged_scripts_read_or_fail_with_path_and_line(data: st.DataObject) -> None:
    text = data.draw(st.sampled_from([CENSUS_A, CENSUS_B, NESTED, *(t for t, _ in PACKETS[-12:]), *(t for t, _ in SYSCALLS)]))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 3)))
        text = text[:i] + data.draw(st.sampled_from(["", *"0.:(),<>[]{}=-+`#/*~!\n"])) + text[j:]
    _reads_or_fails_cleanly(text)


# -- the census -----------------------------------------------------------------------

CENSUS_A = """\
--tolerance_usecs=10000
 0.00 `sysctl -w net.inet.tcp.insecure_rst=1`
+0.00 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0.00 fcntl(3, F_SETFL, O_RDWR | O_NONBLOCK) = 0
+0.00 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
+0.00 > S 0:0(0) win 65535 <mss 1460,nop,wscale 6,sackOK,TS val 100 ecr 0>
*     > S 0:0(0) win 65535 <...>
+0.10 getsockopt(3, SOL_SOCKET, SO_ERROR, [ETIMEDOUT], [4]) = 0
+0.00 `sockstat -4 -P tcp | grep -c SYN_SENT`
"""
CENSUS_B = """\
`../common/defaults.sh`
0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+.1...0.2 connect(3, ..., ...) = 0
+0 > S 0:0(0) <mss 1460,nop,nop,sackOK>
+0 %{ assert tcpi_state == 1 }%
"""


def test_census_counts() -> None:
    c = census([parse(CENSUS_A, "a.pkt"), parse(CENSUS_B, "b.pkt")])
    assert (c.scripts, c.events, c.code_blocks) == (2, 12, 1)
    assert c.syscalls == {"socket": 2, "connect": 2, "fcntl": 1, "getsockopt": 1}
    assert c.socket_options == {"getsockopt SOL_SOCKET SO_ERROR": 1}
    assert c.fcntl == {"F_SETFL O_RDWR|O_NONBLOCK": 1}
    assert c.errnos == {"EINPROGRESS": 1}
    assert c.constants["SOCK_STREAM"] == 2 and c.constants["ETIMEDOUT"] == 1
    assert c.times == {"relative": 9, "absolute": 2, "any": 1, "blocking span": 1}
    assert c.tcp_flags == {"> S": 3}
    assert c.tcp_options == {"mss": 2, "nop": 3, "wscale": 1, "sackOK": 2, "TS": 1, "... (any)": 1}
    assert c.harness_options == {"--tolerance_usecs=10000": 1}
    assert c.sysctls == {"net.inet.tcp.insecure_rst=1": 1}
    assert c.programs == {"sysctl": 1, "sockstat": 1, "grep": 1, "../common/defaults.sh": 1}
    assert c.commands == {"sockstat -4 -P tcp | grep -c SYN_SENT": 1, "../common/defaults.sh": 1}
    report = c.report()
    assert report.startswith("2 scripts, 12 events, 1 %{ code }% blocks")
    assert "\nsystem calls (6):\n  2  connect\n  2  socket\n  1  fcntl\n  1  getsockopt\n" in report


def test_census_command_line_reports_unreadable_scripts(tmp_path: Path) -> None:
    (tmp_path / "a.pkt").write_text(CENSUS_A)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "bad.pkt").write_text("0 close(3) = 0\n+0 < S 1:2(0)\n")
    r = subprocess.run(
        [sys.executable, "-m", "simstack.engine.scenario.packetdrill", "--census", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert f"{tmp_path / 'sub' / 'bad.pkt'}:2: inconsistent TCP sequence numbers" in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout.startswith("1 scripts, 8 events")
