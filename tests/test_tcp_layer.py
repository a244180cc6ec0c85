"""The TCP layer's edges: codec glue, demux, one timer per connection, wrap-around, the out-of-order queue."""

import random
from typing import Any

import pytest
from tcp_harness import A_IP, B_IP, FakeStack, Net, Pump, Sent, check_all, established_pair

from simstack.protocols import ipv4, tcp
from simstack.protocols.errors import Malformed
from simstack.protocols.tcp import ACK, FIN, PSH, SYN, Option, Tcp
from simstack.protocols.tcp_conn import TcpConfig, TcpConn, make_tcp
from simstack.protocols.tcp_layer import TcpLayer
from simstack.protocols.transport import Ready

ANY = b"\x00\x00\x00\x00"
FAST = TcpConfig(msl=0.5, rto_min=0.2, rto_initial=0.2)


def test_make_tcp_equals_the_constructor() -> None:
    assert list(Tcp._fields) == ["src_port", "dst_port", "seq", "ack", "flags", "window",
                                                          "urgent", "options", "payload", "data_offset", "checksum"]
    opts = (Option(tcp.OPT_MSS, 1460),)
    fast = make_tcp(1, 2, 3, 4, SYN | ACK, 6, opts, b"data")
    assert fast == Tcp(1, 2, 3, 4, SYN | ACK, 6, 0, opts, b"data") and hash(fast) == hash(Tcp(1, 2, 3, 4, 18, 6, 0, opts,
                                                                                               b"data"))
    assert type(fast) is Tcp and fast.seq == 3 and fast.data_offset is None and fast.checksum is None
    with pytest.raises(AttributeError):
        fast.seq = 9  # type: ignore[misc]


def test_receive_and_output_are_the_only_codec_glue(monkeypatch: pytest.MonkeyPatch) -> None:
    """receive() parses with the pseudo-header addresses and hands over; _output emits and sends with DF."""
    calls: list[Any] = []
    seg = Tcp(40000, 80, 1, 0, SYN, 1000)

    def parse(data: bytes, src: bytes, dst: bytes, verify_checksum: bool = True) -> Tcp:
        calls.append(("parse", data, src, dst))
        if data == b"bad":
            raise Malformed("bad_checksum")
        return seg

    def emit(s: Tcp, src: bytes, dst: bytes) -> bytes:
        calls.append(("emit", s.flags, src, dst))
        return b"wire"

    monkeypatch.setattr(tcp, "parse", parse, raising=False)
    monkeypatch.setattr(tcp, "emit", emit, raising=False)
    stack = FakeStack(A_IP, 1)
    layer = TcpLayer(FAST)
    stack.register(layer)
    layer.receive(ipv4.Ipv4(B_IP, A_IP, 6, b"seg"), b"", False, 0.0)
    assert calls[0] == ("parse", b"seg", B_IP, A_IP)
    assert calls[1] == ("emit", tcp.RST | ACK, A_IP, B_IP)  # no listener: RST
    assert stack.sent_ipv4 == [(B_IP, 6, b"wire", A_IP, True)]
    layer.receive(ipv4.Ipv4(B_IP, A_IP, 6, b"bad"), b"", False, 0.0)
    assert stack.counters["tcp.drop.bad_checksum"] == 1
    layer.receive(ipv4.Ipv4(B_IP, A_IP, 6, b"seg"), b"", True, 0.0)
    assert stack.counters["tcp.drop.broadcast"] == 1 and len(stack.sent_ipv4) == 1


def test_output_without_a_route_is_a_counted_drop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp, "emit", lambda s, src, dst: b"wire", raising=False)
    stack = FakeStack(A_IP, 1)
    layer = TcpLayer(FAST)
    stack.register(layer)
    stack.unreachable.add(B_IP)
    layer._output(Tcp(1, 2), A_IP, B_IP, 0.0)
    assert stack.counters["tcp.drop.output_error"] == 1


def test_one_deadline_per_connection_in_the_heap() -> None:
    net = Net(FAST)
    listener = net.a.open()
    listener.bind(ANY, 80)
    listener.listen(100)
    clients = [net.b.open() for _ in range(30)]
    pumps = []
    for c in clients:
        c.connect(A_IP, 80, net.now)
    net.run_until(lambda: len(listener.accept_queue) == 30)
    for c in clients:
        s = listener.accept()
        assert s is not None
        pumps.append(Pump(net, c, s, bytes(20_000), shutdown=False))
    peak = 0

    def watch(now: float) -> None:
        nonlocal peak
        peak = max(peak, len(net.b.stack.timers), len(net.a.stack.timers))

    net.apps.append(watch)
    net.run_until(lambda: all(len(p.got) == 20_000 for p in pumps))
    assert 0 < peak <= 30  # the keys are the connections: never more than one entry each


