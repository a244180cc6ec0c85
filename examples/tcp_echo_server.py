#!/usr/bin/env python3
"""A TCP echo server on simstack: ordinary socket code, a thread per connection, with the socket asked of simstack.

Run it as root (it creates the TAP and gives the kernel's side 10.0.0.2),
then talk to it from the kernel::

    sudo .venv/bin/python examples/tcp_echo_server.py tap0 --port 5007
    nc 10.0.0.1 5007

Ctrl-C stops it and removes the TAP it created. The one line that differs
from a server on the kernel's stack is marked below.
"""

import argparse
import sys
import threading
from socket import AF_INET, SOCK_STREAM  # the constants are the standard ones

from simstack.engine.api.stream import StreamSocket
from simstack.engine.app import SetupError, simstack_host


def echo(conn: StreamSocket, peer: tuple[str, int]) -> None:
    """Send back what arrives until the client closes; one line when it does."""
    total = 0
    with conn:
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
                total += len(data)
        except OSError as e:  # ConnectionResetError, BrokenPipeError: the client went away
            print(f"{peer[0]}:{peer[1]}: {e.strerror or e}", flush=True)
    print(f"{peer[0]}:{peer[1]}: echoed {total} bytes", flush=True)


def serve(listener: StreamSocket, port: int) -> None:
    listener.bind(("", port))
    listener.listen()
    print(f"echoing TCP on {listener.getsockname()[0]}:{port}; Ctrl-C to stop", flush=True)
    while True:
        conn, peer = listener.accept()
        threading.Thread(target=echo, args=(conn, peer), daemon=True).start()


def main() -> int:
    p = argparse.ArgumentParser(description="TCP echo server running on simstack")
    p.add_argument("ifname", nargs="?", default="tap0", help="TAP device, created if missing (default %(default)s)")
    p.add_argument("--ip", default="10.0.0.1/24", help="the stack's address/prefix (default %(default)s)")
    p.add_argument("--host-ip", default="10.0.0.2/24",
                   help="the kernel side's address on a TAP this creates (default %(default)s)")
    p.add_argument("--port", type=int, default=5007, help="port to listen on (default %(default)s)")
    args = p.parse_args()
    try:
        with (simstack_host(args.ifname, args.ip, host_ip=args.host_ip) as host,
              host.socket(AF_INET, SOCK_STREAM) as listener):  # was: socket.socket(AF_INET, SOCK_STREAM)
            serve(listener, args.port)
    except SetupError as e:
        print(f"tcp_echo_server: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nstopped", flush=True)
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
