#!/usr/bin/env python3
"""The sender's per-ACK cost in a simulated bulk transfer, against another checkout's in the same run.

Run: ``.venv/bin/python bench/tcp_ack_path.py [--baseline DIR] [--size MB] [--runs N]``.

Two simstacks on one SimNetwork (a clean wire, as tests/test_tcp_network.py's
transfer), one sending ``--size`` MB (default 5) to the other's reader. The
figure is wall time divided by the ACKs the sender took (its ``tcp.rx``), the
median of ``--runs`` (default 7): on a clean link nearly every ACK takes the
ESTABLISHED fast path, which is what the congestion-control interface must not
slow down. With ``--baseline DIR`` (a checkout whose ``simstack`` package
imports, e.g. ``git archive main | tar -x -C DIR``), the same is measured there
in a child process, runs interleaved, and the ratio printed.
"""

import argparse
import json
import random
import statistics
import subprocess
import sys

CHILD = r"""
import json, random, sys, time
from simstack.engine.api.sockets import AF_INET, SOCK_STREAM
from simstack.engine.scenario.simhost import NetHost
from simstack.engine.wire.impair import Impairment
from simstack.engine.wire.network import SimNetwork
from simstack.protocols.stack import Stack, StackConfig
from simstack.protocols.tcp_conn import TcpConn

spent = [0.0, 0]
sender = []
_arrives = TcpConn.segment_arrives

def timed(self, seg, now):
    if sender and self is sender[0]:
        t = time.perf_counter()
        r = _arrives(self, seg, now)
        spent[0] += time.perf_counter() - t
        spent[1] += 1
        return r
    return _arrives(self, seg, now)

TcpConn.segment_arrives = timed

def run(size):
    net = SimNetwork(1)
    spec = Impairment.parse("delay=1ms")
    a = NetHost(net, net.attach("a", Stack(StackConfig(mac=bytes.fromhex("020000000001"), ip=bytes([10, 0, 0, 1])),
                                           random.Random(1)), spec))
    b = NetHost(net, net.attach("b", Stack(StackConfig(mac=bytes.fromhex("020000000002"), ip=bytes([10, 0, 0, 2])),
                                           random.Random(2)), spec))
    server = a.socket(AF_INET, SOCK_STREAM)
    server.bind(("", 9))
    server.listen()
    client = b.socket(AF_INET, SOCK_STREAM)
    client.settimeout(3600)
    client.connect(("10.0.0.1", 9))
    conn, _ = server.accept()
    conn.setblocking(False)
    sender.append(client._endpoint)
    done = [0, False]

    def readable():
        while True:
            try:
                data = conn.recv(65536)
            except BlockingIOError:
                return
            if not data:
                done[1] = True
                a.remove_reader(conn)
                return
            done[0] += len(data)

    a.add_reader(conn, readable)
    data = random.Random(1).randbytes(size)
    rx0 = b.stack.counters["tcp.rx"]
    t0 = time.perf_counter()
    client.sendall(data)
    client.close()
    assert net.run_until(lambda: done[1], net.now + 3600)
    wall = time.perf_counter() - t0
    assert done[0] == size
    return wall, b.stack.counters["tcp.rx"] - rx0

wall, acks = run(int(sys.argv[1]))
print(json.dumps({"wall": wall, "acks": acks, "ack_time": spent[0], "ack_calls": spent[1]}))
"""


