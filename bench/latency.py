"""Live-mode latency: ping and UDP round trips to simstack, with and without --busy-poll, against the kernel.

Run as root: ``.venv/bin/python bench/latency.py [--busy-poll 2000,20000] [--cpus 0,1] [--quick]``.

One round trip at a time, from the kernel's side of the TAP, at two paces:
1 ms apart (a busy peer: the stack has just answered the previous one) and
10 ms apart (an idle one: the stack's process is asleep when each comes).

* ``ping``: iputils ping, ``-i 0.001`` and ``-i 0.01``, its own RTT figures;
* ``udp``: a Python client (this file, run as ``udp-client`` in the
  namespace) sends 8 bytes to the stack's UDP echo (port 7), waits for the
  answer and times it with ``perf_counter``, then sleeps to the next slot.

The stack runs once per setting: without --busy-poll, then with each value
given. Between the two, as a floor, a minimal Python responder on the same
TAP (``tap-floor``: epoll, read, patch the bytes, write): what the stack
takes over it is the stack's own. The baseline, in the same run, is the kernel over a veth pair between
two more namespaces: the same ping against the kernel's ICMP, and the same
client against a Python UDP echo server (``udp-server``, a blocking
recvfrom/sendto loop) on the far side. Placement as bench/live_echo.py: the
stack (and the kernel's echo server) on one CPU, ping and the client on the
other (``--cpus STACK,LOAD``, default 0,1; ``none`` leaves it to the scheduler).
On a machine shared with other work, ``--rt`` runs all of them SCHED_FIFO,
so the figures are the code's and not the other work's.

For each row: median and p99 in ms, and the ratio of each to the kernel's
same load. For each stack setting, the CPU the stack's process used while
pinged every 10 ms, as a share of one CPU: what --busy-poll costs at idle.
Everything happens in throwaway namespaces (``slt-<pid>-*``), deleted on exit.
"""

import argparse
import json
import math
import os
import re
import select
import socket
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from netns_tools import Process, in_ns, must, namespaces, pins, require, sh

STACK_IP, HOST_IP, ECHO_PORT = "10.0.0.1", "10.0.0.2", 7
READY = "simstack: live on tap0"
TARGET_MEDIAN, TARGET_P99 = 0.08, 0.20  # ms, ping at 1 ms intervals (issue "Fast TCP" item 6)


# --- the kernel side's programs (run inside a namespace) ---------------------------------------------------------

def udp_client(host: str, port: int, count: int, interval: float) -> dict[str, object]:
    """``count`` echoes one at a time, each starting ``interval`` after the previous one started; RTTs in ms."""
    rtts: list[float] = []
    lost = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        s.settimeout(1.0)
        clock = time.perf_counter
        start = clock()
        for i in range(count):
            payload = i.to_bytes(8, "big")
            t = clock()
            s.send(payload)
            try:
                while s.recv(64) != payload:  # a late answer to an earlier one: not this round trip
                    pass
            except OSError:  # TimeoutError, or refused: this echo is lost
                lost += 1
            else:
                rtts.append((clock() - t) * 1000)
            pause = start + (i + 1) * interval - clock()
            if pause > 0:
                time.sleep(pause)
    return {"rtts": rtts, "lost": lost}


