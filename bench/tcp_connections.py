#!/usr/bin/env python3
"""Live TCP connections: how many a second simstack serves, and what 10,000 idle ones cost in memory.

Run as root: ``.venv/bin/python bench/tcp_connections.py [--count N] [--idle N] [--runs N] [--cpus STACK,LOAD]``.

* Connections per second: a client on the kernel side (this file, run with
  ``churn`` inside the namespace, one thread driving non-blocking sockets)
  opens a connection to simstack's echo service (port 7), sends 1 KB, reads
  the 1 KB back, closes, and starts the next; one at a time, and with 16 in
  flight. Median of ``--runs`` (default 5) runs of ``--count`` connections
  (default 2,000). The same client against a kernel echo server (Python,
  selectors) over a veth pair is printed alongside, as a reference.
* Memory: the same client then opens ``--idle`` connections (default
  10,000) and leaves them idle; once simstack's status page counts them all
  ESTABLISHED, its resident set (VmRSS of ``/proc/PID/status``) is read, and
  compared with the figure before they were opened. The targets (issue
  15): at least 3,000 connections a second, one in flight, and at most
  60 MB of RSS with 10,000 idle connections (issue 13's first was 100 MB).

The stack is pinned to one CPU and the client to another (``--cpus``, default
0,1). Everything happens in throwaway network namespaces (``stc-<pid>-*``,
deleted on exit, even on failure).
"""

import argparse
import contextlib
import errno
import json
import os
import resource
import selectors
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from netns_tools import Process, in_ns, must, namespaces, pins, require, sh

ROOT = Path(__file__).resolve().parent.parent
READY = "simstack: live on tap0"
STACK_IP, HOST_IP = "10.0.0.1", "10.0.0.2"
PAYLOAD = 1024
TARGET_RSS_MB = 60.0
TARGET_RATE = 3000  # connections a second, one in flight (issue 15)


# --- the kernel side (run inside a namespace: this file with a subcommand) -------------------------------------

def churn(host: str, port: int, count: int, parallel: int, timeout: float) -> dict[str, Any]:
    """``count`` connections, ``parallel`` at a time: connect, 1 KB out, 1 KB back, close."""
    sel = selectors.DefaultSelector()
    payload = os.urandom(PAYLOAD)
    started = done = failed = 0
    errors: list[str] = []
    state: dict[socket.socket, list[Any]] = {}  # sock -> [bytes sent, bytes received]

    def start() -> None:
        nonlocal started
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((host, port))
        state[s] = [0, bytearray()]
        sel.register(s, selectors.EVENT_WRITE)
        started += 1

    def finish(s: socket.socket, ok: bool, why: str = "") -> None:
        nonlocal done, failed
        sel.unregister(s)
        del state[s]
        s.close()
        done += ok
        failed += not ok
        if why and len(errors) < 5:
            errors.append(why)

    t0 = time.monotonic()
    deadline = t0 + timeout
    while started < min(parallel, count):
        start()
    while state and time.monotonic() < deadline:
        for key, ev in sel.select(1.0):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            sent, got = state[s]
            if ev & selectors.EVENT_WRITE:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    finish(s, False, os.strerror(err))
                else:
                    n = s.send(payload[sent:])
                    state[s][0] = sent + n
                    if sent + n == PAYLOAD:
                        sel.modify(s, selectors.EVENT_READ)
            elif ev & selectors.EVENT_READ:
                try:
                    data = s.recv(PAYLOAD)
                except OSError as e:
                    finish(s, False, str(e))
                    data = None
                if data is None:
                    pass
                elif not data:
                    finish(s, False, f"EOF after {len(got)} bytes")
                else:
                    got += data
                    if len(got) == PAYLOAD:
                        finish(s, bytes(got) == payload, "" if bytes(got) == payload else "corrupted")
            else:
                continue
            if started < count and len(state) < parallel:
                start()
    seconds = time.monotonic() - t0
    return {"done": done, "failed": failed, "unfinished": len(state), "seconds": seconds, "errors": errors}


