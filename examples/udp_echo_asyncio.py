#!/usr/bin/env python3
"""An asyncio UDP echo client and server on simstack: asyncio code, with the endpoint asked of simstack.

The client keeps every datagram in flight at once and matches replies by
content; the server echoes whatever reaches its port. With a kernel echo
server (``socat`` will do) on the kernel side, run as root; the TAP is
created and the kernel's side gets 10.0.0.2::

    socat UDP4-RECVFROM:5007,fork PIPE &
    sudo .venv/bin/python examples/udp_echo_asyncio.py tap0 --server 10.0.0.2 --count 100

    sudo .venv/bin/python examples/udp_echo_asyncio.py tap0 --serve 5007   # then, on the kernel side:
    echo hello | nc -u -w1 10.0.0.1 5007

The client exits 0 when every datagram came back unchanged, 1 otherwise. The
lines that differ from the same program on the kernel's stack are marked.
"""

import argparse
import asyncio
import sys

from simstack.engine import aio
from simstack.engine.api.sockets import SocketHost
from simstack.engine.app import SetupError, simstack_host


class EchoClient(asyncio.DatagramProtocol):
    def __init__(self, expected: set[bytes]) -> None:
        self.waiting = expected
        self.done = asyncio.get_running_loop().create_future()
        self.refused = False

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.waiting.discard(data)
        if not self.waiting and not self.done.done():
            self.done.set_result(None)

    def error_received(self, exc: Exception) -> None:
        self.refused = isinstance(exc, ConnectionRefusedError)
        if not self.done.done():
            self.done.set_exception(exc)


class EchoServer(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        print(f"{len(data)} bytes from {addr[0]}:{addr[1]}", flush=True)
        self.transport.sendto(data, addr)


async def client(host: SocketHost, server: tuple[str, int], count: int, size: int, timeout: float) -> int:
    messages = [f"echo {seq} ".encode().ljust(size, b".")[:size] for seq in range(1, count + 1)]
    transport, protocol = await aio.create_datagram_endpoint(  # was: loop.create_datagram_endpoint(
        host, lambda: EchoClient(set(messages)), remote_addr=server)
    try:
        for message in messages:
            transport.sendto(message)
        await asyncio.wait_for(protocol.done, timeout)
    except TimeoutError:
        pass
    except ConnectionRefusedError:
        print(f"connection refused (nothing listens on {server[0]}:{server[1]})")
    finally:
        transport.close()
    good = count - len(protocol.waiting)
    print(f"{count} sent, {good} echoed intact, {count - good} lost or corrupted", flush=True)
    return 0 if good == count else 1


async def serve(host: SocketHost, port: int) -> int:
    transport, _ = await aio.create_datagram_endpoint(  # was: loop.create_datagram_endpoint(
        host, EchoServer, local_addr=("0.0.0.0", port))
    print(f"echoing on UDP port {port}", flush=True)
    try:
        await asyncio.Event().wait()  # until Ctrl-C
    finally:
        transport.close()
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description="asyncio UDP echo client or server running on simstack")
    p.add_argument("ifname", nargs="?", default="tap0", help="TAP device, created if missing (default %(default)s)")
    p.add_argument("--ip", default="10.0.0.1/24", help="the stack's address/prefix (default %(default)s)")
    p.add_argument("--host-ip", default="10.0.0.2/24",
                   help="the kernel side's address on a TAP this creates (default %(default)s)")
    p.add_argument("--serve", type=int, metavar="PORT", help="be an echo server on PORT instead of a client")
    p.add_argument("--server", default="10.0.0.2", help="echo server's address (default %(default)s)")
    p.add_argument("--port", type=int, default=5007, help="echo server's port (default %(default)s)")
    p.add_argument("-c", "--count", type=int, default=100, help="datagrams, all in flight at once (default %(default)s)")
    p.add_argument("-s", "--size", type=int, default=32, help="bytes per datagram (default %(default)s)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for every reply (default %(default)s)")
    args = p.parse_args()
    try:
        with simstack_host(args.ifname, args.ip, host_ip=args.host_ip) as host:
            if args.serve is not None:
                return asyncio.run(serve(host, args.serve))
            return asyncio.run(client(host, (args.server, args.port), args.count, args.size, args.timeout))
    except SetupError as e:
        print(f"udp_echo_asyncio: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
