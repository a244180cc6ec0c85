"""Forwarding: packets per second simstack routes between two lab segments, against the kernel's own forwarding.

Run as root: ``.venv/bin/python bench/forward.py``. Two set-ups, one after
the other, in throwaway network namespaces (deleted on exit, even on
failure), the same client programs in both:

* simstack: ``simstack live T1 T2 --lab NAME --forward`` in a namespace of
  its own (entered with nsenter, as the live tests do): two bridges, a
  client on each (10.0.1.2 and 10.0.2.2), simstack their default route;
* the kernel: the same two clients, each on a veth into a third namespace
  that forwards (net.ipv4.ip_forward=1) with 10.0.1.1 and 10.0.2.1: the
  ceiling for this machine and these client programs.

For each, client 1 sends UDP datagrams to client 2 as fast as one Python
process can for ``--seconds``, and client 2 counts what arrives and over
what time: forwarded packets per second. Two sizes: 64-byte Ethernet frames
(18 bytes of UDP payload, the smallest frame) and 1400 bytes of UDP payload.
Then 200 pings 5 ms apart from client 1 to client 2: the median round trip
through each, and what simstack adds. The ratios are printed last.

The sender is one Python process, so the kernel's figure is often the
sender's rate rather than the kernel's limit (its line says how much was
offered); simstack's is its own (what it forwards of a load larger than it
can carry). On a two-core machine, simstack, the sender and the receiver
share the cores.

    .venv/bin/python bench/forward.py [--seconds 3]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from netns_tools import in_ns, must, namespaces, require, sh

ROOT = Path(__file__).resolve().parent.parent
TIME = re.compile(r"icmp_seq=\d+ ttl=\d+ time=([\d.]+) ms")
PORT = 9000
SMALL = 18  # UDP payload of a 64-byte frame: 64 - 4 (FCS) - 14 - 20 - 8
LARGE = 1400

SENDER = """
import socket, sys, time
dst, size, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((dst, PORT))
data, n, send, clock = b"x" * size, 0, s.send, time.monotonic
end = clock() + secs
while clock() < end:
    for _ in range(256):
        try:
            send(data)
            n += 1
        except OSError:  # ENOBUFS: the queue is full, as on a NIC
            pass
print(n)
""".replace("PORT", str(PORT))

SINK = """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE: root may pass rmem_max
s.bind(("0.0.0.0", PORT))
print("ready", flush=True)
s.settimeout(30.0)
count, first, last, clock = 0, 0.0, 0.0, time.monotonic
recv = s.recv
while True:
    try:
        recv(65536)
    except socket.timeout:
        break
    now = clock()
    if not count:
        first = now
        s.settimeout(1.0)
    count += 1
    last = now
