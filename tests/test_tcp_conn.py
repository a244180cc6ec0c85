"""TCP connection life: opening, closing, resets, RFC 5961, TIME-WAIT, ports, over two layers back to back."""

import dataclasses
import errno

import pytest
from tcp_harness import A_IP, B_IP, Net, Pump, Sent, check_all, established_pair

from simstack.protocols import tcp_table
from simstack.protocols.tcp import ACK, FIN, OPT_MSS, RST, SYN, Tcp
from simstack.protocols.tcp_conn import TcpConfig, TcpConn
from simstack.protocols.transport import Ready

ANY = b"\x00\x00\x00\x00"
FAST = TcpConfig(msl=0.5, rto_min=0.2, rto_initial=0.2)


def flags_of(segs: list[Tcp]) -> list[int]:
    return [s.flags & (SYN | ACK | FIN | RST) for s in segs]


def marks(net: Net, conn: TcpConn) -> Ready:
    out = Ready(0)
    for h in (net.a, net.b):
        for _, ep, what in h.marks:
            if ep is conn:
                out |= what
    return out


def net_() -> Net:
    net = Net(FAST)
    net.check = lambda: check_all(net)
    return net


# -- opening ------------------------------------------------------------------------
def test_passive_and_active_open() -> None:
    net = net_()
    listener, server, client = established_pair(net)
    syn, syn_ack, ack = net.log[:3]
    assert (syn.src, syn.seg.flags) == (B_IP, SYN)
    assert syn.seg.option(OPT_MSS) == 1460  # RFC 9293 3.7.1: route MTU less 40
    assert (syn_ack.src, syn_ack.seg.flags) == (A_IP, SYN | ACK) and syn_ack.seg.ack == (syn.seg.seq + 1) & 0xFFFFFFFF
    assert syn_ack.seg.option(OPT_MSS) == 1460
    assert (ack.src, ack.seg.flags, ack.seg.seq, ack.seg.ack) == \
        (B_IP, ACK, (syn.seg.seq + 1) & 0xFFFFFFFF, (syn_ack.seg.seq + 1) & 0xFFFFFFFF)
    assert server.state == client.state == "ESTABLISHED"
    assert server.remote_address == (B_IP, client.local_port) and client.remote_address == (A_IP, 80)
    assert server.local_address == (A_IP, 80) and client.local_address[0] == B_IP
    assert 32768 <= client.local_port <= 60999
    assert Ready.CONNECTED in marks(net, client) and Ready.ACCEPTABLE in marks(net, listener)
    assert listener.accept() is None
    assert net.a.counters["tcp.passive_open"] == 1 and net.b.counters["tcp.active_open"] == 1


def test_isn_is_keyed_hash_plus_4us_clock() -> None:
    """RFC 6528: the same 4-tuple a second later starts 250000 higher; another port, somewhere else."""
    tcp = Net(FAST).a.tcp
    i0 = tcp.isn(A_IP, 80, B_IP, 40000, 10.0)
    assert tcp.isn(A_IP, 80, B_IP, 40000, 11.0) == (i0 + 250_000) & 0xFFFFFFFF
    assert tcp.isn(A_IP, 80, B_IP, 40001, 10.0) != (i0 + 0) & 0xFFFFFFFF
    other = Net(FAST, seed=99).a.tcp  # another secret
    assert other.isn(A_IP, 80, B_IP, 40000, 10.0) != i0


def test_simultaneous_open() -> None:
    net = net_()
    a, b = net.a.open(), net.b.open()
    a.bind(ANY, 5000)
    b.bind(ANY, 6000)
    a.connect(B_IP, 6000, net.now)
    b.connect(A_IP, 5000, net.now)
    net.run_until(lambda: a.state == b.state == "ESTABLISHED")
    assert [s.seg.flags for s in net.log[:4]] == [SYN, SYN, SYN | ACK, SYN | ACK]
    assert net.a.counters["tcp.simultaneous_open"] == 1 == net.b.counters["tcp.simultaneous_open"]
    assert Ready.CONNECTED in marks(net, a) and Ready.CONNECTED in marks(net, b)
    p = Pump(net, a, b, b"x" * 5000)
    net.run_until(lambda: p.done)