def test_transfer_across_the_sequence_wrap(monkeypatch: pytest.MonkeyPatch) -> None:
    net = Net(FAST)
    net.check = lambda: check_all(net)
    near_wrap = iter([0xFFFFFFFF - 5000, 0xFFFFFFFF - 100])
    for h in (net.a, net.b):
        monkeypatch.setattr(h.tcp, "isn", lambda *a: next(near_wrap))
    _, server, client = established_pair(net)
    assert client.iss > 0xFFFF0000 and server.iss > 0xFFFF0000
    rng = random.Random(5)
    net.tap = lambda s: [] if rng.random() < 0.05 else None
    data = bytes(rng.getrandbits(8) for _ in range(100_000))
    up = Pump(net, client, server, data)
    down = Pump(net, server, client, data[::-1])
    net.run_until(lambda: up.done and down.done, limit=100)
    assert client.snd_una < 0x10000000  # it did wrap


def test_a_second_listener_on_an_overlapping_address_is_refused() -> None:
    net = Net(FAST)
    wild = net.a.open()
    wild.reuseaddr = True
    wild.bind(ANY, 80)
    wild.listen()
    with pytest.raises(OSError):
        specific = net.a.open()
        specific.bind(A_IP, 80)
        specific.listen()  # Linux: a second listener on an overlapping address is refused
    assert not net.a.tcp.listeners[80][1:]


def test_readiness_marks_tell_every_change() -> None:
    net = Net(FAST)
    listener, server, client = established_pair(net)
    assert Ready.CONNECTED | Ready.WRITABLE in {w for _, ep, w in net.b.marks if ep is client}
    net.a.marks.clear()
    client.send(b"x", net.now)
    net.run()
    assert [w for _, ep, w in net.a.marks if ep is server] == [Ready.READABLE]
    assert server.poll() == Ready.READABLE | Ready.WRITABLE | Ready.CONNECTED
    server.recv(10, net.now)
    client.shutdown(1, net.now)
    net.run()
    assert any(w & Ready.HUP for _, ep, w in net.a.marks if ep is server)
    assert server.poll() & Ready.READABLE and server.recv(10, net.now) == b""
    assert listener.poll() == Ready(0)


def _conn_receiving(net: Net) -> TcpConn:
    _, server, _ = established_pair(net)
    net.tap = lambda s: []
    return server


def _data(conn: TcpConn, off: int, data: bytes, flags: int = ACK) -> Tcp:
    return Tcp(conn.remote_port, conn.local_port, (conn.rcv_nxt + off) & 0xFFFFFFFF, conn.snd_nxt, flags, 65535,
               payload=data)


def test_out_of_order_queue_trims_overlaps_and_delivers_once() -> None:
    net = Net(FAST)
    conn = _conn_receiving(net)
    base = conn.rcv_nxt
    text = bytes(range(200))
    pieces = [(50, 100), (120, 160), (40, 60), (90, 130), (150, 200), (55, 57)]  # overlapping, out of order
    for lo, hi in pieces:
        conn.segment_arrives(_data(conn, lo, text[lo:hi]), net.now)
        check_all(net)
        seqs = [((s - base) & 0xFFFFFFFF, len(d)) for s, d, _ in conn.ooo]
        ends = [o + n for o, n in seqs]
        assert all(e <= o for e, (o, _) in zip(ends, seqs[1:], strict=False))  # disjoint, ascending
    assert conn.ooo_bytes == 160 and not conn.rcvbuf
    conn.segment_arrives(_data(conn, 0, text[:45]), net.now)
    assert bytes(conn.rcvbuf) == text and conn.ooo == [] and conn.ooo_bytes == 0


def test_out_of_order_fin_waits_for_the_hole() -> None:
    net = Net(FAST)
    conn = _conn_receiving(net)
    conn.segment_arrives(_data(conn, 5, b"world", ACK | FIN), net.now)
    assert conn.state == "ESTABLISHED"
    conn.segment_arrives(_data(conn, 0, b"hello", ACK | PSH), net.now)
    assert conn.state == "CLOSE-WAIT" and bytes(conn.rcvbuf) == b"helloworld"


