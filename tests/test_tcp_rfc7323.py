"""RFC 7323 in the TCP core: RTTM, PAWS, the window-scale clamp and the MSS floor, where a scenario cannot show it.

The scenarios (scenarios/tcp/timestamps-rtt.yaml, paws.yaml, window-scaling.yaml and the attacks/
ones) hold the behaviour on the wire; these tests hold what a scenario's clock or a single run
cannot reach: the 24-day exception, bounds over any sequence of samples, the slow path of PAWS,
and the echo rules read back by scapy.
"""

from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import TCP
from tcp_harness import A_IP, B_IP, Net, Pump, Sent, check_all, established_pair

from simstack.protocols import tcp
from simstack.protocols.tcp import ACK, OPT_MSS, OPT_NOP, OPT_TIMESTAMP, OPT_WSCALE, PSH, SYN, Option
from simstack.protocols.tcp_conn import PAWS_IDLE, TcpConfig, TcpConn, make_tcp

TS = TcpConfig(timestamps=True, rto_min=0.2)
# The client's side when the test forges its segments: it drops, unanswered, the server's ACKs of data it
# never sent (Linux's behaviour), which would otherwise start an ACK war with the server.
QUIET = TcpConfig(timestamps=True, rto_min=0.2, drop_future_ack=True)
NOP = Option(OPT_NOP)
DAY = 86400.0


def scapy_ts(s: Sent) -> tuple[int, int]:
    """The timestamps option of a segment as scapy decodes its bytes."""
    value: tuple[int, int] = dict(TCP(tcp.emit(s.seg, s.src, s.dst)).options)["Timestamp"]
    return value


def from_client(client: TcpConn, server: TcpConn, tsval: int, payload: bytes, seq: int | None = None) -> Any:
    """A data segment as the client would send it, with the TS val the test chooses."""
    return make_tcp(client.local_port, server.local_port, server.rcv_nxt if seq is None else seq, server.snd_max,
                    ACK | PSH, 1000, (NOP, NOP, Option(OPT_TIMESTAMP, (tsval, server.ts_recent))), payload)


# -- RTTM (RFC 7323 4) ---------------------------------------------------------------------------
@given(st.lists(st.tuples(st.floats(0, 1000, allow_nan=False), st.integers(1, 10_000)), min_size=1, max_size=50),
       st.sampled_from([(0.001, 0.001, 0.001), (0.2, 1.0, 60.0), (1.0, 1.0, 60.0), (0.05, 3.0, 3.0)]))
def test_rto_stays_within_rto_min_and_rto_max_whatever_the_samples(samples: list[tuple[float, int]],
                                                                   bounds: tuple[float, float, float]) -> None:
    """RFC 6298 2.4-2.5 under RFC 7323 appendix G's per-ACK weighting: any samples, any flight."""
    lo, initial, hi = bounds
    conn = Net(TcpConfig(timestamps=True, rto_min=lo, rto_initial=initial, rto_max=hi)).a.open()
    for r, expected in samples:
        conn._rtt_sample(r, expected)
        assert lo <= conn.rto <= hi
        assert conn.srtt is not None and min(s for s, _ in samples) <= conn.srtt <= max(s for s, _ in samples)


def test_appendix_g_divides_the_gains_by_the_samples_a_flight_gives() -> None:
    """RFC 7323 appendix G: alpha' = 1/8 / ExpectedSamples, beta' = 1/4 / ExpectedSamples."""
    conn = Net(TS).a.open()
    conn._rtt_sample(0.1)
    assert (conn.srtt, conn.rttvar) == (0.1, 0.05)  # RFC 6298 2.2
    conn._rtt_sample(0.5, 4)
    assert conn.srtt == pytest.approx(0.1 + 0.125 / 4 * 0.4)
    assert conn.rttvar == pytest.approx((1 - 0.25 / 4) * 0.05 + 0.25 / 4 * 0.4)


def test_timestamps_measure_every_ack_and_the_rto_follows_the_path() -> None:
    """RFC 7323 4.1: with 50 ms each way, SRTT settles at 0.1 s whatever the window holds in flight."""
    net = Net(TcpConfig(timestamps=True, rto_min=0.01, rcvbuf=1 << 20, sndbuf=1 << 20, wscale=7), delay=0.05)
    net.check = lambda: check_all(net)
    _listener, server, client = established_pair(net)
    pump = Pump(net, client, server, bytes(300_000))
    net.run_until(lambda: pump.done, limit=net.now + 60)
    srtt = client.srtt
    assert srtt == pytest.approx(0.1, abs=0.002)
    assert srtt is not None and client.rto == pytest.approx(srtt + 4 * client.rttvar)
    assert client.rto < 0.2  # RFC 6298's 1 s floor is rto_min's business, not the estimator's


