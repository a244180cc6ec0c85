#!/usr/bin/env python3
"""Live TCP echo through simstack from a kernel client: a fast reader, and a slow one at 1 MB/s.

Run as root: ``.venv/bin/python bench/tcp_echo.py [--size MB] [--runs N] [--slow-rate MB/s] [--cpus STACK,LOAD]``.

A Python client in a namespace connects to simstack's echo service (port 7)
across a TAP with MTU 1500, sends ``--size`` MB (default 20) while reading
the echo back, half-closes, and reads to the end; the echoed bytes must be
the bytes sent. Two readers:

* fast: the client reads whatever arrives, as fast as it can;
* slow: the client reads at most ``--slow-rate`` MB/s (default 1), so the
  echo has to stop reading while its send buffer is full and the client's
  sends stall on a closed window: flow control end to end. The figure to
  watch is the stack's resident set, which must not grow with the backlog.

Each runs ``--runs`` times (default 3); the medians are printed with the
stack's CPU seconds per MB moved (both directions) and its RSS after the
runs. The baseline, in the same run, is the same client against a kernel
echo server (Python, a thread per connection) over a veth pair, and the ratio
is simstack's MB/s over it. The stack is pinned to one CPU and the client to
another (``--cpus``, default 0,1). Everything happens in throwaway network
namespaces (``ste-<pid>-*``, deleted on exit, even on failure).
"""

import argparse
import contextlib
import hashlib
import json
import os
import selectors
import shutil
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netns_tools import Process, in_ns, must, namespaces, pins, require, sh

READY = "simstack: live on tap0"
STACK_IP, HOST_IP = "10.0.0.1", "10.0.0.2"
MB = 1_000_000
CHUNK = 65536
TARGET_FAST = 30.0  # MB/s each way, issue "Fast TCP"


# --- the kernel side (run inside a namespace: this file with a subcommand) ------------------------------------

def client(host: str, port: int, size: int, rate: float, timeout: float) -> dict[str, Any]:
    """Send ``size`` bytes, read the echo back (at most ``rate`` bytes/s if rate > 0), half-close, read to EOF."""
    sent_data = os.urandom(size)
    data = memoryview(sent_data)
    digest = hashlib.sha256()
    got = 0
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as s:
        if rate:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # a slow reader keeps a small buffer
        s.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
        deadline = start + timeout
        eof = False
        while not eof:
            now = time.monotonic()
            if now > deadline:
                return {"error": f"timeout after {got} bytes back, {size - len(data)} sent"}
            allowed = int((now - start) * rate) - got if rate else 4 * CHUNK
            events = selectors.EVENT_WRITE if data else 0
            if allowed > 0:
                events |= selectors.EVENT_READ
            if not events:
                time.sleep(min(0.01, -allowed / rate if rate else 0.01))
                continue
            sel.modify(s, events)
            for _key, ev in sel.select(0.05):
                if ev & selectors.EVENT_WRITE and data:
                    with contextlib.suppress(BlockingIOError):
                        data = data[s.send(data[:4 * CHUNK]):]
                    if not data:
                        s.shutdown(socket.SHUT_WR)
                if ev & selectors.EVENT_READ:
                    try:
                        chunk = s.recv(min(4 * CHUNK, allowed))
                    except BlockingIOError:
                        continue
                    if not chunk:
                        eof = True
                        break
                    got += len(chunk)
                    digest.update(chunk)
        sel.close()
    seconds = time.monotonic() - start
    if got != size:
        return {"error": f"{got} of {size} bytes echoed"}
    if digest.digest() != hashlib.sha256(sent_data).digest():
        return {"error": "the echo differs from what was sent"}
    return {"seconds": seconds}


def echo_server(ip: str) -> None:
    """Echo (7) on the kernel, a thread per connection, until killed."""

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4 * CHUNK):
                conn.sendall(data)

    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((ip, 7))
    ls.listen(64)
    print(json.dumps({"ready": ip}), flush=True)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


# --- measurements --------------------------------------------------------------------------------------------

