#!/usr/bin/env python3
"""Live TCP bulk throughput: the kernel into simstack's discard, simstack to the kernel by curl, and an echo.

Run as root: ``.venv/bin/python bench/tcp_bulk.py [--size MB] [--runs N] [--cpus STACK,LOAD] [--modes M,..]
[--quick]``.

Three transfers of ``--size`` MB (default 20) across a TAP, each run
``--runs`` times (default 5), reported as the median in MB/s:

* ``kernel -> stack``: a Python socket client on the kernel side sends the
  bytes into simstack's discard service (port 9), half-closes, and waits for
  simstack to close in turn: the time covers every byte taken by the stack;
* ``stack -> kernel``: ``curl`` downloads a file of that size from simstack's
  HTTP service (``--serve http:DIR``);
* ``echo``: the client sends the bytes to simstack's echo service (port 7)
  while reading them back; MB/s of one direction.

They run against one simstack per mode (``--modes``, default all four), each
on its own TAP in its own namespace: ``mtu1500`` (the baseline the other
modes' ratios are taken against), ``offload`` (MTU 1500 with ``--offload``:
64 KB segments both ways), ``mtu9000`` (``--mtu 9000``, MSS 8960) and
``mtu9000+offload``. The same three run in the same session between two
kernel namespaces joined by a veth pair at MTU 1500 (a Python discard and
echo server and ``python -m http.server`` on the far side), as the ceiling.
The runs interleave: each run measures the kernel, then every mode.
The stack is pinned to one CPU and the clients to another (``--cpus``, default
0,1), as a peer on another machine would be. The first targets (issue 13):
20 MB/s each way, 10 MB/s for the echo.

Everything happens in throwaway network namespaces (``stb-<pid>-*``, deleted
on exit, even on failure), with the file in a temporary directory.
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
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netns_tools import Process, in_ns, must, namespaces, pins, require, sh

ROOT = Path(__file__).resolve().parent.parent
READY = "simstack: live on tap0"
STACK_IP, HOST_IP = "10.0.0.1", "10.0.0.2"
MB = 1_000_000
TARGETS = {"kernel -> stack": 20.0, "stack -> kernel": 20.0, "echo": 10.0}
OFFLOAD_TARGET = {"kernel -> stack": 600.0}  # issue "Fast TCP" item 5: into discard with --offload
MODES = {"mtu1500": (), "offload": ("--offload",), "mtu9000": ("--mtu", "9000"),
         "mtu9000+offload": ("--mtu", "9000", "--offload")}
PYTCP = {"kernel -> stack": 6.4}  # PyTCP 3.0.9 on this kind of machine (issue 13): 6.1-6.7 MB/s into discard
CHUNK = 65536


# --- the kernel side's clients and servers (run inside a namespace: this file with a subcommand) ----------------

def client(host: str, port: int, size: int, echo: bool, timeout: float) -> dict[str, Any]:
    """Send ``size`` bytes (reading the echo back if ``echo``), half-close, read to EOF; the seconds it took."""
    data = memoryview(os.urandom(size))
    digest = hashlib.sha256()
    got = 0
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
        deadline = start + timeout
        eof = False
        while not eof:
            if time.monotonic() > deadline:
                return {"error": f"timeout after {got} bytes back, {size - len(data)} sent"}
            for _key, ev in sel.select(1.0):
                if ev & selectors.EVENT_WRITE and data:
                    with contextlib.suppress(BlockingIOError):
                        data = data[s.send(data[:4 * CHUNK]):]
                    if not data:
                        s.shutdown(socket.SHUT_WR)
                        sel.modify(s, selectors.EVENT_READ)
                if ev & selectors.EVENT_READ:
                    try:
                        chunk = s.recv(4 * CHUNK)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        eof = True
                        break
                    got += len(chunk)
                    if echo:
                        digest.update(chunk)
        sel.close()
    seconds = time.monotonic() - start
    if echo and got != size:
        return {"error": f"{got} of {size} bytes echoed"}
    return {"seconds": seconds, "echoed": got}


def servers(ip: str) -> None:
    """Discard (9) and echo (7) on the kernel, a thread per connection, until killed."""

    def discard(conn: socket.socket) -> None:
        buf = bytearray(4 * CHUNK)
        with conn:
            while conn.recv_into(buf):
                pass

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4 * CHUNK):
                conn.sendall(data)

    def serve(port: int, handler: Any) -> None:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((ip, port))
        ls.listen(64)
        while True:
            conn, _ = ls.accept()
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    for port, handler in ((9, discard), (7, echo)):
        threading.Thread(target=serve, args=(port, handler), daemon=True).start()
    print(json.dumps({"ready": ip}), flush=True)
    threading.Event().wait()


# --- plumbing ------------------------------------------------------------------------------------------------













# --- measurements --------------------------------------------------------------------------------------------

@dataclass
class Series:
    mbps: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # the stack's CPU seconds per MB moved
    notes: list[str] = field(default_factory=list)

    def median(self) -> float:
        return statistics.median(self.mbps) if self.mbps else float("nan")


def run_client(ns: str, ip: str, port: int, size: int, echo: bool, pin: tuple[str, ...]) -> float | str:
    r = in_ns(ns, sys.executable, str(Path(__file__).resolve()), "client", ip, str(port), str(size),
              *(["--echo"] if echo else []), pin=pin, timeout=180)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        return f"client failed ({r.returncode}): {r.stderr.strip()[-300:]}"
    out: dict[str, Any] = json.loads(lines[-1])
    if "error" in out:
        return str(out["error"])
    return size / MB / float(out["seconds"])


def run_curl(ns: str, ip: str, size: int, pin: tuple[str, ...]) -> float | str:
    r = in_ns(ns, "curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download} %{time_total}",
              f"http://{ip}/bulk.bin", pin=pin, timeout=180)
    if r.returncode != 0:
        return f"curl failed ({r.returncode}): {r.stderr.strip()}"
    got, seconds = r.stdout.split()
    if int(got) != size:
        return f"curl got {got} of {size} bytes"
    return size / MB / float(seconds)


def measure(ns: str, ip: str, size: int, load: tuple[str, ...], series: dict[str, Series],
            stack: Process | None) -> None:
    for name in ("kernel -> stack", "stack -> kernel", "echo"):
        before = stack.cpu() if stack is not None else 0.0
        if name == "stack -> kernel":
            res = run_curl(ns, ip, size, load)
        else:
            res = run_client(ns, ip, 7 if name == "echo" else 9, size, name == "echo", load)
        s = series[name]
        if isinstance(res, str):
            s.notes.append(res)
            continue
        s.mbps.append(res)
        if stack is not None:
            s.cpu.append((stack.cpu() - before) / (size / MB * (2 if name == "echo" else 1)))


def main() -> int:
    if sys.argv[1:2] == ["client"]:
        p = argparse.ArgumentParser()
        p.add_argument("host")
        p.add_argument("port", type=int)
        p.add_argument("size", type=int)
        p.add_argument("--echo", action="store_true")
        a = p.parse_args(sys.argv[2:])
        print(json.dumps(client(a.host, a.port, a.size, a.echo, 150.0)), flush=True)
        return 0
    if sys.argv[1:2] == ["servers"]:
        servers(sys.argv[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=20, help="MB per transfer (default %(default)s)")
    ap.add_argument("--runs", type=int, default=5, help="runs of each transfer (default %(default)s)")
    ap.add_argument("--cpus", default="0,1", metavar="STACK,LOAD",
                    help="CPUs for the stack and for the kernel-side clients, or none (default %(default)s)")
    ap.add_argument("--modes", default=",".join(MODES),
                    help=f"simstack's modes to measure, from {', '.join(MODES)} (default all)")
    ap.add_argument("--quick", action="store_true", help="smoke check: 5 MB, 1 run")
    args = ap.parse_args()
    if args.quick:
        args.size, args.runs = 5, 1
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        print(f"bench/tcp_bulk.py: unknown mode {unknown[0] if unknown else '(none)'}: want {', '.join(MODES)}",
              file=sys.stderr)
        return 2
    require("network namespaces, TAP", "curl")
    stack_pin, load_pin = pins(args.cpus)
    size = args.size * MB
    tag = f"stb-{os.getpid()}"
    base_ns, peer_ns = f"{tag}-base", f"{tag}-peer"
    mode_ns = {mode: f"{tag}-s{i}" for i, mode in enumerate(modes)}
    start = time.monotonic()
    simstack = {mode: {name: Series() for name in TARGETS} for mode in modes}
    kernel = {name: Series() for name in TARGETS}
    www = Path(tempfile.mkdtemp(prefix="simstack-bulk-"))
    try:
        with (www / "bulk.bin").open("wb") as f:
            f.write(os.urandom(size))
        with namespaces(*mode_ns.values(), base_ns, peer_ns):
            must(sh("ip", "link", "add", "v0", "netns", base_ns, "type", "veth", "peer", "name", "v1", "netns", peer_ns))
            must(in_ns(base_ns, "ip", "addr", "add", f"{HOST_IP}/24", "dev", "v0"))
            must(in_ns(peer_ns, "ip", "addr", "add", f"{STACK_IP}/24", "dev", "v1"))
            must(in_ns(base_ns, "ip", "link", "set", "v0", "up"))
            must(in_ns(peer_ns, "ip", "link", "set", "v1", "up"))
            peer_servers = Process(peer_ns, sys.executable, str(Path(__file__).resolve()), "servers", STACK_IP,
                                   pin=stack_pin)
            peer_servers.wait_for('"ready"')
            http = Process(peer_ns, sys.executable, "-m", "http.server", "80", "--bind", STACK_IP, "--directory",
                           str(www), pin=stack_pin)
            time.sleep(0.5)
            stacks: dict[str, Process] = {}
            for mode in modes:
                stacks[mode] = Process(mode_ns[mode], sys.executable, "-m", "simstack", "live", "tap0", "--serve",
                                       "echo", "--serve", "discard", "--serve", f"http:{www}", *MODES[mode],
                                       pin=stack_pin)
                stacks[mode].wait_for(READY)
            print(f"{args.size} MB per transfer, {args.runs} runs, modes {', '.join(modes)}; "
                  + (f"stacks on CPU {stack_pin[-1]}, clients on CPU {load_pin[-1]}" if stack_pin else "no pinning"),
                  flush=True)
            for mode in modes:  # ARP, first-call paths, caches
                warm: dict[str, Series] = {name: Series() for name in TARGETS}
                measure(mode_ns[mode], STACK_IP, min(size, 5 * MB), load_pin, warm, stacks[mode])
            for run in range(args.runs):
                measure(base_ns, STACK_IP, size, load_pin, kernel, None)
                for mode in modes:
                    measure(mode_ns[mode], STACK_IP, size, load_pin, simstack[mode], stacks[mode])
                print(f"run {run + 1}/{args.runs}: " + "; ".join(
                    f"{mode} " + ", ".join(f"{_last(simstack[mode][name], run):.1f}" for name in TARGETS)
                    for mode in modes) + " MB/s (" + ", ".join(TARGETS) + ")", flush=True)
            for proc in stacks.values():
                proc.stop()
            http.stop()
            peer_servers.stop()
    finally:
        shutil.rmtree(www, ignore_errors=True)
    notes = report(args, modes, simstack, kernel)
    print(f"  ({time.monotonic() - start:.0f} s; load average {os.getloadavg()[0]:.2f})")
    return 1 if notes else 0


def _last(s: Series, run: int) -> float:
    return s.mbps[-1] if len(s.mbps) > run else float("nan")


def report(args: argparse.Namespace, modes: list[str], simstack: dict[str, dict[str, Series]],
           kernel: dict[str, Series]) -> list[str]:
    """The medians per transfer and mode, each against the first mode and against the kernel over veth."""
    base = modes[0]
    print(f"\nMB/s, median of {args.runs} run(s) of {args.size} MB; x{base}: against the {base} mode of the same run; "
          "of kernel: against two kernels over veth (MTU 1500)")
    notes: list[str] = []
    for name, target in TARGETS.items():
        k = kernel[name].median()
        print(f"  {name} (kernel over veth {k:.1f}; target {target:g}"
              + (f", {OFFLOAD_TARGET[name]:g} with offload" if name in OFFLOAD_TARGET else "") + ")")
        print(f"    {'mode':<16} {'MB/s':>8} {'x' + base:>10} {'of kernel':>9} {'stack CPU s/MB':>14}   per run")
        for mode in modes:
            s = simstack[mode][name]
            ms, mb = s.median(), simstack[base][name].median()
            cpu = statistics.median(s.cpu) if s.cpu else float("nan")
            print(f"    {mode:<16} {ms:>8.1f} {ms / mb:>9.2f}x {ms / k:>9.2%} {cpu:>14.4f}   "
                  + " ".join(f"{v:.1f}" for v in s.mbps))
            notes += [f"{mode} {name}: {n}" for n in s.notes]
        notes += [f"{name} (kernel): {n}" for n in kernel[name].notes]
    if "mtu1500" in modes:
        for name, figure in PYTCP.items():
            print(f"  {name}: {simstack['mtu1500'][name].median() / figure:.1f}x PyTCP 3.0.9's {figure} MB/s (MTU 1500)")
    print("  echo: MB/s in each direction; stack CPU per MB moved either way")
    for n in notes:
        print("  note: " + n)
    return notes


if __name__ == "__main__":
    raise SystemExit(main())
