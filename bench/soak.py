"""Soak test: the live stack serves real clients for N minutes while another host floods it with attack frames.

Run as root, not in CI: ``.venv/bin/python bench/soak.py [--minutes 10] [--attack-pps 200]``.

Layout (all in namespaces this script makes, deleted on exit, Ctrl-C included):
``simstack live tap0 --lab NAME --lab-clients 3`` runs inside a namespace of
its own (entered with nsenter, as docs/live.md says), serving echo and the
files of a temporary folder over HTTP. The lab's clients are

* ``NAME-1`` (10.0.0.2): ``--downloads`` curl loops fetching a random file,
  each body's sha256 checked against the file's;
* ``NAME-2`` (10.0.0.3): a TCP echo client (Python sockets, every byte
  checked, a new connection every few hundred exchanges), a UDP echo client
  (one datagram in flight, a reply awaited for a second) and ``ping -i 0.2``;
* ``NAME-3`` (10.0.0.4): the attacker, which sends frames with scapy-built
  bytes on a raw socket at a fixed rate: random bytes, truncated headers,
  bad checksums, impossible TCP flags, blind RST/SYN/data injections into the
  clients' real connections (4-tuples read from ``ss`` in their namespaces,
  sequence and acknowledgment numbers guessed), SYN floods, tiny and
  overlapping fragments, ICMP errors quoting unknown connections, numbers
  outside the window, or an absurd MTU.

Spoofed frames carry the attacker's own MAC, so the bridge keeps delivering
the real clients' traffic to them. A SYN flood from addresses that never
answer fills a listener's half-open slots for the whole SYN-ACK retry time
(about a minute), so that part is held to ``--spoofed-syn-rate`` (default 1
a second, under the services' backlog of 128 over the retry time); SYNs from
the attacker's own address, which its kernel resets, go at the full share.

At the end it checks every download's hash, that the echo clients saw no
wrong byte, that ping lost at most ``--max-ping-loss`` percent, and that the
stack's RSS (VmRSS from /proc/PID/status, sampled every ``--rss-every``
seconds) is flat: the end within ``--rss-slack`` MiB or 10% of the sample
taken after the first minute's warm-up. It prints start, warm, peak and end.
"""

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from netns_tools import Process, in_ns, must, namespaces, require, sh

ROOT = Path(__file__).resolve().parent.parent
STACK_IP = "10.0.0.1"
STACK_MAC = "aa:bb:cc:dd:ee:ff"
READY = "simstack: live on tap0"
RESULT = "RESULT "


def _result(**fields: Any) -> None:
    print(RESULT + json.dumps(fields), flush=True)


# --- workers, each run by this file inside a client namespace -------------------------------------------------

def download_worker(url: str, sha: str, seconds: float, max_time: float) -> None:
    """curl the file again and again; a body whose sha256 differs is a failure, a curl error is counted apart."""
    end = time.monotonic() + seconds
    ok = bad = errors = 0
    total = 0
    while time.monotonic() < end:
        r = subprocess.run(["curl", "-s", "--max-time", str(max_time), "-o", "-", url], capture_output=True,
                           check=False)
        if r.returncode != 0:
            errors += 1
            print(f"curl exit {r.returncode} after {len(r.stdout)} bytes", flush=True)
            continue
        if hashlib.sha256(r.stdout).hexdigest() == sha:
            ok += 1
            total += len(r.stdout)
        else:
            bad += 1
            print(f"hash mismatch: {len(r.stdout)} bytes", flush=True)
    _result(kind="download", ok=ok, bad=bad, errors=errors, bytes=total)


