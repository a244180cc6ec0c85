#!/usr/bin/env python3
"""A UDP echo server on simstack: ordinary socket code, with the socket asked of a simstack host.

Run it as root (it creates the TAP and gives the kernel's side 10.0.0.2), then
talk to it from the kernel::

    sudo .venv/bin/python examples/udp_echo_server.py tap0 --port 5007
    echo hello | nc -u -w1 10.0.0.1 5007

Ctrl-C stops it and removes the TAP it created. The one line that differs
from a server on the kernel's stack is marked below.
"""

import argparse
import sys
from socket import AF_INET, SOCK_DGRAM  # the constants are the standard ones

from simstack.engine.app import SetupError, Socket, simstack_host


def serve(sock: Socket, port: int) -> None:
    """Echo every datagram back to its sender until Ctrl-C."""
    sock.bind(("", port))
    print(f"echoing UDP on {sock.getsockname()[0]}:{port}; Ctrl-C to stop", flush=True)
    echoed = 0
    try:
        while True:
            data, addr = sock.recvfrom(65535)
            sock.sendto(data, addr)
            echoed += 1
            print(f"{addr[0]}:{addr[1]}: echoed {len(data)} bytes", flush=True)
    except KeyboardInterrupt:
        print(f"\nstopped after echoing {echoed} datagrams", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description="UDP echo server running on simstack")
    p.add_argument("ifname", nargs="?", default="tap0", help="TAP device, created if missing (default %(default)s)")
    p.add_argument("--ip", default="10.0.0.1/24", help="the stack's address/prefix (default %(default)s)")
    p.add_argument("--host-ip", default="10.0.0.2/24",
                   help="the kernel side's address on a TAP this creates (default %(default)s)")
    p.add_argument("--port", type=int, default=5007, help="UDP port to serve (default %(default)s)")
    args = p.parse_args()
    try:
        with (simstack_host(args.ifname, args.ip, host_ip=args.host_ip) as host,
              host.socket(AF_INET, SOCK_DGRAM) as sock):  # was: socket.socket(AF_INET, SOCK_DGRAM)
            serve(sock, args.port)
    except SetupError as e:
        print(f"udp_echo_server: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before the server loop started, or during teardown
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