def test_syn_to_closed_port_gets_rst_and_econnrefused() -> None:
    net = net_()
    c = net.b.open()
    c.connect(A_IP, 81, net.now)
    net.run()
    syn, rst = net.log
    # RFC 9293 3.10.7.1: no ACK on the SYN, so <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
    assert (rst.seg.flags, rst.seg.seq, rst.seg.ack) == (RST | ACK, 0, (syn.seg.seq + 1) & 0xFFFFFFFF)
    assert c.state == "CLOSED" and c.error == errno.ECONNREFUSED
    assert Ready.ERROR in marks(net, c) and Ready.ERROR in c.poll()
    with pytest.raises(ConnectionRefusedError):
        c.recv(10, net.now)
    assert net.a.counters["tcp.drop.no_connection"] == 1 and net.a.counters["tcp.rst.tx"] == 1
    assert net.b.tcp.conns == {}


def test_ack_to_closed_port_rst_takes_its_seq_from_the_ack() -> None:
    net = net_()
    net.inject(Tcp(1234, 99, 5, 777, ACK, 100), B_IP, A_IP)
    net.run()
    rst = net.log[-1].seg
    assert (rst.flags, rst.seq, rst.src_port, rst.dst_port) == (RST, 777, 99, 1234)
    net.inject(Tcp(1234, 99, 5, 777, RST, 100), B_IP, A_IP)  # never a RST for a RST
    n = len(net.log)
    net.run()
    assert len(net.log) == n


def test_listener_answers_ack_with_rst_and_ignores_rst() -> None:
    net = net_()
    listener = net.a.open()
    listener.bind(ANY, 80)
    listener.listen()
    net.inject(Tcp(1234, 80, 5, 777, ACK, 100), B_IP, A_IP)
    net.inject(Tcp(1234, 80, 5, 0, RST, 100), B_IP, A_IP)
    net.run()
    assert [(s.seg.flags, s.seg.seq) for s in net.log] == [(RST, 777)]
    assert net.a.counters["tcp.drop.ignored"] == 1 and listener.state == "LISTEN"


def test_full_backlog_drops_syns_until_accept() -> None:
    net = Net(dataclasses.replace(FAST, syncookies=0))  # without SYN cookies (tests/test_tcp_cookies.py has them)
    net.check = lambda: check_all(net)
    listener = net.a.open()
    listener.bind(ANY, 80)
    listener.listen(0)  # Linux: room for backlog + 1
    clients = [net.b.open() for _ in range(3)]
    for c in clients:
        c.connect(A_IP, 80, net.now)
    net.run(until=1.0)
    assert [c.state for c in clients].count("ESTABLISHED") == 1
    assert len(listener.accept_queue) == 1
    assert net.a.counters["tcp.drop.accept_queue_full"] + net.a.counters["tcp.drop.syn_backlog_full"] >= 2
    first = listener.accept()
    assert first is not None
    net.run_until(lambda: len(listener.accept_queue) == 1, limit=10)
    assert listener.accept() is not None
    net.run_until(lambda: all(c.state == "ESTABLISHED" for c in clients), limit=20)
    assert net.b.counters["tcp.retransmit"] >= 2  # the dropped SYNs came back on the RTO


def test_listener_close_resets_unaccepted_connections() -> None:
    net = net_()
    listener, _server, client = established_pair(net)
    other = net.b.open()
    other.connect(A_IP, 80, net.now)
    net.run_until(lambda: bool(listener.accept_queue))
    listener.close(net.now)
    net.run()
    assert other.state == "CLOSED" and other.error == errno.ECONNRESET
    assert client.state == "ESTABLISHED"  # accepted: not the listener's any more
    assert net.a.tcp.listeners == {}