def tcp_echo_worker(host: str, port: int, seconds: float, seed: int) -> None:
    """Random-sized chunks through the echo service, every byte compared; a new connection every 300 exchanges."""
    rng = random.Random(seed)
    end = time.monotonic() + seconds
    exchanges = wrong = errors = conns = 0
    total = 0
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=30) as s:
                conns += 1
                for _ in range(300):
                    if time.monotonic() >= end:
                        break
                    data = rng.randbytes(rng.randint(1, 16000))
                    s.sendall(data)
                    got = bytearray()
                    while len(got) < len(data):
                        chunk = s.recv(65536)
                        if not chunk:
                            raise ConnectionError("echo closed the connection")
                        got += chunk
                    exchanges += 1
                    total += len(data)
                    if got != data:
                        wrong += 1
                        print(f"echo mismatch in a {len(data)}-byte exchange", flush=True)
                        break
        except OSError as e:
            errors += 1
            print(f"tcp echo: {e!r}", flush=True)
            time.sleep(1)
    _result(kind="tcp-echo", exchanges=exchanges, wrong=wrong, errors=errors, conns=conns, bytes=total)


def udp_echo_worker(host: str, port: int, seconds: float, seed: int) -> None:
    """One datagram in flight at a time; a reply that is not the datagram sent is wrong, none within 1 s is lost."""
    rng = random.Random(seed)
    end = time.monotonic() + seconds
    sent = answered = wrong = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        s.settimeout(1.0)
        while time.monotonic() < end:
            data = struct.pack("!I", sent) + rng.randbytes(rng.randint(0, 1400))
            s.send(data)
            sent += 1
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                try:
                    got = s.recv(65536)
                except (TimeoutError, ConnectionRefusedError):
                    break
                if got[:4] != data[:4]:
                    continue  # a late reply to an earlier datagram
                answered += 1
                if got != data:
                    wrong += 1
                break
            time.sleep(0.05)
    _result(kind="udp-echo", sent=sent, answered=answered, wrong=wrong)


# --- the attacker -----------------------------------------------------------------------------------------------

