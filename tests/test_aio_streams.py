"""asyncio streams on simstack (``aio.open_connection``, ``aio.start_server``) on a replay, without root.

Two simstacks share one simulated segment and one virtual clock; the event
loop is ``aio.run_virtual``'s, so waits cost no real time. The reading
methods are checked against asyncio's own ``StreamReader`` fed the same
bytes: the same calls must give the same results and the same exceptions.
"""

import asyncio
import hashlib
import random
from typing import Any

import pytest

from simstack.engine.api import aio
from simstack.engine.scenario.simhost import NetHost
from simstack.engine.wire.impair import Impairment
from simstack.engine.wire.network import SimNetwork
from simstack.protocols.stack import Stack, StackConfig

A_IP, B_IP = "10.0.0.1", "10.0.0.2"


def hosts(impair: str = "", seed: int = 1) -> tuple[NetHost, NetHost]:
    net = SimNetwork(seed)
    spec = Impairment.parse(impair) if impair else None
    a = NetHost(net, net.attach("a", Stack(StackConfig(mac=bytes.fromhex("020000000001"), ip=bytes([10, 0, 0, 1])),
                                           random.Random(seed)), spec))
    b = NetHost(net, net.attach("b", Stack(StackConfig(mac=bytes.fromhex("020000000002"), ip=bytes([10, 0, 0, 2])),
                                           random.Random(seed + 1)), spec))
    return a, b


