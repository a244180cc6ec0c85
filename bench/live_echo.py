"""Live-mode CPU per echo, before and after: a baseline commit's stack and the current tree's, run by turns.

Run as root: ``.venv/bin/python bench/live_echo.py [--baseline REF] [--runs N] [--quick]``.

Wall time depends on how busy the machine is; the CPU time the stack's own
process spends per echo does much less, so that is the figure: utime+stime
from ``/proc/PID/stat`` read just before and just after each load, divided by
the echoes it answered. The loads, 20,000 echoes each, all from the kernel's
side of the TAP:

* ``icmp``: ``ping -f -c 20000``;
* ``udp-64`` and ``udp-1400``: a Python socket client (this file, run with
  ``udp-client`` inside the namespace) keeps 64 datagrams of that payload size
  in flight to the stack's built-in echo service (port 7), sending a new one
  per reply, and re-sending any that got no answer within a short timeout.

To compare before and after under the same machine load, the baseline REF is
checked out as a temporary detached git worktree and its stack runs as
``PYTHONPATH=<tree> python -m simstack live`` (cwd in that tree, since
``python -m`` puts the cwd first on sys.path), alternating run by run with the
current tree's. The kernel's own ICMP figure is printed as a ceiling: the same
``ping -f`` against a veth peer in another namespace, as wall time per reply
(the kernel's CPU cannot be read per process).

Placement matters as much as the code: with one echo in flight, a stack that
shares a CPU with ping spends about half the CPU per echo that it spends when
each echo wakes it on a CPU of its own (measured: ~40 against ~70 us), and the
scheduler picks one or the other depending on what else the machine runs. So
the stack is pinned to one CPU and the load generators to another
(``--cpus STACK,LOAD``, default 0,1), as a peer on another machine would be;
``--cpus none`` leaves placement to the scheduler.

Everything happens in throwaway network namespaces (``sle-<pid>-*``, no route
out, deleted on exit even on failure); the baseline worktree is removed too.
A run that stalls is cut off by a deadline and reported, never waited on.
"""

import argparse
import contextlib
import json
import os
import queue
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from netns_tools import baseline_tree, cpu_seconds, in_ns, must, namespaces, pins, require, rev, sh

ROOT = Path(__file__).resolve().parent.parent
READY = "simstack: live on tap0"
STACK_IP, HOST_IP, ECHO_PORT = "10.0.0.1", "10.0.0.2", 7
SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received.*?time (\d+)ms")
TICK = os.sysconf("SC_CLK_TCK")
LOADS = ("icmp", "udp-64", "udp-1400")
WINDOW = 64
RESEND_AFTER = 0.5  # seconds; at ~100 us an echo, 64 in flight answer within ~10 ms


# --- the kernel side's UDP client (run inside the stack's namespace) -------------------------------------------

def udp_client(host: str, port: int, count: int, size: int, window: int, deadline: float) -> dict[str, Any]:
    """Keep ``window`` datagrams in flight until ``count`` have come back; a sequence number leads each payload.

    A datagram with no reply after RESEND_AFTER is counted lost and replaced by
    a new one, so a dropped frame costs a timeout, not a hang; past
    ``deadline`` seconds the client gives up and says it stalled.
    """
    pad = bytes(max(0, size - 8))
    outstanding: dict[int, float] = {}  # seq -> send time; insertion order is send order
    seq = launched = replies = late = lost = bad = 0

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        s.setblocking(False)
        poller = select.poll()
        poller.register(s, select.POLLIN)

        def send() -> None:
            nonlocal seq
            with contextlib.suppress(BlockingIOError, ConnectionRefusedError):  # a datagram not sent times out
                s.send(seq.to_bytes(8, "big") + pad)
            outstanding[seq] = time.monotonic()
            seq += 1

        start = time.monotonic()
        while launched < min(window, count):
            send()
            launched += 1
        stalled = False
        while replies < count:
            now = time.monotonic()
            if now - start > deadline:
                stalled = True
                break
            while outstanding:
                first, sent_at = next(iter(outstanding.items()))
                if now - sent_at < RESEND_AFTER:
                    break
                del outstanding[first]
                lost += 1
                send()
            if not poller.poll(50):
                continue
            while True:
                try:
                    data = s.recv(65535)
                except BlockingIOError:
                    break
                except ConnectionRefusedError:  # an ICMP port unreachable: the service is not there
                    bad += 1
                    break
                n = int.from_bytes(data[:8], "big")
                if len(data) != max(size, 8):
                    bad += 1
                elif outstanding.pop(n, None) is None:
                    late += 1  # already given up on and replaced
                else:
                    replies += 1
                    if launched < count:
                        send()
                        launched += 1
        seconds = time.monotonic() - start
    return {"replies": replies, "late": late, "lost": lost, "bad": bad, "stalled": stalled, "seconds": seconds}


