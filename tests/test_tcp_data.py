"""TCP reliable data over two layers back to back: windows, loss, retransmission timing, persist, Nagle, delayed ACK."""

import errno
import itertools
import random

import pytest
from tcp_harness import A_IP, B_IP, Net, Pump, Sent, check_all, established_pair

from simstack.protocols.tcp import ACK, FIN, PSH, RST, SYN, Tcp
from simstack.protocols.tcp_conn import TcpConfig

FAST = TcpConfig(msl=0.5, rto_min=0.2, rto_initial=0.2)
PAYLOAD = bytes(random.Random(7).getrandbits(8) for _ in range(1 << 20))  # 1 MiB


def checked(net: Net) -> Net:
    net.check = lambda: check_all(net)
    return net


def data_segs(net: Net, src: bytes, since: int = 0) -> list[Sent]:
    return [s for s in net.log[since:] if s.src == src and s.seg.payload]


def test_bulk_both_ways_at_once() -> None:
    net = checked(Net(FAST))
    _, server, client = established_pair(net)
    up = Pump(net, client, server, PAYLOAD[:300_000])
    down = Pump(net, server, client, PAYLOAD[300_000:500_000])
    net.run_until(lambda: up.done and down.done)
    net.run()
    assert server.state == client.state == "CLOSED"
    assert max(len(s.seg.payload) for s in net.log) == 1460


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_megabyte_through_loss_reordering_and_duplication(seed: int) -> None:
    """5% loss, 5% reordered by up to 5 ms, 2% duplicated, both ways, invariants checked after every step."""
    net = checked(Net(FAST, seed=seed))
    _, server, client = established_pair(net)
    rng = random.Random(seed)

    def misbehave(s: Sent) -> list[float] | None:
        r = rng.random()
        if r < 0.05:
            return []
        if r < 0.10:
            return [rng.uniform(0, 0.005)]
        if r < 0.12:
            return [0.0, rng.uniform(0, 0.003)]
        return None

    net.tap = misbehave
    up = Pump(net, client, server, PAYLOAD)
    down = Pump(net, server, client, PAYLOAD[::-1][:200_000])
    net.run_until(lambda: up.done and down.done, limit=300)
    net.run()
    assert server.state == client.state == "CLOSED"
    c = net.b.counters
    assert c["tcp.retransmit"] > 0 and c["tcp.fast_retransmit"] > 0
    assert net.a.counters["tcp.rx.ooo"] > 0


def test_retransmission_on_the_rfc6298_timer_with_backoff() -> None:
    net = checked(Net(TcpConfig(rto_min=0.2, rto_initial=1.0)))
    _, server, client = established_pair(net)
    # one RTT sample from the handshake (2 ms): SRTT 2 ms, RTTVAR 1 ms, RTO = max(SRTT + 4 RTTVAR, 0.2)
    assert client.srtt == pytest.approx(0.002) and client.rttvar == pytest.approx(0.001)
    assert client.rto == pytest.approx(0.2)
    lost = {"n": 3}

    def lose_three(s: Sent) -> list[float] | None:
        if s.seg.payload and lost["n"]:
            lost["n"] -= 1
            return []
        return None

    net.tap = lose_three
    t0 = net.now
    client.send(b"hello", net.now)
    net.run_until(lambda: server.recv(100, net.now) == b"hello")
    times = [round(s.time - t0, 6) for s in data_segs(net, B_IP)]
    assert times == [0.0, 0.2, 0.6, 1.4]  # RTO 0.2, then doubled each time (RFC 6298 5.5)
    assert net.b.counters["tcp.timeout"] == 3
    net.run()
    # Karn: the retransmitted segment gave no sample; the backed-off RTO stands until a fresh one
    assert client.rto == pytest.approx(1.6)
    client.send(b"again", net.now)
    net.run()
    assert client.rto == pytest.approx(0.2)


def test_retry_limit_ends_in_rst_and_etimedout() -> None:
    net = checked(Net(TcpConfig(rto_min=0.2, rto_initial=1.0, retries=3)))
    _, server, client = established_pair(net)
    net.tap = lambda s: [] if s.src == B_IP and s.seg.payload else None
    t0 = net.now
    client.send(b"into the void", net.now)
    net.run_until(lambda: client.state == "CLOSED")
    assert [round(s.time - t0, 6) for s in data_segs(net, B_IP)] == [0.0, 0.2, 0.6, 1.4]
    assert round(net.now - t0, 6) == 3.0
    rst = net.log[-1]
    assert rst.src == B_IP and rst.seg.flags & RST
    assert client.error == errno.ETIMEDOUT
    with pytest.raises(TimeoutError):
        client.recv(10, net.now)
    net.run()
    assert server.state == "CLOSED" and server.error == errno.ECONNRESET