# -- closing ------------------------------------------------------------------------------
def test_active_and_passive_close_and_time_wait_expiry() -> None:
    net = net_()
    listener, server, client = established_pair(net)
    listener.close(net.now)
    client.close(net.now)
    net.run_until(lambda: client.state == "FIN-WAIT-2")
    assert server.state == "CLOSE-WAIT"
    assert server.recv(10, net.now) == b""
    assert Ready.HUP in marks(net, server)
    server.close(net.now)
    net.run_until(lambda: client.state == "TIME-WAIT" and server.state == "CLOSED")
    t_wait = net.now - net.delay
    net.run()
    assert client.state == "CLOSED"
    assert net.now == pytest.approx(t_wait + 2 * FAST.msl, abs=0.01)
    assert net.a.tcp.conns == {} and net.b.tcp.conns == {} and net.b.tcp.ports == {} and net.a.tcp.ports == {}
    tail = [(s.src, s.seg.flags & (FIN | ACK)) for s in net.log[-4:]]
    assert tail == [(B_IP, FIN | ACK), (A_IP, ACK), (A_IP, FIN | ACK), (B_IP, ACK)]


def test_simultaneous_close_goes_through_closing() -> None:
    net = net_()
    _, server, client = established_pair(net)
    server.close(net.now)
    client.close(net.now)
    net.run_until(lambda: server.state == client.state == "TIME-WAIT")
    assert net.a.counters["tcp.time_wait"] == net.b.counters["tcp.time_wait"] == 1
    seen: set[str] = set()

    def watch(now: float) -> None:
        seen.update({server.state, client.state})

    net.apps.append(watch)
    net.run()
    assert server.state == client.state == "CLOSED"


def test_closing_state_is_visited() -> None:
    net = net_()
    _, server, client = established_pair(net)
    states: list[str] = []
    net.apps.append(lambda now: states.append(server.state))
    server.close(net.now)
    client.close(net.now)
    net.run()
    assert "CLOSING" in states and states[-1] == "CLOSED"


def test_fin_in_fin_wait_1_with_ack_of_our_fin_goes_to_time_wait() -> None:
    net = net_()
    _, server, client = established_pair(net)
    client.shutdown(1, net.now)
    fin = net.log[-1].seg
    assert fin.flags & FIN and client.state == "FIN-WAIT-1"
    # the server answers FIN and ACK in one segment
    net.queue.clear()
    net.inject(Tcp(80, client.local_port, server.snd_nxt, (fin.seq + 1) & 0xFFFFFFFF, FIN | ACK, 1000), A_IP, B_IP)
    net.run_until(lambda: client.state == "TIME-WAIT")


def test_time_wait_acks_a_retransmitted_fin_and_restarts() -> None:
    net = net_()
    _, server, client = established_pair(net)
    client.close(net.now)
    net.run_until(lambda: client.state == "FIN-WAIT-2")
    server.close(net.now)
    net.run_until(lambda: client.state == "TIME-WAIT")
    fin = net.sent_by(net.a)[-1]
    assert fin.flags & FIN
    net.run(until=net.now + 0.5 * FAST.msl)
    n = len(net.log)
    net.tap = lambda s: [] if s.src == A_IP else None  # (the closed server would answer our ACK with a RST)
    net.inject(fin, A_IP, B_IP)  # the peer did not hear our ACK
    net.run(until=net.now + 0.01)
    assert [s.seg.flags for s in net.log[n:] if s.src == B_IP] == [ACK]
    restarted = net.now
    net.run()
    assert client.state == "CLOSED" and net.now == pytest.approx(restarted + 2 * FAST.msl, abs=0.02)


def test_retransmitted_fin_in_close_wait_is_acked() -> None:
    net = net_()
    _, server, client = established_pair(net)
    client.shutdown(1, net.now)
    net.run_until(lambda: server.state == "CLOSE-WAIT")
    fin = net.sent_by(net.b)[-1]
    n = len(net.log)
    net.inject(fin, B_IP, A_IP)
    net.run()
    assert server.state == "CLOSE-WAIT" and [s.seg.flags for s in net.log[n:]] == [ACK]