FAST_PATH = r"""
import json, random, sys, time, statistics
from simstack.engine.api.sockets import AF_INET, SOCK_STREAM
from simstack.engine.scenario.simhost import NetHost
from simstack.engine.wire.network import SimNetwork
from simstack.protocols.stack import Stack, StackConfig
from simstack.protocols.tcp import Tcp, ACK
from simstack.protocols.seqnum import MASK

net = SimNetwork(1)
cfg_a = StackConfig(mac=bytes.fromhex("020000000001"), ip=bytes([10, 0, 0, 1]))
cfg_b = StackConfig(mac=bytes.fromhex("020000000002"), ip=bytes([10, 0, 0, 2]))
a = NetHost(net, net.attach("a", Stack(cfg_a, random.Random(1))))
b = NetHost(net, net.attach("b", Stack(cfg_b, random.Random(2))))
server = a.socket(AF_INET, SOCK_STREAM); server.bind(("", 9)); server.listen()
client = b.socket(AF_INET, SOCK_STREAM); client.settimeout(10); client.connect(("10.0.0.1", 9))
c = client._endpoint
N = 20000
mss = c.snd_mss
results = []
for rep in range(5):
    una = c.snd_una
    c.sndbuf = bytearray(N * mss)
    c.buf_seq = una
    c.snd_nxt = c.snd_max = (una + N * mss) & MASK
    c.cwnd = 1 << 29
    c.ssthresh = 1 << 28  # congestion avoidance
    c.rtt_seq = None
    segs = [Tcp(c.remote_port, c.local_port, c.rcv_nxt, (una + (i + 1) * mss) & MASK, ACK, 65535, 0, (), b"") for i in range(N)]
    arrives = c.segment_arrives
    t0 = time.perf_counter()
    for s in segs:
        arrives(s, 5.0)
    results.append((time.perf_counter() - t0) / N * 1e9)
print(json.dumps({"ns": statistics.median(results)}))
"""


def fast_path(python: str, path: str | None) -> float:
    """ns an in-order ACK takes on the ESTABLISHED fast path: 20000 ACKs of one segment each into a sender whose
    window is full of sent data (congestion avoidance), so that only the ACK's own work is timed."""
    env = None if path is None else {"PYTHONPATH": path, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([python, "-c", FAST_PATH], capture_output=True, text=True, check=True, env=env, cwd=path or None)
    return float(json.loads(out.stdout)["ns"])


def once(python: str, path: str | None, size: int) -> tuple[float, int, float]:
    env = None if path is None else {"PYTHONPATH": path, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([python, "-c", CHILD, str(size)], capture_output=True, text=True, check=True, env=env,
                         cwd=path or None)
    got = json.loads(out.stdout)
    return float(got["wall"]), int(got["acks"]), float(got["ack_time"]) / int(got["ack_calls"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", help="a checkout to compare against, measured in the same run")
    ap.add_argument("--size", type=float, default=5.0, help="MB to send (default 5)")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    size = int(args.size * 1_000_000)
    sides = [("this", None)] + ([("baseline", args.baseline)] if args.baseline else [])
    per_ack: dict[str, list[float]] = {name: [] for name, _ in sides}
    in_tcp: dict[str, list[float]] = {name: [] for name, _ in sides}
    fast: dict[str, list[float]] = {name: [] for name, _ in sides}
    acks: dict[str, int] = {}
    order = list(sides)
    for _ in range(args.runs):
        random.shuffle(order)
        for name, path in order:
            wall, n, tcp = once(sys.executable, path, size)
            per_ack[name].append(wall / n * 1e6)
            in_tcp[name].append(tcp * 1e6)
            fast[name].append(fast_path(sys.executable, path))
            acks[name] = n
    for name, _ in sides:
        print(f"{name:9} {statistics.median(fast[name]):6.0f} ns an ACK on the fast path; "
              f"{statistics.median(in_tcp[name]):6.2f} us in the sender's segment_arrives an ACK, "
              f"{statistics.median(per_ack[name]):7.2f} us of the whole transfer an ACK (medians of {args.runs}), "
              f"{acks[name]} ACKs")
    if args.baseline:
        for label, table in (("fast path", fast), ("segment_arrives", in_tcp), ("whole transfer", per_ack)):
            ratio = statistics.median(table["this"]) / statistics.median(table["baseline"])
            print(f"ratio this/baseline, {label}: {ratio:.3f}")


if __name__ == "__main__":
    main()
