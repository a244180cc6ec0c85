#!/usr/bin/env python3
"""A 20 MB curl download from simstack over a lossy link: this tree against a baseline commit, in the same run.

Run as root: ``.venv/bin/python bench/tcp_loss.py [--baseline REF] [--runs N] [--size MB] [--also LABEL:ARGS]``.

netem is what issue 15 names for the lossy link, but kernels built without
``CONFIG_NET_SCH_NETEM`` (this machine's among them) cannot load it, so the
link is impaired by simstack's own ``--impair`` (engine/wire/impair.py), in
both directions: ``loss=3%,reorder=10%,duplicate=1%,delay=1ms`` by default
(``--impair``). Data segments are lost on their way to curl, ACKs on their way
back, and a tenth of the frames overtake their neighbours.

Each run starts a fresh ``simstack live tap0 --serve http:DIR --impair SPEC
--seed N`` for every variant, the same seed for all of them in that run, and
curl downloads the file in the stack's namespace; the sha256 is checked. The
variants alternate run by run, so a busy spell of the machine falls on all of
them alike:

* ``before``: the baseline REF (default ``541adb4``, the tree before sender
  SACK recovery, limited transmit and the congestion-control interface),
  checked out as a temporary detached worktree;
* ``now``: this tree with its defaults;
* any ``--also LABEL:ARGS``: this tree with extra ``simstack live`` arguments
  (``--also "no sack:--tcp-options ws,ts"``, ``--also "offload:--offload"``).

It prints the median MB/s of each and its ratio to ``before`` (issue 15 asks
for at least 3x). A download that does not finish within ``--timeout``
seconds counts as ``size / timeout`` and is flagged. Everything happens in a
throwaway namespace (``stl-<pid>``), deleted on exit, even on failure.
"""

import argparse
import hashlib
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from netns_tools import ROOT, Process, baseline_tree, in_ns, namespaces, pins, require, rev

READY = "simstack: live on tap0"
STACK_IP = "10.0.0.1"
MB = 1_000_000
IMPAIR = "loss=3%,reorder=10%,duplicate=1%,delay=1ms"


@dataclass
class Variant:
    label: str
    tree: Path
    args: list[str]
    mbps: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def download(ns: str, www: Path, size: int, timeout: float, pin: tuple[str, ...], digest: str) -> tuple[float, str]:
    """MB/s of one curl download, and a note if it failed or ran out of time."""
    out = www.parent / "got.bin"
    start = time.monotonic()
    r = in_ns(ns, "curl", "-sS", "--fail", "--max-time", str(timeout), "-o", str(out), f"http://{STACK_IP}/bulk.bin",
              pin=pin, timeout=timeout + 30)
    seconds = time.monotonic() - start
    note = ""
    if r.returncode != 0:
        note = f"curl exit {r.returncode}: {r.stderr.strip()[-200:]}"
        return size / MB / timeout, note
    got = hashlib.sha256(out.read_bytes()).hexdigest()
    out.unlink()
    if got != digest:
        note = "sha256 mismatch"
    return size / MB / seconds, note


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default="541adb4", metavar="REF", help="the tree to compare with (default %(default)s)")
    ap.add_argument("--runs", type=int, default=5, help="downloads per variant (default %(default)s)")
    ap.add_argument("--size", type=int, default=20, help="MB per download (default %(default)s)")
    ap.add_argument("--impair", default=IMPAIR, metavar="SPEC", help="the link's impairment (default %(default)s)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds a download may take (default %(default)s)")
    ap.add_argument("--also", action="append", default=[], metavar="LABEL:ARGS",
                    help="also run this tree with extra simstack live arguments; repeatable")
    ap.add_argument("--cpus", default="0,1", metavar="STACK,LOAD",
                    help="CPUs for the stack and for curl, or none (default %(default)s)")
    args = ap.parse_args()
    require("network namespaces, TAP", "curl")
    stack_pin, load_pin = pins(args.cpus)
    size = args.size * MB
    ns = f"stl-{os.getpid()}"
    www = Path(tempfile.mkdtemp(prefix="simstack-loss-")) / "www"
    www.mkdir()
    data = os.urandom(size)
    (www / "bulk.bin").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    del data
    start = time.monotonic()
    try:
        with baseline_tree(args.baseline) as base, namespaces(ns):
            variants = [Variant(f"before ({rev(args.baseline)})", base, []), Variant("now", ROOT, [])]
            for also in args.also:
                label, _, extra = also.partition(":")
                variants.append(Variant(label, ROOT, shlex.split(extra)))
            print(f"{args.size} MB by curl over '{args.impair}', {args.runs} runs per variant", flush=True)
            for run in range(args.runs):
                for v in variants:
                    stack = Process(ns, sys.executable, "-m", "simstack", "live", "tap0", "--serve",
                                    f"http:{www}", "--impair", args.impair, "--seed", str(run + 1), *v.args,
                                    pin=stack_pin, tree=v.tree)
                    stack.wait_for(READY)
                    mbps, note = download(ns, www, size, args.timeout, load_pin, digest)
                    stack.stop()
                    v.mbps.append(mbps)
                    if note:
                        v.notes.append(f"run {run + 1}: {note}")
                    print(f"  run {run + 1} {v.label}: {mbps:.2f} MB/s {note}", flush=True)
    finally:
        shutil.rmtree(www.parent, ignore_errors=True)
    base_median = statistics.median(variants[0].mbps)
    print(f"\nMB/s, median of {args.runs} download(s) of {args.size} MB over '{args.impair}':")
    for v in variants:
        m = statistics.median(v.mbps)
        print(f"  {v.label:<24} {m:>7.2f}  {m / base_median:>6.2f}x before   "
              f"{' '.join(f'{x:.2f}' for x in v.mbps)}")
        for n in v.notes:
            print(f"    note: {n}")
    print(f"  ({time.monotonic() - start:.0f} s; load average {os.getloadavg()[0]:.2f})")
    return 1 if any(v.notes for v in variants[1:]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