@dataclass
class Series:
    mbps: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # the stack's CPU seconds per MB moved (both ways)
    notes: list[str] = field(default_factory=list)

    def median(self, values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")


def run_client(ns: str, size: int, rate: float, pin: tuple[str, ...], series: Series, stack: Process | None) -> None:
    before = stack.cpu() if stack is not None else 0.0
    timeout = 60.0 + (size / rate if rate else 0.0) * 2
    r = in_ns(ns, sys.executable, str(Path(__file__).resolve()), "client", STACK_IP, str(size), str(rate),
              str(timeout), pin=pin, timeout=timeout + 30)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        series.notes.append(f"client failed ({r.returncode}): {r.stderr.strip()[-300:]}")
        return
    out: dict[str, Any] = json.loads(lines[-1])
    if "error" in out:
        series.notes.append(str(out["error"]))
        return
    series.mbps.append(size / MB / float(out["seconds"]))
    if stack is not None:
        series.cpu.append((stack.cpu() - before) / (2 * size / MB))


def main() -> int:
    if sys.argv[1:2] == ["client"]:
        host, size, rate, timeout = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
        print(json.dumps(client(host, 7, size, rate, timeout)), flush=True)
        return 0
    if sys.argv[1:2] == ["echo-server"]:
        echo_server(sys.argv[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=float, default=20, help="MB echoed per run (default %(default)s)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each reader (default %(default)s)")
    ap.add_argument("--slow-rate", type=float, default=1.0, help="the slow reader's MB/s (default %(default)s)")
    ap.add_argument("--cpus", default="0,1", metavar="STACK,LOAD",
                    help="CPUs for the stack and for the kernel-side client, or none (default %(default)s)")
    ap.add_argument("--quick", action="store_true", help="smoke check: 4 MB, 1 run")
    args = ap.parse_args()
    if args.quick:
        args.size, args.runs = 4, 1
    require("network namespaces, TAP")
    if not shutil.which("taskset") and args.cpus != "none":
        args.cpus = "none"
    stack_pin, load_pin = pins(args.cpus)
    size = int(args.size * MB)
    tag = f"ste-{os.getpid()}"
    stack_ns, base_ns, peer_ns = f"{tag}-stack", f"{tag}-base", f"{tag}-peer"
    me = str(Path(__file__).resolve())
    start = time.monotonic()
    readers = (("fast", 0.0), (f"slow ({args.slow_rate:g} MB/s)", args.slow_rate * MB))
    simstack = {name: Series() for name, _ in readers}
    kernel = {name: Series() for name, _ in readers}
    with namespaces(stack_ns, base_ns, peer_ns):
        must(sh("ip", "link", "add", "v0", "netns", base_ns, "type", "veth", "peer", "name", "v1", "netns", peer_ns))
        must(in_ns(base_ns, "ip", "addr", "add", f"{HOST_IP}/24", "dev", "v0"))
        must(in_ns(peer_ns, "ip", "addr", "add", f"{STACK_IP}/24", "dev", "v1"))
        must(in_ns(base_ns, "ip", "link", "set", "v0", "up"))
        must(in_ns(peer_ns, "ip", "link", "set", "v1", "up"))
        peer = Process(peer_ns, sys.executable, me, "echo-server", STACK_IP, pin=stack_pin)
        peer.wait_for('"ready"')
        stack = Process(stack_ns, sys.executable, "-m", "simstack", "live", "tap0", "--serve", "echo", pin=stack_pin)
        stack.wait_for(READY)
        print(f"{size / MB:g} MB echoed per run, {args.runs} run(s) of each reader; "
              + (f"stack on CPU {stack_pin[-1]}, client on CPU {load_pin[-1]}" if stack_pin else "no pinning"),
              flush=True)
        run_client(stack_ns, min(size, 2 * MB), 0.0, load_pin, Series(), None)  # warm-up: ARP, first-call paths
        rss_start = stack.rss_mb()
        rss_peak = rss_start
        for run in range(args.runs):
            for name, rate in readers:
                run_client(base_ns, size, rate, load_pin, kernel[name], None)
                run_client(stack_ns, size, rate, load_pin, simstack[name], stack)
                rss_peak = max(rss_peak, stack.rss_mb())
            print(f"run {run + 1}/{args.runs}: " + ", ".join(
                f"{name} {simstack[name].mbps[-1] if len(simstack[name].mbps) > run else float('nan'):.1f}"
                for name, _ in readers) + " MB/s", flush=True)
        stack.stop()
        peer.stop()
    print(f"\nEcho, MB/s each way, median of {args.runs} run(s) of {size / MB:g} MB, MTU 1500:")
    print(f"  {'reader':<16} {'simstack':>8} {'kernel (veth)':>13} {'ratio':>6} {'stack CPU s/MB':>14}   per run")
    notes: list[str] = []
    for name, _ in readers:
        s, k = simstack[name], kernel[name]
        ms, mk = s.median(s.mbps), k.median(k.mbps)
        print(f"  {name:<16} {ms:>8.2f} {mk:>13.2f} {ms / mk:>6.2f} {s.median(s.cpu):>14.4f}   "
              + " ".join(f"{v:.1f}" for v in s.mbps))
        notes += [f"{name}: {n}" for n in s.notes] + [f"{name} (kernel): {n}" for n in k.notes]
    fast = simstack["fast"].median(simstack["fast"].mbps)
    print(f"  target: fast echo >= {TARGET_FAST:g} MB/s: {'met' if fast >= TARGET_FAST else 'NOT met'};"
          f" stack RSS {rss_start:.1f} MB after the warm-up, {rss_peak:.1f} MB at most during the runs")
    for n in notes:
        print("  note: " + n)
    print(f"  ({time.monotonic() - start:.0f} s; load average {os.getloadavg()[0]:.2f})")
    return 1 if notes else 0


if __name__ == "__main__":
    raise SystemExit(main())
