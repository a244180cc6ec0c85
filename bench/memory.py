"""Peak memory of ``simstack replay`` and ``simstack import`` against the size of their input (issue 16, item 7).

Two inputs are generated: a scenario of N steps (the kernel pings the stack
N/2 times: an inject and an expect per exchange, written one flow mapping a
line with anchors for the repeated headers, the way a person or a generator
writes a long scenario) and a classic pcap of N frames (the same exchanges,
written by ``engine/wire/pcap.py``). Each command runs as a subprocess, and
its peak resident set (its own ``VmHWM`` as it exits) is printed next to the
size of the file it read, over a baseline: the same command on a tiny input,
which is the interpreter and the modules it imports. The target is a peak of
at most ten times the input's size over that baseline.

``--before REF`` runs the same commands on the tree of a git commit (extracted
with ``git archive``, run with ``PYTHONPATH`` pointing at it) in the same run,
so the two columns are measured on the same machine and the same inputs.

    .venv/bin/python bench/memory.py                      # 200,000 steps and frames
    .venv/bin/python bench/memory.py --before main --n 50000
"""

import argparse
import os
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from simstack.engine.wire.pcap import PcapWriter
from simstack.protocols.checksum import internet_checksum

ROOT = Path(__file__).resolve().parent.parent
FACTOR = 10  # the target: peak over baseline at most this many times the input's size
PAYLOAD = bytes(range(56))  # ping's default 56 bytes, as {size: 56} writes them

HEAD = """\
description: >
  Benchmark (bench/memory.py): the kernel resolves the stack with ARP, then
  pings it {n} times.
stack:
  mac: aa:bb:cc:dd:ee:ff
  ip: 10.0.0.1/24
hosts:
  kernel: {{mac: "02:00:00:00:00:02", ip: 10.0.0.2}}
steps:
  - at: 0
    inject: {{eth: {{dst: broadcast, src: kernel}}, arp: {{op: request, sha: kernel, spa: kernel, tpa: stack}}}}
  - expect: {{eth: {{dst: kernel, src: stack, type: arp}}, arp: {{op: reply, sha: stack, spa: stack, tha: kernel, tpa: kernel}}}}
  - at: +0.0001
    inject:
      eth: &qe {{dst: stack, src: kernel}}
      ipv4: &qi {{src: kernel, dst: stack}}
      icmp: {{type: echo-request, id: 7, seq: 1, data: &d {{size: 56}}}}
  - expect:
      eth: &re {{dst: kernel, src: stack}}
      ipv4: &ri {{src: stack, dst: kernel}}
      icmp: {{type: echo-reply, id: 7, seq: 1, data: *d}}
"""
EXCHANGE = """\
  - {{at: +{dt}, inject: {{eth: *qe, ipv4: *qi, icmp: {{type: echo-request, id: 7, seq: {seq}, data: *d}}}}}}
  - expect: {{eth: *re, ipv4: *ri, icmp: {{type: echo-reply, id: 7, seq: {seq}, data: *d}}}}
"""

KERNEL_MAC, STACK_MAC = bytes.fromhex("020000000002"), bytes.fromhex("aabbccddeeff")
KERNEL_IP, STACK_IP = bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1])


def scenario_text(steps: int) -> str:
    """A scenario of ``steps`` steps (rounded down to an even number): ARP, then ping exchanges."""
    exchanges = max(1, steps // 2 - 1)
    dt = f"{min(0.0001, 10.0 / exchanges):.6g}"  # inside the ARP entry's 30 s: no re-probe mid-run
    parts = [HEAD.format(n=exchanges)]
    parts.extend(EXCHANGE.format(dt=dt, seq=(i % 0xFFFF) + 1) for i in range(1, exchanges))
    return "".join(parts)


def _ping_frame(src_mac: bytes, dst_mac: bytes, src: bytes, dst: bytes, kind: int, seq: int) -> bytes:
    icmp = bytearray(struct.pack("!BBHHH", kind, 0, 0, 7, seq) + PAYLOAD)
    icmp[2:4] = internet_checksum(bytes(icmp)).to_bytes(2, "big")
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), seq, 0x4000, 64, 1, 0, src, dst))
    ip[10:12] = internet_checksum(bytes(ip)).to_bytes(2, "big")
    return dst_mac + src_mac + b"\x08\x00" + bytes(ip) + bytes(icmp)


def _arp_frame(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes, dst_mac: bytes) -> bytes:
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sha, spa, tha, tpa)
    return dst_mac + sha + b"\x08\x06" + body