def test_half_close_keeps_the_other_direction() -> None:
    net = net_()
    _, server, client = established_pair(net)
    client.shutdown(1, net.now)  # FIN-WAIT: client still reads
    with pytest.raises(BrokenPipeError):
        client.send(b"late", net.now)
    p = Pump(net, server, client, bytes(range(256)) * 400)
    net.run_until(lambda: p.done)
    net.run()
    assert client.state == server.state == "CLOSED"


def test_close_with_unread_data_sends_rst() -> None:
    net = net_()
    _, server, client = established_pair(net)
    client.send(b"unread", net.now)
    net.run()
    assert server.poll() & Ready.READABLE
    server.close(net.now)
    net.run()
    assert net.log[-1].seg.flags & RST and net.log[-1].src == A_IP
    assert net.a.counters["tcp.abort_on_close"] == 1
    assert client.state == "CLOSED" and client.error == errno.ECONNRESET


def test_data_after_close_draws_rst() -> None:
    """RFC 9293 3.10.4 / RFC 1122 4.2.2.13: data for an application that closed is answered with RST."""
    net = net_()
    _, server, client = established_pair(net)
    server.close(net.now)
    net.run_until(lambda: server.state == "FIN-WAIT-2")
    client.send(b"too late", net.now)
    net.run()
    assert server.state == "CLOSED" and client.state == "CLOSED" and client.error == errno.ECONNRESET
    assert net.a.tcp.conns == {}


def test_orphan_in_fin_wait_2_times_out() -> None:
    cfg = TcpConfig(msl=0.5, rto_min=0.2, rto_initial=0.2, fin_timeout=3.0)
    net = Net(cfg)
    _, server, client = established_pair(net)
    server.close(net.now)
    net.run_until(lambda: server.state == "FIN-WAIT-2")
    t0 = net.now
    net.run()
    assert server.state == "CLOSED" and net.now == pytest.approx(t0 + 3.0, abs=0.01)
    assert client.state == "CLOSE-WAIT"


# -- resets in each state -------------------------------------------------------------------
def _rst_for(conn: TcpConn, exact: bool = True) -> Tcp:
    seq = conn.rcv_nxt if exact else (conn.rcv_nxt + 100) & 0xFFFFFFFF
    return Tcp(conn.remote_port, conn.local_port, seq, 0, RST, 0)


@pytest.mark.parametrize("state", ["ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK",
                                   "TIME-WAIT"])
def test_rst_in_each_synchronized_state(state: str) -> None:
    net = net_()
    _, server, client = established_pair(net)
    net.tap = None
    if state == "FIN-WAIT-1":
        net.tap = lambda s: [] if s.src == A_IP else None  # the server never answers
        client.shutdown(1, net.now)
    elif state == "FIN-WAIT-2":
        client.shutdown(1, net.now)
    elif state == "CLOSE-WAIT":
        server.shutdown(1, net.now)
    elif state == "CLOSING":
        net.tap = lambda s: [] if s.src == A_IP and not s.seg.flags & FIN else None  # lose the ACK of our FIN
        client.shutdown(1, net.now)
        server.shutdown(1, net.now)
    elif state == "LAST-ACK":
        server.shutdown(1, net.now)
        net.run_until(lambda: client.state == "CLOSE-WAIT")
        net.tap = lambda s: [] if s.src == A_IP else None
        client.shutdown(1, net.now)
    elif state == "TIME-WAIT":
        client.shutdown(1, net.now)
        net.run_until(lambda: client.state == "FIN-WAIT-2")
        server.shutdown(1, net.now)
    net.run_until(lambda: client.state == state, limit=net.now + 0.1)
    net.tap = lambda s: []  # silence: only the injected RST reaches the client
    # TIME-WAIT's RST only deletes the TCB; in CLOSING and LAST-ACK the socket, still held after
    # shutdown(), learns of the reset as Linux's tcp_reset and FreeBSD's tcp_input tell it
    had_error = state in ("ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK")
    net.inject(_rst_for(client), A_IP, B_IP)
    net.run_until(lambda: client.state == "CLOSED", limit=net.now + 0.01)
    assert client.error == (errno.ECONNRESET if had_error else None)
    assert net.b.tcp.conns == {}


