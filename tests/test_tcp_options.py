"""Window scaling, timestamps and SACK, as a profile turns them on (RFC 7323, RFC 2018, RFC 2883).

Two simstack TCP layers talk through the harness's wire; what they send goes
through the codec and is read back by scapy, so the option bytes are checked
by a decoder that is not ours.
"""

from typing import Any

import pytest
from scapy.layers.inet import TCP
from tcp_harness import A_IP, B_IP, Net, Pump, Sent, check_all, established_pair

from simstack.protocols import tcp
from simstack.protocols.tcp import OPT_SACK, OPT_TIMESTAMP, SYN, Tcp
from simstack.protocols.tcp_conn import TcpConfig

FREEBSD = TcpConfig(wscale=6, timestamps=True, sack=True, dsack=True, options_layout="freebsd", rto_min=0.2)
LINUX = TcpConfig(wscale=8, timestamps=True, sack=True, dsack=True, rto_min=0.2)


def scapy_options(s: Sent) -> list[tuple[str, Any]]:
    return list(TCP(tcp.emit(s.seg, s.src, s.dst)).options)


@pytest.mark.parametrize(("config", "expected"), [
    (FREEBSD, ["MSS", "NOP", "WScale", "SAckOK", "Timestamp"]),  # tcp_addoptions(): each option at its alignment
    (LINUX, ["MSS", "SAckOK", "Timestamp", "NOP", "WScale"]),  # tcp_options_write(): SACK-permitted beside TS
], ids=["freebsd", "linux"])
def test_a_syn_offers_every_option_in_its_layout(config: TcpConfig, expected: list[str]) -> None:
    net = Net(config)
    client = net.b.open()
    client.connect(A_IP, 80, net.now)
    syn = net.log[0]
    assert syn.seg.flags == SYN
    options = scapy_options(syn)
    assert [name for name, _ in options] == expected
    values = dict(options)
    assert values["MSS"] == 1460 and values["WScale"] == config.wscale
    assert values["Timestamp"][1] == 0  # a SYN echoes nothing (RFC 7323 3.2)


def test_a_syn_ack_carries_only_what_the_syn_offered() -> None:
    """RFC 7323 2.2, 3.2 and RFC 2018 2: an option is answered only when offered."""
    net = Net(FREEBSD, config_b=TcpConfig(sack=True))  # the client offers MSS and SACK-permitted
    _listener, server, client = established_pair(net)
    syn_ack = next(s for s in net.log if s.src == A_IP and s.seg.flags & SYN)
    assert scapy_options(syn_ack) == [("MSS", 1460), ("SAckOK", b""), ("EOL", None)]  # padded as FreeBSD pads
    assert (server.ws_ok, server.ts_ok, server.sack_ok) == (False, False, True)
    assert (client.ws_ok, client.ts_ok, client.sack_ok) == (False, False, True)


def test_a_megabyte_through_scaled_windows_and_timestamps() -> None:
    big = TcpConfig(wscale=7, timestamps=True, sack=True, rcvbuf=1 << 20, sndbuf=1 << 20, rto_min=0.2)
    net = Net(big)
    net.check = lambda: check_all(net)
    _listener, server, client = established_pair(net)
    data = bytes(i * 7 % 251 for i in range(1 << 20))
    since = len(net.log)
    pump = Pump(net, client, server, data)
    net.run_until(lambda: pump.done, limit=net.now + 60)
    # the receiver offered more than 65535 bytes: only the scale says so (RFC 7323 2.3)
    assert max(s.seg.window << 7 for s in net.log[since:] if s.src == A_IP) > 0xFFFF
    assert client.max_snd_wnd > 0xFFFF
    # every segment after the handshake carries NOP, NOP, TS; each echoes a value the other side sent
    vals: dict[bytes, set[int]] = {A_IP: set(), B_IP: set()}
    for s in net.log:
        ts = s.seg.option(OPT_TIMESTAMP)
        assert isinstance(ts, tuple), s
        vals[s.src].add(ts[0])
    for s in net.log[since:]:
        assert scapy_options(s)[:3] == [("NOP", None), ("NOP", None), ("Timestamp", s.seg.option(OPT_TIMESTAMP))]
        other = B_IP if s.src == A_IP else A_IP
        assert s.seg.option(OPT_TIMESTAMP)[1] in vals[other]


def test_sack_blocks_name_what_arrived_beyond_a_hole() -> None:
    """RFC 2018 4: the first block holds the segment that came in last; scapy reads the same edges."""
    net = Net(LINUX)
    _listener, _server, client = established_pair(net)
    client.set_nodelay(True, net.now)
    lost: list[Tcp] = []

    def lose_first_data(s: Sent) -> list[float] | None:
        if s.src == B_IP and s.seg.payload and not lost:
            lost.append(s.seg)
            return []
        return None

    net.tap = lose_first_data
    for chunk in (b"a" * 100, b"b" * 100, b"c" * 100):
        client.send(chunk, net.now)
        net.run(until=net.now + 0.01)
    net.tap = None
    base = lost[0].seq
    acks = [s for s in net.log if s.src == A_IP and s.seg.option(OPT_SACK)]
    assert [s.seg.option(OPT_SACK) for s in acks[:2]] == [((base + 100, base + 200),), ((base + 100, base + 300),)]
    assert dict(scapy_options(acks[1]))["SAck"] == (base + 100, base + 300)


def test_a_duplicate_is_reported_first_once() -> None:
    """RFC 2883 4: the first block of the next ACK is the duplicate; the ACK after it has none."""
    net = Net(LINUX)
    _listener, _server, client = established_pair(net)
    client.send(b"x" * 100, net.now)
    net.run(until=net.now + 1)
    first = next(s.seg for s in net.log if s.src == B_IP and s.seg.payload)
    since = len(net.log)
    net.inject(first, B_IP, A_IP)  # the same segment again
    net.run(until=net.now + 0.01)
    answer = [s.seg for s in net.log[since:] if s.src == A_IP]
    assert answer and answer[0].option(OPT_SACK) == ((first.seq, first.seq + 100),)
    client.send(b"y" * 100, net.now)
    net.run(until=net.now + 1)
    assert all(s.seg.option(OPT_SACK) is None for s in net.log[since + 1:] if s.src == A_IP)


def test_windows_in_a_syn_are_never_scaled() -> None:
    """RFC 7323 2.2: the window field of a SYN or SYN-ACK is the window itself."""
    net = Net(TcpConfig(wscale=7, rcvbuf=1 << 20))
    _listener, _server, _client = established_pair(net)
    syns = [s.seg for s in net.log if s.seg.flags & SYN]
    assert [s.window for s in syns] == [0xFFFF, 0xFFFF]
    later = [s.seg for s in net.log if not s.seg.flags & SYN]
    assert all(seg.window == (1 << 20) >> 7 for seg in later)


def test_emit_parse_round_trip_of_what_a_profile_sends() -> None:
    for config in (FREEBSD, LINUX):
        net = Net(config)
        _listener, _server, _client = established_pair(net)
        for s in net.log:
            raw = tcp.emit(s.seg, s.src, s.dst)
            back = tcp.parse(raw, s.src, s.dst)
            assert isinstance(back, Tcp) and tcp.emit(back._replace(checksum=None), s.src, s.dst) == raw