async def echo_handler(reader: aio.StreamReader, writer: aio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize("impair", ["", "loss=3%,reorder=5%,duplicate=1%,delay=1ms"])
def test_an_echo_server_and_client_move_a_megabyte_intact(impair: str) -> None:
    a, b = hosts(impair)
    data = random.Random(2).randbytes(1_000_000)

    async def main() -> tuple[bytes, Any, Any]:
        server = await aio.start_server(a, echo_handler, A_IP, 7007)
        reader, writer = await aio.open_connection(b, A_IP, 7007)

        async def send() -> None:
            for i in range(0, len(data), 10_000):
                writer.write(data[i:i + 10_000])
                await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        got = await reader.read()  # everything until the server's FIN
        await sender
        peer, sockname = writer.get_extra_info("peername"), writer.get_extra_info("sockname")
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return got, peer, sockname

    got, peer, sockname = aio.run_virtual(a, main())
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert peer == (A_IP, 7007) and sockname[0] == B_IP
    assert not a.stack.tcp.listeners


def test_drain_waits_while_the_peer_does_not_read() -> None:
    a, b = hosts()
    accepted: asyncio.Queue[tuple[aio.StreamReader, aio.StreamWriter]] = asyncio.Queue()
    events: list[str] = []

    async def main() -> int:
        async def handler(r: aio.StreamReader, w: aio.StreamWriter) -> None:
            await accepted.put((r, w))

        server = await aio.start_server(a, handler, A_IP, 7008)
        _reader, writer = await aio.open_connection(b, A_IP, 7008)
        r, w = await accepted.get()
        loop = asyncio.get_running_loop()
        writer.write(bytes(2_000_000))
        assert writer.get_write_buffer_size() > aio.HIGH_WATER
        drained = asyncio.create_task(writer.drain())
        await asyncio.sleep(5)  # virtual seconds: the peer reads nothing, the windows close
        events.append(f"drained after 5 s: {drained.done()}")
        started = loop.time()
        total = len(await r.readexactly(2_000_000))
        await drained
        events.append(f"drained {loop.time() - started < 5}")
        writer.close()
        w.close()
        server.close()
        return total

    assert aio.run_virtual(a, main()) == 2_000_000
    assert events == ["drained after 5 s: False", "drained True"]


def test_a_refused_connection_raises_connection_refused_error() -> None:
    a, b = hosts()

    async def main() -> None:
        await aio.open_connection(b, A_IP, 4444)

    with pytest.raises(ConnectionRefusedError):
        aio.run_virtual(a, main())
    assert not b.stack.tcp.conns


def test_many_clients_at_once_and_async_with_server() -> None:
    a, b = hosts()

    async def client(i: int) -> bool:
        reader, writer = await aio.open_connection(b, A_IP, 7009)
        msg = f"line {i}\n".encode() * 100
        writer.write(msg)
        await writer.drain()
        got = b"".join([await reader.readline() for _ in range(100)])
        writer.close()
        await writer.wait_closed()
        return got == msg

    async def main() -> list[bool]:
        async with await aio.start_server(a, echo_handler, A_IP, 7009) as server:
            assert server.is_serving() and server.sockets[0].getsockname() == (A_IP, 7009)
            return list(await asyncio.gather(*(client(i) for i in range(30))))

    assert aio.run_virtual(a, main()) == [True] * 30
    assert not a.stack.tcp.listeners


def test_writing_after_the_peer_closed_draws_a_reset_that_drain_raises() -> None:
    a, b = hosts()

    async def handler(r: aio.StreamReader, w: aio.StreamWriter) -> None:
        w.close()

    async def main() -> list[str]:
        server = await aio.start_server(a, handler, A_IP, 7010)
        reader, writer = await aio.open_connection(b, A_IP, 7010)
        seen = [f"eof {await reader.read()!r}"]
        writer.write(b"to nobody")  # the server's socket is closed: its stack answers with RST
        await asyncio.sleep(1)
        for _ in range(2):
            try:
                writer.write(b"again")
                await writer.drain()
            except ConnectionResetError as e:
                seen.append(f"drain: {type(e).__name__}")
            else:
                seen.append("drain: no error")
        writer.close()
        await writer.wait_closed()
        server.close()
        return seen

    assert aio.run_virtual(a, main()) == ["eof b''", "drain: ConnectionResetError", "drain: ConnectionResetError"]


def test_connection_timeout_with_wait_for_closes_the_socket() -> None:
    _a, b = hosts(impair="loss=100%")

    async def main() -> None:
        await asyncio.wait_for(aio.open_connection(b, A_IP, 7), 3)

    with pytest.raises(TimeoutError):
        aio.run_virtual(b, main())
    assert not b.stack.tcp.conns  # the cancelled attempt was closed


# -- the reading methods against asyncio's own StreamReader -------------------------------------------
SCRIPTS: list[tuple[bytes, list[tuple[str, Any]]]] = [
    (b"one\ntwo\nthree", [("readline", None), ("readline", None), ("readline", None), ("readline", None),
                          ("at_eof", None)]),
    (b"abcdefgh", [("read", 3), ("readexactly", 2), ("readexactly", 10), ("at_eof", None)]),
    (b"abc--def--gh", [("readuntil", b"--"), ("readuntil", b"--"), ("readuntil", b"--"), ("read", -1)]),
    (b"x" * 300 + b"\nrest", [("readline", None), ("read", 2), ("read", -1), ("read", 5), ("at_eof", None)]),
    (b"y" * 300, [("readuntil", b"\n"), ("read", -1)]),
    (b"z" * 300 + b"\nok\n", [("readuntil", b"\n"), ("readline", None)]),
    (b"", [("read", 10), ("readline", None), ("at_eof", None), ("readexactly", 0), ("read", 0)]),
    (b"a\nb\n", [("iterate", None)]),
]


async def run_script(reader: Any, ops: list[tuple[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for name, arg in ops:
        try:
            if name == "at_eof":
                out.append(reader.at_eof())
            elif name == "iterate":
                out.append([line async for line in reader])
            elif arg is None:
                out.append(await getattr(reader, name)())
            else:
                out.append(await getattr(reader, name)(arg))
        except asyncio.IncompleteReadError as e:
            out.append(("IncompleteReadError", e.partial, e.expected))
        except asyncio.LimitOverrunError as e:
            out.append(("LimitOverrunError", e.consumed))
        except ValueError as e:
            out.append(("ValueError", str(e)))
    return out


@pytest.mark.parametrize(("data", "ops"), SCRIPTS)
def test_reading_methods_behave_as_asyncios_own(data: bytes, ops: list[tuple[str, Any]]) -> None:
    limit = 128

    async def asyncio_side() -> list[Any]:
        r = asyncio.StreamReader(limit=limit)
        for i in range(0, len(data), 50):
            r.feed_data(data[i:i + 50])
        r.feed_eof()
        return await run_script(r, ops)

    expected = asyncio.run(asyncio_side())
    a, b = hosts()

    async def simstack_side() -> list[Any]:
        async def handler(r: aio.StreamReader, w: aio.StreamWriter) -> None:
            for i in range(0, len(data), 50):
                w.write(data[i:i + 50])
                await w.drain()
            w.close()

        server = await aio.start_server(a, handler, A_IP, 7011)
        reader, writer = await aio.open_connection(b, A_IP, 7011, limit=limit)
        await asyncio.sleep(1)  # everything has arrived: asyncio's reader was fed it all up front
        out = await run_script(reader, ops)
        writer.close()
        server.close()
        return out

    assert aio.run_virtual(a, simstack_side()) == expected