def test_syn_retry_limit_times_out_without_rst() -> None:
    net = Net(TcpConfig(rto_min=0.2, rto_initial=1.0, syn_retries=2))
    net.tap = lambda s: []
    c = net.b.open()
    c.connect(A_IP, 80, 0.0)
    net.run_until(lambda: c.state == "CLOSED")
    assert [s.time for s in net.log] == [0.0, 1.0, 3.0] and all(s.seg.flags == SYN for s in net.log)
    assert net.now == 7.0 and c.error == errno.ETIMEDOUT


def test_out_of_order_segments_are_held_and_delivered_in_order() -> None:
    net = checked(Net(FAST))
    _, server, client = established_pair(net)
    client.set_nodelay(True, net.now)
    first = {"done": False}

    def delay_first(s: Sent) -> list[float] | None:
        if s.seg.payload and not first["done"]:
            first["done"] = True
            return [0.01]  # arrives after the next three
        return None

    net.tap = delay_first
    n = len(net.log)
    for chunk in (b"one ", b"two ", b"three ", b"four"):
        client.send(chunk, net.now)
    net.run()
    assert server.recv(100, net.now) == b"one two three four"
    assert net.a.counters["tcp.rx.ooo"] == 3
    acks = [s.seg.ack for s in net.log[n:] if s.src == A_IP]
    first_ack = acks[0]
    assert acks[:3] == [first_ack] * 3  # an immediate duplicate ACK for each (RFC 5681 4.2)
    assert acks[3] == client.snd_max  # the hole filled: everything acknowledged at once


def test_duplicate_segments_are_acknowledged_and_dropped() -> None:
    net = checked(Net(FAST))
    _, server, client = established_pair(net)
    net.tap = lambda s: [0.0, 0.002] if s.seg.payload else None
    client.send(b"x" * 3000, net.now)
    net.run()
    assert server.recv(10_000, net.now) == b"x" * 3000
    assert net.a.counters["tcp.drop.out_of_window"] >= 2  # a duplicate is "unacceptable": answered with an ACK


def test_zero_window_persist_probes_and_reopening() -> None:
    net = checked(Net(FAST))
    listener = net.a.open()
    listener.set_rcvbuf(4096, 0.0)
    listener.bind(b"\0\0\0\0", 80)
    listener.listen()
    client = net.b.open()
    client.connect(A_IP, 80, 0.0)
    net.run_until(lambda: bool(listener.accept_queue))
    server = listener.accept()
    assert server is not None
    data = PAYLOAD[:20_000]
    sent = client.send(data, net.now)
    net.run(until=net.now + 5.0)
    assert len(server.rcvbuf) == 4096 and client.snd_wnd == 0
    probes = [s for s in net.log if s.src == B_IP and s.seg.seq == (client.snd_una - 1) & 0xFFFFFFFF]
    assert len(probes) >= 3 and not any(p.seg.payload for p in probes)
    gaps = [round(b.time - a.time, 6) for a, b in itertools.pairwise(probes)]
    assert gaps[:3] == [0.4, 0.8, 1.6]  # persist timer backs off (RFC 1122 4.2.2.17)
    # the window advertised was never more than the free space
    assert all(s.seg.window <= 4096 for s in net.log if s.src == A_IP)
    got = bytearray()
    while len(got) < len(data):
        if sent < len(data):
            sent += client.send(data[sent:], net.now)
        chunk = server.recv(100_000, net.now)
        if chunk:
            got += chunk
        net.step()
    assert bytes(got) == data


