"""``engine/api/aio.py`` on a replay host: wake-ups, endpoints and what is left behind, without root.

The replay host runs the stack in the test's own thread, so a datagram
"arrives" when a callback the event loop scheduled injects it. The live tests
(``tests/live/test_aio.py``) run the same code against the kernel's UDP.
"""

import asyncio
import gc
import weakref

import pytest
from scapy.all import UDP, Ether
from test_sockets import host, inject_udp, sent

from simstack.engine.api import aio
from simstack.engine.scenario.runner import Runner

__all__ = ["host"]  # the fixture, shared with test_sockets


def test_a_waiting_coroutine_wakes_when_a_datagram_arrives(host: Runner) -> None:
    s = host.socket()
    s.bind(("", 5000))
    s.setblocking(False)

    async def main() -> tuple[bytes, tuple[str, int]]:
        asyncio.get_running_loop().call_later(0.01, inject_udp, host, 6000, 5000, b"late")
        return await asyncio.wait_for(aio.sock_recvfrom(s, 100), 2)

    assert asyncio.run(main()) == (b"late", ("10.0.0.2", 6000))


def test_a_datagram_already_waiting_is_returned_at_once(host: Runner) -> None:
    s = host.socket()
    s.bind(("", 5000))
    s.setblocking(False)
    inject_udp(host, 6000, 5000, b"early")
    assert asyncio.run(asyncio.wait_for(aio.sock_recv(s, 100), 0.5)) == b"early"


def test_a_blocking_socket_is_refused_as_asyncio_refuses_it(host: Runner) -> None:
    s = host.socket()
    with pytest.raises(ValueError, match="the socket must be non-blocking"):
        asyncio.run(aio.sock_recv(s, 100))


def test_sockets_once_awaited_are_not_kept_alive(host: Runner) -> None:
    s = host.socket()
    s.bind(("", 5000))
    s.setblocking(False)
    with pytest.raises(TimeoutError):
        asyncio.run(asyncio.wait_for(aio.sock_recv(s, 100), 0.01))
    ref = weakref.ref(s)
    s.close()
    del s
    gc.collect()
    assert ref() is None
    assert len(aio._readiness) == 0


class Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[tuple[bytes, tuple[str, int]]] = []
        self.lost: list[Exception | None] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.append((data, addr))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


def test_an_endpoint_receives_in_batches_and_sends_what_scapy_reads(host: Runner) -> None:
    async def main() -> Collect:
        transport, protocol = await aio.create_datagram_endpoint(host, Collect, local_addr=("0.0.0.0", 5000))
        assert isinstance(protocol, Collect) and transport.get_extra_info("sockname") == ("0.0.0.0", 5000)
        for i in range(aio.BATCH + 10):
            inject_udp(host, 6000, 5000, f"d{i}".encode())
        await asyncio.sleep(0)  # one turn of the loop hands over one batch at most
        assert len(protocol.got) <= aio.BATCH
        for _ in range(5):
            await asyncio.sleep(0)
        transport.sendto(b"answer", ("10.0.0.2", 6000))
        transport.close()
        await asyncio.sleep(0)
        return protocol

    protocol = asyncio.run(main())
    assert [d for d, _ in protocol.got] == [f"d{i}".encode() for i in range(aio.BATCH + 10)]
    assert protocol.lost == [None]
    (frame,) = sent(host)
    pkt = Ether(frame)
    assert (pkt[UDP].sport, pkt[UDP].dport, pkt[UDP].load) == (5000, 6000, b"answer")