def test_a_retransmission_is_timed_by_its_echo_not_skipped() -> None:
    """RFC 7323 4.1 against Karn (RFC 6298 3): the ACK of a resent segment echoes the resent copy's TS val,
    so it is a sample (0.14 s here: the path and a delayed ACK) and the backed-off RTO is replaced at once."""
    net = Net(TcpConfig(timestamps=True, rto_min=0.01), delay=0.05)
    _listener, _server, client = established_pair(net)
    dropped: list[Sent] = []

    def lose_first_data(s: Sent) -> list[float] | None:
        if s.src == B_IP and s.seg.payload and not dropped:
            dropped.append(s)
            return []
        return None

    net.tap = lose_first_data
    client.send(b"x" * 100, net.now)
    net.run_until(lambda: client.snd_una == client.snd_max, limit=net.now + 10)
    assert dropped and client.layer.counters["tcp.timeout"] == 1
    # the handshake's sample (0.1 s: SRTT 0.1, RTTVAR 0.05, RTO 0.3, backed off to 0.6 by the timeout), then
    # the retransmission's: 0.1 s and the server's delayed ACK, 0.04 s
    srtt = client.srtt
    assert srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.14, abs=0.001)
    assert srtt is not None and client.rto == pytest.approx(srtt + 4 * client.rttvar) and client.rto < 0.3


# -- the TSecr we echo (RFC 7323 4.3), read back by scapy ------------------------------------------
def test_a_delayed_ack_echoes_the_earliest_segment_it_acknowledges() -> None:
    """RFC 7323 4.2 (A) by way of 4.3's Last.ACK.sent rule: two segments, one ACK, the first TS val."""
    net = Net(TS, config_b=QUIET)
    _listener, server, client = established_pair(net)
    net.run(until=net.now + 1)
    since = len(net.log)
    net.inject(from_client(client, server, 70_000, b"a" * 100), B_IP, A_IP)
    net.inject(from_client(client, server, 70_010, b"b" * 100, seq=(server.rcv_nxt + 100) & 0xFFFFFFFF), B_IP, A_IP,
               delay=0.01)
    net.run(until=net.now + 0.2)
    acks = [s for s in net.log[since:] if s.src == A_IP]
    assert len(acks) == 1 and acks[0].seg.ack == server.rcv_nxt
    assert scapy_ts(acks[0])[1] == 70_000


def test_an_ack_past_a_hole_echoes_the_last_segment_in_order() -> None:
    """RFC 7323 4.2 (B): a segment beyond a hole does not move TS.Recent; the ACK echoes what advanced the window."""
    net = Net(TS, config_b=QUIET)
    _listener, server, client = established_pair(net)
    net.run(until=net.now + 1)
    net.inject(from_client(client, server, 80_000, b"a" * 100), B_IP, A_IP)
    net.run(until=net.now + 0.5)
    since = len(net.log)
    net.inject(from_client(client, server, 80_500, b"c" * 100, seq=(server.rcv_nxt + 100) & 0xFFFFFFFF), B_IP, A_IP)
    net.run(until=net.now + 0.01)
    acks = [s for s in net.log[since:] if s.src == A_IP]
    assert acks and scapy_ts(acks[0])[1] == 80_000


# -- PAWS (RFC 7323 5) ---------------------------------------------------------------------------
def test_paws_drops_an_old_segment_beyond_a_hole_too() -> None:
    """The slow path (out of order, not the fast path): R1 before the acceptability test, the ACK sent."""
    net = Net(TS, config_b=QUIET)
    _listener, server, client = established_pair(net)
    net.inject(from_client(client, server, 90_000, b"a" * 100), B_IP, A_IP)
    net.run(until=net.now + 0.5)
    since = len(net.log)
    later = (server.rcv_nxt + 100) & 0xFFFFFFFF
    net.inject(from_client(client, server, 89_000, b"old" * 10, seq=later), B_IP, A_IP)
    net.run(until=net.now + 0.01)
    counters = server.layer.counters
    assert counters["tcp.drop.paws"] == 1 and not server.ooo
    assert [s.seg.ack for s in net.log[since:] if s.src == A_IP] == [server.rcv_nxt]
    net.inject(from_client(client, server, 90_001, b"new" * 10, seq=later), B_IP, A_IP)
    net.run(until=net.now + 0.01)
    assert counters["tcp.drop.paws"] == 1 and counters["tcp.rx.ooo"] == 1