def test_receiver_sws_avoidance_waits_for_a_worthwhile_window() -> None:
    """RFC 9293 3.8.6.2.2: reading a few bytes at a time from a full buffer does not advertise them."""
    net = checked(Net(FAST))
    listener = net.a.open()
    listener.set_rcvbuf(8192, 0.0)
    listener.bind(b"\0\0\0\0", 80)
    listener.listen()
    client = net.b.open()
    client.connect(A_IP, 80, 0.0)
    net.run_until(lambda: bool(listener.accept_queue))
    server = listener.accept()
    assert server is not None
    client.send(PAYLOAD[:30_000], net.now)
    net.run(until=net.now + 0.5)
    assert client.snd_wnd == 0
    n = len(net.log)
    for _ in range(10):
        assert server.recv(100, net.now) is not None  # 1000 bytes freed: less than an MSS
        net.run(until=net.now + 0.01)
    assert all(s.seg.window == 0 for s in net.log[n:] if s.src == A_IP)
    assert server.recv(1000, net.now) is not None  # 2000 freed: now worth a window update
    net.run(until=net.now + 0.01)
    updates = [s.seg.window for s in net.log[n:] if s.src == A_IP and s.seg.window]
    assert updates and updates[0] >= 1460


def test_delayed_ack_timing() -> None:
    net = checked(Net(FAST))
    _, _server, client = established_pair(net)
    t0 = net.now
    client.send(b"a" * 100, net.now)
    net.run()
    (ack,) = [s for s in net.log if s.src == A_IP and s.time > t0]
    assert round(ack.time - (t0 + net.delay), 6) == 0.04  # delack_time after the segment arrived
    assert net.a.counters["tcp.delayed_ack"] == 1
    # two full-sized segments: acknowledged at once on the second (RFC 1122 4.2.3.2, RFC 5681 4.2)
    t1 = net.now
    client.send(b"b" * 2920, net.now)
    net.run()
    acks = [s for s in net.log if s.src == A_IP and s.time > t1]
    assert len(acks) == 1 and round(acks[0].time - t1, 6) == net.delay  # sent as the second arrived


def test_nagle_holds_small_segments_while_data_is_in_flight() -> None:
    net = checked(Net(FAST))
    _, server, client = established_pair(net)
    n = len(net.log)
    for ch in b"abc":
        client.send(bytes([ch]), net.now)
    net.run()
    sent = [(round(s.time, 6), s.seg.payload) for s in data_segs(net, B_IP, n)]
    # "a" at once; "bc" waits for a's ACK, itself delayed 40 ms by the receiver
    assert [p for _, p in sent] == [b"a", b"bc"]
    assert sent[1][0] - sent[0][0] == pytest.approx(0.04 + 2 * net.delay)
    assert server.recv(10, net.now) == b"abc"


def test_nodelay_sends_each_write_at_once() -> None:
    net = checked(Net(FAST))
    _, _server, client = established_pair(net)
    client.set_nodelay(True, net.now)
    n = len(net.log)
    t = net.now
    for ch in b"abc":
        client.send(bytes([ch]), net.now)
    net.run()
    assert [(s.time, s.seg.payload) for s in data_segs(net, B_IP, n)] == [(t, b"a"), (t, b"b"), (t, b"c")]


def test_nagle_never_holds_a_full_sized_segment() -> None:
    net = checked(Net(FAST))
    _, server, client = established_pair(net)
    n = len(net.log)
    t = net.now
    client.send(b"x", net.now)  # in flight, unacknowledged
    client.send(b"y" * (1460 * 2 + 10), net.now)
    sizes = [(s.time, len(s.seg.payload)) for s in data_segs(net, B_IP, n)]
    assert sizes == [(t, 1), (t, 1460), (t, 1460)]  # the 10-byte tail waits
    net.run()
    assert len(server.recv(10_000, net.now) or b"") == 1 + 1460 * 2 + 10


def test_fin_is_not_held_by_nagle() -> None:
    net = checked(Net(FAST))
    _, _server, client = established_pair(net)
    n = len(net.log)
    client.send(b"x", net.now)
    client.send(b"tail", net.now)
    client.shutdown(1, net.now)
    net.run()
    segs = data_segs(net, B_IP, n)
    assert segs[-1].seg.payload == b"tail" and segs[-1].seg.flags & FIN and segs[-1].seg.flags & PSH


def test_segments_fit_the_smaller_mss() -> None:
    net = checked(Net(FAST, mtu_b=576))
    _, server, client = established_pair(net)
    p = Pump(net, server, client, PAYLOAD[:50_000])
    net.run_until(lambda: p.done)
    assert max(len(s.seg.payload) for s in data_segs(net, A_IP)) == 536  # B announced 576 - 40


