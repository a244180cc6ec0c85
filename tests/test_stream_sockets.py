"""Stream sockets against Python's socket contract, between two simstacks on a simulated segment.

Each check names what Python's own socket does in the same case; the errors
are the standard exception classes with the kernel's errno.
"""

import errno
import random
import socket as pysocket
from typing import Any

import pytest

from simstack.engine.api.sockets import AF_INET, SOCK_STREAM
from simstack.engine.api.stream import StreamSocket
from simstack.engine.scenario.simhost import NetHost
from simstack.engine.wire.network import SimNetwork
from simstack.protocols.stack import Stack, StackConfig
from simstack.protocols.tcp_conn import TcpConfig

TCP = TcpConfig(msl=1.0, rto_min=0.2, rto_initial=0.2, retries=3, syn_retries=2)


def pair(**tcp: float) -> tuple[SimNetwork, NetHost, NetHost]:
    config = TcpConfig(**{**TCP.__dict__, **tcp})
    net = SimNetwork(1)
    a = NetHost(net, net.attach("a", Stack(StackConfig(mac=bytes.fromhex("020000000001"), ip=bytes([10, 0, 0, 1]),
                                                       tcp=config), random.Random(1))))
    b = NetHost(net, net.attach("b", Stack(StackConfig(mac=bytes.fromhex("020000000002"), ip=bytes([10, 0, 0, 2]),
                                                       tcp=config), random.Random(2))))
    return net, a, b


def listening(host: NetHost, port: int = 80) -> StreamSocket:
    s = host.socket(AF_INET, SOCK_STREAM)
    s.bind(("", port))
    s.listen()
    return s


def test_connect_accept_and_bytes_both_ways() -> None:
    _, a, b = pair()
    server = listening(a)
    client = b.socket(AF_INET, SOCK_STREAM)
    client.connect(("10.0.0.1", 80))
    conn, addr = server.accept()
    assert addr == client.getsockname() and conn.getpeername() == client.getsockname()
    assert client.getpeername() == ("10.0.0.1", 80)
    client.sendall(b"hello " * 1000)
    got = b""
    while len(got) < 6000:
        got += conn.recv(4096)
    assert got == b"hello " * 1000
    conn.sendall(b"back")
    assert client.recv(100) == b"back"


def test_peek_leaves_the_data_and_eof_is_empty_bytes() -> None:
    _, a, b = pair()
    server = listening(a)
    client = b.socket(AF_INET, SOCK_STREAM)
    client.connect(("10.0.0.1", 80))
    conn, _ = server.accept()
    client.sendall(b"abc")
    assert conn.recv(10, pysocket.MSG_PEEK) == b"abc"
    assert conn.recv(10) == b"abc"
    client.shutdown(pysocket.SHUT_WR)
    assert conn.recv(10) == b""  # end of stream, as on Linux
    with pytest.raises(BrokenPipeError):
        client.send(b"after shutdown")


def test_connecting_to_a_closed_port_is_refused() -> None:
    _, _a, b = pair()
    client = b.socket(AF_INET, SOCK_STREAM)
    with pytest.raises(ConnectionRefusedError):
        client.connect(("10.0.0.1", 81))
    other = b.socket(AF_INET, SOCK_STREAM)
    assert other.connect_ex(("10.0.0.1", 81)) == errno.ECONNREFUSED


def test_non_blocking_connect_says_einprogress_then_so_error_is_zero() -> None:
    net, a, b = pair()
    listening(a)
    client = b.socket(AF_INET, SOCK_STREAM)
    client.setblocking(False)
    with pytest.raises(BlockingIOError) as e:
        client.connect(("10.0.0.1", 80))
    assert e.value.errno == errno.EINPROGRESS
    net.run_until(lambda: client.writable, net.now + 5)
    assert client.getsockopt(pysocket.SOL_SOCKET, pysocket.SO_ERROR) == 0
    assert client.getpeername() == ("10.0.0.1", 80)
    with pytest.raises(BlockingIOError):
        client.recv(10)


def test_a_connect_nobody_answers_times_out() -> None:
    _, _a, b = pair()
    client = b.socket(AF_INET, SOCK_STREAM)
    client.settimeout(0.5)
    with pytest.raises(TimeoutError):
        client.connect(("10.0.0.9", 80))  # no such host: ARP never answers


def test_accept_and_recv_time_out_and_block_as_set() -> None:
    _, a, b = pair()
    server = listening(a)
    server.settimeout(0.3)
    with pytest.raises(TimeoutError):
        server.accept()
    server.setblocking(False)
    with pytest.raises(BlockingIOError):
        server.accept()
    client = b.socket(AF_INET, SOCK_STREAM)
    client.connect(("10.0.0.1", 80))
    client.settimeout(0.3)
    with pytest.raises(TimeoutError):
        client.recv(10)