def client_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="live_echo.py udp-client")
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--window", type=int, default=WINDOW)
    ap.add_argument("--deadline", type=float, default=60.0)
    a = ap.parse_args(argv)
    print(json.dumps(udp_client(a.host, a.port, a.count, a.size, a.window, a.deadline)), flush=True)
    return 0


# --- plumbing ----------------------------------------------------------------------------------------------------









@dataclass
class Tree:
    label: str
    path: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.path)}

    def check_import(self) -> str:
        """Where ``python -m simstack`` run this way finds simstack and its engine; fails if not in this tree."""
        code = ("import os, simstack, simstack.engine, simstack.protocols as p; "
                "print(simstack.__file__, os.path.realpath(simstack.engine.__file__), os.path.realpath(p.__file__))")
        out = must(sh(sys.executable, "-c", code, cwd=self.path, env=self.env)).split()
        root = str(self.path.resolve())
        if not all(os.path.realpath(f).startswith(root + os.sep) for f in out):
            raise SystemExit(f"{self.label}: python -m simstack would not import {root}: {out}")
        return out[0]


class Stack:
    """One ``simstack live tap0`` of one tree in the stack namespace; stdout and stderr drained by threads."""

    def __init__(self, ns: str, tree: Tree, pin: tuple[str, ...]) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, *pin, sys.executable, "-m", "simstack", "live", "tap0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tree.path, env=tree.env)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.errors: list[str | None] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.errors.append), daemon=True).start()

    @staticmethod
    def _read(stream: IO[str] | None, sink: Callable[[str | None], None]) -> None:
        assert stream is not None
        for line in stream:
            sink(line)
        sink(None)

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            if READY in line:
                # ip netns exec (and taskset) exec the command, so this pid is simstack's Python itself
                cmdline = Path(f"/proc/{self.proc.pid}/cmdline").read_bytes().split(b"\0")
                if b"simstack" not in cmdline:
                    raise SystemExit(f"pid {self.proc.pid} is not simstack: {cmdline!r}")
                return
        self.stop()
        raise SystemExit(f"simstack did not start within {timeout:g} s:\n{''.join(e for e in self.errors if e)}")

    def cpu(self) -> float:
        """utime + stime of the whole process (every thread), in seconds."""
        return cpu_seconds(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# --- loads -------------------------------------------------------------------------------------------------------

@dataclass
class Result:
    echoes: int  # replies the client got back (late ones included: the stack answered them too)
    expected: int
    wall: float  # seconds
    cpu: float | None = None  # seconds of the stack's CPU; None for the kernel ceiling
    note: str = ""

    @property
    def us_cpu(self) -> float:
        return 1e6 * (self.cpu or 0.0) / self.echoes if self.echoes else float("nan")

    @property
    def us_wall(self) -> float:
        return 1e6 * self.wall / self.echoes if self.echoes else float("nan")


def ping_flood(ns: str, count: int, deadline: float, pin: tuple[str, ...]) -> Result:
    r = in_ns(ns, "ping", "-q", "-f", "-c", str(count), "-w", str(int(deadline)), STACK_IP, timeout=deadline + 30, pin=pin)
    m = SUMMARY.search(r.stdout)
    if not m:
        return Result(0, count, 0.0, note=f"ping -f: no summary (exit {r.returncode}) {r.stderr.strip()}")
    sent, got, ms = int(m.group(1)), int(m.group(2)), int(m.group(3))
    note = "" if got == count else f"ping -f: {got}/{sent} replies" + (" (deadline hit)" if sent < count else "")
    return Result(got, count, ms / 1000, note=note)


def udp_echo(ns: str, count: int, size: int, deadline: float, pin: tuple[str, ...]) -> Result:
    r = in_ns(ns, sys.executable, str(Path(__file__).resolve()), "udp-client", STACK_IP, str(ECHO_PORT),
              "--count", str(count), "--size", str(size), "--deadline", str(deadline), timeout=deadline + 30, pin=pin)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        return Result(0, count, 0.0, note=f"udp client failed (exit {r.returncode}): {r.stderr.strip()[-300:]}")
    d = json.loads(lines[-1])
    problems = [f"{d[k]} {k}" for k in ("lost", "late", "bad") if d[k]] + (["stalled"] if d["stalled"] else [])
    return Result(d["replies"] + d["late"], count, d["seconds"],
                  note=f"udp-{size}: " + ", ".join(problems) if problems else "")


@dataclass
class Pins:
    """``taskset`` prefixes: the stack on one CPU, the kernel-side load generators on another."""
    stack: tuple[str, ...] = ()
    load: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Pins":
        return cls(*pins(text))

    def describe(self) -> str:
        if not self.stack:
            return "placement left to the scheduler"
        return f"stack pinned to CPU {self.stack[-1]}, ping and the UDP client to CPU {self.load[-1]}"


def run_load(ns: str, load: str, count: int, deadline: float, pins: Pins) -> Result:
    if load == "icmp":
        return ping_flood(ns, count, deadline, pins.load)
    return udp_echo(ns, count, int(load.removeprefix("udp-")), deadline, pins.load)


def measure(ns: str, tree: Tree, count: int, deadline: float, pins: Pins) -> dict[str, Result]:
    """One run of one tree: start its stack, warm it up, and take the CPU it spends on each load."""
    stack = Stack(ns, tree, pins.stack)
    try:
        stack.wait_ready()
        warm = max(200, count // 20)  # ARP, first-call paths, CPU frequency
        run_load(ns, "icmp", warm, deadline, pins)
        run_load(ns, "udp-64", warm, deadline, pins)
        results: dict[str, Result] = {}
        for load in LOADS:
            before = stack.cpu()
            res = run_load(ns, load, count, deadline, pins)
            res.cpu = stack.cpu() - before
            results[load] = res
            if not stack.alive():
                res.note += " (stack exited)"
                break
        return results
    finally:
        stack.stop()


def veth_pair(base: str, peer: str) -> None:
    must(sh("ip", "link", "add", "v0", "netns", base, "type", "veth", "peer", "name", "v1", "netns", peer))
    must(in_ns(base, "ip", "addr", "add", f"{HOST_IP}/24", "dev", "v0"))
    must(in_ns(peer, "ip", "addr", "add", f"{STACK_IP}/24", "dev", "v1"))
    must(in_ns(base, "ip", "link", "set", "v0", "up"))
    must(in_ns(peer, "ip", "link", "set", "v1", "up"))


# --- report ------------------------------------------------------------------------------------------------------

@dataclass
class Series:
    runs: list[Result] = field(default_factory=list)

    def median(self, key: str) -> float:
        values = [getattr(r, key) for r in self.runs if r.echoes]
        return statistics.median(values) if values else float("nan")

    def replies(self) -> str:
        return f"{sum(r.echoes for r in self.runs)}/{sum(r.expected for r in self.runs)}"


def report(trees: list[Tree], series: dict[tuple[str, str], Series], ceiling: Series, count: int, runs: int) -> None:
    print(f"\nCPU of the stack's process per echo, median of {runs} run(s) of {count} echoes "
          f"(clock tick {1e6 / TICK:,.0f} us, so +-{1e6 / TICK / count:.1f} us an echo):")
    head = f"  {'load':<9} {'tree':<26} {'CPU us/echo':>11} {'ratio':>6} {'wall us/echo':>12} {'replies':>15}   per run (CPU us)"
    print(head)
    print("  " + "-" * (len(head) + 10))
    base, cur = trees
    for load in LOADS:
        for t in trees:
            s = series[load, t.label]
            ratio = ""
            if t is cur:
                b = series[load, base.label].median("us_cpu")
                ratio = f"{s.median('us_cpu') / b:.2f}x" if b else ""
            per_run = " ".join(f"{r.us_cpu:.1f}" for r in s.runs)
            print(f"  {load:<9} {t.label:<26} {s.median('us_cpu'):>11.1f} {ratio:>6} {s.median('us_wall'):>12.1f} "
                  f"{s.replies():>15}   {per_run}")
    print(f"  {'icmp':<9} {'kernel (veth peer)':<26} {'-':>11} {'':>6} {ceiling.median('us_wall'):>12.1f} "
          f"{ceiling.replies():>15}   (ceiling: wall time per reply of the same ping -f)")
    print("  ratio = current / baseline CPU per echo (below 1 is faster)")


def main() -> int:
    if sys.argv[1:2] == ["udp-client"]:
        return client_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default="9f408f8", metavar="REF", help="commit to compare against (default %(default)s)")
    ap.add_argument("--runs", type=int, default=5, help="runs per tree, alternating the trees (default %(default)s)")
    ap.add_argument("--count", type=int, default=20000, help="echoes per load per run (default %(default)s)")
    ap.add_argument("--quick", action="store_true", help="smoke check: 2,000 echoes, 1 run")
    ap.add_argument("--cpus", default="0,1", metavar="STACK,LOAD",
                    help="CPUs for the stack and for the load generators, or none (default %(default)s)")
    args = ap.parse_args()
    if args.quick:
        args.count, args.runs = 2000, 1
    require("network namespaces, TAP, ping -f")
    pins = Pins.parse(args.cpus) if len(os.sched_getaffinity(0)) > 1 or args.cpus == "none" else Pins()
    deadline = 30.0 + args.count / 500  # seconds per load: 70 s for 20,000 echoes, ten times the expected time
    tag = f"sle-{os.getpid()}"
    stack_ns, base_ns, peer_ns = f"{tag}-stack", f"{tag}-base", f"{tag}-peer"
    base_rev, head_rev = rev(args.baseline), rev("HEAD")
    dirty = " +changes" if sh("git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no").stdout.strip() else ""
    notes: list[str] = []
    start = time.monotonic()
    with baseline_tree(base_rev) as base_path, namespaces(stack_ns, base_ns, peer_ns):
        trees = [Tree(f"baseline {base_rev}", base_path), Tree(f"current {head_rev}{dirty}", ROOT)]
        for t in trees:
            print(f"{t.label}: simstack from {t.check_import()}", flush=True)
        print(pins.describe(), flush=True)
        veth_pair(base_ns, peer_ns)
        series = {(load, t.label): Series() for load in LOADS for t in trees}
        ceiling = Series()
        for run in range(args.runs):
            k = ping_flood(base_ns, args.count, deadline, pins.load)
            ceiling.runs.append(k)
            if k.note:
                notes.append(f"run {run + 1}, kernel: {k.note}")
            for t in (trees if run % 2 == 0 else trees[::-1]):
                results = measure(stack_ns, t, args.count, deadline, pins)
                line = []
                for load, res in results.items():
                    series[load, t.label].runs.append(res)
                    line.append(f"{load} {res.us_cpu:.1f}")
                    if res.note:
                        notes.append(f"run {run + 1}, {t.label}: {res.note}")
                print(f"run {run + 1}/{args.runs} {t.label}: CPU us/echo " + ", ".join(line), flush=True)
    report(trees, series, ceiling, args.count, args.runs)
    for n in notes:
        print("  note: " + n)
    print(f"  ({time.monotonic() - start:.0f} s; load average {os.getloadavg()[0]:.2f})")
    return 1 if notes else 0


if __name__ == "__main__":
    raise SystemExit(main())
