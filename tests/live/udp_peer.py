"""The kernel's side of the live UDP tests: Python's own ``socket``, run inside the test's namespace.

Run as a script (``ip netns exec NS python udp_peer.py ...``) so the traffic
comes from the kernel's stack in that namespace, never from the test process
(which lives in the host's namespace). Each command prints one JSON line that
the test reads, so a failure says what happened to which datagram instead of
just an exit code.

    echo HOST PORT [--count N --min-size A --max-size B --seed S --timeout T --rcvbuf B --text PREFIX]
        send datagrams one at a time to an echo service, each reply must come back
        byte for byte; exit 1 at the first loss, error or difference. Sizes are
        random (seeded), except that the first two are the largest and the smallest
    probe HOST PORT --via recv|send [--timeout T] [--count N]
        a connected socket sends one datagram per round and reports what came
        back: {"outcomes": ["timeout" | "refused" | "reply:LEN", ...]}; with
        --via send the error is looked for on the next send instead of a recv
    serve HOST PORT
        an echo server (IP_FREEBIND: HOST may not exist yet); prints {"ready": ...}
        then one {"echoed": LEN, "from": ...} line per datagram, until killed
"""

import argparse
import json
import random
import select
import socket
import sys
import time
from typing import Any

IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # root may exceed net.core.rmem_max


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def echo(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        if args.rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, args.rcvbuf)
        s.connect((args.host, args.port))  # connected: ICMP errors surface, other senders are filtered
        s.settimeout(args.timeout)
        total = 0
        start = time.monotonic()
        for i in range(args.count):
            if args.text:
                data = f"{args.text} {i:02d}".encode()
            else:
                # The extremes are where the bugs are (a 65507-byte datagram is an IPv4 packet of exactly 65535).
                size = (args.max_size, args.min_size)[i] if i < 2 else rng.randint(args.min_size, args.max_size)
                data = rng.randbytes(size)
            s.send(data)
            try:
                reply = s.recv(65535)
            except OSError as e:  # TimeoutError included
                say(ok=i, failed=i, size=len(data), error=f"{type(e).__name__}: {e}")
                return 1
            if reply != data:
                where = next((j for j, (a, b) in enumerate(zip(reply, data, strict=False)) if a != b),
                             min(len(reply), len(data)))
                say(ok=i, failed=i, size=len(data), got=len(reply), first_difference=where)
                return 1
            total += len(data)
        say(ok=args.count, bytes=total, seconds=round(time.monotonic() - start, 3))
    return 0


def probe(args: argparse.Namespace) -> int:
    outcomes: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((args.host, args.port))
        for i in range(args.count):
            try:
                s.send(f"probe {i}".encode())
                if args.via == "recv":
                    s.settimeout(args.timeout)
                    outcomes.append(f"reply:{len(s.recv(65535))}")
                else:
                    # An error pending on the socket makes it readable; leave it there for the next send.
                    ready, _, _ = select.select([s], [], [], args.timeout)
                    if not ready:
                        outcomes.append("timeout")
                        continue
                    s.send(b"after the error")
                    outcomes.append("sent")
            except ConnectionRefusedError:
                outcomes.append("refused")
            except TimeoutError:
                outcomes.append("timeout")
    say(outcomes=outcomes)
    return 0


def serve(args: argparse.Namespace) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        s.bind((args.host, args.port))
        say(ready=f"{args.host}:{args.port}")
        while True:
            data, addr = s.recvfrom(65535)
            s.sendto(data, addr)
            say(echoed=len(data), source=f"{addr[0]}:{addr[1]}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("echo", "probe", "serve"):
        c = sub.add_parser(name)
        c.add_argument("host")
        c.add_argument("port", type=int)
        if name == "echo":
            c.add_argument("--count", type=int, default=10)
            c.add_argument("--min-size", type=int, default=0)
            c.add_argument("--max-size", type=int, default=1472)
            c.add_argument("--seed", type=int, default=1)
            c.add_argument("--timeout", type=float, default=5.0)
            c.add_argument("--rcvbuf", type=int, default=0)
            c.add_argument("--text", help="send 'TEXT 00', 'TEXT 01'... instead of random bytes")
        elif name == "probe":
            c.add_argument("--via", choices=["recv", "send"], default="recv")
            c.add_argument("--timeout", type=float, default=2.0)
            c.add_argument("--count", type=int, default=1)
    args = p.parse_args()
    return {"echo": echo, "probe": probe, "serve": serve}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
