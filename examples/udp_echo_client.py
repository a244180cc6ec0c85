#!/usr/bin/env python3
"""A UDP echo client on simstack: ordinary socket code, with the socket asked of a simstack host.

Start any UDP echo server on the kernel side first (``socat`` will do), then
run this as root; it creates the TAP, the kernel's side gets 10.0.0.2::

    socat UDP4-RECVFROM:5007,fork PIPE &
    sudo .venv/bin/python examples/udp_echo_client.py tap0 --server 10.0.0.2 --count 5

Exit 0 when every datagram came back unchanged, 1 otherwise. The one line
that differs from a client on the kernel's stack is marked below.
"""

import argparse
import sys
import time
from socket import AF_INET, SOCK_DGRAM  # the constants are the standard ones

from simstack.engine.app import SetupError, Socket, simstack_host


def ping_pong(sock: Socket, server: tuple[str, int], count: int, size: int, timeout: float) -> int:
    """Send ``count`` datagrams one at a time; return how many came back intact."""
    sock.settimeout(timeout)
    sock.connect(server)  # only the server's replies are received, and ICMP errors are reported
    good = 0
    for seq in range(1, count + 1):
        message = f"echo {seq} ".encode().ljust(size, b".")[:size]
        start = time.monotonic()
        sock.send(message)
        try:
            reply = sock.recv(65535)
        except TimeoutError:
            print(f"seq {seq}: no reply within {timeout:g} s")
            continue
        except ConnectionRefusedError:
            print(f"seq {seq}: connection refused (nothing listens on {server[0]}:{server[1]})")
            continue
        ms = (time.monotonic() - start) * 1000
        verdict = "ok" if reply == message else "CORRUPTED"
        print(f"{len(reply)} bytes from {server[0]}:{server[1]}: seq {seq} time={ms:.2f} ms {verdict}", flush=True)
        good += reply == message
    return good


def main() -> int:
    p = argparse.ArgumentParser(description="UDP echo client running on simstack")
    p.add_argument("ifname", nargs="?", default="tap0", help="TAP device, created if missing (default %(default)s)")
    p.add_argument("--ip", default="10.0.0.1/24", help="the stack's address/prefix (default %(default)s)")
    p.add_argument("--host-ip", default="10.0.0.2/24",
                   help="the kernel side's address on a TAP this creates (default %(default)s)")
    p.add_argument("--server", default="10.0.0.2", help="echo server's address (default %(default)s)")
    p.add_argument("--port", type=int, default=5007, help="echo server's port (default %(default)s)")
    p.add_argument("-c", "--count", type=int, default=5, help="datagrams to send (default %(default)s)")
    p.add_argument("-s", "--size", type=int, default=32, help="bytes per datagram (default %(default)s)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for each reply (default %(default)s)")
    args = p.parse_args()
    try:
        with (simstack_host(args.ifname, args.ip, host_ip=args.host_ip) as host,
              host.socket(AF_INET, SOCK_DGRAM) as sock):  # was: socket.socket(AF_INET, SOCK_DGRAM)
            good = ping_pong(sock, (args.server, args.port), args.count, args.size, args.timeout)
    except SetupError as e:
        print(f"udp_echo_client: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(f"{args.count} sent, {good} echoed intact, {args.count - good} lost or corrupted")
    return 0 if good == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