def udp_server(host: str, port: int) -> None:
    """The kernel's answer to the client: a blocking echo loop, as simple as Python allows."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, port))
        print("ready", flush=True)
        while True:
            data, addr = s.recvfrom(65535)
            s.sendto(data, addr)


def tap_floor(name: str) -> None:
    """The least a Python process can do to answer over a TAP: epoll, read, patch the bytes, write.

    It answers ARP for STACK_IP, ICMP echo, and UDP to port 7 by swapping the
    addresses (which leaves the IPv4 and UDP checksums as they were) and, for
    ICMP, the type (RFC 1624's incremental update of the checksum). What
    simstack takes over this is the stack's, not the TAP's or the VM's.
    """
    from simstack.engine.live.netlink import Netlink
    from simstack.engine.wire.tap import Tap

    tap = Tap.attach(name)
    with Netlink() as nl:
        link = nl.link(name)
        assert link is not None
        nl.set_up(link)
        nl.add_address(link, socket.inet_aton(HOST_IP), 24)
    print("ready", flush=True)
    fd = tap.fileno()
    ep = select.epoll()
    ep.register(fd, select.EPOLLIN)
    mac, me = bytes.fromhex("aabbccddeeff"), socket.inet_aton(STACK_IP)
    while True:
        ep.poll(-1)
        while True:
            try:
                f = os.read(fd, 65536)
            except BlockingIOError:
                break
            eth = f[6:12] + mac + f[12:14]
            if f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x01" and f[38:42] == me:
                os.write(fd, (eth + f[14:20] + b"\x00\x02" + mac + me + f[22:32]).ljust(60, b"\0"))
            elif f[12:14] == b"\x08\x00" and f[30:34] == me:
                ihl = (f[14] & 15) * 4
                ip = f[14:26] + f[30:34] + f[26:30] + f[34:14 + ihl]
                body = f[14 + ihl:]
                if f[23] == 1 and body[0] == 8:
                    c = (~int.from_bytes(body[2:4], "big") & 0xFFFF) + (~0x0800 & 0xFFFF)
                    c = (c & 0xFFFF) + (c >> 16)
                    c = (c & 0xFFFF) + (c >> 16)
                    os.write(fd, eth + ip + b"\x00" + body[1:2] + (~c & 0xFFFF).to_bytes(2, "big") + body[4:])
                elif f[23] == 17 and body[2:4] == ECHO_PORT.to_bytes(2, "big"):
                    os.write(fd, eth + ip + body[2:4] + body[0:2] + body[4:])


def helper_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="latency.py udp-client|udp-server|tap-floor")
    ap.add_argument("role", choices=["udp-client", "udp-server", "tap-floor"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.01)
    a = ap.parse_args(argv)
    if a.role == "tap-floor":
        tap_floor(a.host)
        return 0
    if a.role == "udp-server":
        udp_server(a.host, a.port)
        return 0
    print(json.dumps(udp_client(a.host, a.port, a.count, a.interval)), flush=True)
    return 0


# --- measuring ---------------------------------------------------------------------------------------------------

@dataclass
class Rtts:
    ms: list[float]
    sent: int

    @property
    def median(self) -> float:
        return statistics.median(self.ms) if self.ms else math.nan

    @property
    def p99(self) -> float:
        if not self.ms:
            return math.nan
        ordered = sorted(self.ms)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def ping(ns: str, dst: str, count: int, interval: float, pin: tuple[str, ...]) -> Rtts:
    r = in_ns(ns, "ping", "-c", str(count), "-i", f"{interval:g}", "-W", "1", dst,
              timeout=count * interval + 60, pin=pin)
    return Rtts([float(t) for t in re.findall(r"icmp_seq=\d+ ttl=\d+ time=([\d.]+) ms", r.stdout)], count)


def udp(ns: str, dst: str, count: int, interval: float, pin: tuple[str, ...]) -> Rtts:
    out = must(in_ns(ns, sys.executable, str(Path(__file__).resolve()), "udp-client", dst, str(ECHO_PORT),
                     "--count", str(count), "--interval", str(interval), timeout=count * interval + 60, pin=pin))
    d = json.loads(out.strip().splitlines()[-1])
    return Rtts(d["rtts"], count)


LOADS = (("ping", 0.001), ("ping", 0.01), ("udp", 0.001), ("udp", 0.01))


def run_loads(ns: str, dst: str, counts: dict[float, int], pin: tuple[str, ...],
              cpu: "Process | None" = None) -> tuple[dict[tuple[str, float], Rtts], float | None]:
    """Every load once against ``dst``; with ``cpu``, that process's CPU share during the 10 ms ping."""
    in_ns(ns, "ping", "-c", "20", "-i", "0.01", "-W", "1", dst, pin=pin)  # warm-up: ARP, caches, first paths
    udp(ns, dst, 20, 0.01, pin)
    results: dict[tuple[str, float], Rtts] = {}
    share = None
    for kind, interval in LOADS:
        if kind == "ping" and interval == 0.01 and cpu is not None:
            c0, t0 = cpu.cpu(), time.monotonic()
            results[kind, interval] = ping(ns, dst, counts[interval], interval, pin)
            share = (cpu.cpu() - c0) / (time.monotonic() - t0)
        else:
            fn = ping if kind == "ping" else udp
            results[kind, interval] = fn(ns, dst, counts[interval], interval, pin)
    return results, share


def veth_pair(base: str, peer: str) -> None:
    must(sh("ip", "link", "add", "v0", "netns", base, "type", "veth", "peer", "name", "v1", "netns", peer))
    must(in_ns(base, "ip", "addr", "add", f"{HOST_IP}/24", "dev", "v0"))
    must(in_ns(peer, "ip", "addr", "add", f"{STACK_IP}/24", "dev", "v1"))
    must(in_ns(base, "ip", "link", "set", "v0", "up"))
    must(in_ns(peer, "ip", "link", "set", "v1", "up"))


def main() -> int:
    if sys.argv[1:2] in (["udp-client"], ["udp-server"], ["tap-floor"]):
        return helper_main(sys.argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--busy-poll", default="2000,20000", metavar="USEC[,USEC...]",
                    help="--busy-poll values to run the stack with besides off (default %(default)s)")
    ap.add_argument("--count", type=int, default=1000, help="round trips per load at 1 ms (default %(default)s; "
                                                            "half as many at 10 ms)")
    ap.add_argument("--cpus", default="0,1", metavar="STACK,LOAD",
                    help="CPUs for the stack and for ping and the client, or none (default %(default)s)")
    ap.add_argument("--rt", action="store_true",
                    help="run the stack, the kernel's echo server, ping and the client as SCHED_FIFO (chrt -f 10): "
                         "the CPUs as if nothing else ran, to see the code's latency on a machine shared with "
                         "other work (the kernel's RT throttling still leaves others 5%%)")
    ap.add_argument("--quick", action="store_true", help="smoke check: 200 round trips per load")
    args = ap.parse_args()
    require("network namespaces, TAP, ping -i 0.001")
    if args.quick:
        args.count = 200
    settings = [0, *(int(v) for v in args.busy_poll.split(",") if v)]
    counts = {0.001: args.count, 0.01: max(1, args.count // 2)}
    stack_pin, load_pin = pins(args.cpus)
    if args.rt:
        stack_pin, load_pin = (*stack_pin, "chrt", "-f", "10"), (*load_pin, "chrt", "-f", "10")
    tag = f"slt-{os.getpid()}"
    stack_ns, base_ns, peer_ns = f"{tag}-stack", f"{tag}-base", f"{tag}-peer"
    start = time.monotonic()
    rows: dict[str, dict[tuple[str, float], Rtts]] = {}
    shares: dict[str, float | None] = {}
    with namespaces(stack_ns, base_ns, peer_ns):
        veth_pair(base_ns, peer_ns)
        server = Process(peer_ns, sys.executable, str(Path(__file__).resolve()), "udp-server", STACK_IP,
                         str(ECHO_PORT), pin=stack_pin)
        try:
            server.wait_for("ready")
            rows["kernel (veth)"], shares["kernel (veth)"] = run_loads(base_ns, STACK_IP, counts, load_pin)
        finally:
            server.stop()
        floor = Process(stack_ns, sys.executable, str(Path(__file__).resolve()), "tap-floor", "tap0", "0", pin=stack_pin)
        try:
            floor.wait_for("ready")
            rows["python on the TAP (floor)"], shares["python on the TAP (floor)"] = run_loads(
                stack_ns, STACK_IP, counts, load_pin, cpu=floor)
        finally:
            floor.stop()
        for usec in settings:
            label = f"simstack busy-poll {usec}" if usec else "simstack"
            stack = Process(stack_ns, sys.executable, "-m", "simstack", "live", "tap0",
                            *(["--busy-poll", str(usec)] if usec else []), pin=stack_pin)
            try:
                stack.wait_for(READY)
                rows[label], shares[label] = run_loads(stack_ns, STACK_IP, counts, load_pin, cpu=stack)
            finally:
                stack.stop()
            print(f"{label}: done", file=sys.stderr, flush=True)
    placement = f"stack on CPU {stack_pin[2]}, load on CPU {load_pin[2]}" if "taskset" in stack_pin \
        else "placement: scheduler"
    placement += ", SCHED_FIFO" if args.rt else ""
    print(f"round trips one at a time from the kernel side ({placement}); ms, ratio to the kernel's same load")
    kernel = rows["kernel (veth)"]
    for kind, interval in LOADS:
        k = kernel[kind, interval]
        print(f"\n{kind} every {interval * 1000:g} ms ({counts[interval]} round trips)")
        for label, res in rows.items():
            r = res[kind, interval]
            ratio = "" if r is k else f"   x{r.median / k.median:5.1f}   x{r.p99 / k.p99:5.1f}"
            print(f"  {label:<27} median {r.median:6.3f}   p99 {r.p99:6.3f}{ratio}   replies {len(r.ms)}/{r.sent}")
    print("\nCPU of the stack's process while pinged every 10 ms (share of one CPU):")
    for label, share in shares.items():
        if share is not None:
            print(f"  {label:<27} {100 * share:5.1f}%")
    print(f"\ntarget, ping every 1 ms: median <= {TARGET_MEDIAN} ms, p99 <= {TARGET_P99} ms")
    met = {}
    for label, res in rows.items():
        if label.startswith("simstack"):
            r = res["ping", 0.001]
            met[label] = r.median <= TARGET_MEDIAN and r.p99 <= TARGET_P99
            print(f"  {label:<27} {'met' if met[label] else 'NOT met'} (median {r.median:.3f}, p99 {r.p99:.3f})")
    ok = any(met.values())
    print(f"({time.monotonic() - start:.0f} s; load average {os.getloadavg()[0]:.2f})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
