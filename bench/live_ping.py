"""Live-mode latency: the kernel pings simstack over a TAP, and a kernel veth peer as the baseline.

Run as root: ``.venv/bin/python bench/live_ping.py``. Everything happens in
three throwaway network namespaces (deleted on exit, even on failure):

* ``slb-<pid>-stack``: simstack on tap0 (10.0.0.1), the kernel side 10.0.0.2;
* ``slb-<pid>-base`` and ``slb-<pid>-peer``: a veth pair, 10.0.0.2 to 10.0.0.1,
  so the baseline is the same ping program against a kernel that answers.

It prints median and p99 RTT of 1,000 pings 1 ms apart for both, their ratio,
then a 10,000-packet flood ping (``ping -f``) against the stack: loss and
replies per second. Targets: median <= 0.25 ms, p99 <= 1 ms, 0% flood loss.
"""

import argparse
import contextlib
import math
import os
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass

from netns_tools import in_ns, must, namespaces, require, sh

TIME = re.compile(r"icmp_seq=\d+ ttl=\d+ time=([\d.]+) ms")
SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received.*?time (\d+)ms")
READY = "simstack: live on tap0"


@dataclass
class Latency:
    label: str
    rtts: list[float]  # milliseconds
    sent: int

    @property
    def median(self) -> float:
        return statistics.median(self.rtts)

    @property
    def p99(self) -> float:
        ordered = sorted(self.rtts)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]

    def line(self) -> str:
        return (f"{self.label:<22} median {self.median:.3f} ms   p99 {self.p99:.3f} ms   "
                f"min {min(self.rtts):.3f}   max {max(self.rtts):.3f}   replies {len(self.rtts)}/{self.sent}")










def start_simstack(ns: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "simstack", "live", "tap0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # simstack flushes its ready line, or exits (EOF) when setup fails
    if READY not in line:
        proc.kill()
        raise SystemExit(f"simstack did not start: {line}{proc.stderr.read() if proc.stderr else ''}")
    return proc


def veth_pair(base: str, peer: str) -> None:
    must(sh("ip", "link", "add", "v0", "netns", base, "type", "veth", "peer", "name", "v1", "netns", peer))
    must(in_ns(base, "ip", "addr", "add", "10.0.0.2/24", "dev", "v0"))
    must(in_ns(peer, "ip", "addr", "add", "10.0.0.1/24", "dev", "v1"))
    must(in_ns(base, "ip", "link", "set", "v0", "up"))
    must(in_ns(peer, "ip", "link", "set", "v1", "up"))


def ping_rtts(ns: str, label: str, count: int, interval: str) -> Latency:
    in_ns(ns, "ping", "-c", "50", "-i", "0.01", "-W", "1", "10.0.0.1")  # warm-up: ARP, caches, CPU frequency
    out = must(in_ns(ns, "ping", "-c", str(count), "-i", interval, "-W", "1", "10.0.0.1"))
    return Latency(label, [float(t) for t in TIME.findall(out)], count)


def flood(ns: str, count: int) -> tuple[int, int, float]:
    """(transmitted, received, seconds) of ``ping -f``."""
    r = in_ns(ns, "ping", "-f", "-c", str(count), "-W", "1", "10.0.0.1", timeout=600)
    m = SUMMARY.search(r.stdout)
    if not m:
        raise SystemExit(f"cannot parse ping -f output:\n{r.stdout}{r.stderr}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3)) / 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1000, help="pings per latency run (default %(default)s)")
    ap.add_argument("--interval", default="0.001", help="seconds between pings (default %(default)s)")
    ap.add_argument("--flood", type=int, default=10000, help="packets in the flood run (default %(default)s)")
    args = ap.parse_args()
    require("network namespaces, TAP, ping -i 0.001 and -f")
    tag = f"slb-{os.getpid()}"
    stack_ns, base_ns, peer_ns = f"{tag}-stack", f"{tag}-base", f"{tag}-peer"
    with namespaces(stack_ns, base_ns, peer_ns):
        proc = start_simstack(stack_ns)
        try:
            veth_pair(base_ns, peer_ns)
            stack = ping_rtts(stack_ns, "simstack (TAP)", args.count, args.interval)
            kernel = ping_rtts(base_ns, "kernel (veth peer)", args.count, args.interval)
            sent, got, secs = flood(stack_ns, args.flood)
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
    print(f"{args.count} pings, {float(args.interval) * 1000:g} ms apart, from the kernel side:")
    print("  " + stack.line())
    print("  " + kernel.line())
    print(f"  ratio simstack/kernel: median {stack.median / kernel.median:.1f}x   p99 {stack.p99 / kernel.p99:.1f}x")
    loss = 100.0 * (sent - got) / sent if sent else 100.0
    rate = got / secs if secs else float("inf")
    print(f"flood (ping -f -c {args.flood}) against simstack: {got}/{sent} replies, {loss:g}% loss, "
          f"{secs:.2f} s, {rate:,.0f} replies/s")
    ok = stack.median <= 0.25 and stack.p99 <= 1.0 and sent == got
    print(f"targets (median <= 0.25 ms, p99 <= 1 ms, 0% flood loss): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