def test_rst_in_syn_sent_needs_an_acceptable_ack() -> None:
    net = net_()
    net.tap = lambda s: []
    c = net.b.open()
    c.connect(A_IP, 80, net.now)
    syn = net.log[0].seg
    net.inject(Tcp(80, c.local_port, 0, 0, RST, 0), A_IP, B_IP)  # no ACK: dropped (RFC 5961 3.2)
    net.inject(Tcp(80, c.local_port, 0, syn.seq, RST | ACK, 0), A_IP, B_IP)  # ACK = ISS: not acceptable
    net.run(until=0.01)
    assert c.state == "SYN-SENT"
    net.inject(Tcp(80, c.local_port, 0, (syn.seq + 1) & 0xFFFFFFFF, RST | ACK, 0), A_IP, B_IP)
    net.run(until=0.02)
    assert c.state == "CLOSED" and c.error == errno.ECONNREFUSED


def test_rst_in_syn_received_returns_quietly() -> None:
    net = net_()
    listener = net.a.open()
    listener.bind(ANY, 80)
    listener.listen()
    net.tap = lambda s: [] if s.src == A_IP else None  # the SYN-ACK is lost
    c = net.b.open()
    c.connect(A_IP, 80, net.now)
    net.run(until=0.01)
    (child,) = listener.children
    assert child.state == "SYN-RECEIVED"
    net.inject(Tcp(c.local_port, 80, child.rcv_nxt, 0, RST, 0), B_IP, A_IP)
    net.run(until=0.02)
    assert child.state == "CLOSED" and child.error is None and listener.children == set()
    assert listener.state == "LISTEN" and not listener.accept_queue and len(net.a.tcp.conns) == 0


def test_duplicate_syn_in_syn_received_resends_syn_ack() -> None:
    net = Net(TcpConfig(rto_initial=1.0, rto_min=0.2), config_b=FAST)  # the server's own timer is slower
    listener = net.a.open()
    listener.bind(ANY, 80)
    listener.listen()
    drops = {"n": 1}

    def lose_first_syn_ack(s: Sent) -> list[float] | None:
        if s.seg.flags == SYN | ACK and drops["n"]:
            drops["n"] -= 1
            return []
        return None

    net.tap = lose_first_syn_ack
    c = net.b.open()
    c.connect(A_IP, 80, net.now)
    net.run_until(lambda: c.state == "ESTABLISHED")
    # the client's SYN came again on its RTO and drew the SYN-ACK at once, before the server's own timer
    assert net.a.counters["tcp.retransmit"] == 1 and net.now == pytest.approx(0.2 + 0.002)


# -- RFC 5961 ---------------------------------------------------------------------------------
def test_in_window_rst_draws_a_challenge_ack() -> None:
    net = net_()
    _, server, client = established_pair(net)
    n = len(net.log)
    net.inject(_rst_for(client, exact=False), A_IP, B_IP)
    net.run()
    assert client.state == "ESTABLISHED"
    ack = net.log[n].seg
    assert (net.log[n].src, ack.flags, ack.seq, ack.ack) == (B_IP, ACK, client.snd_nxt, client.rcv_nxt)
    assert net.b.counters["tcp.challenge_ack"] == 1
    # the challenge ACK is exactly what the real peer needs to send an exact RST; it does not, it is alive
    assert server.state == "ESTABLISHED"


def test_rst_outside_the_window_is_dropped_silently() -> None:
    net = net_()
    _, _server, client = established_pair(net)
    n = len(net.log)
    net.inject(Tcp(80, client.local_port, (client.rcv_nxt + 200_000) & 0xFFFFFFFF, 0, RST, 0), A_IP, B_IP)
    net.run()
    assert client.state == "ESTABLISHED" and len(net.log) == n
    assert net.b.counters["tcp.drop.rst_out_of_window"] == 1