print(count, last - first)
""".replace("PORT", str(PORT))


@dataclass
class Rate:
    label: str
    size: int
    offered: float  # datagrams per second the sender got into its socket
    delivered: float  # datagrams per second the receiver got
    received: int

    def line(self) -> str:
        return (f"{self.label:<9} UDP {self.size:>4} B   forwarded {self.delivered:>10,.0f} pkt/s   "
                f"({self.delivered * (self.size + 28) * 8 / 1e6:7.1f} Mbit/s of IP)   offered {self.offered:>10,.0f} pkt/s")








def udp_rate(label: str, sender_ns: str, sink_ns: str, dst: str, size: int, seconds: float) -> Rate:
    sink = subprocess.Popen(["ip", "netns", "exec", sink_ns, sys.executable, "-c", SINK], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        if sink.stdout.readline().strip() != "ready":
            raise SystemExit(f"the receiver in {sink_ns} did not start: {sink.stderr.read() if sink.stderr else ''}")
        sent = int(must(in_ns(sender_ns, sys.executable, "-c", SENDER, dst, str(size), str(seconds))).split()[0])
        out, _err = sink.communicate(timeout=60)
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
    count_text, span_text = out.split()
    count, span = int(count_text), float(span_text)
    return Rate(label, size, sent / seconds, count / span if span > 0 else 0.0, count)


def rtts(ns: str, dst: str, count: int = 200) -> list[float]:
    must(in_ns(ns, "ping", "-c", "3", "-i", "0.05", "-W", "2", dst))  # ARP, on both sides
    out = in_ns(ns, "ping", "-n", "-c", str(count), "-i", "0.005", "-W", "2", dst).stdout
    times = [float(t) for t in TIME.findall(out)]
    if len(times) < count * 0.95:
        raise SystemExit(f"ping {dst} from {ns}: {len(times)} of {count} replies\n{out}")
    return times


def measure(label: str, a: str, b: str, dst: str, seconds: float) -> tuple[list[Rate], list[float]]:
    latency = rtts(a, dst)
    rates = [udp_rate(label, a, b, dst, size, seconds) for size in (SMALL, LARGE)]
    return rates, latency


def kernel(tag: str, seconds: float) -> tuple[list[Rate], list[float]]:
    a, b, r = f"{tag}-ka", f"{tag}-kb", f"{tag}-kr"
    with namespaces(a, b, r):
        for ns, peer, addr, gw in ((a, "ra", "10.0.1.1/24", "10.0.1.2/24"), (b, "rb", "10.0.2.1/24", "10.0.2.2/24")):
            must(sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", r))
            must(sh("ip", "-n", ns, "addr", "add", gw, "dev", "eth0"))
            must(sh("ip", "-n", ns, "link", "set", "eth0", "up"))
            must(sh("ip", "-n", r, "addr", "add", addr, "dev", peer))
            must(sh("ip", "-n", r, "link", "set", peer, "up"))
            must(sh("ip", "-n", ns, "route", "add", "default", "via", addr.split("/")[0]))
        must(in_ns(r, "sysctl", "-qw", "net.ipv4.ip_forward=1"))
        return measure("kernel", a, b, "10.0.2.2", seconds)


def simstack(tag: str, seconds: float) -> tuple[list[Rate], list[float], str]:
    host = f"{tag}-h"
    name = tag.replace("-", "")[:10]
    with namespaces(host):
        argv = ["nsenter", f"--net=/run/netns/{host}", sys.executable, "-m", "simstack", "live", f"{name}t", f"{name}u",
                "--lab", name, "--forward", "--no-serve", "--seed", "1"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("simstack: live on"):
                raise SystemExit(f"simstack did not start: {line}{proc.stderr.read() if proc.stderr else ''}")
            rates, latency = measure("simstack", f"{name}-1", f"{name}-2", "10.0.2.2", seconds)
            proc.terminate()
            out, _err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    report = out.split("simstack: stopped", 1)[-1]
    return rates, latency, report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="how long each UDP run sends (default 3)")
    args = ap.parse_args()
    require("network namespaces, TAP devices")
    tag = f"sfb{os.getpid()}"
    start = time.monotonic()
    k_rates, k_rtt = kernel(tag, args.seconds)
    s_rates, s_rtt, report = simstack(tag, args.seconds)
    print(f"forwarding between two segments, {args.seconds:g} s of UDP per size, one Python sender "
          f"({os.cpu_count()} CPUs)")
    for rate in (*k_rates, *s_rates):
        print("  " + rate.line())
    k_med, s_med = statistics.median(k_rtt), statistics.median(s_rtt)
    print(f"  ping through the kernel   median {k_med:.3f} ms   ({len(k_rtt)} replies)")
    print(f"  ping through simstack     median {s_med:.3f} ms   ({len(s_rtt)} replies): simstack adds "
          f"{s_med - k_med:.3f} ms")
    print("ratios (simstack / kernel):")
    for k, s in zip(k_rates, s_rates, strict=True):
        print(f"  UDP {k.size:>4} B   {s.delivered / k.delivered:6.3f}   "
              f"(kernel {k.delivered:,.0f} pkt/s, simstack {s.delivered:,.0f} pkt/s)")
    print(f"  ping RTT     {s_med / k_med:6.2f} x")
    print(f"simstack's counters:{report.split(chr(10), 1)[-1].rstrip()}")
    print(f"({time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
