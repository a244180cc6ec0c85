"""Replay 10,000 ping exchanges through the scenario runner and print exchanges/s.

The scenario is generated in memory: the kernel's ARP who-has and the stack's
reply, then N pairs of "inject an echo request, expect the echo reply" with
sequence numbers 1..N and 56 bytes of data, like ``ping``'s default. It is
loaded once with ``engine.scenario.loads`` (YAML parsing is not timed), then
``Runner(scenario).run()`` is timed ``--runs`` times and the median printed.

Each exchange is the whole round trip the replay does: the stack parses the
request (Ethernet, IPv4, ICMP, two checksums), builds the reply, and the runner
decodes the reply and compares it with the expected fields.

The same runs are repeated, in the same process, with construct's compiled
codec patched in for every protocol module's ``parse``/``emit``
(``construct_codec()`` in tests/construct_reference.py, which a test holds to
the same frames): the baseline the derived struct codec replaces, and the
ratio printed, which depends less on the machine than the rate does.
``--profile`` adds a cProfile table of one derived run.

    .venv/bin/python bench/replay_ping.py            # also: make bench
    .venv/bin/python bench/replay_ping.py --exchanges 2000 --runs 3 --profile
"""

import argparse
import cProfile
import gc
import io
import pstats
import statistics
import sys
import time
from pathlib import Path

from simstack.engine.scenario.loader import Scenario, loads
from simstack.engine.scenario.runner import Runner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from construct_reference import construct_codec  # a test helper, found through the path above

TARGET = 50_000  # exchanges per second on a 2-core machine (issue 12; it was 20,000)
PAYLOAD = 56  # ping's default data size

HEAD = """\
description: >
  Benchmark: the kernel resolves the stack with ARP, then pings it {n} times
  with {payload} bytes of data; every reply is decoded and compared.
stack:
  mac: aa:bb:cc:dd:ee:ff
  ip: 10.0.0.1/24
hosts:
  kernel: {{mac: "02:00:00:00:00:02", ip: 10.0.0.2}}
steps:
  - at: 0
    inject: {{eth: {{dst: broadcast, src: kernel}}, arp: {{op: request, sha: kernel, spa: kernel, tpa: stack}}}}
  - expect: {{eth: {{dst: kernel, src: stack, type: arp}}, arp: {{op: reply, sha: stack, spa: stack, tha: kernel, tpa: kernel}}}}
"""
# The first exchange spells out the repeated mappings under YAML anchors and the
# rest refer to them, which roughly halves the (pure-Python) YAML parse.
FIRST = """\
  - at: +{dt}
    inject:
      eth: &req_eth {{dst: stack, src: kernel}}
      ipv4: &req_ip {{src: kernel, dst: stack, df: true}}
      icmp: {{type: echo-request, id: 0x1c2d, seq: {seq}, data: &data {{size: {payload}}}}}
  - expect:
      eth: &rep_eth {{dst: kernel, src: stack, type: ipv4}}
      ipv4: &rep_ip {{src: stack, dst: kernel, proto: icmp}}
      icmp: {{type: echo-reply, code: 0, id: 0x1c2d, seq: {seq}, data: *data}}
"""
NEXT = """\
  - {{at: +{dt}, inject: {{eth: *req_eth, ipv4: *req_ip, icmp: {{type: echo-request, id: 0x1c2d, seq: {seq}, data: *data}}}}}}
  - expect: {{eth: *rep_eth, ipv4: *rep_ip, icmp: {{type: echo-reply, code: 0, id: 0x1c2d, seq: {seq}, data: *data}}}}
"""


def scenario_text(n: int, payload: int = PAYLOAD) -> str:
    """The YAML of one ARP exchange and ``n`` echo exchanges (sequence numbers 1..n)."""
    if not 1 <= n <= 0xFFFF:
        raise ValueError("the sequence number is 16 bits: 1 to 65535 exchanges")
    # Stay well inside the ARP entry's 30 s reachable time, so the stack never
    # re-verifies the kernel's address in the middle of the run.
    dt = f"{min(0.001, 10.0 / n):.6g}"
    parts = [HEAD.format(n=n, payload=payload), FIRST.format(dt=dt, seq=1, payload=payload)]
    parts.extend(NEXT.format(dt=dt, seq=seq) for seq in range(2, n + 1))
    return "".join(parts)


def time_runs(scenario: Scenario, runs: int) -> list[float]:
    """Seconds per ``Runner(scenario).run()``; a failed replay stops the benchmark."""
    seconds = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        result = Runner(scenario).run()
        elapsed = time.perf_counter() - start
        if not result.passed:
            sys.exit(f"replay failed:\n{result.report}")
        seconds.append(elapsed)
    return seconds


def report(label: str, n: int, seconds: list[float]) -> float:
    median = statistics.median(seconds)
    rate = n / median
    spread = ", ".join(f"{n / s:,.0f}" for s in seconds)
    print(f"{label:<20} {rate:>10,.0f} exchanges/s  {median / n * 1e6:7.2f} us/exchange  (runs: {spread})")
    return rate


def profile(scenario: Scenario, top: int) -> None:
    prof = cProfile.Profile()
    prof.enable()
    Runner(scenario).run()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    print(out.getvalue())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Replay ping exchanges through the scenario runner; print exchanges/s.")
    p.add_argument("--exchanges", type=int, default=10_000, help="echo request/reply pairs (default 10000)")
    p.add_argument("--runs", type=int, default=5, help="timed runs per codec; the median is reported (default 5)")
    p.add_argument("--no-baseline", action="store_true", help="skip the construct-compiled baseline")
    p.add_argument("--profile", action="store_true", help="print a cProfile table of one run with the derived codec")
    args = p.parse_args(argv)
    n = args.exchanges

    start = time.perf_counter()
    scenario = loads(scenario_text(n), "<bench: replay_ping>")
    print(f"{n:,} ping exchanges, {len(scenario.steps):,} steps, loaded in {time.perf_counter() - start:.1f} s (not timed)")

    Runner(scenario).run()  # warm-up
    derived = report("derived (struct)", n, time_runs(scenario, args.runs))
    if not args.no_baseline:
        with construct_codec():
            Runner(scenario).run()
            baseline = report("construct compiled", n, time_runs(scenario, args.runs))
        print(f"{'ratio':<20} {derived / baseline:>10.2f} x")
    verdict = "met" if derived >= TARGET else "NOT met"
    print(f"target {TARGET:,} exchanges/s: {verdict}")
    if args.profile:
        profile(scenario, 30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
