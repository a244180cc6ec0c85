"""What an idle TCP connection costs in memory (issue "Fast TCP", item 7): 10,000 of them in at most 60 MB.

The live figure (bench/tcp_connections.py) is a resident set, which moves
with the allocator's arenas and the machine; this test counts what Python
allocates instead, with ``tracemalloc``, which repeats byte for byte: two
simstacks on a ``SimNetwork``, one serving echo as the live stack does, the
other opening connections to it and leaving them idle. The figure is for a
connection with both its ends (a TcpConn each, the server's socket and
handler, the client's socket, their entries in every table), over the same
number of connections opened and closed first, so that the tables have grown
already and their growth is not charged to the ones measured.

An endpoint that is no listener used to carry an empty accept queue (a deque,
624 bytes) and an empty set of children (216 bytes), and every connection an
out-of-order list and a SACK list it rarely needs, and an accepted connection
its own copies of both addresses: 5.9 KB a pair, now 3.7 KB.
"""

import gc
import random
import tracemalloc

from simstack.engine.api.services import TcpEcho
from simstack.engine.api.sockets import AF_INET, SOCK_STREAM
from simstack.engine.api.stream import StreamSocket
from simstack.engine.scenario.simhost import NetHost
from simstack.engine.wire.network import SimNetwork
from simstack.protocols.stack import Stack, StackConfig
from simstack.protocols.tcp_conn import ESTABLISHED, TcpConn

BOUND = 4200  # bytes a connection, both ends: 3,699 measured (main with this branch), 5,949 on main without it


def hosts() -> tuple[SimNetwork, NetHost, NetHost]:
    net = SimNetwork(1)
    a = NetHost(net, net.attach("a", Stack(StackConfig(mac=bytes.fromhex("020000000001"), ip=bytes([10, 0, 0, 1])),
                                           random.Random(1))))
    b = NetHost(net, net.attach("b", Stack(StackConfig(mac=bytes.fromhex("020000000002"), ip=bytes([10, 0, 0, 2])),
                                           random.Random(2))))
    TcpEcho().start(a)
    return net, a, b


def open_idle(net: SimNetwork, b: NetHost, count: int) -> list[StreamSocket]:
    """``count`` connections to the echo port, a hundred at a time (the listener's backlog is 128)."""
    socks = []
    for i in range(count):
        s = b.socket(AF_INET, SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex(("10.0.0.1", 7))
        socks.append(s)
        if i % 100 == 99:
            net.advance(net.now + 0.05)
    net.advance(net.now + 2.0)  # and past the handshake's retransmission deadlines, whose heap entries then go
    return socks


def established(stack: Stack) -> list[TcpConn]:
    return [c for c in stack.tcp.conns.values() if c.state == ESTABLISHED]


def bytes_per_connection(count: int) -> float:
    net, a, b = hosts()
    warm = open_idle(net, b, count)
    for s in warm:
        s.close()
    net.advance(net.now + 130)  # past TIME-WAIT (2 MSL): the tables are empty again, at their grown size
    assert not a.stack.tcp.conns and not b.stack.tcp.conns
    del warm
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        socks = open_idle(net, b, count)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert len(established(a.stack)) == len(established(b.stack)) == count
    assert len(socks) == count
    return sum(stat.size_diff for stat in after.compare_to(before, "filename")) / count


def test_an_idle_connection_costs_less_than_the_bound() -> None:
    per = bytes_per_connection(500)
    assert per <= BOUND, f"{per:.0f} bytes a connection (both ends), bound {BOUND}"


def test_endpoints_that_do_not_listen_share_their_empty_listener_containers() -> None:
    net, a, b = hosts()
    socks = open_idle(net, b, 3)
    conns = [*established(a.stack), *established(b.stack)]
    assert len(conns) == 6 and len(socks) == 3
    assert len({id(c.accept_queue) for c in conns}) == 1 and len({id(c.children) for c in conns}) == 1
    listener = a.stack.tcp.listeners[7][0]
    assert listener.accept_queue is not conns[0].accept_queue and listener.children is not conns[0].children
    # and nothing was ever put in the shared ones
    assert not conns[0].accept_queue and not conns[0].children and not conns[0].ooo and not conns[0].sack_blocks
    # accepted connections share one copy of each address, whichever datagram brought it
    accepted = established(a.stack)
    assert len({id(c.remote_ip) for c in accepted}) == 1 and len({id(c.local_ip) for c in accepted}) == 1
