"""The bounds on connections a peer can make the stack hold: max_connections and max_tw_buckets."""

import dataclasses
import errno

import pytest
from tcp_harness import A_IP, B_IP, Net

from simstack.protocols.tcp import ACK, OPT_MSS, SYN, Option, Tcp
from simstack.protocols.tcp_conn import ANY, TcpConfig

FAST = TcpConfig(msl=0.5, rto_min=0.2, rto_initial=0.2)


def test_connect_beyond_max_connections_fails_with_enobufs() -> None:
    net = Net(dataclasses.replace(FAST, max_connections=2))
    listener = net.b.open()
    listener.bind(ANY, 80)
    listener.listen(8)
    clients = [net.a.open() for _ in range(3)]
    clients[0].connect(B_IP, 80, net.now)
    clients[1].connect(B_IP, 80, net.now)
    with pytest.raises(OSError) as e:
        clients[2].connect(B_IP, 80, net.now)
    assert e.value.errno == errno.ENOBUFS
    assert clients[2].local_port == 0  # no port was taken for it
    net.run(until=1.0)
    assert [c.state for c in clients[:2]] == ["ESTABLISHED", "ESTABLISHED"]
    clients[0].abort(net.now)
    clients[2].connect(B_IP, 80, net.now)  # a place is free again
    net.run(until=2.0)
    assert clients[2].state == "ESTABLISHED"


def test_syns_beyond_max_connections_are_dropped_and_counted() -> None:
    net = Net(dataclasses.replace(FAST, max_connections=1))
    net.tap = lambda sent: [] if sent.dst == B_IP else None
    listener = net.a.open()
    listener.bind(ANY, 80)
    listener.listen(8)
    for port in (5000, 5001, 5002):
        net.inject(Tcp(port, 80, 1000, 0, SYN, 65535, 0, (Option(OPT_MSS, 1460),)), B_IP, A_IP)
    net.run(until=0.01)
    assert len(net.a.tcp.conns) == 1 and net.a.counters["tcp.drop.conn_table_full"] == 2
    assert [s.seg.flags for s in net.log] == [SYN | ACK]  # one SYN-ACK, nothing for the others


def test_time_wait_beyond_its_bound_is_not_kept() -> None:
    net = Net(dataclasses.replace(FAST, max_tw_buckets=0))
    listener = net.b.open()
    listener.bind(ANY, 80)
    listener.listen(8)
    client = net.a.open()
    client.connect(B_IP, 80, net.now)
    net.run(until=0.5)
    server = listener.accept()
    assert server is not None
    client.close(net.now)  # the client closes first, so it would enter TIME-WAIT
    net.run(until=0.6)
    server.close(net.now)
    net.run(until=0.7)
    assert net.a.counters["tcp.tw_overflow"] == 1 and net.a.counters["tcp.time_wait"] == 0
    assert not net.a.tcp.conns and not net.a.tcp.time_wait
    assert server.state == "CLOSED"  # our last ACK went out before the connection was dropped