def write_pcap(path: Path, frames: int) -> None:
    """A capture of ``frames`` frames: the kernel's ARP request and the stack's reply, then ping exchanges."""
    with path.open("wb") as f:
        w = PcapWriter(f, flush=False)
        t = 1_700_000_000.0
        w.write(t, _arp_frame(1, KERNEL_MAC, KERNEL_IP, bytes(6), STACK_IP, b"\xff" * 6))
        w.write(t + 0.00001, _arp_frame(2, STACK_MAC, STACK_IP, KERNEL_MAC, KERNEL_IP, KERNEL_MAC))
        for i in range(1, max(1, frames // 2 - 1) + 1):
            t += 0.0001
            seq = (i % 0xFFFF) + 1
            w.write(t, _ping_frame(KERNEL_MAC, STACK_MAC, KERNEL_IP, STACK_IP, 8, seq))
            w.write(t + 0.00001, _ping_frame(STACK_MAC, KERNEL_MAC, STACK_IP, KERNEL_IP, 0, seq))


@dataclass
class Run:
    peak_kib: int
    seconds: float
    code: int
    stderr: str


def run(tree: Path | None, args: list[str], work: Path) -> Run:
    """``simstack ARGS`` in a subprocess, from ``tree`` (a checkout) or the installed package; its peak RSS."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)  # ahead of the editable install's finder, which comes last on sys.meta_path
    hwm = work / "hwm"
    env["SIMSTACK_BENCH_HWM"] = str(hwm)
    cmd = [sys.executable, "-c", CHILD, *args]
    with tempfile.TemporaryFile(mode="w+") as err:
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=err, check=False)
        seconds = time.perf_counter() - start
        err.seek(0)
        return Run(int(hwm.read_text().split()[1]), seconds, proc.returncode, err.read())


# The command, then its own VmHWM: the peak of its resident set since exec (ru_maxrss would count the
# parent's pages the child shared between fork and exec).
CHILD = """
import sys
from simstack.cli import main
try:
    code = main()
finally:
    import os
    status = open("/proc/self/status").read()
    with open(os.environ["SIMSTACK_BENCH_HWM"], "w") as f:
        f.write(next(line for line in status.splitlines() if line.startswith("VmHWM")))
sys.exit(code)
"""


def extract(ref: str, into: Path) -> Path:
    """The tree of commit ``ref``, unpacked under ``into`` (symlinks kept: simstack/engine -> ../engine)."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], check=True,
                          capture_output=True).stdout
    tree = into / "before"
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(tree, filter="tar")
    return tree


def mib(kib: float) -> str:
    return f"{kib / 1024:7.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Peak RSS of simstack replay and import against their input's size.")
    p.add_argument("--n", type=int, default=200_000, help="steps in the scenario, frames in the pcap (default 200000)")
    p.add_argument("--before", metavar="REF", help="also run the tree of this git commit, for comparison")
    p.add_argument("--keep", metavar="DIR", help="write the inputs and outputs here instead of a temporary folder")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="simstack-memory-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        scenario = work / "ping-many.yaml"
        scenario.write_text(scenario_text(args.n))
        pcap = work / "ping-many.pcap"
        write_pcap(pcap, args.n)
        tiny_pcap = work / "ping-tiny.pcap"
        write_pcap(tiny_pcap, 4)
        tiny_scenario = work / "ping-tiny.yaml"
        tiny_scenario.write_text(scenario_text(4))
        trees: list[tuple[str, Path | None]] = [("after", None)]
        if args.before:
            trees.insert(0, (f"before ({args.before})", extract(args.before, work)))
        jobs = [
            ("replay", scenario, ["replay", str(scenario)], ["replay", str(tiny_scenario)]),
            ("import", pcap, ["import", str(pcap), "-o", str(work / "imported.yaml"), "--stack", "10.0.0.1"],
             ["import", str(tiny_pcap), "-o", str(work / "tiny.yaml"), "--stack", "10.0.0.1"]),
        ]
        failed = False
        print(f"{args.n:,} steps / frames; target: peak - baseline <= {FACTOR} x input")
        for what, path, big, tiny in jobs:
            size = path.stat().st_size
            print(f"\nsimstack {what}: {path.name}, {size / (1 << 20):.1f} MiB")
            for label, tree in trees:
                base = run(tree, tiny, work)
                r = run(tree, big, work)
                over = (r.peak_kib - base.peak_kib) * 1024 / size
                verdict = "ok" if over <= FACTOR else "OVER"
                print(f"  {label:<24} peak {mib(r.peak_kib)}  baseline {mib(base.peak_kib)}  "
                      f"(peak - baseline) / size {over:5.1f}  {r.seconds:6.1f} s  exit {r.code}  {verdict}")
                if r.code not in (0,) or base.code != 0:
                    print("    " + (r.stderr or base.stderr).strip().replace("\n", "\n    "))
                if tree is None and (over > FACTOR or r.code != 0):
                    failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
