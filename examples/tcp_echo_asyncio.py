#!/usr/bin/env python3
"""An asyncio TCP echo client and server on simstack: asyncio streams code, with the connection asked of simstack.

The client writes ``--size`` random bytes (awaiting ``drain`` between
chunks) while a second task reads the echo, then checks it by sha256; the
server echoes every connection until the client closes. With a kernel echo
server (``socat`` will do) on the kernel side, run as root; the TAP is
created and the kernel's side gets 10.0.0.2::

    socat TCP4-LISTEN:5007,fork,reuseaddr PIPE &
    sudo .venv/bin/python examples/tcp_echo_asyncio.py tap0 --server 10.0.0.2 --size 5000000

    sudo .venv/bin/python examples/tcp_echo_asyncio.py tap0 --serve 5007   # then, on the kernel side:
    nc 10.0.0.1 5007

The client exits 0 when the echo came back unchanged, 1 otherwise. The
lines that differ from the same program on the kernel's stack are marked.
"""

import argparse
import asyncio
import hashlib
import random
import sys
import time

from simstack.engine import aio
from simstack.engine.api.sockets import SocketHost
from simstack.engine.app import SetupError, simstack_host

CHUNK = 65536


async def handle(reader: aio.StreamReader, writer: aio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")
    total = 0
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
            total += len(data)
    except ConnectionError as e:
        print(f"{peer[0]}:{peer[1]}: {e}", flush=True)
    finally:
        writer.close()
        await writer.wait_closed()
    print(f"{peer[0]}:{peer[1]}: echoed {total} bytes", flush=True)


async def serve(host: SocketHost, port: int) -> int:
    server = await aio.start_server(host, handle, "0.0.0.0", port)  # was: asyncio.start_server(handle, ...)
    print(f"echoing TCP on port {port}", flush=True)
    async with server:
        await server.serve_forever()
    return 0


async def client(host: SocketHost, server: tuple[str, int], data: bytes, timeout: float) -> int:
    start = time.monotonic()
    reader, writer = await asyncio.wait_for(  # was: asyncio.open_connection(*server)
        aio.open_connection(host, *server), timeout)

    async def send() -> None:
        for i in range(0, len(data), CHUNK):
            writer.write(data[i:i + CHUNK])
            await writer.drain()
        writer.write_eof()

    async def receive() -> tuple[str, int]:
        digest = hashlib.sha256()
        n = 0
        while chunk := await reader.read(CHUNK):
            digest.update(chunk)
            n += len(chunk)
        return digest.hexdigest(), n

    try:
        _, (digest, n) = await asyncio.wait_for(asyncio.gather(send(), receive()), timeout)
    finally:
        writer.close()
        await writer.wait_closed()
    seconds = time.monotonic() - start
    ok = digest == hashlib.sha256(data).hexdigest() and n == len(data)
    print(f"{len(data)} bytes sent, {n} echoed {'intact' if ok else 'CORRUPTED'} in {seconds:.2f} s "
          f"({2 * n / seconds / 1e6:.1f} MB/s both ways); sha256 {digest}", flush=True)
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description="asyncio TCP echo client or server running on simstack")
    p.add_argument("ifname", nargs="?", default="tap0", help="TAP device, created if missing (default %(default)s)")
    p.add_argument("--ip", default="10.0.0.1/24", help="the stack's address/prefix (default %(default)s)")
    p.add_argument("--host-ip", default="10.0.0.2/24",
                   help="the kernel side's address on a TAP this creates (default %(default)s)")
    p.add_argument("--serve", type=int, metavar="PORT", help="be an echo server on PORT instead of a client")
    p.add_argument("--server", default="10.0.0.2", help="echo server's address (default %(default)s)")
    p.add_argument("--port", type=int, default=5007, help="echo server's port (default %(default)s)")
    p.add_argument("-s", "--size", type=int, default=1_000_000, help="bytes to send (default %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="seed of the random bytes (default %(default)s)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole exchange (default %(default)s)")
    args = p.parse_args()
    try:
        with simstack_host(args.ifname, args.ip, host_ip=args.host_ip) as host:
            if args.serve is not None:
                return asyncio.run(serve(host, args.serve))
            data = random.Random(args.seed).randbytes(args.size)
            return asyncio.run(client(host, (args.server, args.port), data, args.timeout))
    except SetupError as e:
        print(f"tcp_echo_asyncio: {e}", file=sys.stderr)
        return 2
    except (OSError, TimeoutError) as e:
        print(f"tcp_echo_asyncio: {type(e).__name__}: {e}", flush=True)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
