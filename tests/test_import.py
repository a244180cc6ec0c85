"""``simstack import``: captures in every format, the expected/optional/skipped rules, and a real kernel's capture.

The real capture runs in two network namespaces made here (a veth pair,
10.9.0.1 and 10.9.0.2, nothing else), recorded by tcpdump (pcap) and tshark
(pcapng) at once; the kernel at 10.9.0.1 becomes the stack and the scenario
made of it must replay green.
"""

import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from conftest import SCENARIOS, require, require_tool

from simstack.engine.scenario.fields import Context, Host, build_frame, normalize_spec
from simstack.engine.scenario.loader import load
from simstack.engine.scenario.replay import run_files
from simstack.engine.scenario.runner import Runner
from simstack.engine.wire import capture, pcap
from simstack.engine.wire.capture import CaptureError, read_capture
from simstack.protocols.addresses import ip_to_bytes, mac_to_bytes

Frames = list[tuple[int, bytes]]  # (nanoseconds, frame)
KERNEL_MAC = "0e:00:00:00:00:01"
PEER = Host("peer", mac_to_bytes("02:00:00:00:00:02"), ip_to_bytes("10.0.0.2"))
KERNEL = Host("stack", mac_to_bytes(KERNEL_MAC), ip_to_bytes("10.0.0.1"))
CTX = Context(KERNEL, {"peer": PEER}, PEER)


# -- writing captures with the reader's own declarations ----------------------------------------------------
def write_pcap(path: Path, frames: Frames, *, big: bool = False, nano: bool = False, linktype: int = 1) -> Path:
    header, record = pcap.PCAP_BE if big else pcap.PCAP_LE
    magic = pcap.PCAP_MAGIC_NSEC if nano else pcap.PCAP_MAGIC_USEC
    out = header.build({"magic": magic, "version_major": 2, "version_minor": 4, "thiszone": 0, "sigfigs": 0,
                        "snaplen": 65535, "network": linktype})
    for ns, data in frames:
        sec, frac = divmod(ns, 1_000_000_000)
        out += record.build({"ts_sec": sec, "ts_frac": frac if nano else frac // 1000, "incl_len": len(data),
                             "orig_len": len(data)}) + data
    path.write_bytes(out)
    return path


def write_pcapng(path: Path, frames: Frames, *, big: bool = False, linktype: int = 1, simple_last: bool = False) -> Path:
    fmt = capture.PCAPNG_BE if big else capture.PCAPNG_LE

    def block(kind: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        return bytes(fmt.block.build({"type": kind, "total_length": len(body) + 12, "body": body,
                                      "trailer": len(body) + 12}))

    opts = fmt.options.build([{"code": capture.OPT_IF_TSRESOL, "length": 1, "value": b"\x09"},
                              {"code": 0, "length": 0, "value": b""}])
    out = block(capture.PCAPNG_SHB, fmt.shb.build({"major": 1, "minor": 0, "section_length": -1, "options": b""}))
    out += block(capture.PCAPNG_IDB, fmt.idb.build({"linktype": linktype, "reserved": 0, "snaplen": 0, "options": opts}))
    out += block(4, b"\x00" * 4)  # a name resolution block: no frames, skipped
    for i, (ns, data) in enumerate(frames):
        if simple_last and i == len(frames) - 1:
            out += block(capture.PCAPNG_SPB, fmt.spb.build({"original_len": len(data), "data": data}))
            continue
        out += block(capture.PCAPNG_EPB, fmt.epb.build({"interface_id": 0, "ts_high": ns >> 32, "ts_low": ns & 0xFFFFFFFF,
                                                        "captured_len": len(data), "original_len": len(data),
                                                        "data": data, "options": b""}))
        out += block(0x40000BAD, b"custom")  # a custom block: skipped
    path.write_bytes(out)
    return path


def traced(name: str) -> Frames:
    """The frames of one scenario's replay, as a capture of simstack would hold them."""
    frames: Frames = []
    Runner(load(SCENARIOS / name), trace=lambda t, d, f: frames.append((1_700_000_000_000_000_000 + round(t * 1e9), f))).run()
    return frames


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "simstack", *args], capture_output=True, text=True, timeout=60)


def replay(path: Path) -> tuple[int, str]:
    out = io.StringIO()
    return run_files([str(path)], out=out), out.getvalue()


