#!/usr/bin/env python3
"""A two-host TCP transfer over the simulated wire: virtual time, wall time, and CPU per segment each way.

Run: ``.venv/bin/python bench/replay_tcp.py [--size MB] [--runs N] [--loss PCT] [--before REF] [--profile]``.

Two simstacks on one ``SimNetwork`` (engine/wire/network.py), host b sending
``--size`` MB (default 10) to host a through non-blocking sockets driven by
readiness callbacks, once over a clean link and once with ``--loss`` percent
(default 1) of the frames lost each way. Each is run ``--runs`` times
(default 3) and reported as medians: the virtual seconds the transfer took on
the simulated clock, the wall seconds it cost, and the CPU time each host
spent per segment: receiving (host a: the stack's receive path for a data
segment, its ACK, and the application's read) and sending (host b: an ACK's
processing, the segments it releases, and the application's writes). The
ratio is against the clean run of the same tree in the same run; the target
is at most 3 s of wall time with 1% loss.

``--before REF`` runs the same transfers on the tree of a git commit as well
(extracted with ``git archive``, run with ``PYTHONPATH`` pointing at it), so
the per-segment figures of the two trees come from the same run on the same
machine; ``--profile`` prints cProfile's top functions of one lossless run.
"""

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000
TARGET_WALL = 3.0  # seconds, with 1% loss


def transfer(size: int, loss: float, seed: int) -> dict[str, float]:
    """``size`` bytes from b to a; virtual and wall seconds, and each host's CPU per segment."""
    from simstack.engine.api.sockets import AF_INET, SOCK_STREAM
    from simstack.engine.scenario.simhost import NetHost
    from simstack.engine.wire.impair import Impairment
    from simstack.engine.wire.network import SimNetwork, Station
    from simstack.protocols.stack import Stack, StackConfig

    net = SimNetwork(seed)
    spec = Impairment.parse(f"loss={loss}%") if loss else Impairment()
    hosts = []
    for i in (1, 2):
        stack = Stack(StackConfig(mac=bytes.fromhex(f"02000000000{i}"), ip=bytes([10, 0, 0, i])), random.Random(seed + i))
        hosts.append(NetHost(net, net.attach("ab"[i - 1], stack, spec), default_wait=60.0))
    a, b = hosts
    cpu = {"a": 0.0, "b": 0.0}
    clock = time.thread_time  # CPU time: a busy machine that preempts us does not count against the code

    # Every call that does a host's work is timed to that host: its stack's receive and timers, and the
    # settling after an event (the readiness callbacks, which are the applications, and the frames out).
    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            t = clock()
            try:
                return fn(*args)
            finally:
                cpu[name] += clock() - t
        return run

    for host in hosts:
        st = host.station
        st.stack.receive = timed(st.name, st.stack.receive)  # type: ignore[method-assign]
        st.stack.on_timer = timed(st.name, st.stack.on_timer)  # type: ignore[method-assign]
    settle = net.settle

    def timed_settle(station: Station) -> None:
        t = clock()
        settle(station)
        cpu[station.name] += clock() - t

    net.settle = timed_settle  # type: ignore[method-assign]

    server = a.socket(AF_INET, SOCK_STREAM)
    server.bind(("", 9))
    server.listen()
    client = b.socket(AF_INET, SOCK_STREAM)
    client.settimeout(60)
    client.connect(("10.0.0.1", 9))
    conn, _ = server.accept()
    conn.setblocking(False)
    client.setblocking(False)
    data = memoryview(random.Random(seed).randbytes(size))
    received = hashlib.sha256()
    state = {"got": 0, "sent": 0, "eof": False}

    def readable() -> None:
        while True:
            try:
                chunk = conn.recv(65536)
            except BlockingIOError:
                return
            if not chunk:
                state["eof"] = True
                a.remove_reader(conn)
                return
            received.update(chunk)
            state["got"] += len(chunk)

    def writable() -> None:
        while state["sent"] < size:
            try:
                state["sent"] += client.send(data[state["sent"]:state["sent"] + 65536])  # type: ignore[arg-type]
            except BlockingIOError:
                return
        b.remove_writer(client)
        client.close()

    a.add_reader(conn, readable)
    b.add_writer(client, writable)
    start_virtual = net.now
    cpu["a"] = cpu["b"] = 0.0
    wall = time.perf_counter()
    net.call_at(net.now, lambda: None)  # the first settle runs the writer
    if not net.run_until(lambda: bool(state["eof"]), net.now + 3600):
        raise SystemExit(f"only {state['got']} of {size} bytes by t={net.now:.1f}")
    wall = time.perf_counter() - wall
    if received.digest() != hashlib.sha256(data).digest():
        raise SystemExit("the bytes arrived corrupted")
    ca, cb = a.stack.counters.snapshot(), b.stack.counters.snapshot()
    return {"virtual": net.now - start_virtual, "wall": wall,
            "rx_us": cpu["a"] / max(ca.get("tcp.rx", 1), 1) * 1e6, "tx_us": cpu["b"] / max(cb.get("tcp.tx", 1), 1) * 1e6,
            "segments": cb.get("tcp.tx", 0), "retransmits": cb.get("tcp.retransmit", 0)}