def test_path_mtu_lowers_the_mss() -> None:
    from simstack.protocols import icmp

    net = checked(Net(FAST))
    _, server, client = established_pair(net)
    big = {"on": True}
    net.tap = lambda s: [] if big["on"] and len(s.seg.payload) > 1000 else None
    client.send(PAYLOAD[:5000], net.now)
    seg = data_segs(net, B_IP)[0].seg
    quote = seg.src_port.to_bytes(2, "big") + seg.dst_port.to_bytes(2, "big") + seg.seq.to_bytes(4, "big")
    net.b.tcp.icmp_error(A_IP, icmp.Icmp(icmp.DEST_UNREACHABLE, icmp.FRAG_NEEDED, next_hop_mtu=1000), A_IP, quote,
                         net.now)
    assert client.snd_mss == 960
    net.run()
    assert server.recv(10_000, net.now) == PAYLOAD[:5000]


def test_fast_retransmit_on_three_duplicate_acks() -> None:
    net = checked(Net(TcpConfig(rto_min=1.0, rto_initial=1.0)))
    _, server, client = established_pair(net)
    dropped = {"n": 0}

    def drop_second(s: Sent) -> list[float] | None:
        if s.seg.payload and s.src == B_IP:
            dropped["n"] += 1
            if dropped["n"] == 2:
                return []
        return None

    net.tap = drop_second
    t0 = net.now
    client.send(PAYLOAD[:1460 * 8], net.now)
    net.run_until(lambda: len(server.rcvbuf) == 1460 * 8)
    assert net.b.counters["tcp.fast_retransmit"] == 1 and net.b.counters["tcp.timeout"] == 0
    assert net.now - t0 < 0.1  # long before the 1 s RTO
    assert bytes(server.rcvbuf) == PAYLOAD[:1460 * 8]


def test_receive_window_follows_the_application() -> None:
    net = checked(Net(FAST))
    listener = net.a.open()
    listener.set_rcvbuf(10_000, 0.0)
    listener.bind(b"\0\0\0\0", 80)
    listener.listen()
    client = net.b.open()
    client.connect(A_IP, 80, 0.0)
    net.run_until(lambda: bool(listener.accept_queue))
    server = listener.accept()
    assert server is not None
    client.send(PAYLOAD[:30_000], net.now)
    net.run(until=net.now + 0.5)  # the last 1240 bytes wait for the SWS override (persist) timer
    assert len(server.rcvbuf) == 10_000
    # every window offered fits the free space: received-but-unread plus window never exceeds SO_RCVBUF
    for s in net.log:
        if s.src == A_IP and s.seg.flags & ACK and not s.seg.flags & SYN:
            assert s.seg.window <= 10_000
    assert [s.seg.window for s in net.log if s.src == A_IP][-1] == 0
    got = server.recv(100_000, net.now) or b""
    net.run(until=net.now + 0.1)
    assert [s.seg.window for s in net.log if s.src == A_IP][-1] > 0
    while len(got) < 30_000:
        got += server.recv(100_000, net.now) or b""
        net.run(until=net.now + 0.01)
    assert got == PAYLOAD[:30_000]


def test_keepalive_off_by_default_and_probes_when_on() -> None:
    cfg = TcpConfig(rto_min=0.2, rto_initial=0.2, keepalive_time=10.0, keepalive_intvl=1.0, keepalive_probes=3)
    net = checked(Net(cfg))
    _, _server, client = established_pair(net)
    n = len(net.log)
    net.run(until=100.0)
    assert len(net.log) == n  # off: an idle connection is silent
    client.set_keepalive(True, net.now)
    net.run(until=net.now + 10.5)
    probes = [s for s in net.log[n:] if s.src == B_IP]
    assert len(probes) == 1 and probes[0].seg.seq == (client.snd_una - 1) & 0xFFFFFFFF and not probes[0].seg.payload
    assert client.state == "ESTABLISHED"  # the server answered
    net.tap = lambda s: []  # now the server is gone without a word
    net.run_until(lambda: client.state == "CLOSED")
    assert client.error == errno.ETIMEDOUT
    assert net.b.counters["tcp.keepalive_probe"] == 1 + 3  # then keepalive_probes unanswered


def test_send_returns_zero_when_the_buffer_is_full_and_writable_comes_back() -> None:
    from simstack.protocols.transport import Ready

    net = checked(Net(FAST))
    _, server, client = established_pair(net)
    client.set_sndbuf(20_000)
    assert client.send(PAYLOAD[:50_000], net.now) == 20_000
    assert client.send(b"more", net.now) == 0 and not client.writable
    n = len(net.b.marks)
    net.run_until(lambda: any(w & Ready.WRITABLE for _, ep, w in net.b.marks[n:] if ep is client))
    assert client.writable and client.send(b"more", net.now) == 4
    assert server.recv(100_000, net.now) is not None