def test_syn_in_established_draws_a_challenge_ack() -> None:
    net = net_()
    _, _server, client = established_pair(net)
    n = len(net.log)
    net.inject(Tcp(80, client.local_port, (client.rcv_nxt + 10) & 0xFFFFFFFF, 0, SYN, 1000), A_IP, B_IP)
    net.run()
    assert client.state == "ESTABLISHED" and [s.seg.flags for s in net.log[n:]] == [ACK]
    assert net.b.counters["tcp.challenge_ack"] == 1


def test_challenge_acks_are_rate_limited() -> None:
    net = Net(TcpConfig(msl=0.5, rto_min=0.2, rto_initial=0.2, challenge_ack_limit=3))
    _, _server, client = established_pair(net)
    for i in range(10):
        net.inject(Tcp(80, client.local_port, (client.rcv_nxt + 10 + i) & 0xFFFFFFFF, 0, RST, 0), A_IP, B_IP)
    net.run()
    assert net.b.counters["tcp.challenge_ack"] == 3 and net.b.counters["tcp.drop.challenge_ack_limit"] == 7
    net.run(until=net.now + 1.0)  # a second later the bucket has refilled
    net.inject(Tcp(80, client.local_port, (client.rcv_nxt + 10) & 0xFFFFFFFF, 0, RST, 0), A_IP, B_IP)
    net.run()
    assert net.b.counters["tcp.challenge_ack"] == 4


def test_rfc793_mode_resets_on_in_window_rst_and_syn() -> None:
    cfg = TcpConfig(msl=0.5, rto_min=0.2, rto_initial=0.2, rfc5961=False)
    net = Net(cfg)
    _, _server, client = established_pair(net)
    net.inject(_rst_for(client, exact=False), A_IP, B_IP)
    net.run()
    assert client.state == "CLOSED" and client.error == errno.ECONNRESET
    net = Net(cfg)
    _, _server, client = established_pair(net)
    net.inject(Tcp(80, client.local_port, (client.rcv_nxt + 10) & 0xFFFFFFFF, 0, SYN, 1000), A_IP, B_IP)
    net.run()
    assert client.state == "CLOSED" and client.error == errno.ECONNRESET
    assert net.log[-2].seg.flags & RST or net.log[-1].seg.flags & RST


def test_ack_of_unsent_data_is_answered_with_an_ack() -> None:
    net = net_()
    _, _server, client = established_pair(net)
    n = len(net.log)
    net.inject(Tcp(80, client.local_port, client.rcv_nxt, (client.snd_max + 1000) & 0xFFFFFFFF, ACK, 1000), A_IP, B_IP)
    net.run()
    assert [s.seg.flags for s in net.log[n:]] == [ACK] and client.snd_una == client.snd_max
    assert net.b.counters["tcp.drop.bad_ack"] == 1


# -- TIME-WAIT, ports ------------------------------------------------------------------------
def test_time_wait_holds_the_port_until_expiry_or_reuseaddr() -> None:
    net = net_()
    listener, server, client = established_pair(net)
    listener.close(net.now)
    server.close(net.now)  # the server closes first: TIME-WAIT is on its side
    net.run_until(lambda: client.state == "CLOSE-WAIT")
    client.close(net.now)
    net.run_until(lambda: server.state == "TIME-WAIT")
    again = net.a.open()
    with pytest.raises(OSError) as e:
        again.bind(ANY, 80)
    assert e.value.errno == errno.EADDRINUSE
    net.run()
    again.bind(ANY, 80)  # after 2*MSL it is free