def measure(size: int, loss: float, runs: int, seed: int) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {"clean": [], "lossy": []}
    for run in range(runs):
        for name, pct in (("clean", 0.0), ("lossy", loss)):
            out[name].append(transfer(size, pct, seed + run))
    return out


def profile(size: int) -> str:
    prof = cProfile.Profile()
    prof.runcall(transfer, size, 0.0, 1)
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(25)
    return text.getvalue()


def extract(ref: str, into: Path) -> Path:
    """The tree of commit ``ref``, unpacked under ``into`` (symlinks kept: simstack/engine -> ../engine)."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], check=True,
                          capture_output=True).stdout
    tree = into / "before"
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(tree, filter="tar")
    return tree


def child(tree: Path | None, size: int, loss: float, runs: int, seed: int) -> dict[str, list[dict[str, float]]]:
    """``measure`` in a fresh interpreter, on ``tree`` (ahead of the editable install) or the installed package."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    r = subprocess.run([sys.executable, __file__, "--child", str(size), str(loss), str(runs), str(seed)], env=env,
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"the transfer failed ({tree or 'this tree'}):\n{r.stderr[-2000:]}")
    result: dict[str, list[dict[str, float]]] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        size, loss, runs, seed = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(measure(size, loss, runs, seed)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=float, default=10, help="MB sent (default %(default)s)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each transfer (default %(default)s)")
    ap.add_argument("--loss", type=float, default=1.0, help="percent of frames lost each way (default %(default)s)")
    ap.add_argument("--before", metavar="REF", help="also run the tree of this git commit, in the same run")
    ap.add_argument("--profile", action="store_true", help="print cProfile's top functions of one lossless run")
    args = ap.parse_args()
    size = int(args.size * MB)
    if args.profile:
        print(profile(size))
        return 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as work:
        trees: list[tuple[str, Path | None]] = [("this tree", None)]
        if args.before:
            trees.insert(0, (f"before ({args.before})", extract(args.before, Path(work))))
        # The trees take turns, run by run, so a change in the machine's load falls on both alike.
        results: list[tuple[str, dict[str, list[dict[str, float]]]]] = [(name, {"clean": [], "lossy": []})
                                                                          for name, _ in trees]
        for run in range(args.runs):
            for (_, tree), (_, res) in zip(trees, results, strict=True):
                for link, rows in child(tree, size, args.loss, 1, 1000 + run).items():
                    res[link] += rows
    print(f"{size / MB:g} MB from b to a over a SimNetwork, {args.runs} run(s) each, medians:")
    print(f"  {'tree':<18} {'link':<9} {'virtual s':>9} {'wall s':>7} {'ratio':>6} {'rx us/seg':>9} {'tx us/seg':>9}"
          f" {'segments':>8} {'rexmits':>7}")
    met = True
    for name, res in results:
        base = median(res["clean"], "wall")
        for link, rows in res.items():
            wall = median(rows, "wall")
            label = "clean" if link == "clean" else f"{args.loss:g}% loss"
            print(f"  {name:<18} {label:<9} {median(rows, 'virtual'):>9.2f} {wall:>7.2f} {wall / base:>6.2f}"
                  f" {median(rows, 'rx_us'):>9.1f} {median(rows, 'tx_us'):>9.1f} {median(rows, 'segments'):>8.0f}"
                  f" {median(rows, 'retransmits'):>7.0f}")
            if name == "this tree" and link == "lossy":
                met = wall <= TARGET_WALL
    if args.before:
        before, after = results[0][1], results[1][1]
        for key, what in (("rx_us", "receive"), ("tx_us", "send")):
            b, a = median(before["clean"], key), median(after["clean"], key)
            print(f"  {what} per segment, clean link: {b:.1f} -> {a:.1f} us ({a / b:.2f}x)")
    print(f"  target: <= {TARGET_WALL:g} s wall with {args.loss:g}% loss: {'met' if met else 'NOT met'}"
          f"  ({time.monotonic() - started:.0f} s; load average {os.getloadavg()[0]:.2f})")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