def attack_worker(iface: str, tuples_file: str, pps: float, spoofed_syn_rate: float, seconds: float, seed: int,
                  subnet_hosts: str) -> None:
    """Send attack frames at ``pps``, the kinds by turns; 4-tuples to aim at are re-read from ``tuples_file``."""
    from scapy.all import ICMP, IP, TCP, UDP, Ether, Raw, get_if_hwaddr  # the test extra's; imported where used
    from scapy.all import raw as scapy_raw

    def raw(pkt: Any) -> bytes:
        out: bytes = scapy_raw(pkt)
        return out

    rng = random.Random(seed)
    me_mac = get_if_hwaddr(iface)
    me_ip = subnet_hosts.split(",")[0]
    victims = subnet_hosts.split(",")[1:]
    eth = Ether(src=me_mac, dst=STACK_MAC)
    tuples: list[tuple[str, int, int]] = []
    ports = [7, 9, 80]

    def u32() -> int:
        return rng.getrandbits(32)

    def target() -> tuple[str, int, int]:
        """A real client connection (client ip, client port, stack port), else a made-up one."""
        if tuples and rng.random() < 0.9:
            return rng.choice(tuples)
        return rng.choice(victims), rng.randint(32768, 60999), rng.choice(ports)

    def random_bytes() -> bytes:
        kind = b"\x08\x00" if rng.random() < 0.5 else b""
        return raw(eth)[:12] + kind + rng.randbytes(rng.randint(0, 1500))

    def truncated() -> bytes:
        pkt = raw(eth / IP(src=me_ip, dst=STACK_IP) / TCP(sport=rng.randint(1024, 65535), dport=rng.choice(ports),
                                                          flags="S", seq=u32()))
        return pkt[:rng.randint(14, len(pkt) - 1)]

    def bad_checksum() -> bytes:
        layer = rng.choice([TCP(dport=rng.choice(ports), flags="S", seq=u32(), chksum=rng.getrandbits(16)),
                            UDP(dport=7, chksum=rng.randint(1, 0xFFFF)) / Raw(b"x" * 20),
                            ICMP(type=8, chksum=rng.getrandbits(16)) / Raw(b"y" * 20)])
        ip = IP(src=me_ip, dst=STACK_IP) if rng.random() < 0.7 else IP(src=me_ip, dst=STACK_IP, chksum=rng.getrandbits(16))
        return raw(eth / ip / layer)

    def impossible_flags() -> bytes:
        flags = rng.choice([0, 0x01, 0x29, 0x03, 0x06, 0x07, 0x3F, 0xFF, 0x05, 0x0B])  # NULL FIN XMAS SF SR SRF ...
        if rng.random() < 0.5:
            src, sport, dport = me_ip, rng.randint(1024, 65535), rng.choice(ports)
        else:
            src, sport, dport = target()
        return raw(eth / IP(src=src, dst=STACK_IP) / TCP(sport=sport, dport=dport, flags=flags, seq=u32(), ack=u32()))

    def blind(flags: str, data: bytes = b"") -> Callable[[], bytes]:
        def make() -> bytes:
            src, sport, dport = target()
            return raw(eth / IP(src=src, dst=STACK_IP) / TCP(sport=sport, dport=dport, flags=flags, seq=u32(),
                                                             ack=u32()) / Raw(data))
        return make

    def syn_own() -> bytes:
        return raw(eth / IP(src=me_ip, dst=STACK_IP) / TCP(sport=rng.randint(1024, 65535), dport=rng.choice(ports),
                                                          flags="S", seq=u32()))

    def syn_spoofed() -> bytes:
        return raw(eth / IP(src=f"10.0.0.{rng.randint(100, 250)}", dst=STACK_IP) /
                   TCP(sport=rng.randint(1024, 65535), dport=rng.choice(ports), flags="S", seq=u32()))

    def fragments() -> list[bytes]:
        seg = raw(IP(src=me_ip, dst=STACK_IP) / TCP(sport=rng.randint(1024, 65535), dport=80, flags="S", seq=u32()) /
                  Raw(b"z" * 16))[20:]
        ident = rng.getrandbits(16)
        if rng.random() < 0.5:  # RFC 1858 3.1: a tiny first fragment
            return [raw(eth / IP(src=me_ip, dst=STACK_IP, id=ident, flags="MF", frag=0, proto=6) / Raw(seg[:8])),
                    raw(eth / IP(src=me_ip, dst=STACK_IP, id=ident, frag=1, proto=6) / Raw(seg[8:]))]
        # RFC 1858 3.2 / RFC 3128: a fragment at offset 8 rewrites the flags (and one at 0 the ports)
        rewritten = bytearray(seg)
        rewritten[13] = 0x02 if rewritten[13] != 0x02 else 0x12
        second = rng.choice([1, 0])
        piece = bytes(rewritten[8:24]) if second else bytes(rewritten[0:16])
        return [raw(eth / IP(src=me_ip, dst=STACK_IP, id=ident, flags="MF", frag=0, proto=6) / Raw(seg[:24])),
                raw(eth / IP(src=me_ip, dst=STACK_IP, id=ident, flags="MF", frag=second, proto=6) / Raw(piece)),
                raw(eth / IP(src=me_ip, dst=STACK_IP, id=ident, frag=3, proto=6) / Raw(seg[24:]))]

    def icmp_error() -> bytes:
        src, sport, dport = target()
        kind = rng.randrange(4)
        if kind == 0:
            quote = rng.randbytes(rng.randint(0, 40))  # garbage
        else:
            inner = IP(src=STACK_IP, dst=src) / TCP(sport=dport, dport=sport, seq=u32(), ack=u32())
            if kind == 1:
                inner[IP].src = "10.0.0.77"  # not ours
            quote = raw(inner)[:28]
        if rng.random() < 0.4:
            msg = ICMP(type=3, code=4, nexthopmtu=rng.choice([0, 1, 8, 28, 68, 100, 296, 551]))
        else:
            msg = ICMP(type=rng.choice([3, 3, 11, 12, 4]), code=rng.choice([0, 1, 2, 3, 13]))
        return raw(eth / IP(src=rng.choice([me_ip, *victims]), dst=STACK_IP) / msg / Raw(quote))

    kinds: list[tuple[str, Callable[[], bytes | list[bytes]]]] = [
        ("random_bytes", random_bytes), ("truncated", truncated), ("bad_checksum", bad_checksum),
        ("impossible_flags", impossible_flags), ("blind_rst", blind("R")), ("blind_rst_ack", blind("RA")),
        ("blind_syn", blind("S")), ("blind_data", blind("PA", b"INJECTED" * 8)), ("blind_ack_data", blind("A", b"X" * 100)),
        ("syn_flood", syn_own), ("fragments", fragments), ("icmp_error", icmp_error)]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    end = time.monotonic() + seconds
    start = time.monotonic()
    sent = spoofed = 0
    by_kind = [0] * len(kinds)
    next_read = 0.0
    tick = 0.05
    i = 0
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_read:
            next_read = now + 1.0
            with contextlib.suppress(OSError, ValueError):
                rows = Path(tuples_file).read_text().split()
                tuples = [(rows[k], int(rows[k + 1]), int(rows[k + 2])) for k in range(0, len(rows) - 2, 3)]
        due = int((now - start) * pps) - sent
        for _ in range(max(0, min(due, int(pps)))):
            k = i % len(kinds)
            i += 1
            frames = kinds[k][1]()
            for f in frames if isinstance(frames, list) else [frames]:
                with contextlib.suppress(OSError):
                    sock.send(f)
            by_kind[k] += 1
            sent += 1
        if spoofed < (now - start) * spoofed_syn_rate:
            with contextlib.suppress(OSError):
                sock.send(syn_spoofed())
            spoofed += 1
        time.sleep(tick)
    _result(kind="attack", sent=sent, spoofed_syns=spoofed, tuples=len(tuples),
            by_kind={name: n for (name, _), n in zip(kinds, by_kind, strict=True)})