def test_reuseaddr_binds_over_time_wait_but_not_over_a_listener() -> None:
    net = net_()
    listener = net.a.open()
    listener.reuseaddr = True
    listener.bind(ANY, 80)
    listener.listen()
    c = net.b.open()
    c.connect(A_IP, 80, net.now)
    net.run_until(lambda: bool(listener.accept_queue))
    server = listener.accept()
    assert server is not None
    other = net.a.open()
    other.reuseaddr = True
    with pytest.raises(OSError):
        other.bind(ANY, 80)  # a listener holds it
    listener.close(net.now)
    server.close(net.now)
    c.close(net.now)
    net.run_until(lambda: server.state == "TIME-WAIT")
    other.bind(ANY, 80)
    other.listen()
    assert other.state == "LISTEN"


def test_time_wait_is_reopened_by_a_new_syn() -> None:
    """RFC 1122 4.2.2.13: a SYN above the old RCV.NXT may start a new connection from TIME-WAIT."""
    net = Net(TcpConfig(msl=30.0, rto_min=0.2, rto_initial=0.2))
    _, server, client = established_pair(net)
    port = client.local_port
    server.close(net.now)
    net.run_until(lambda: client.state == "CLOSE-WAIT")
    client.close(net.now)
    net.run_until(lambda: server.state == "TIME-WAIT" and client.state == "CLOSED")
    again = net.b.open()
    again.bind(ANY, port)  # the client side is CLOSED: its port is free
    net.run(until=net.now + 0.1)  # the ISN clock moves 25000 past the old sequence numbers
    again.connect(A_IP, 80, net.now)
    net.run_until(lambda: again.state == "ESTABLISHED")
    assert server.state == "CLOSED" and net.a.counters["tcp.time_wait_reopen"] == 1
    assert net.now < 1.0


def test_bind_errors() -> None:
    net = net_()
    a = net.a.open()
    a.bind(ANY, 80)
    with pytest.raises(OSError) as e:
        a.bind(ANY, 81)
    assert e.value.errno == errno.EINVAL
    b = net.a.open()
    with pytest.raises(OSError) as e:
        b.bind(A_IP, 80)
    assert e.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as e:
        b.bind(B_IP, 80)
    assert e.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(OverflowError):
        b.bind(ANY, 70000)
    b.bind(ANY, 0)
    assert 32768 <= b.local_port <= 60999
    a.close(net.now)
    c = net.a.open()
    c.bind(ANY, 80)


def test_ephemeral_ports_differ_per_connection_and_come_back() -> None:
    net = net_()
    listener = net.a.open()
    listener.bind(ANY, 80)
    listener.listen(100)
    clients = [net.b.open() for _ in range(20)]
    for c in clients:
        c.connect(A_IP, 80, net.now)
    ports = {c.local_port for c in clients}
    assert len(ports) == 20
    net.run_until(lambda: len(listener.accept_queue) == 20)


def test_connect_and_send_errors() -> None:
    net = net_()
    c = net.b.open()
    with pytest.raises(BrokenPipeError):
        c.send(b"x", net.now)
    with pytest.raises(OSError) as e:
        c.recv(1, net.now)
    assert e.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as e:
        c.shutdown(1, net.now)
    assert e.value.errno == errno.ENOTCONN
    net.b.stack.unreachable.add(bytes([192, 0, 2, 1]))
    with pytest.raises(OSError) as e:
        c.connect(bytes([192, 0, 2, 1]), 80, net.now)
    assert e.value.errno == errno.ENETUNREACH
    c.connect(A_IP, 80, net.now)
    with pytest.raises(OSError) as e:
        c.connect(A_IP, 80, net.now)
    assert e.value.errno == errno.EALREADY
    assert c.send(b"early", net.now) == 5  # queued in SYN-SENT (RFC 9293 3.10.2)
    c.close(net.now)
    with pytest.raises(OSError) as e:
        c.send(b"x", net.now)
    assert e.value.errno == errno.EBADF


def test_reset_reported_once_then_eof_and_epipe() -> None:
    net = net_()
    _, server, client = established_pair(net)
    server.send(b"before the reset", net.now)
    net.run()
    server.abort(net.now)
    net.run()
    assert client.state == "CLOSED"
    assert client.recv(100, net.now) == b"before the reset"  # data first, as Linux
    with pytest.raises(ConnectionResetError):
        client.recv(100, net.now)
    assert client.recv(100, net.now) == b""
    with pytest.raises(BrokenPipeError):
        client.send(b"x", net.now)