@pytest.mark.parametrize(("idle", "taken"), [(PAWS_IDLE - DAY, False), (PAWS_IDLE + DAY, True)],
                         ids=["23-days", "25-days"])
def test_after_24_days_idle_ts_recent_no_longer_rejects(idle: float, taken: bool) -> None:
    """RFC 7323 5.5: TS.Recent older than 24 days may be from before the peer's clock wrapped: the segment is
    taken and its TS val, older or not, becomes TS.Recent. Before that, the old TS val is an old duplicate."""
    net = Net(TS, config_b=QUIET)
    _listener, server, client = established_pair(net)
    net.inject(from_client(client, server, 1_000_000, b"a" * 10), B_IP, A_IP)
    net.run(until=net.now + 1)
    assert server.ts_recent == 1_000_000
    net.now += idle
    net.inject(from_client(client, server, 500, b"b" * 10), B_IP, A_IP)
    net.run(until=net.now + 1)
    assert server.layer.counters["tcp.drop.paws"] == (0 if taken else 1)
    assert server.recv(100, net.now) == (b"a" * 10 + b"b" * 10 if taken else b"a" * 10)
    assert server.ts_recent == (500 if taken else 1_000_000)


# -- the options a SYN brings (RFC 7323 2.3; Linux's tcp_min_snd_mss) -----------------------------
@pytest.mark.parametrize(("mss", "expected", "floored"), [(1, 48, 1), (47, 48, 1), (48, 48, 0), (0, 536, 0),
                                                          (None, 536, 0), (9000, 1460, 0)])
def test_a_peers_mss_is_raised_to_min_snd_mss(mss: int | None, expected: int, floored: int) -> None:
    net = Net(TcpConfig())
    listener = net.a.open()
    listener.bind(b"\x00\x00\x00\x00", 80)
    listener.listen(8)
    options = () if mss is None else (Option(OPT_MSS, mss),)
    net.inject(make_tcp(40000, 80, 1000, 0, SYN, 65535, options, b""), B_IP, A_IP)
    net.step()  # the SYN, and no further: the SYN-ACK would draw a RST from B, which has no connection
    child = next(iter(listener.children))
    assert child.snd_mss == expected
    assert net.a.counters["tcp.mss_floor"] == floored


@pytest.mark.parametrize(("shift", "used", "clamped"), [(14, 14, 0), (15, 14, 1), (255, 14, 1), (0, 0, 0)])
def test_a_shift_over_14_is_used_as_14(shift: int, used: int, clamped: int) -> None:
    net = Net(TcpConfig(wscale=7))
    listener = net.a.open()
    listener.bind(b"\x00\x00\x00\x00", 80)
    listener.listen(8)
    net.inject(make_tcp(40000, 80, 1000, 0, SYN, 65535, (Option(OPT_WSCALE, shift),), b""), B_IP, A_IP)
    net.step()  # the SYN, and no further: the SYN-ACK would draw a RST from B, which has no connection
    child = next(iter(listener.children))
    assert (child.ws_ok, child.snd_wscale) == (True, used)
    assert net.a.counters["tcp.wscale_clamped"] == clamped


@pytest.mark.parametrize("value", [0, 7, 65496])
def test_min_snd_mss_has_a_range(value: int) -> None:
    with pytest.raises(ValueError, match="min_snd_mss"):
        TcpConfig(min_snd_mss=value)


@pytest.mark.parametrize("rcvbuf", [100_000, 131072, 1 << 20])
def test_a_scaled_window_never_moves_its_right_edge_left(rcvbuf: int) -> None:
    """RFC 7323 appendix F, RFC 9293 3.8.6.2.2: the field counts units of 128 here; the edge it says only grows."""
    net = Net(TcpConfig(wscale=7, rcvbuf=rcvbuf, rto_min=0.2))
    net.check = lambda: check_all(net)
    _listener, server, client = established_pair(net)
    since = len(net.log)
    pump = Pump(net, client, server, bytes(i % 253 for i in range(2_000_000)), chunk=3000)
    net.run_until(lambda: pump.done, limit=net.now + 120)
    edges = [(s.seg.ack + (s.seg.window << 7)) & 0xFFFFFFFF for s in net.log[since:] if s.src == A_IP]
    assert len(edges) > 100
    assert all(((b - a) & 0xFFFFFFFF) < 1 << 31 for a, b in pairwise(edges))