def test_out_of_order_queue_is_bounded() -> None:
    net = Net(TcpConfig(ooo_max_segments=4))
    conn = _conn_receiving(net)
    for i in range(10):
        conn.segment_arrives(_data(conn, 10 + 20 * i, b"x" * 10), net.now)
    assert len(conn.ooo) == 4 and net.a.counters["tcp.drop.ooo_full"] == 6


def test_data_beyond_the_window_is_trimmed() -> None:
    net = Net(FAST)
    conn = _conn_receiving(net)
    wnd = (conn.rcv_adv - conn.rcv_nxt) & 0xFFFFFFFF
    conn.segment_arrives(_data(conn, wnd - 10, b"y" * 30, ACK | FIN), net.now)
    ((_seq, data, fin),) = conn.ooo
    assert len(data) == 10 and not fin  # the FIN beyond the window went with the tail


@pytest.mark.parametrize("state", ["CLOSING", "LAST-ACK"])
def test_retransmitted_fin_is_acked_in_closing_and_last_ack(state: str) -> None:
    net = Net(FAST)
    _, server, client = established_pair(net)
    net.tap = lambda s: [] if s.src == A_IP and s.seg.flags == ACK else None  # our FIN's ACK keeps getting lost
    if state == "CLOSING":
        client.shutdown(1, net.now)
        server.shutdown(1, net.now)
    else:
        server.shutdown(1, net.now)
        net.run_until(lambda: client.state == "CLOSE-WAIT")
        client.shutdown(1, net.now)
    net.run_until(lambda: client.state == state, limit=net.now + 0.01)
    peer_fin = next(s.seg for s in reversed(net.log) if s.src == A_IP and s.seg.flags & FIN)
    net.tap = lambda s: []
    n = len(net.log)
    net.inject(peer_fin, A_IP, B_IP)
    net.run(until=net.now + 0.005)
    assert client.state == state and [s.seg.flags for s in net.log[n:] if s.src == B_IP] == [ACK]


def test_syn_ack_lost_then_data_first() -> None:
    """The final ACK of the handshake is lost; the client's first data segment completes it."""
    net = Net(FAST)
    listener = net.a.open()
    listener.bind(ANY, 80)
    listener.listen()
    c = net.b.open()
    drop = {"n": 1}

    def lose_final_ack(s: Sent) -> list[float] | None:
        if s.src == B_IP and s.seg.flags == ACK and not s.seg.payload and drop["n"]:
            drop["n"] -= 1
            return []
        return None

    net.tap = lose_final_ack
    c.connect(A_IP, 80, net.now)
    net.run_until(lambda: c.state == "ESTABLISHED")
    c.send(b"GET /", net.now)
    net.run_until(lambda: bool(listener.accept_queue))
    s = listener.accept()
    assert s is not None and s.recv(10, net.now) == b"GET /"


def test_conns_and_ports_are_released() -> None:
    net = Net(FAST)
    for _ in range(3):
        listener, server, client = established_pair(net)
        p = Pump(net, client, server, bytes(5000))
        net.run_until(lambda p=p: p.done)  # type: ignore[misc]
        net.apps.clear()
        server.close(net.now)
        client.close(net.now)
        listener.close(net.now)
        net.run()
        for h in (net.a, net.b):
            assert h.tcp.conns == {} and h.tcp.ports == {} and h.tcp.listeners == {}
            assert len(h.stack.timers) == 0


def test_bulk_in_order_transfer_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """In ESTABLISHED, in-order data and new ACKs never look up the table, nor do send and recv (their rows keep
    the state, so they do their action's work directly); a close does."""
    from simstack.protocols import tcp_conn

    events: list[str] = []

    class Counting(dict):  # type: ignore[type-arg]
        def get(self, key: Any, default: Any = None) -> Any:
            events.append(key[1])
            return super().get(key, default)

    net = Net(FAST)
    _, server, client = established_pair(net)
    monkeypatch.setattr(tcp_conn, "_DISPATCH", Counting(tcp_conn._DISPATCH))
    up = Pump(net, client, server, bytes(300_000), shutdown=False)
    down = Pump(net, server, client, bytes(100_000), shutdown=False)
    net.run_until(lambda: len(up.got) == 300_000 and len(down.got) == 100_000)
    assert events == []
    assert net.a.counters["tcp.rx"] > 200
    client.close(net.now)
    assert events == ["CLOSE"]  # the counting table is the one in use