def test_the_same_port_twice_is_eaddrinuse_unless_reuseaddr_allows() -> None:
    _, a, _b = pair()
    listening(a, 8080)
    second = a.socket(AF_INET, SOCK_STREAM)
    with pytest.raises(OSError) as e:
        second.bind(("", 8080))
    assert e.value.errno == errno.EADDRINUSE


def test_a_reset_peer_raises_connection_reset() -> None:
    _, a, b = pair()
    server = listening(a)
    client = b.socket(AF_INET, SOCK_STREAM)
    client.connect(("10.0.0.1", 80))
    conn, _ = server.accept()
    client.sendall(b"unread")
    while not conn.readable:
        a.step()
    conn.close()  # closing with unread data sends RST (RFC 9293 3.10.4), as Linux does
    client.settimeout(2)
    with pytest.raises(ConnectionResetError):
        client.recv(10)


def test_options_read_back_and_unknown_ones_are_refused() -> None:
    _, a, _b = pair()
    s = a.socket(AF_INET, SOCK_STREAM)
    s.setsockopt(pysocket.IPPROTO_TCP, pysocket.TCP_NODELAY, 1)
    s.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_KEEPALIVE, 1)
    s.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_RCVBUF, 65536)
    assert s.getsockopt(pysocket.IPPROTO_TCP, pysocket.TCP_NODELAY) == 1
    assert s.getsockopt(pysocket.SOL_SOCKET, pysocket.SO_KEEPALIVE) == 1
    assert s.getsockopt(pysocket.SOL_SOCKET, pysocket.SO_RCVBUF) == 65536
    with pytest.raises(OSError) as e:
        s.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_BROADCAST, 1)
    assert e.value.errno == errno.ENOPROTOOPT
    s.close()
    with pytest.raises(OSError) as e:
        s.recv(1)
    assert e.value.errno == errno.EBADF


def test_time_wait_ends_after_two_msl() -> None:
    net, a, b = pair()
    server = listening(a)
    client = b.socket(AF_INET, SOCK_STREAM)
    client.connect(("10.0.0.1", 80))
    conn, _ = server.accept()
    client.close()  # the active closer ends in TIME-WAIT
    assert conn.recv(1) == b""
    conn.close()

    def states() -> list[str]:
        return sorted(c.state for c in b.stack.tcp.conns.values())

    net.run_until(lambda: states() == ["TIME-WAIT"], net.now + 1)
    assert states() == ["TIME-WAIT"]
    net.advance(net.now + 2 * TCP.msl + 0.01)
    assert states() == [] and not a.stack.tcp.conns


def test_a_stream_socket_binds_to_any_of_the_stacks_interfaces() -> None:
    from simstack.protocols.interface import Interface

    config = StackConfig.of((Interface(bytes.fromhex("020000000001"), bytes([10, 0, 1, 1]), 24),
                             Interface(bytes.fromhex("020000000011"), bytes([10, 0, 2, 1]), 24)))
    stack = Stack(config, random.Random(1))
    second = stack.tcp.open()
    second.bind(bytes([10, 0, 2, 1]), 8080)  # the second interface's address: was EADDRNOTAVAIL
    assert second.local_address == (bytes([10, 0, 2, 1]), 8080)
    with pytest.raises(OSError) as e:
        stack.tcp.open().bind(bytes([10, 0, 3, 1]), 8080)
    assert e.value.errno == errno.EADDRNOTAVAIL


def test_a_non_blocking_recv_with_nothing_there_answers_without_the_host_and_as_the_endpoint_would() -> None:
    """Python's socket: EAGAIN while connected and empty, ENOTCONN never connected, b"" after the FIN; the first
    is answered from the endpoint's readiness alone (stream.py), the others as the endpoint says."""
    net, a, b = pair()
    server = listening(a)
    client = b.socket(AF_INET, SOCK_STREAM)
    client.connect(("10.0.0.1", 80))
    conn, _ = server.accept()
    conn.setblocking(False)
    calls: list[Any] = []
    real = a.call

    def counting(fn: Any) -> Any:
        calls.append(fn)
        return real(fn)

    a.call = counting  # type: ignore[method-assign]
    with pytest.raises(BlockingIOError) as e:
        conn.recv(10)
    assert e.value.errno == errno.EAGAIN and calls == []
    assert conn.recv(0) == b""  # as Python's: an empty read of nothing
    client.sendall(b"abc")
    net.run_until(lambda: conn.readable, net.now + 5)
    assert conn.recv(10) == b"abc"
    client.close()
    net.run_until(lambda: conn.readable, net.now + 5)
    assert conn.recv(10) == b""
    fresh = a.socket(AF_INET, SOCK_STREAM)
    fresh.setblocking(False)
    with pytest.raises(OSError) as never:
        fresh.recv(10)
    assert never.value.errno == errno.ENOTCONN