def test_icmp_port_unreachable_refuses_a_connect() -> None:
    from simstack.protocols import icmp

    net = net_()
    net.tap = lambda s: []
    c = net.b.open()
    c.connect(A_IP, 80, net.now)
    syn = net.log[0].seg
    quote = syn.src_port.to_bytes(2, "big") + syn.dst_port.to_bytes(2, "big") + syn.seq.to_bytes(4, "big")
    net.b.tcp.icmp_error(A_IP, icmp.Icmp(icmp.DEST_UNREACHABLE, icmp.PORT_UNREACHABLE), A_IP, quote, net.now)
    assert c.state == "CLOSED" and c.error == errno.ECONNREFUSED
    # a quote with a sequence number not in flight is ignored (RFC 5927)
    d = net.b.open()
    d.connect(A_IP, 80, net.now)
    bad = quote[:4] + (syn.seq ^ 0x5555).to_bytes(4, "big")
    bad = d.local_port.to_bytes(2, "big") + bad[2:]
    net.b.tcp.icmp_error(A_IP, icmp.Icmp(icmp.DEST_UNREACHABLE, icmp.PORT_UNREACHABLE), A_IP, bad, net.now)
    assert d.state == "SYN-SENT" and net.b.counters["tcp.drop.icmp_out_of_window"] == 1


def test_unknown_state_event_pairs_are_counted_not_crashing() -> None:
    net = net_()
    _, _server, client = established_pair(net)
    assert client._fire(tcp_table.OPEN_PASSIVE, None, net.now) is False
    assert net.b.counters["tcp.drop.no_transition"] == 1 and client.state == "ESTABLISHED"


def test_syn_to_time_wait_without_listener_keeps_time_wait() -> None:
    """Linux: with nobody listening, a new SYN to a TIME-WAIT only draws an ACK (here a challenge ACK)."""
    net = Net(TcpConfig(msl=30.0, rto_min=0.2, rto_initial=0.2))
    _, server, client = established_pair(net)
    client.close(net.now)  # the client closes first: TIME-WAIT on its ephemeral port
    net.run_until(lambda: server.state == "CLOSE-WAIT")
    server.close(net.now)
    net.run_until(lambda: client.state == "TIME-WAIT" and server.state == "CLOSED")
    n = len(net.log)
    net.tap = lambda s: [] if s.src == A_IP else None  # (the closed server would answer the ACK with a RST)
    syn = Tcp(80, client.local_port, (client.rcv_nxt + 100_000) & 0xFFFFFFFF, 0, SYN, 1000)
    net.inject(syn, A_IP, B_IP)
    net.run(until=net.now + 0.01)
    assert client.state == "TIME-WAIT" and [s.seg.flags for s in net.log[n:] if s.src == B_IP] == [ACK]


def test_fin_in_syn_received_with_the_handshake_ack() -> None:
    """The handshake's last ACK is lost and the client closes at once: its FIN (with ACK) completes the
    handshake and closes the peer's side in one segment (SYN-RECEIVED -> ESTABLISHED -> CLOSE-WAIT)."""
    net = net_()
    listener = net.a.open()
    listener.bind(ANY, 80)
    listener.listen()
    c = net.b.open()
    drop = {"n": 1}

    def lose_final_ack(s: Sent) -> list[float] | None:
        if s.seg.flags == ACK and s.src == B_IP and drop["n"]:
            drop["n"] -= 1
            return []
        return None

    net.tap = lose_final_ack
    c.connect(A_IP, 80, net.now)
    net.run_until(lambda: c.state == "ESTABLISHED")
    (child,) = listener.children
    assert child.state == "SYN-RECEIVED"
    c.close(net.now)
    net.run_until(lambda: bool(listener.accept_queue))
    server = listener.accept()
    assert server is not None and server.state == "CLOSE-WAIT" and server.recv(10, net.now) == b""