# --- the controller ---------------------------------------------------------------------------------------------

def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def established(ns: str) -> list[tuple[str, int, int]]:
    """The namespace's TCP connections to the stack: (its address, its port, the stack's port)."""
    out = in_ns(ns, "ss", "-tnH", "state", "established", timeout=10).stdout
    found = []
    for line in out.splitlines():
        cols = line.split()
        if len(cols) < 4:
            continue
        local, peer = cols[-2], cols[-1]
        lip, _, lport = local.rpartition(":")
        pip, _, pport = peer.rpartition(":")
        if pip == STACK_IP:
            found.append((lip, int(lport), int(pport)))
    return found


def result_of(p: Process) -> dict[str, Any] | None:
    for line in reversed(p.out):
        if line.startswith(RESULT):
            value: dict[str, Any] = json.loads(line[len(RESULT):])
            return value
    return None


@contextlib.contextmanager
def lab_cleanup(names: list[str]) -> Iterator[None]:
    """The lab removes its namespaces when the stack stops; if the stack died first, remove what is left of them."""
    try:
        yield
    finally:
        for name in names:
            if Path(f"/run/netns/{name}").exists():
                for pid in sh("ip", "netns", "pids", name).stdout.split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)  # only our own workers run there
                sh("ip", "netns", "del", name)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--attack-pps", type=float, default=200.0, help="attack frames a second (default 200)")
    ap.add_argument("--spoofed-syn-rate", type=float, default=1.0, help="SYNs a second from hosts that never answer")
    ap.add_argument("--downloads", type=int, default=2, help="concurrent curl loops (default 2)")
    ap.add_argument("--file-mb", type=float, default=2.0, help="size of the file downloaded (default 2 MiB)")
    ap.add_argument("--rss-every", type=float, default=5.0)
    ap.add_argument("--rss-slack", type=float, default=8.0, help="MiB the RSS may end above its warm sample")
    ap.add_argument("--max-ping-loss", type=float, default=1.0, help="percent")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    require("namespaces, a TAP, a bridge", "curl", "ping", "ss", "nsenter")

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # even when started in the background, where SIGINT comes ignored
    tag = f"soak{os.getpid() % 10000}"
    tmp = Path(tempfile.mkdtemp(prefix="simstack-soak-"))
    try:
        with namespaces(f"{tag}-st"), lab_cleanup([f"{tag}-{k}" for k in (1, 2, 3)]):
            return soak(args, tag, tmp)
    except KeyboardInterrupt as e:
        print(f"soak.py: stopped ({e or 'SIGINT'}); namespaces removed", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def soak(args: argparse.Namespace, tag: str, tmp: Path) -> int:
    seconds = args.minutes * 60
    stack_ns = f"{tag}-st"
    clients = [f"{tag}-{k}" for k in (1, 2, 3)]
    me = [sys.executable, str(Path(__file__).resolve())]
    www = tmp / "www"
    www.mkdir()
    blob = random.Random(args.seed).randbytes(int(args.file_mb * 1024 * 1024))
    (www / "blob.bin").write_bytes(blob)
    sha = hashlib.sha256(blob).hexdigest()
    workers: list[Process] = []
    failures: list[str] = []
    with (tmp / "stack.log").open("w") as log:
        stack = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{stack_ns}", sys.executable, "-m", "simstack", "live", "tap0",
             "--lab", tag, "--lab-clients", "3", "--serve", "echo", "--serve", f"http:{www}",
             "--tcp-rto-min", "0.2", "--seed", str(args.seed)],
            stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)
    try:
        assert stack.stdout is not None
        first = stack.stdout.readline()
        if READY not in first:
            stack.wait(10)
            raise SystemExit(f"the stack did not start: {first}{(tmp / 'stack.log').read_text()}")
        stack_out: list[str] = [first]
        stream = stack.stdout
        threading.Thread(target=lambda: stack_out.extend(stream), daemon=True).start()
        pid = stack.pid  # nsenter execs: the pid is simstack's Python
        print(first.strip(), flush=True)
        for c in clients:
            must(in_ns(c, "ping", "-c", "1", "-W", "5", STACK_IP, timeout=20))
        started = time.monotonic()
        rss: list[tuple[float, int]] = [(0.0, rss_kib(pid))]
        tuples_file = tmp / "tuples"
        tuples_file.write_text("")
        run = str(seconds)
        for _ in range(args.downloads):
            workers.append(Process(clients[0], *me, "download", f"http://{STACK_IP}/blob.bin", sha, run))
        workers.append(Process(clients[1], *me, "tcp-echo", STACK_IP, "7", run, str(args.seed)))
        workers.append(Process(clients[1], *me, "udp-echo", STACK_IP, "7", run, str(args.seed)))
        ping = Process(clients[1], "ping", "-i", "0.2", "-W", "1", "-w", str(int(seconds)), "-q", STACK_IP)
        workers.append(ping)
        workers.append(Process(clients[2], *me, "attack", "eth0", str(tuples_file), str(args.attack_pps),
                               str(args.spoofed_syn_rate), run, str(args.seed), "10.0.0.4,10.0.0.2,10.0.0.3"))
        next_rss = time.monotonic() + args.rss_every
        next_report = time.monotonic() + 60
        while time.monotonic() - started < seconds + 5:
            if stack.poll() is not None:
                failures.append(f"the stack exited with {stack.returncode}")
                break
            rows = established(clients[0]) + established(clients[1])
            tuples_file.write_text("".join(f"{a} {b} {c}\n" for a, b, c in rows))
            if time.monotonic() >= next_rss:
                rss.append((time.monotonic() - started, rss_kib(pid)))
                next_rss += args.rss_every
            if time.monotonic() >= next_report:
                next_report += 60
                print(f"  {(time.monotonic() - started) / 60:4.1f} min: RSS {rss[-1][1] / 1024:.1f} MiB, "
                      f"{len(rows)} client connections aimed at", flush=True)
            time.sleep(2)
        for w in workers:  # each ends on its own at its deadline; a last download may take a while
            try:
                w.proc.wait(150)
            except subprocess.TimeoutExpired:
                failures.append(f"{' '.join(w.argv[4:7])} did not finish")
                w.stop()
        if stack.poll() is None:
            rss.append((time.monotonic() - started, rss_kib(pid)))
            stack.send_signal(signal.SIGTERM)
            stack.wait(30)
        time.sleep(0.5)
        return report(args, workers, ping, rss, stack_out, failures)
    finally:
        for w in workers:
            w.stop()
        if stack.poll() is None:
            stack.send_signal(signal.SIGTERM)  # the lab removes its namespaces, bridge and TAP
            try:
                stack.wait(30)
            except subprocess.TimeoutExpired:
                stack.kill()
                stack.wait(5)


