"""The kernel's side of the live TCP tests: Python's own ``socket``, run inside the test's namespace.

Run as a script (``ip netns exec NS python tcp_peer.py ...``) so the traffic
comes from the kernel's TCP in that namespace. Each command prints one JSON
line that the test reads. Payloads are random bytes from a seed; what comes
back is hashed as it arrives, so 20 MB cost no memory.

    echo HOST PORT --size N [--rate BYTES_PER_S] [--seed S] [--timeout T]
        one connection: send N bytes while reading the echo (as fast as
        possible, or at most RATE bytes a second, so the server's windows
        close and reopen), half-close, read to EOF; reports both sha256s
    many HOST PORT --count N --parallel P --size N [--timeout T]
        N connections, P at a time, each sending SIZE random bytes and
        reading them back; reports how many came back intact
    refused HOST PORT
        connect once; reports the outcome and how long it took
    serve PORT
        a TCP echo server (a thread per connection) until killed: prints
        {"ready": PORT}, then {"echoed": N, "sha256": ..., "peer": ...} for
        each connection once the peer closed it
"""

import argparse
import hashlib
import json
import random
import selectors
import socket
import sys
import threading
import time
from typing import Any

CHUNK = 65536


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def stream(size: int, seed: int) -> tuple[bytes, str]:
    """The bytes a side sends, and their sha256."""
    data = random.Random(seed).randbytes(size)
    return data, hashlib.sha256(data).hexdigest()


def exchange(sock: socket.socket, data: bytes, rate: float, timeout: float, expect: int | None) -> dict[str, Any]:
    """Send ``data`` while reading, half-close after it, read to EOF (or ``expect`` bytes).

    With ``rate``, reading is paced: at most ``rate`` bytes a second are taken off the socket,
    so the peer's sends outrun us and windows close.
    """
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    view = memoryview(data)
    got = hashlib.sha256()
    received = 0
    start = time.monotonic()
    deadline = start + timeout
    eof = False
    wr_done = not view
    if wr_done:
        sock.shutdown(socket.SHUT_WR)
    sel.register(sock, selectors.EVENT_READ | (0 if wr_done else selectors.EVENT_WRITE))
    zero_windows = 0
    while not eof and (expect is None or received < expect):
        now = time.monotonic()
        if now > deadline:
            return {"error": "timeout", "received": received, "sent": len(data) - len(view)}
        wait = 0.0
        read_ok = True
        if rate:
            quantum = min(CHUNK, rate / 50)  # read in steps of 20 ms worth, not a byte at a time
            allowed = (now - start) * rate - received
            if allowed < quantum:
                read_ok = False
                wait = min((quantum - allowed) / rate, 0.05)
        events = (selectors.EVENT_READ if read_ok else 0) | (0 if wr_done else selectors.EVENT_WRITE)
        if not events:
            time.sleep(wait)
            continue
        sel.modify(sock, events)
        for _key, ev in sel.select(min(deadline - now, 1.0)):
            if ev & selectors.EVENT_WRITE and view:
                try:
                    n = sock.send(view[:CHUNK])
                except BlockingIOError:
                    n = 0
                if not n:
                    zero_windows += 1
                view = view[n:]
                if not view:
                    wr_done = True
                    sock.shutdown(socket.SHUT_WR)
            if ev & selectors.EVENT_READ:
                want = CHUNK
                if rate:
                    want = max(1, min(CHUNK, int((time.monotonic() - start) * rate - received)))
                try:
                    chunk = sock.recv(want)
                except BlockingIOError:
                    continue
                if not chunk:
                    eof = True
                    break
                got.update(chunk)
                received += len(chunk)
    sel.close()
    return {"received": received, "sha256": got.hexdigest(), "sent": len(data) - len(view),
            "seconds": round(time.monotonic() - start, 3), "eof": eof}


def echo(a: argparse.Namespace) -> int:
    data, digest = stream(a.size, a.seed)
    with socket.create_connection((a.host, a.port), timeout=a.timeout) as s:
        if a.rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
        out = exchange(s, data, a.rate, a.timeout, None)
    out["sent_sha256"] = digest
    out["ok"] = out.get("sha256") == digest and out.get("received") == a.size
    say(**out)
    return 0 if out["ok"] else 1


def many(a: argparse.Namespace) -> int:
    ok = 0
    failures: list[str] = []
    lock = threading.Lock()
    jobs = iter(range(a.count))

    def worker() -> None:
        nonlocal ok
        while True:
            with lock:
                i = next(jobs, None)
            if i is None:
                return
            data, digest = stream(a.size, i)
            try:
                with socket.create_connection((a.host, a.port), timeout=a.timeout) as s:
                    out = exchange(s, data, 0, a.timeout, None)
                good = out.get("sha256") == digest and out.get("eof")
            except OSError as e:
                good, out = False, {"error": f"{type(e).__name__}: {e}"}
            with lock:
                if good:
                    ok += 1
                else:
                    failures.append(f"{i}: {out}")

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(a.parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    say(ok=ok, count=a.count, seconds=round(time.monotonic() - start, 3), failures=failures[:5])
    return 0 if ok == a.count else 1


def refused(a: argparse.Namespace) -> int:
    start = time.monotonic()
    try:
        with socket.create_connection((a.host, a.port), timeout=a.timeout):
            outcome = "connected"
    except ConnectionRefusedError:
        outcome = "refused"
    except TimeoutError:
        outcome = "timeout"
    say(outcome=outcome, seconds=round(time.monotonic() - start, 4))
    return 0


def serve(a: argparse.Namespace) -> int:
    """An echo server, a thread per connection; one JSON line per connection closed."""

    def echo_one(conn: socket.socket, addr: tuple[str, int]) -> None:
        digest = hashlib.sha256()
        n = 0
        with conn:
            while data := conn.recv(CHUNK):
                digest.update(data)
                n += len(data)
                conn.sendall(data)
        say(echoed=n, sha256=digest.hexdigest(), peer=f"{addr[0]}:{addr[1]}")

    with socket.socket() as ls:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("", a.port))
        ls.listen(16)
        say(ready=a.port)
        while True:
            conn, addr = ls.accept()
            threading.Thread(target=echo_one, args=(conn, addr), daemon=True).start()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("echo", "many", "refused", "serve"):
        c = sub.add_parser(name)
        if name != "serve":
            c.add_argument("host")
        c.add_argument("port", type=int)
        c.add_argument("--timeout", type=float, default=60.0)
        c.add_argument("--size", type=int, default=65536)
        c.add_argument("--seed", type=int, default=1)
        if name == "echo":
            c.add_argument("--rate", type=float, default=0.0, help="read at most this many bytes a second")
            c.add_argument("--rcvbuf", type=int, default=0)
        if name == "many":
            c.add_argument("--count", type=int, default=200)
            c.add_argument("--parallel", type=int, default=1)
    a = p.parse_args()
    return {"echo": echo, "many": many, "refused": refused, "serve": serve}[a.command](a)


if __name__ == "__main__":
    sys.exit(main())
