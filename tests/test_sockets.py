"""The socket API against Python's own socket module's contract, on a replay host."""

import errno
import socket as pysocket

import pytest
from scapy.all import ARP, IP, UDP, Ether, raw

from simstack.engine.api.sockets import AF_INET, SOCK_DGRAM, Socket
from simstack.engine.scenario.loader import loads
from simstack.engine.scenario.runner import Runner

SCENARIO = """
description: a bare stack for socket tests
hosts:
  peer: {mac: "02:00:00:00:00:02", ip: 10.0.0.2}
steps:
  - expect: nothing
    for: 0
"""
STACK_MAC, PEER_MAC = "aa:bb:cc:dd:ee:ff", "02:00:00:00:00:02"


@pytest.fixture
def host() -> Runner:
    runner = Runner(loads(SCENARIO))
    # Teach the stack the peer's MAC so sends go straight out.
    who_has = Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC) / ARP(op=1, hwsrc=PEER_MAC, psrc="10.0.0.2", pdst="10.0.0.1")
    runner.stack.receive(raw(who_has), 0.0)
    runner.stack.transmit()
    return runner


def inject_udp(host: Runner, sport: int, dport: int, data: bytes) -> None:
    frame = raw(Ether(dst=STACK_MAC, src=PEER_MAC) / IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=sport, dport=dport) / data)
    host.wire.inject(frame)


def sent(host: Runner) -> list[bytes]:
    frames = [f for _, f in host.pending]
    host.pending.clear()
    return frames


def test_sendto_builds_a_datagram_scapy_accepts(host: Runner) -> None:
    with host.socket(AF_INET, SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 4242))
        assert s.sendto(b"hello", ("10.0.0.2", 9000)) == 5
        (frame,) = sent(host)
    pkt = Ether(frame)
    assert pkt[UDP].sport == 4242 and pkt[UDP].dport == 9000 and pkt[UDP].load == b"hello"
    checked = pkt[UDP].chksum
    del pkt[UDP].chksum
    assert Ether(raw(pkt))[UDP].chksum == checked  # scapy recomputes the same checksum


def test_recvfrom_returns_data_and_address_and_truncates(host: Runner) -> None:
    s = host.socket()
    s.bind(("", 5000))
    inject_udp(host, 6000, 5000, b"0123456789")
    assert s.recvfrom(4) == (b"0123", ("10.0.0.2", 6000))  # the rest of a datagram is discarded
    s.setblocking(False)
    with pytest.raises(BlockingIOError):
        s.recv(100)


def test_timeout_moves_virtual_clock(host: Runner) -> None:
    s = host.socket()
    s.bind(("", 5000))
    s.settimeout(1.5)
    assert s.gettimeout() == 1.5
    start = host.now
    with pytest.raises(TimeoutError):
        s.recv(10)
    assert host.now == pytest.approx(start + 1.5)
    assert issubclass(TimeoutError, OSError) and pysocket.timeout is TimeoutError


def test_address_in_use_and_bad_arguments(host: Runner) -> None:
    a, b = host.socket(), host.socket()
    a.bind(("", 7777))
    with pytest.raises(OSError) as e:
        b.bind(("", 7777))
    assert e.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as e2:
        b.bind(("10.9.9.9", 1))
    assert e2.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(OverflowError):
        b.bind(("", 70000))
    with pytest.raises(TypeError):
        b.bind("10.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(OSError) as e3:
        Socket(host, AF_INET, pysocket.SOCK_RAW)
    assert e3.value.errno == errno.ESOCKTNOSUPPORT


def test_ephemeral_port_in_linux_range_and_getpeername(host: Runner) -> None:
    s = host.socket()
    with pytest.raises(OSError) as e:
        s.getpeername()
    assert e.value.errno == errno.ENOTCONN
    s.connect(("10.0.0.2", 53))
    ip, port = s.getsockname()
    # connect() fills in the route's source address, as the kernel does (shown on loopback, never sent).
    with pysocket.socket(pysocket.AF_INET, pysocket.SOCK_DGRAM) as kernel:
        kernel.connect(("127.0.0.1", 53))
        assert kernel.getsockname()[0] == "127.0.0.1"
    assert ip == "10.0.0.1" and 32768 <= port <= 60999
    assert s.getpeername() == ("10.0.0.2", 53)


def test_connected_socket_filters_other_peers(host: Runner) -> None:
    s = host.socket()
    s.bind(("", 5001))
    s.connect(("10.0.0.2", 6001))
    inject_udp(host, 6002, 5001, b"stranger")
    inject_udp(host, 6001, 5001, b"friend")
    assert s.recv(100) == b"friend"
    assert host.stack.counters["udp.drop.not_connected_peer"] == 1


def test_oversized_and_closed(host: Runner) -> None:
    s = host.socket()
    with pytest.raises(OSError) as e:
        s.sendto(b"x" * 65508, ("10.0.0.2", 9))
    assert e.value.errno == errno.EMSGSIZE
    s.close()
    with pytest.raises(OSError) as e2:
        s.send(b"x")
    assert e2.value.errno == errno.EBADF


def test_no_route_off_link(host: Runner) -> None:
    s = host.socket()
    with pytest.raises(OSError) as e:
        s.sendto(b"x", ("192.0.2.1", 9))
    assert e.value.errno == errno.ENETUNREACH


def test_largest_datagram_is_fragmented_and_reassembles_in_scapy(host: Runner) -> None:
    from scapy.all import defragment

    s = host.socket()
    payload = bytes(range(256)) * 255 + bytes(227)  # 65507 bytes
    assert len(payload) == 65507
    s.sendto(payload, ("10.0.0.2", 9000))
    frames = sent(host)
    assert len(frames) == 45 and all(len(f) <= 1514 for f in frames)
    whole = defragment([Ether(f)[IP] for f in frames])
    assert len(whole) == 1
    assert whole[0][UDP].load == payload


def test_receive_queue_is_bounded(host: Runner) -> None:
    s = host.socket()
    s.bind(("", 5002))
    ep = s._endpoint
    for _ in range(ep.MAX_DATAGRAMS + 10):
        inject_udp(host, 1, 5002, b"x")
    assert len(ep.queue) == ep.MAX_DATAGRAMS
    assert host.stack.counters["udp.drop.queue_full"] == 10