def hold(host: str, port: int, count: int, batch: int, timeout: float) -> None:
    """Open ``count`` connections, ``batch`` at a time; print when all are up, then keep them until killed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 100)), hard))
    socks: list[socket.socket] = []
    deadline = time.monotonic() + timeout
    while len(socks) < count:
        if time.monotonic() > deadline:
            print(json.dumps({"holding": len(socks), "error": f"only {len(socks)} of {count} connected"}), flush=True)
            return
        wave = []
        for _ in range(min(batch, count - len(socks))):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((host, port))
            wave.append(s)
        sel = selectors.DefaultSelector()
        for s in wave:
            sel.register(s, selectors.EVENT_WRITE)
        pending = len(wave)
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(1.0):
                c = key.fileobj
                assert isinstance(c, socket.socket)
                sel.unregister(c)
                pending -= 1
                if c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) in (0, errno.EISCONN):
                    socks.append(c)
                else:
                    c.close()
        sel.close()
    print(json.dumps({"holding": len(socks)}), flush=True)
    threading.Event().wait()


def echo_server(ip: str, port: int) -> None:
    """A kernel echo server for the reference figure: one thread, selectors."""
    sel = selectors.DefaultSelector()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((ip, port))
    ls.listen(1024)
    ls.setblocking(False)
    sel.register(ls, selectors.EVENT_READ)
    print(json.dumps({"ready": port}), flush=True)
    while True:
        for key, _ in sel.select():
            if key.fileobj is ls:
                with contextlib.suppress(BlockingIOError):
                    while True:
                        c, _ = ls.accept()
                        c.setblocking(False)
                        sel.register(c, selectors.EVENT_READ)
                continue
            conn = key.fileobj
            assert isinstance(conn, socket.socket)
            try:
                data = conn.recv(65536)
            except OSError:
                data = b""
            if data:
                conn.sendall(data)  # 1 KB: it fits the send buffer
            else:
                sel.unregister(conn)
                conn.close()


# --- plumbing ------------------------------------------------------------------------------------------------













def run_churn(ns: str, count: int, parallel: int, pin: tuple[str, ...]) -> tuple[float, str]:
    r = in_ns(ns, sys.executable, str(Path(__file__).resolve()), "churn", STACK_IP, "7", str(count), str(parallel),
              pin=pin)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        return float("nan"), f"churn failed ({r.returncode}): {r.stderr.strip()[-300:]}"
    d = json.loads(lines[-1])
    note = "" if d["done"] == count else f"{d['done']}/{count} done, {d['failed']} failed {d['errors']}"
    return d["done"] / d["seconds"], note


def status_states(ns: str) -> dict[str, int]:
    r = in_ns(ns, "curl", "-sS", "--max-time", "10", f"http://{STACK_IP}/status.json", timeout=30)
    if r.returncode != 0:
        return {}
    states: dict[str, int] = json.loads(r.stdout)["tcp"]["states"]
    return states


def main() -> int:
    if sys.argv[1:2] == ["churn"]:
        host, port, count, parallel = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(churn(host, port, count, parallel, 600.0)), flush=True)
        return 0
    if sys.argv[1:2] == ["hold"]:
        hold(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), 500, 300.0)
        return 0
    if sys.argv[1:2] == ["echo-server"]:
        echo_server(sys.argv[2], int(sys.argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=2000, help="connections per run (default %(default)s)")
    ap.add_argument("--idle", type=int, default=10000, help="idle connections for the memory figure (default %(default)s)")
    ap.add_argument("--runs", type=int, default=5, help="runs of each churn (default %(default)s)")
    ap.add_argument("--cpus", default="0,1", metavar="STACK,LOAD",
                    help="CPUs for the stack and for the kernel-side client, or none (default %(default)s)")
    ap.add_argument("--quick", action="store_true", help="smoke check: 300 connections, 1 run, 1,000 idle")
    args = ap.parse_args()
    if args.quick:
        args.count, args.runs, args.idle = 300, 1, 1000
    require("network namespaces, TAP", "curl")
    stack_pin, load_pin = pins(args.cpus)
    tag = f"stc-{os.getpid()}"
    stack_ns, base_ns, peer_ns = f"{tag}-stack", f"{tag}-base", f"{tag}-peer"
    me = str(Path(__file__).resolve())
    start = time.monotonic()
    notes: list[str] = []
    rates: dict[tuple[str, int], list[float]] = {}
    with namespaces(stack_ns, base_ns, peer_ns):
        must(sh("ip", "link", "add", "v0", "netns", base_ns, "type", "veth", "peer", "name", "v1", "netns", peer_ns))
        must(in_ns(base_ns, "ip", "addr", "add", f"{HOST_IP}/24", "dev", "v0"))
        must(in_ns(peer_ns, "ip", "addr", "add", f"{STACK_IP}/24", "dev", "v1"))
        must(in_ns(base_ns, "ip", "link", "set", "v0", "up"))
        must(in_ns(peer_ns, "ip", "link", "set", "v1", "up"))
        for ns in (stack_ns, base_ns):  # a client's TIME-WAIT ports come back sooner; 2,000 x 5 runs fit anyway
            in_ns(ns, "sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000")
        kernel_echo = Process(peer_ns, sys.executable, me, "echo-server", STACK_IP, "7", pin=stack_pin)
        kernel_echo.wait_for('"ready"')
        stack = Process(stack_ns, sys.executable, "-m", "simstack", "live", "tap0", "--serve", "echo", "--serve", "http",
                        pin=stack_pin)
        stack.wait_for(READY)
        print(f"{args.count} connections per run, {args.runs} runs; "
              + (f"stack on CPU {stack_pin[-1]}, client on CPU {load_pin[-1]}" if stack_pin else "no pinning"),
              flush=True)
        run_churn(stack_ns, 200, 4, load_pin)  # warm-up: ARP, first-call paths
        for run in range(args.runs):
            line = []
            for parallel in (1, 16):
                for who, ns in (("kernel", base_ns), ("simstack", stack_ns)):
                    rate, note = run_churn(ns, args.count, parallel, load_pin)
                    rates.setdefault((who, parallel), []).append(rate)
                    if note:
                        notes.append(f"run {run + 1}, {who}, {parallel} in flight: {note}")
                line.append(f"{parallel} in flight {rates['simstack', parallel][-1]:.0f}/s")
            print(f"run {run + 1}/{args.runs}: simstack " + ", ".join(line), flush=True)
        # Memory: wait for the churn's connections to leave (the stack's side ends in LAST-ACK -> CLOSED).
        deadline = time.monotonic() + 30
        while status_states(stack_ns) != {"ESTABLISHED": 1} and time.monotonic() < deadline:
            time.sleep(0.5)
        before = stack.rss_mb()
        holder = Process(stack_ns, sys.executable, me, "hold", STACK_IP, "7", str(args.idle), pin=load_pin)
        held = holder.wait_for('"hold', timeout=320)
        if "error" in held:
            notes.append(f"idle connections: {held.strip()}")
        established = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            established = status_states(stack_ns).get("ESTABLISHED", 0) - 1  # less the status page's own
            if established >= args.idle:
                break
            time.sleep(0.5)
        time.sleep(1)
        after = stack.rss_mb()
        holder.stop()
        stack.stop()
        kernel_echo.stop()
    print(f"\nConnections per second (connect, {PAYLOAD} B echoed, close), median of {args.runs} run(s) of "
          f"{args.count}:")
    print(f"  {'in flight':>9} {'simstack':>9} {'kernel (veth, Python echo server)':>34}   per run (simstack)")
    for parallel in (1, 16):
        s, k = rates["simstack", parallel], rates["kernel", parallel]
        print(f"  {parallel:>9} {statistics.median(s):>9.0f} {statistics.median(k):>34.0f}   "
              + " ".join(f"{v:.0f}" for v in s))
    one = statistics.median(rates["simstack", 1])
    print(f"  target >= {TARGET_RATE} a second, one in flight: {'met' if one >= TARGET_RATE else 'NOT met'}")
    print(f"\nMemory: {established} idle established connections (status page); simstack's RSS "
          f"{before:.1f} MB before, {after:.1f} MB with them: {after - before:.1f} MB for the connections, "
          f"{(after - before) * 1024 * 1024 / max(established, 1) / 1024:.2f} KB each; "
          f"target <= {TARGET_RSS_MB:g} MB: {'met' if after <= TARGET_RSS_MB else 'NOT met'} (RSS {after:.1f} MB)")
    if established < args.idle:
        notes.append(f"only {established} of {args.idle} idle connections established")
    for n in notes:
        print("  note: " + n)
    print(f"  ({time.monotonic() - start:.0f} s; load average {os.getloadavg()[0]:.2f})")
    return 1 if notes else 0


if __name__ == "__main__":
    raise SystemExit(main())