def slope(samples: list[tuple[float, int]]) -> float:
    """Least-squares growth of the samples, in KiB a minute."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    return 60 * sum((t - mt) * (v - mv) for t, v in samples) / var if var else 0.0


def report(args: argparse.Namespace, workers: list[Process], ping: Process, rss: list[tuple[float, int]],
           stack_out: list[str], failures: list[str]) -> int:
    results = [r for r in (result_of(w) for w in workers if w is not ping) if r is not None]
    if len(results) != len(workers) - 1:
        failures.append(f"{len(workers) - 1 - len(results)} workers gave no result")
    downloads = [r for r in results if r["kind"] == "download"]
    ok = sum(r["ok"] for r in downloads)
    bad = sum(r["bad"] for r in downloads)
    errors = sum(r["errors"] for r in downloads)
    mib = sum(r["bytes"] for r in downloads) / 2**20
    print(f"downloads: {ok} whole with the right sha256 ({mib:.0f} MiB), {bad} with a wrong hash, {errors} curl errors")
    if bad or not ok:
        failures.append(f"downloads: {bad} wrong hashes, {ok} good")
    for r in results:
        if r["kind"] == "tcp-echo":
            print(f"tcp echo: {r['exchanges']} exchanges ({r['bytes'] / 2**20:.0f} MiB) on {r['conns']} connections, "
                  f"{r['wrong']} wrong, {r['errors']} errors")
            if r["wrong"] or not r["exchanges"]:
                failures.append("tcp echo: wrong bytes or no exchange")
        elif r["kind"] == "udp-echo":
            print(f"udp echo: {r['answered']}/{r['sent']} answered, {r['wrong']} wrong")
            if r["wrong"] or r["answered"] < 0.99 * r["sent"]:
                failures.append("udp echo: wrong bytes or more than 1% lost")
        elif r["kind"] == "attack":
            print(f"attack: {r['sent']} attack frames in {len(r['by_kind'])} kinds, {r['spoofed_syns']} spoofed SYNs, "
                  f"aimed at {r['tuples']} real connections at the end")
    summary = next((line for line in ping.out if "packets transmitted" in line), "")
    print(f"ping: {summary.strip()}")
    try:
        sent_s, got_s = summary.split(",")[:2]
        sent, got = int(sent_s.split()[0]), int(got_s.split()[0])
        loss = 100.0 * (sent - got) / sent
    except (ValueError, IndexError, ZeroDivisionError):
        loss = 100.0
    if loss > args.max_ping_loss:
        failures.append(f"ping lost {loss:.1f}% (limit {args.max_ping_loss}%)")
    kib = [v for _, v in rss]
    warm = next((v for t, v in rss if t >= min(60.0, args.minutes * 6)), kib[-1])
    print(f"RSS MiB: start {kib[0] / 1024:.1f}, after warm-up {warm / 1024:.1f}, peak {max(kib) / 1024:.1f}, "
          f"end {kib[-1] / 1024:.1f} ({len(kib)} samples every {args.rss_every:g} s); "
          f"slope over the second half {slope(rss[len(rss) // 2:]) / 1024:+.2f} MiB/min")
    if kib[-1] > warm + max(args.rss_slack * 1024, warm * 0.1):
        failures.append("RSS grew")
    counters = [line.rstrip() for line in stack_out[1:] if line.strip() and not line.startswith("  ip netns")]
    print("stack counters at exit:\n  " + "\n  ".join(counters))
    for f in failures:
        print(f"FAIL: {f}")
    print("PASS" if not failures else "FAIL")
    return 0 if not failures else 1


if __name__ == "__main__":
    worker = sys.argv[1] if len(sys.argv) > 1 else ""
    a = sys.argv[2:]
    if worker == "download":
        download_worker(a[0], a[1], float(a[2]), 120.0)
    elif worker == "tcp-echo":
        tcp_echo_worker(a[0], int(a[1]), float(a[2]), int(a[3]))
    elif worker == "udp-echo":
        udp_echo_worker(a[0], int(a[1]), float(a[2]), int(a[3]))
    elif worker == "attack":
        attack_worker(a[0], a[1], float(a[2]), float(a[3]), float(a[4]), int(a[5]), a[6])
    else:
        sys.exit(main())