def test_peek_leaves_the_data() -> None:
    net = checked(Net(FAST))
    _, server, client = established_pair(net)
    client.send(b"peekaboo", net.now)
    net.run()
    assert server.recv(4, net.now, peek=True) == b"peek"
    assert server.recv(100, net.now) == b"peekaboo"
    assert server.recv(100, net.now) is None


def test_data_on_the_syn_ack_and_after_close_wait() -> None:
    """A segment with text in SYN-SENT's SYN-ACK is delivered (RFC 9293 3.10.7.3, "continue at the sixth step")."""
    net = checked(Net(FAST))
    net.tap = lambda s: []
    c = net.b.open()
    c.connect(A_IP, 80, 0.0)
    syn = net.log[0].seg
    net.inject(Tcp(80, c.local_port, 1000, (syn.seq + 1) & 0xFFFFFFFF, SYN | ACK | FIN, 5000, payload=b"early"), A_IP,
               B_IP)
    net.run(until=0.01)
    assert c.state == "CLOSE-WAIT" and c.recv(100, net.now) == b"early" and c.recv(100, net.now) == b""
    ack = net.log[-1].seg
    assert ack.flags == ACK and ack.ack == 1000 + 1 + 5 + 1


@pytest.mark.parametrize("seed", range(8))
def test_random_soak(seed: int) -> None:
    """Random buffers, MTUs, delays, loss up to 25%, duplication, reordering, Nagle on or off, write sizes;
    both directions, then both close. Invariants after every step; everything arrives; nothing is left."""
    rng = random.Random(1000 + seed)
    cfg = TcpConfig(msl=0.5, rto_min=0.2, rto_initial=rng.choice([0.2, 1.0]), retries=30,
                    rcvbuf=rng.choice([2000, 8192, 65535, 131072]), sndbuf=rng.choice([3000, 20000, 131072]),
                    ooo_max_segments=rng.choice([2, 8, 256]))
    net = checked(Net(cfg, seed=seed, delay=rng.choice([0.0001, 0.001, 0.02]), mtu=rng.choice([576, 1500]),
                      mtu_b=rng.choice([576, 1500, 9000])))
    listener, server, client = established_pair(net)
    listener.close(net.now)
    loss, dup, reorder = rng.uniform(0, 0.25), rng.uniform(0, 0.1), rng.uniform(0, 0.3)

    def tap(s: Sent) -> list[float] | None:
        if rng.random() < loss:
            return []
        out = [rng.uniform(0, 0.01)] if rng.random() < reorder else [0.0]
        if rng.random() < dup:
            out.append(rng.uniform(0, 0.01))
        return out

    net.tap = tap
    if rng.random() < 0.5:
        client.set_nodelay(True, net.now)
    up = Pump(net, client, server, PAYLOAD[:rng.randrange(300_000)], chunk=rng.choice([1, 100, 1460, 5000, 65536]))
    down = Pump(net, server, client, PAYLOAD[:rng.randrange(100_000)][::-1], chunk=rng.choice([7, 1460, 65536]))
    net.run_until(lambda: up.done and down.done, limit=5000)
    assert len(up.got) == len(up.data) and len(down.got) == len(down.data)
    net.apps.clear()
    server.close(net.now)
    client.close(net.now)
    net.run()
    assert server.state == client.state == "CLOSED"
    assert not net.a.tcp.conns and not net.b.tcp.conns and not net.a.tcp.ports and not net.b.tcp.ports


def test_zero_window_stays_open_while_answered_but_an_orphan_gives_up() -> None:
    cfg = TcpConfig(rto_min=0.2, rto_initial=0.2, retries=4, rcvbuf=4096)
    net = checked(Net(cfg))
    _, server, client = established_pair(net)
    client.send(PAYLOAD[:50_000], net.now)
    net.run(until=net.now + 300)
    # RFC 1122 4.2.2.17: the receiver answers every probe, so the sender keeps probing (backed off to RTO max)
    assert client.state == "ESTABLISHED" and net.b.counters["tcp.persist_probe"] > cfg.retries
    client.close(net.now)  # the orphan's data can never be delivered: it gives up after the retry limit
    net.run(until=net.now + 1000)
    assert client.state == "CLOSED" and net.b.tcp.conns == {}
    assert server.state == "CLOSED" and server.error == errno.ECONNRESET  # it sent a RST on the way out
