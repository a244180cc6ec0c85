#!/usr/bin/env python3
"""A TCP echo client on simstack: ordinary socket code, with the socket asked of a simstack host.

It sends ``--size`` random bytes from one thread while another reads the
echo back, so the whole transfer is in flight at once and both directions
move together; then it half-closes and checks what came back, byte for
byte, by sha256. Start any TCP echo server on the kernel side first
(``socat`` will do), then run this as root; it creates the TAP, the kernel's
side gets 10.0.0.2::

    socat TCP4-LISTEN:5007,fork,reuseaddr PIPE &
    sudo .venv/bin/python examples/tcp_echo_client.py tap0 --server 10.0.0.2 --size 5000000

Exit 0 when the echo came back unchanged, 1 otherwise. The one line that
differs from a client on the kernel's stack is marked below.
"""

import argparse
import hashlib
import random
import sys
import threading
import time
from socket import AF_INET, SHUT_WR, SOCK_STREAM  # the constants are the standard ones

from simstack.engine.api.stream import StreamSocket
from simstack.engine.app import SetupError, simstack_host


def exchange(sock: StreamSocket, server: tuple[str, int], data: bytes, timeout: float) -> tuple[str, int, float]:
    """Send ``data`` and read the echo to EOF; (sha256 of the echo, its length, seconds)."""
    sock.settimeout(timeout)
    start = time.monotonic()
    sock.connect(server)
    failed: list[BaseException] = []

    def send() -> None:
        try:
            sock.sendall(data)
            sock.shutdown(SHUT_WR)  # our FIN after the last byte: the server closes once it has echoed it
        except OSError as e:
            failed.append(e)

    sender = threading.Thread(target=send)
    sender.start()
    digest = hashlib.sha256()
    n = 0
    while chunk := sock.recv(65536):
        digest.update(chunk)
        n += len(chunk)
    sender.join()
    if failed:
        raise failed[0]
    return digest.hexdigest(), n, time.monotonic() - start


def main() -> int:
    p = argparse.ArgumentParser(description="TCP echo client running on simstack")
    p.add_argument("ifname", nargs="?", default="tap0", help="TAP device, created if missing (default %(default)s)")
    p.add_argument("--ip", default="10.0.0.1/24", help="the stack's address/prefix (default %(default)s)")
    p.add_argument("--host-ip", default="10.0.0.2/24",
                   help="the kernel side's address on a TAP this creates (default %(default)s)")
    p.add_argument("--server", default="10.0.0.2", help="echo server's address (default %(default)s)")
    p.add_argument("--port", type=int, default=5007, help="echo server's port (default %(default)s)")
    p.add_argument("-s", "--size", type=int, default=1_000_000, help="bytes to send (default %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="seed of the random bytes (default %(default)s)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds any one call may wait (default %(default)s)")
    args = p.parse_args()
    data = random.Random(args.seed).randbytes(args.size)
    try:
        with (simstack_host(args.ifname, args.ip, host_ip=args.host_ip) as host,
              host.socket(AF_INET, SOCK_STREAM) as sock):  # was: socket.socket(AF_INET, SOCK_STREAM)
            digest, n, seconds = exchange(sock, (args.server, args.port), data, args.timeout)
    except SetupError as e:
        print(f"tcp_echo_client: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"tcp_echo_client: {type(e).__name__}: {e.strerror or e}", flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    ok = digest == hashlib.sha256(data).hexdigest() and n == len(data)
    print(f"{len(data)} bytes sent, {n} echoed {'intact' if ok else 'CORRUPTED'} in {seconds:.2f} s "
          f"({2 * n / seconds / 1e6:.1f} MB/s both ways); sha256 {digest}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