def do_import(cap: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    r = cli("import", str(cap), "-o", str(out), *args)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def frame(spec: dict[str, object], src: Host = PEER, ctx: Context = CTX) -> bytes:
    c = Context(ctx.stack, ctx.hosts, src)
    return build_frame(normalize_spec(spec, c), c)


# -- reading ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["pcap", "pcap-big", "pcap-nano", "pcap-nano-big", "pcapng", "pcapng-big", "pcapng-spb"])
def test_every_capture_format_reads_the_same_frames(tmp_path: Path, form: str) -> None:
    frames = traced("ping.yaml")
    path = tmp_path / "c"
    if form.startswith("pcapng"):
        write_pcapng(path, frames, big=form.endswith("big"), simple_last=form.endswith("spb"))
    else:
        write_pcap(path, frames, big=form.endswith("big"), nano="nano" in form)
    cap = read_capture(path)
    assert cap.format == form.split("-")[0] and cap.linktype == 1
    assert [f.data for f in cap.frames] == [f for _, f in frames]
    want = [ns for ns, _ in frames]
    if form == "pcapng-spb":
        want[-1] = want[-2]  # a simple packet block has no time of its own
    assert [f.ns for f in cap.frames] == want  # microsecond and nanosecond stamps alike: the traced times are whole µs


def test_the_reader_reads_what_tcpdump_writes(tmp_path: Path) -> None:
    tcpdump = require_tool("tcpdump")
    frames = traced("udp/echo.yaml")
    path = write_pcap(tmp_path / "a.pcap", frames)
    r = subprocess.run([tcpdump, "-n", "-r", str(path), "-w", str(tmp_path / "b.pcap")], capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert [f.data for f in read_capture(tmp_path / "b.pcap").frames] == [f for _, f in frames]


# -- errors: one line, exit 2 ----------------------------------------------------------------------------------------
def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    frames = traced("ping.yaml")
    good = write_pcap(tmp_path / "good.pcap", frames).read_bytes()
    ng = write_pcapng(tmp_path / "good.pcapng", frames).read_bytes()
    files = {
        "truncated pcap": (good[:-10], "truncated capture: frame 4 has"),
        "truncated pcap header": (good[:20], "truncated capture: the pcap file header"),
        "truncated pcapng": (ng[:-7], "truncated capture"),
        "text file": (b"description: not a capture\nsteps: []\n", "not a capture"),
        "empty file": (b"", "not a capture: the file is empty"),
        "link type 101": (write_pcap(tmp_path / "raw.pcap", frames, linktype=101).read_bytes(),
                          "link type 101 (RAW (bare IP)); simstack reads Ethernet (link type 1) only"),
        "pcapng link type 113": (write_pcapng(tmp_path / "sll.pcapng", frames, linktype=113).read_bytes(),
                                 "interface 0 has link type 113"),
    }
    out = {}
    for name, (data, message) in files.items():
        path = tmp_path / name.replace(" ", "-")
        path.write_bytes(data)
        out[name] = (path, message)
    return out


@pytest.mark.parametrize("case", ["truncated pcap", "truncated pcap header", "truncated pcapng", "text file",
                                  "empty file", "link type 101", "pcapng link type 113"])
def test_unusable_captures_exit_2_with_one_line(tmp_path: Path, case: str) -> None:
    path, message = bad_files(tmp_path)[case]
    with pytest.raises(CaptureError, match=r"^[^\n]+$"):
        read_capture(path)
    r = do_import(path, tmp_path / "out.yaml", "--stack", "10.0.0.1")
    assert r.returncode == 2, r
    assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert r.stderr.startswith(f"simstack import: {path}: ")
    assert not (tmp_path / "out.yaml").exists()


def test_missing_file_and_silent_stack_exit_2(tmp_path: Path) -> None:
    r = do_import(tmp_path / "nope.pcap", tmp_path / "o.yaml", "--stack", "10.0.0.1")
    assert r.returncode == 2 and "cannot read" in r.stderr and r.stderr.count("\n") == 1
    cap = write_pcap(tmp_path / "c.pcap", traced("ping.yaml"))
    r = do_import(cap, tmp_path / "o.yaml", "--stack", "10.0.0.9")
    assert r.returncode == 2 and "no frame from or to 10.0.0.9" in r.stderr
    r = do_import(cap, tmp_path / "o.yaml", "--stack", "10.0.0.1", "--map", "10.0.0.2=nowhere")
    assert r.returncode == 2 and "--map 10.0.0.2=nowhere: want OLD=NEW" in r.stderr


# -- the rules, on captures of simstack itself -----------------------------------------------------------------------
MOVE = ("--ip", "192.168.7.1/24", "--mac", "02:aa:00:00:00:01", "--map", "10.0.0.2=192.168.7.9",
        "--map", "02:00:00:00:00:02=02:11:22:33:44:55")


@pytest.mark.parametrize("name", ["ping.yaml", "udp/echo.yaml", "udp/closed-port-unreachable.yaml",
                                  "fragments/echo-fragmented-both-ways.yaml", "fragments/reassembly-timeout.yaml",
                                  "arp/resolve-then-flush.yaml", "sockets/udp-app-api.yaml"])
def test_simstack_capture_imports_and_replays_with_every_address_moved(tmp_path: Path, name: str) -> None:
    cap = write_pcap(tmp_path / "c.pcap", traced(name))
    out = tmp_path / "imported.yaml"
    r = do_import(cap, out, "--stack", "10.0.0.1", *MOVE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("imported ") and r.stdout.count("\n") == 1
    text = out.read_text()
    hosts = yaml.safe_load(text)["hosts"]
    assert all("10.0.0." not in str(h) and "02:00:00:00:00:02" not in str(h) for h in hosts.values()), hosts
    assert "stack:\n  mac: \"02:aa:00:00:00:01\"\n  ip: 192.168.7.1/24" in text
    rc, report = replay(out)
    assert rc == 0, report + text


def test_neighbours_on_the_stacks_subnet_move_with_it(tmp_path: Path) -> None:
    cap = write_pcap(tmp_path / "c.pcap", traced("udp/closed-port-unreachable.yaml"))
    out = tmp_path / "o.yaml"
    r = do_import(cap, out, "--stack", "10.0.0.1", "--ip", "172.16.5.1/24")
    assert r.returncode == 0 and not r.stderr, r.stderr
    doc = yaml.safe_load(out.read_text())
    assert doc["hosts"] == {"host2": {"mac": "02:00:00:00:00:02", "ip": "172.16.5.2"}}  # 10.0.0.255 became 172.16.5.255
    assert "ipv4: {src: host2, dst: 172.16.5.255" in out.read_text()
    assert replay(out)[0] == 0


@pytest.mark.parametrize(("name", "kept"), [("icmp/bad-checksum-dropped.yaml", "icmp.checksum"),
                                             ("udp/bad-checksum-dropped.yaml", "udp.checksum"),
                                             ("udp/zero-checksum-accepted.yaml", None)])
def test_checksums_are_recomputed_for_moved_addresses_unless_bad_or_none(tmp_path: Path, name: str, kept: str | None) -> None:
    """A valid checksum is left to the builder (the addresses moved); a bad one, or UDP's "none" (0), is kept as captured."""
    cap = write_pcap(tmp_path / "c.pcap", traced(name))
    out = tmp_path / "o.yaml"
    assert do_import(cap, out, "--stack", "10.0.0.1", "--ip", "172.16.5.1/24").returncode == 0
    injects = [s for s in yaml.safe_load(out.read_text())["steps"] if "inject" in s]
    named = {f"{layer}.checksum": fields["checksum"] for s in injects for layer, fields in s["inject"].items()
             if isinstance(fields, dict) and "checksum" in fields}
    notes = [s["note"] for s in injects if "was bad in the capture" in s.get("note", "")]
    if kept is None:
        assert named == {"udp.checksum": 0} and not notes
    else:
        assert set(named) == {kept} and named[kept] == 0x1234  # the scenarios corrupt it to 0x1234
        assert notes == [f"{kept} was bad in the capture and stays as captured"]
    assert replay(out)[0] == 0


def test_a_neighbour_off_the_subnet_is_warned_about(tmp_path: Path) -> None:
    cap = write_pcap(tmp_path / "c.pcap", traced("ping.yaml"))
    r = do_import(cap, tmp_path / "o.yaml", "--stack", "10.0.0.1", "--map", "10.0.0.2=10.7.7.7")
    assert r.returncode == 0
    assert r.stderr == ("simstack import: warning: 10.7.7.7 is not on simstack's subnet 10.0.0.1/24, so the replayed "
                        "stack cannot answer it; map it with --map 10.7.7.7=NEW\n")


def test_own_ping_becomes_an_app_step_and_its_arp_request_optional(tmp_path: Path) -> None:
    out = tmp_path / "o.yaml"
    assert do_import(write_pcap(tmp_path / "c.pcap", traced("arp/resolve-then-flush.yaml")), out,
                     "--stack", "10.0.0.1").returncode == 0
    steps = load(out).steps
    assert [(s.kind, s.app, s.optional) for s in steps] == [
        ("app", "ping", False), ("expect", "", True), ("expect", "", True), ("inject", "", False), ("expect", "", False)]
    assert steps[0].args == {"dst": ip_to_bytes("10.0.0.2"), "id": 3, "seq": 1, "data": b"queued"}
    assert "the stack resolves the address before traffic of its own" in steps[1].note


def test_strict_adds_the_hosts_own_choices(tmp_path: Path) -> None:
    cap = write_pcap(tmp_path / "c.pcap", traced("udp/echo.yaml"))
    loose, strict = tmp_path / "loose.yaml", tmp_path / "strict.yaml"
    assert do_import(cap, loose, "--stack", "10.0.0.1").returncode == 0
    assert do_import(cap, strict, "--stack", "10.0.0.1", "--strict").returncode == 0
    assert "ipv4: {src: stack, dst: host2}" in loose.read_text()
    assert "ipv4: {src: stack, dst: host2, ttl: 64, id: 0x" in strict.read_text()
    # docs/recording.md: the host's own choices, IPv4 ID, TTL, DF and TOS, are named only with --strict
    sent = {line.split("ipv4: {", 1)[1] for line in strict.read_text().splitlines() if "ipv4: {src: stack" in line}
    assert sent and all(re.fullmatch(r"src: stack, dst: \w+, ttl: 64, id: 0x[0-9a-f]{4}, tos: 0, df: (true|false)}", n)
                        for n in sent), sent
    assert replay(strict)[0] == 0  # simstack, same seed: its own choices come out the same


def kernel_like_capture() -> Frames:
    """What a Linux host's capture looks like: noise, a unicast re-probe, a neighbour known before the capture."""
    other = Host("other", mac_to_bytes("02:00:00:00:00:03"), ip_to_bytes("10.0.0.3"))
    k = KERNEL
    fr = [
        frame({"eth": {"dst": "33:33:00:00:00:16", "type": 0x86DD}, "payload": {"hex": "6000000000240001"}}),  # IPv6 MLD
        frame({"eth": {"dst": "01:80:c2:00:00:0e", "type": 0x88CC}, "payload": {"hex": "0207040200000000"}}),  # LLDP
        # the kernel answers an echo request from a neighbour it learned before the capture began
        frame({"eth": {"dst": "stack"}, "ipv4": {"id": 1, "df": True}, "icmp": {"type": "echo-request", "id": 9, "seq": 1,
                                                                                "data": "ping"}}),
        frame({"eth": {"dst": "peer"}, "ipv4": {"src": "stack", "dst": "peer", "id": 0x1234},
               "icmp": {"type": "echo-reply", "id": 9, "seq": 1, "data": "ping"}}, k),
        # then re-checks it with a unicast ARP request (NUD PROBE), which the peer answers
        frame({"eth": {"dst": "peer"}, "arp": {"op": "request", "sha": "stack", "spa": "stack", "tpa": "peer"}}, k),
        frame({"eth": {"dst": "stack"}, "arp": {"op": "reply", "tha": "stack", "tpa": "stack"}}),
        frame({"eth": {"dst": "stack"}, "ipv4": {"proto": 2}, "payload": {"hex": "1164ee9b00000000"}}),  # IGMP: skipped
        frame({"eth": {"dst": "02:00:00:00:00:03"}, "ipv4": {"dst": "10.0.0.3"}, "icmp": {"type": "echo-request"}}),
        frame({"eth": {"dst": "peer"}, "ipv4": {"src": "10.0.0.3", "dst": "peer"}, "icmp": {"type": "echo-reply"}}, other),
    ]
    return [(1_700_000_000_000_000_000 + i * 1_000_000, f) for i, f in enumerate(fr)]


def test_kernel_choices_are_optional_and_foreign_frames_skipped(tmp_path: Path) -> None:
    cap = write_pcapng(tmp_path / "k.pcapng", kernel_like_capture())
    out = tmp_path / "k.yaml"
    r = do_import(cap, out, "--stack", "10.0.0.1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (f"imported 4 frames from {cap} into {out} (2 injects, 1 expected, 1 optional, 0 app steps, "
                                f"2 priming steps); skipped 5: 2 not to or from the stack, 1 IGMP, 1 IPv6, 1 LLDP")
    steps = load(out).steps
    kinds = [(s.kind, s.optional) for s in steps]
    assert kinds == [("inject", False), ("expect", False),  # priming: simstack learns the peer first
                     ("inject", False), ("expect", False), ("expect", True), ("inject", False)]
    assert "a unicast ARP request re-checks a neighbour" in steps[4].note
    assert "priming" in steps[0].note
    rc, report = replay(out)
    assert rc == 0, report + out.read_text()


# -- a real kernel ------------------------------------------------------------------------------------------------------
UDP_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 7))
s.settimeout(15)
print("ready", flush=True)
for _ in range(int(sys.argv[1])):
    data, addr = s.recvfrom(4096)
    s.sendto(data, addr)
"""
UDP_CLIENT = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
for data in (b"hello, kernel", bytes([0, 1, 2, 250, 251, 255]) + b"binary", b"x" * 100):
    s.sendto(data, ("10.9.0.1", 7))
    assert s.recvfrom(4096)[0] == data
print("echoed", flush=True)
"""


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text(errors="replace") if path.exists() else ""):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{proc.args!r} did not print {text!r}: {path.read_text(errors='replace')}")
        time.sleep(0.05)


def _is_reply_from(ip: bytes) -> Callable[[bytes], bool]:
    def match(frame: bytes) -> bool:  # untagged Ethernet, IPv4 without options, ICMP echo reply
        return frame[12:14] == b"\x08\x00" and frame[23] == 1 and frame[26:30] == ip and frame[34:35] == b"\x00"
    return match


def _wait_for_frame(path: Path, proc: subprocess.Popen[bytes], match: Callable[[bytes], bool],
                    timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if any(match(f.data) for f in read_capture(path).frames):
                return
        except CaptureError:
            pass  # not there yet, or caught part-way through a record
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{proc.args!r} did not capture the last frame in {timeout} s")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def kernel_captures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """One exchange with a real kernel, captured by tcpdump (pcap) and tshark (pcapng) side by side."""
    require(os.geteuid() == 0, "the kernel capture needs root (network namespaces)")
    for tool in ("ip", "tcpdump", "tshark", "arping", "ping"):
        require_tool(tool)
    d = tmp_path_factory.mktemp("kernel")
    pid = os.getpid()
    ns_a, ns_b, va, vb = f"simimp-a-{pid}", f"simimp-b-{pid}", f"sia{pid}", f"sib{pid}"
    procs: list[subprocess.Popen[bytes]] = []

    def run(*cmd: str, timeout: float = 15) -> str:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"{' '.join(cmd)}: {r.stdout}{r.stderr}"
        return r.stdout

    def start(ns: str, *cmd: str, log: Path, stdin: int | None = None) -> subprocess.Popen[bytes]:
        with log.open("wb") as f:
            p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdout=f, stderr=subprocess.STDOUT, stdin=stdin)
        procs.append(p)
        return p

    try:
        run("ip", "netns", "add", ns_a)
        run("ip", "netns", "add", ns_b)
        run("ip", "link", "add", va, "netns", ns_a, "type", "veth", "peer", "name", vb, "netns", ns_b)
        for ns, dev, addr in ((ns_a, va, "10.9.0.1/24"), (ns_b, vb, "10.9.0.2/24")):
            run("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            run("ip", "-n", ns, "link", "set", dev, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
        pcap, pcapng = d / "kernel.pcap", d / "kernel.pcapng"
        tcpdump = start(ns_a, "tcpdump", "-U", "-n", "-i", va, "-w", str(pcap), log=d / "tcpdump.log")
        tshark = start(ns_a, "tshark", "-n", "-q", "-i", va, "-F", "pcapng", "-w", str(pcapng), log=d / "tshark.log",
                       stdin=subprocess.DEVNULL)
        _wait_for(d / "tcpdump.log", "listening on", tcpdump)
        _wait_for(d / "tshark.log", "Capturing on", tshark)
        server = start(ns_a, sys.executable, "-c", UDP_SERVER, "3", log=d / "server.log")
        _wait_for(d / "server.log", "ready", server)
        run("ip", "netns", "exec", ns_b, "arping", "-c", "1", "-w", "3", "-I", vb, "10.9.0.1")
        run("ip", "netns", "exec", ns_b, "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.9.0.1")
        run("ip", "netns", "exec", ns_b, "ping", "-c", "1", "-s", "1472", "-W", "2", "10.9.0.1")
        assert "echoed" in run("ip", "netns", "exec", ns_b, sys.executable, "-c", UDP_CLIENT)
        run("ip", "netns", "exec", ns_a, "ping", "-c", "1", "-W", "2", "10.9.0.2")  # the stack's own ping
        server.wait(10)
        # SIGINT ends a capturer at once, losing what it has not read yet (on a
        # loaded machine, "28 packets received by filter, 15 captured"): stop
        # each only once its file holds the last frame, the reply to that ping.
        for path, p in ((pcap, tcpdump), (pcapng, tshark)):
            _wait_for_frame(path, p, _is_reply_from(bytes([10, 9, 0, 2])))
        for p in (tcpdump, tshark):
            p.send_signal(signal.SIGINT)
            p.wait(15)
        assert "0 packets dropped" in (d / "tcpdump.log").read_text()
        yield {"pcap": pcap, "pcapng": pcapng}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        for ns in (ns_a, ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


@pytest.mark.parametrize("form", ["pcap", "pcapng"])
def test_real_kernel_capture_imports_and_replays(kernel_captures: dict[str, Path], tmp_path: Path, form: str) -> None:
    cap = kernel_captures[form]
    assert read_capture(cap).format == form
    out = tmp_path / "kernel.yaml"
    r = do_import(cap, out, "--stack", "10.9.0.1", "--map", "10.9.0.2=10.0.0.2")
    assert r.returncode == 0, r.stderr
    assert "imported " in r.stdout and "skipped" in r.stdout
    doc = yaml.safe_load(out.read_text())
    assert doc["stack"]["ip"] == "10.0.0.1/24" and doc["stack"]["services"] == ["echo"]
    assert doc["hosts"]["host2"]["ip"] == "10.0.0.2"
    scenario = load(out)
    expected = [s.expected for s in scenario.steps if s.kind == "expect" and not s.optional]
    assert sum(1 for e in expected if e.get("arp.op") == 2) >= 2  # arping's and ping's requests answered
    assert sum(1 for e in expected if e.get("icmp.type") == 0) == 4  # three pings and the 1472-byte one
    assert any(len(e.get("icmp.data", b"")) == 1472 for e in expected)
    assert [e["udp.data"] for e in expected if "udp.data" in e] == [
        b"hello, kernel", bytes([0, 1, 2, 250, 251, 255]) + b"binary", b"x" * 100]
    duties = {"eth.dst", "eth.src", "arp.op", "arp.sha", "arp.spa", "arp.tha", "arp.tpa", "ipv4.src", "ipv4.dst",
              "icmp.type", "icmp.code", "icmp.id", "icmp.seq", "icmp.data", "udp.sport", "udp.dport", "udp.data"}
    # Nothing the kernel chose by itself (keys ending in "." only say a layer is there).
    assert all({k for k in e if not k.endswith(".")} <= duties for e in expected)
    assert [s.app for s in scenario.steps if s.kind == "app"] == ["ping"]  # 10.9.0.1's own ping
    rc, report = replay(out)
    assert rc == 0, report + out.read_text()
    r = cli("replay", str(out))
    assert r.returncode == 0 and r.stdout.endswith("1 passed, 0 failed\n"), r.stdout


def test_real_kernel_capture_replays_without_any_map(kernel_captures: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "kernel.yaml"
    r = do_import(kernel_captures["pcapng"], out, "--stack", "10.9.0.1")
    assert r.returncode == 0 and not r.stderr, r.stderr
    assert yaml.safe_load(out.read_text())["hosts"]["host2"]["ip"] == "10.0.0.2"  # moved with the subnet
    rc, report = replay(out)
    assert rc == 0, report


def test_strict_import_of_a_kernel_shows_its_own_choices(kernel_captures: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "strict.yaml"
    assert do_import(kernel_captures["pcap"], out, "--stack", "10.9.0.1", "--map", "10.9.0.2=10.0.0.2",
                     "--strict").returncode == 0
    rc, report = replay(out)
    assert rc == 1 and "ipv4.id" in report, report  # Linux's IP IDs are not simstack's: why --strict is not the default


# -- TCP ------------------------------------------------------------------------------------------------------------
def linux_tcp_server_capture() -> Frames:
    """A Linux server's side of one HTTP/1.0 exchange, built by scapy as tcpdump would show it: window scaling and
    timestamps on, bare ACKs of its own choosing, a scaled window that tells when its application read."""
    from scapy.all import IP, TCP, Ether, raw  # the test extra's independent encoder

    k, p = "0e:00:00:00:00:01", "02:00:00:00:00:02"
    server, client = "10.9.0.1", "10.9.0.2"

    def to_server(data: bytes = b"", **tcp: object) -> bytes:
        return bytes(raw(Ether(src=p, dst=k) / IP(src=client, dst=server, id=7, flags="DF")
                         / TCP(sport=43000, dport=80, **tcp) / data))

    def from_server(data: bytes = b"", **tcp: object) -> bytes:
        return bytes(raw(Ether(src=k, dst=p) / IP(src=server, dst=client, id=9, flags="DF")
                         / TCP(sport=80, dport=43000, **tcp) / data))

    request, answer = b"GET / HTTP/1.0\r\n\r\n", b"HTTP/1.0 200 OK\r\n\r\nhello"
    c, s = 1000, 3_000_000_000  # the ISNs
    ts = [("NOP", None), ("NOP", None), ("Timestamp", (300, 200))]
    frames = [
        to_server(flags="S", seq=c, window=64240, options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (300, 0)),
                                                            ("NOP", None), ("WScale", 7)]),
        from_server(flags="SA", seq=s, ack=c + 1, window=65160,
                    options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (200, 300)), ("NOP", None), ("WScale", 7)]),
        to_server(flags="A", seq=c + 1, ack=s + 1, window=502, options=ts),
        to_server(request, flags="PA", seq=c + 1, ack=s + 1, window=502, options=ts),
        from_server(flags="A", seq=s + 1, ack=c + 1 + len(request), window=509, options=ts),
        from_server(answer, flags="PA", seq=s + 1, ack=c + 1 + len(request), window=509, options=ts),
        from_server(flags="FA", seq=s + 1 + len(answer), ack=c + 1 + len(request), window=509, options=ts),
        to_server(flags="FA", seq=c + 1 + len(request), ack=s + 2 + len(answer), window=502, options=ts),
        from_server(flags="A", seq=s + 2 + len(answer), ack=c + 2 + len(request), window=509, options=ts),
    ]
    return [(1_700_000_000_000_000_000 + i * 2_000_000, f) for i, f in enumerate(frames)]


def test_a_linux_tcp_server_capture_imports_and_replays(tmp_path: Path) -> None:
    cap = write_pcap(tmp_path / "http.pcap", linux_tcp_server_capture())
    out = tmp_path / "http.yaml"
    r = do_import(cap, out, "--stack", "10.9.0.1")
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    # numbers relative to each side's ISN, flags in tcpdump's letters, the peer's options as it sent them
    assert "tcp: {sport: 80, dport: 43000, flags: S., seq: 0, ack: 1, data: \"\"}" in text, text
    assert "options: [mss 1460, sackOK, TS val 300 ecr 0, nop, wscale 7]" in text, text
    assert "tcp: {sport: 80, dport: 43000, flags: F., seq: 25, ack: 19, data: \"\"}" in text, text
    # the application behind the server: listen, accept, the answer written, the request read, the close
    for op in ("listen", "accept", "send", "recv", "close"):
        assert f"app: {op}\n" in text, text
    assert "ignore: [{tcp: {flags: ., len: 0}}]" in text and "2 bare TCP ACKs" in r.stdout, r.stdout
    rc, report = replay(out)
    assert rc == 0, report + text
