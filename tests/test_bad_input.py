"""Bad input to ``simstack replay`` and ``simstack import``: one line on stderr, exit 2, never a traceback.

Every class of malformed input gets the same treatment whatever its key:
NaN and infinity, integers too long to convert, numbers past a setting's
range, sizes past a field's limit, values of the wrong YAML type at every key
of a scenario, files that are not files, and pcapng option values at their
extremes. Each runs the real command in a subprocess, so a traceback the
interpreter prints, or a hang, is seen as the user would see it.
"""

import dataclasses
import math
import os
import re
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SCENARIOS
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether

from simstack.engine.scenario.loader import MAX_FILE_BYTES, STEP_ACTIONS
from simstack.engine.wire.capture import MAX_CAPTURE_BYTES
from simstack.protocols.arp_cache import ArpConfig
from simstack.protocols.fragments import ReassemblyConfig

TIMEOUT = 60  # a hang (a NaN deadline) fails the case instead of the whole run


def simstack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "simstack", *args], capture_output=True, text=True, timeout=TIMEOUT)


def run_all(jobs: dict[str, Callable[[], subprocess.CompletedProcess[str]]]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run the commands two at a time per CPU: each is mostly interpreter start-up."""
    with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 1)) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def assert_one_line(r: subprocess.CompletedProcess[str], prefix: str, *fragments: str) -> str:
    """Exit 2, no traceback, exactly one line on stderr that starts with ``prefix``; that line."""
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(prefix), (prefix, lines[0])
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# -- replay: one file per class ---------------------------------------------------------------------------------------
HEAD = 'description: one bad value\nhosts:\n  peer: {mac: "02:00:00:00:00:02", ip: 10.0.0.2}\n'
PING_STEPS = "steps:\n  - at: 0\n    app: ping\n    dst: peer\n  - expect: {arp: {op: request}}\n"


def _steps(*lines: str) -> str:
    return "steps:\n" + "".join(f"  {line}\n" for line in lines)


NOTHING = _steps("- expect: nothing", "  for: 1")
INJECT = "- inject: {icmp: {type: echo-request}}"

# (case, scenario text, the line the error must name, words the message must hold)
REPLAY_CASES: list[tuple[str, str, int, str]] = [
    # NaN and infinity, wherever a number goes (issue 16.4): the NaN deadline made replay loop forever
    ("nan arp.retrans_time", HEAD + "stack:\n  arp: {retrans_time: .nan}\n" + PING_STEPS, 5, "must be a finite number"),
    ("nan reassembly.timeout", HEAD + "stack:\n  reassembly: {timeout: .nan}\n" + NOTHING, 5, "must be a finite number"),
    ("inf arp.reachable_time", HEAD + "stack:\n  arp: {reachable_time: .inf}\n" + NOTHING, 5, "must be a finite number"),
    ("nan at", HEAD + _steps("- at: .nan", "  " + INJECT[2:]), 5, "at must be a finite number"),
    ("inf at", HEAD + _steps("- at: .inf", "  " + INJECT[2:]), 5, "at must be a finite number"),
    ("1.0e+999 at", HEAD + _steps("- at: 1.0e+999", "  " + INJECT[2:]), 5, "at must be a finite number"),
    ("nan within", HEAD + _steps(INJECT, "- expect: {icmp: {type: echo-reply}}", "  within: .nan"), 7,
     "within must be a finite number"),
    ("nan tolerance", HEAD + _steps(INJECT, "- expect: {icmp: {type: echo-reply}}", "  tolerance: .nan"), 7,
     "tolerance must be a finite number"),
    ("inf for", HEAD + _steps("- expect: nothing", "  for: .inf"), 6, "for must be a finite number"),
    ("-inf for", HEAD + _steps("- expect: nothing", "  for: -.inf"), 6, "for must be a finite number"),
    ("nan interval", HEAD + _steps("- app: ping", "  dst: peer", "  count: 2", "  interval: .nan"), 8,
     "interval must be a finite number"),
    ("nan timeout", HEAD + _steps("- app: socket", "  socket: s", "- app: recv", "  socket: s", "  timeout: .nan"), 9,
     "timeout must be a finite number"),
    ("nan expect_within", HEAD + "options: {expect_within: .nan}\n" + NOTHING, 4, "expect_within must be a finite number"),
    ("inf tolerance option", HEAD + "options: {tolerance: .inf}\n" + NOTHING, 4, "tolerance must be a finite number"),
    # numbers past their range (16.4, 16.5): 12 s and 391 MB for one ping
    ("retrans 0, a million probes", HEAD + "stack:\n  arp: {retrans_time: 0, max_probes: 1000000}\n" + PING_STEPS, 5,
     "retrans_time must be a number from 0.01 to 3600"),
    ("a million probes", HEAD + "stack:\n  arp: {max_probes: 1000000}\n" + PING_STEPS, 5,
     "max_probes must be an integer from 1 to 100"),
    ("reassembly.max_bytes 2**32", HEAD + "stack:\n  reassembly: {max_bytes: 4294967296}\n" + NOTHING, 5,
     "max_bytes must be an integer from 1 to"),
    ("at 1.0e+300", HEAD + _steps("- at: 1.0e+300", "  " + INJECT[2:]), 5, "at must be a number from 0 to 1e+06"),
    ("negative for", HEAD + _steps("- expect: nothing", "  for: -1"), 6, "for must be a number from 0"),
    # integers too long for Python to convert (16.8)
    ("5000-digit seq", HEAD + _steps("- inject: {icmp: {seq: " + "9" * 5000 + "}}"), 5, "YAML: an integer of 5000"),
    ("5000-digit seed", HEAD + "stack:\n  seed: " + "1" * 5000 + "\n" + NOTHING, 5, "YAML: an integer of 5000"),
    ("200-digit count", HEAD + "steps:\n  - counters: {icmp.rx: " + "7" * 200 + "}\n", 5, "YAML: an integer of 200"),
    # sizes past a field's limit (16.8, 16.12)
    ("options size 44", HEAD + _steps("- inject: {ipv4: {options: {size: 44}}}", "- expect: nothing", "  for: 1"), 5,
     "ipv4.options: 44 bytes; an IPv4 header holds at most 40"),
    ("options size 4000", HEAD + _steps("- inject: {ipv4: {options: {size: 4000}}}"), 5, "ipv4.options: 4000 bytes"),
    ("expected options size 44", HEAD + _steps("- expect: {ipv4: {options: {size: 44}}}"), 5, "ipv4.options: 44 bytes"),
    ("udp data size 65535", HEAD + _steps("- inject: {udp: {data: {size: 65535}}}"), 5,
     "the datagram would be 65563 bytes"),
    ("icmp data plus payload", HEAD + _steps("- inject: {icmp: {data: {size: 65000}}, payload: {size: 600}}"), 5,
     "the datagram would be 65628 bytes"),
    ("payload size 70000", HEAD + _steps("- inject: {payload: {size: 70000}}"), 5, "size must be an integer from 0 to 65535"),
    # wrong types the loader used to trip over (16.8)
    ("app mapping", HEAD + _steps("- app: {ping: peer}"), 5, "app must name an operation"),
    ("app list", HEAD + _steps("- app: [ping]"), 5, "app must name an operation"),
    ("error list", HEAD + _steps("- app: socket", "  socket: s", "- app: bind", "  socket: s", "  addr: [any, 7]",
                                 "  error: [EINVAL]"), 10, "error must be one of"),
    ("services list of lists", HEAD + "stack: {services: [[echo]]}\n" + NOTHING, 4, "services must be a list of echo"),
    ("raw with fragment", HEAD + _steps("- inject: {raw: \"00\"}", "  fragment: 8"), 6,
     "only a valid IPv4 datagram can be fragmented"),
    ("ARP with fragment", HEAD + _steps("- inject: {arp: {op: request}}", "  fragment: 8"), 6,
     "only a valid IPv4 datagram can be fragmented"),
    # a port taken twice (16.11): the error names the file and the line
    ("services twice", HEAD + "stack: {services: [echo, echo]}\n" + NOTHING, 4, "services: echo is listed twice"),
    # the stack's own addresses (16.14): one validation for live, replay and import
    ("multicast MAC", HEAD + 'stack: {mac: "01:00:5e:00:00:01"}\n' + NOTHING, 4, "needs a unicast MAC"),
    ("broadcast MAC", HEAD + 'stack: {mac: "ff:ff:ff:ff:ff:ff"}\n' + NOTHING, 4, "needs a unicast MAC"),
    ("limited broadcast IP", HEAD + "stack: {ip: 255.255.255.255/32}\n" + NOTHING, 4, "the limited broadcast address"),
    ("loopback IP", HEAD + "stack: {ip: 127.0.0.1/8}\n" + NOTHING, 4, "loopback"),
    ("multicast IP", HEAD + "stack: {ip: 224.0.0.1/24}\n" + NOTHING, 4, "multicast"),
    ("network address", HEAD + "stack: {ip: 10.0.0.0/24}\n" + NOTHING, 4, "network or broadcast"),
    ("gateway is the stack", HEAD + "stack: {ip: 10.0.0.1/24, gateway: 10.0.0.1}\n" + NOTHING, 4,
     "stack.gateway: 10.0.0.1 is the stack's own address"),
    ("gateway off the subnet", HEAD + "stack: {gateway: 10.9.9.9}\n" + NOTHING, 4, "is not on the stack's subnet"),
    # YAML that expands past any file size: the "billion laughs"
    ("alias bomb", HEAD + "steps:\n  - note: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
     + "".join(f"    n{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9))
     + "    inject: {payload: {hex: *a8}}\n", 0, "aliases"),
]


def _replay_jobs(tmp: Path) -> dict[str, Callable[[], subprocess.CompletedProcess[str]]]:
    jobs: dict[str, Callable[[], subprocess.CompletedProcess[str]]] = {}
    for i, (case, text, _line, _words) in enumerate(REPLAY_CASES):
        path = tmp / f"case{i}.yaml"
        path.write_text(text)
        jobs[case] = partial(simstack, "replay", str(path))
    return jobs


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, subprocess.CompletedProcess[str]]]]:
    tmp = tmp_path_factory.mktemp("replay")
    yield tmp, run_all(_replay_jobs(tmp))


@pytest.mark.parametrize(("case", "line", "words"), [(c, n, w) for c, _, n, w in REPLAY_CASES],
                         ids=[c for c, *_ in REPLAY_CASES])
def test_replay_refuses_with_one_line(replayed: tuple[Path, dict[str, subprocess.CompletedProcess[str]]], case: str,
                                      line: int, words: str) -> None:
    tmp, results = replayed
    path = tmp / f"case{[c for c, *_ in REPLAY_CASES].index(case)}.yaml"
    r = results[case]
    got = assert_one_line(r, f"{path}:", words)
    if line:
        assert got.startswith(f"{path}:{line}: "), got
    assert r.stdout == "0 passed, 1 failed\n", r.stdout


# -- replay: files that are not scenario files (16.6) ------------------------------------------------------------------
def test_replay_refuses_what_is_not_a_regular_file_or_too_big(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: costs nothing on disk
    cases = {"/dev/zero": "character device", str(fifo): "FIFO",
             str(big): f"{MAX_FILE_BYTES + 1} bytes is more than the {MAX_FILE_BYTES}"}
    results = run_all({p: partial(simstack, "replay", p) for p in [*cases, str(tmp_path)]})
    for path, words in cases.items():
        assert_one_line(results[path], f"{path}: cannot read: ", words)
    # a folder is searched for scenarios; this one holds none (big.yaml has no description or steps)
    assert_one_line(results[str(tmp_path)], f"{tmp_path}: no scenario in this folder")


# -- replay: the wrong YAML type at every key --------------------------------------------------------------------------
EVERY_KEY: dict[str, Any] = {
    "description": "every key, with a value that works",
    "stack": {
        "mac": "02:00:00:00:00:01", "ip": "10.0.0.1/24", "gateway": "10.0.0.254", "mtu": 1500, "ttl": 64, "vlan": 5,
        "seed": 7,
        "arp": {"reachable_time": 30, "retrans_time": 1.0, "max_probes": 3, "queue_len": 101, "queue_bytes": 212992,
                "queue_total_bytes": 1048576, "stale_time": 60, "failed_time": 20, "max_entries": 512, "gc_min_age": 5},
        "reassembly": {"timeout": 30, "max_datagrams": 64, "max_fragments": 256, "max_bytes": 4194304},
        "services": ["echo", "discard"],
    },
    "hosts": {"peer": {"mac": "02:00:00:00:00:02", "ip": "10.0.0.2"}},
    "options": {"allow_unexpected": False, "ignore": [{"arp": {"op": "request", "tpa": "peer"}}], "expect_within": 5,
                "tolerance": 0},
    "steps": [
        {"at": 0, "note": "ARP first", "inject": {"eth": {"vlan": 5}, "arp": {"op": "request"}}},
        {"expect": {"arp": {"op": "reply"}}, "within": 1, "tolerance": 0, "optional": False},
        {"inject": {"eth": {"vlan": 5}, "icmp": {"type": "echo-request", "seq": 1, "data": {"size": 64}}},
         "fragment": {"size": 32, "order": [0, 1, 2]}},
        {"expect": {"icmp": {"type": "echo-reply", "seq": 1, "data": {"size": 64}}}},
        {"app": "ping", "dst": "peer", "id": 1, "seq": 2, "data": "x", "count": 1, "interval": 1},
        {"expect": {"icmp": {"type": "echo-request", "seq": 2}}},
        {"app": "socket", "socket": "s"},
        {"app": "bind", "socket": "s", "addr": ["any", 5000]},
        {"app": "sendto", "socket": "s", "addr": ["peer", 5001], "data": "hi"},
        {"expect": {"udp": {"dport": 5001, "data": "hi"}}},
        {"inject": {"eth": {"vlan": 5}, "udp": {"sport": 5001, "dport": 5000, "data": "yo"}}},
        {"app": "recvfrom", "socket": "s", "size": 100, "timeout": 1, "data": "yo", "addr": ["peer", 5001]},
        {"app": "close", "socket": "s"},
        {"expect": "nothing", "for": 1},
        {"counters": {"icmp.rx": 1, "udp.delivered": 1}},
    ],
}

NAN, INF = math.nan, math.inf
HUGE = 10**150  # more digits than the loader converts
WRONG: dict[str, list[Any]] = {
    "number": [[1, 2], {"a": 1}, "soon", NAN, INF, -INF, HUGE, True, None, -1, 1e300],
    "int": [[1, 2], {"a": 1}, "many", NAN, INF, 1.5, HUGE, True, None, -1, 2**70],
    "text": [[1, 2], {"a": 1}, 5, NAN, "", None],
    "address": [[1, 2], {"a": 1}, 12, NAN, True, None, "nowhere"],
    "bool": [[1, 2], {"a": 1}, "yes please", 1, NAN, None],
    "mapping": [[1, 2], "text", 5, NAN, True],
    "list": [{"a": 1}, "text", 5, NAN, []],
    "spec": [[1, 2], "text", 5, NAN, {"bogus": 1}, {"icmp": [1]}, {"icmp": {"seq": NAN}}, {"icmp": {"seq": HUGE}}],
    "op": [[1, 2], {"a": 1}, 5, NAN, "teleport", None],
    "fragment": [[1, 2], "text", NAN, 7, {"size": NAN}, {"size": HUGE}, {"size": 8, "order": [99]}, {"size": 8, "order": "x"}],
    "bytes": [[1, 2], 5, NAN, {"size": NAN}, {"size": HUGE}, {"size": 70000}, {"hex": "zz"}, {"size": 8, "fill": ""}],
    "addr": ["text", [1], ["peer", 1, 2], ["peer", 70000], ["peer", NAN], {"a": 1}, [NAN, 7]],
    "name": [[1, 2], {"a": 1}, 5, NAN, ""],
    "error": [[1, 2], {"a": 1}, 5, NAN, "EWHATEVER"],
    "counters": [[1, 2], "text", {"icmp.rx": NAN}, {"icmp.rx": -1}, {"nolayer": 1}, {"icmp.rx": [1]}],
}
# (path to a key, its kind); "note" takes any value, so it has no wrong one
KEYS: list[tuple[tuple[Any, ...], str]] = [
    (("description",), "text"), (("stack",), "mapping"), (("stack", "mac"), "address"), (("stack", "ip"), "address"),
    (("stack", "gateway"), "address"), (("stack", "mtu"), "int"), (("stack", "ttl"), "int"), (("stack", "vlan"), "int"),
    (("stack", "seed"), "int"), (("stack", "arp"), "mapping"), (("stack", "reassembly"), "mapping"),
    (("stack", "services"), "list"), (("hosts",), "mapping"), (("hosts", "peer"), "mapping"),
    (("hosts", "peer", "mac"), "address"), (("hosts", "peer", "ip"), "address"), (("options",), "mapping"),
    (("options", "allow_unexpected"), "bool"), (("options", "ignore"), "list"), (("options", "expect_within"), "number"),
    (("options", "tolerance"), "number"), (("steps",), "list"),
    (("steps", 0, "at"), "number"), (("steps", 0, "inject"), "spec"), (("steps", 1, "expect"), "spec"),
    (("steps", 1, "within"), "number"), (("steps", 1, "tolerance"), "number"), (("steps", 1, "optional"), "bool"),
    (("steps", 2, "fragment"), "fragment"), (("steps", 2, "inject", "icmp", "data"), "bytes"),
    (("steps", 4, "app"), "op"), (("steps", 4, "dst"), "address"), (("steps", 4, "id"), "int"),
    (("steps", 4, "seq"), "int"), (("steps", 4, "data"), "bytes"), (("steps", 4, "count"), "int"),
    (("steps", 4, "interval"), "number"), (("steps", 6, "socket"), "name"), (("steps", 7, "addr"), "addr"),
    (("steps", 7, "socket"), "name"), (("steps", 8, "socket"), "name"), (("steps", 8, "addr"), "addr"),
    (("steps", 8, "data"), "bytes"), (("steps", 11, "socket"), "name"), (("steps", 11, "size"), "int"),
    (("steps", 11, "timeout"), "number"), (("steps", 11, "data"), "bytes"), (("steps", 11, "addr"), "addr"),
    (("steps", 12, "socket"), "name"), (("steps", 13, "for"), "number"), (("steps", 14, "counters"), "counters"),
    *((("stack", "arp", f.name), "int" if f.type in (int, "int") else "number") for f in dataclasses.fields(ArpConfig)),
    *((("stack", "reassembly", f.name), "int" if f.type in (int, "int") else "number")
      for f in dataclasses.fields(ReassemblyConfig)),
]
# A value wrong for most keys of its kind, but right for this one.
RIGHT_HERE: set[tuple[tuple[Any, ...], str]] = {
    (("stack", "services"), "[]"),  # no services at all
}


def _with(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A deep copy of ``doc`` with the key at ``path`` set to ``value``."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, list):
        return [_with(v, rest, value) if i == head else v for i, v in enumerate(doc)]
    return {k: _with(v, rest, value) if k == head else v for k, v in doc.items()}


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=1000)


def test_every_key_is_in_the_sweep() -> None:
    """The base scenario passes, and every key it has (but free-text notes) is swept."""
    from simstack.engine.scenario.loader import loads
    from simstack.engine.scenario.runner import Runner

    result = Runner(loads(_dump(EVERY_KEY), "every-key.yaml")).run()
    assert result.passed, result.report

    def general(path: tuple[Any, ...]) -> tuple[Any, ...]:
        """A step's key as (steps, its action, its key): one step of each kind stands for all."""
        if path[0] == "steps" and len(path) > 2:
            step = EVERY_KEY["steps"][path[1]]
            action = next(k for k in step if k in STEP_ACTIONS)
            return ("steps", step[action] if action == "app" and path[2] != "app" else action, path[2])
        return path

    def paths(node: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        if isinstance(node, dict):
            for k, v in node.items():
                yield (*at, k)
                if at[:1] != ("steps",) and k not in ("ignore", "services"):
                    yield from paths(v, (*at, k))
        elif isinstance(node, list) and at == ("steps",):
            for i, v in enumerate(node):
                yield from paths(v, (*at, i))

    swept = {general(p) for p, _ in KEYS}
    missing = {general(p) for p in paths(EVERY_KEY)} - swept
    left = sorted(p for p in missing if p[-1] != "note")
    assert left == [], left


def test_the_wrong_type_at_every_key_is_one_line_each(tmp_path: Path) -> None:
    files: list[tuple[Path, tuple[Any, ...], Any]] = []
    for path, kind in KEYS:
        for value in WRONG[kind]:
            if (path, repr(value)) in RIGHT_HERE:
                continue
            f = tmp_path / f"k{len(files)}.yaml"
            f.write_text(_dump(_with(EVERY_KEY, path, value)))
            files.append((f, path, value))
    good = SCENARIOS / "ping.yaml"
    # One replay of them all, the good file among them: each bad file fails alone, and the summary comes.
    r = subprocess.run([sys.executable, "-m", "simstack", "replay", *(str(f) for f, _, _ in files), str(good)],
                       capture_output=True, text=True, timeout=300)
    assert "Traceback" not in r.stdout + r.stderr, r.stderr[-3000:]
    assert r.returncode == 2, r.stdout[-2000:]
    lines = r.stderr.splitlines()
    by_file = {line.split(":", 1)[0]: line for line in lines}
    problems = []
    for f, path, value in files:
        line = by_file.get(str(f))
        if line is None or not re.match(rf"{re.escape(str(f))}:\d+: \S", line):
            problems.append(f"{'.'.join(map(str, path))} = {value!r}: {line or 'accepted: ' + _verdict(r.stdout, f)}")
    assert problems == [], "\n".join(problems)
    assert len(lines) == len(files), "more than one line for some file"
    assert f"PASS {good}\n" in r.stdout
    assert r.stdout.endswith(f"1 passed, {len(files)} failed\n"), r.stdout[-500:]


def _verdict(stdout: str, f: Path) -> str:
    return next((line for line in stdout.splitlines() if str(f) in line), "no line at all")


def test_a_bad_file_fails_alone(tmp_path: Path) -> None:
    """The files after a bad one still run, and the summary line still comes (16.11)."""
    twice = tmp_path / "twice.yaml"
    twice.write_text(HEAD + "stack: {services: [echo, echo]}\n" + NOTHING)
    bad = tmp_path / "bad.yaml"
    bad.write_text(HEAD + _steps("- at: .nan", "  " + INJECT[2:]))
    ping = str(SCENARIOS / "ping.yaml")
    r = simstack("replay", str(twice), ping, str(bad), ping)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [f"{twice}:4: services: echo is listed twice; each service runs once, on its own port",
                                     f"{bad}:5: at must be a finite number, got nan"]
    assert r.stdout == f"PASS {ping}\nPASS {ping}\n2 passed, 2 failed\n"


def test_an_unwritable_pcap_names_itself(tmp_path: Path) -> None:
    ping = str(SCENARIOS / "ping.yaml")
    cases = {"/dev/full": "cannot write pcap /dev/full: No space left on device",
             str(tmp_path): f"cannot write pcap {tmp_path}: Is a directory"}
    results = run_all({out: partial(simstack, "replay", ping, "--pcap", out) for out in cases})
    for out, words in cases.items():
        assert_one_line(results[out], "simstack: ", words)


# -- import -----------------------------------------------------------------------------------------------------------
STACK_MAC, PEER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
FRAMES = [
    Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC) / ARP(op=1, hwsrc=PEER_MAC, psrc="10.0.0.2", pdst="10.0.0.1"),
    Ether(dst=PEER_MAC, src=STACK_MAC) / ARP(op=2, hwsrc=STACK_MAC, psrc="10.0.0.1", hwdst=PEER_MAC, pdst="10.0.0.2"),
    Ether(dst=STACK_MAC, src=PEER_MAC) / IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=8, id=1, seq=1),
    Ether(dst=PEER_MAC, src=STACK_MAC) / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=0, id=1, seq=1),
]
T0 = 1_700_000_000  # seconds: 2023


def _block(kind: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def _option(code: int, value: bytes, length: int | None = None) -> bytes:
    n = len(value) if length is None else length
    return struct.pack("<HH", code, n) + value + bytes(-len(value) % 4)


def pcapng(options: bytes = b"", stamps: list[int] | None = None, epb_len: int | None = None) -> bytes:
    """A little-endian pcapng of FRAMES: one interface with ``options``, one EPB per frame stamped with raw ``stamps``."""
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = _block(1, struct.pack("<HHI", 1, 0, 0) + options)
    out = shb + idb
    for i, f in enumerate(FRAMES):
        data = bytes(f)
        ts = (T0 * 1_000_000 + i) if stamps is None else stamps[i]
        captured = len(data) if epb_len is None else epb_len
        out += _block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, captured, len(data)) + data)
    return out


def pcap(incl_len: int | None = None, seconds: int = T0) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for f in FRAMES:
        data = bytes(f)
        out += struct.pack("<IIII", seconds, 0, len(data) if incl_len is None else incl_len, len(data)) + data
    return out


END = _option(0, b"")
MAX_STAMP = (1 << 64) - 1
# (case, capture bytes, extra arguments, words of the one line)
IMPORT_CASES: list[tuple[str, bytes, tuple[str, ...], str]] = [
    ("tsresol 0, largest stamp", pcapng(_option(9, b"\x00") + END, [MAX_STAMP] * 4), (), "frame 1 is stamped"),
    ("tsresol 0, 2**40 s", pcapng(_option(9, b"\x00") + END, [1 << 40] * 4), (), "frame 1 is stamped"),
    ("tsresol 0x80, largest stamp", pcapng(_option(9, b"\x80") + END, [MAX_STAMP] * 4), (), "frame 1 is stamped"),
    ("tsresol 0x81, largest stamp", pcapng(_option(9, b"\x81") + END, [MAX_STAMP] * 4), (), "frame 1 is stamped"),
    ("tsoffset 2**63 - 1", pcapng(_option(14, struct.pack("<q", (1 << 63) - 1)) + END), (), "frame 1 is stamped"),
    ("tsoffset -2**63", pcapng(_option(14, struct.pack("<q", -(1 << 63))) + END), (), "frame 1 is stamped"),
    ("tsoffset -1 s at stamp 0", pcapng(_option(14, struct.pack("<q", -1)) + END, [0] * 4), (), "frame 1 is stamped"),
    ("tsresol 2 bytes long", pcapng(_option(9, b"\x06\x06") + END), (), "if_tsresol of interface 0 is 2 bytes"),
    ("tsoffset 4 bytes long", pcapng(_option(14, b"\x00" * 4) + END), (), "if_tsoffset of interface 0 is 4 bytes"),
    ("option length 0xffff", pcapng(_option(9, b"\x06", 0xFFFF)), (), "an option of interface 0 runs past"),
    ("captured length 2**32 - 1", pcapng(END, epb_len=0xFFFFFFFF), (), "corrupt capture"),
    ("pcap incl_len 2**32 - 1", pcap(incl_len=0xFFFFFFFF), (), "claims 4294967295 bytes"),
    ("--ip 255.255.255.255/32", pcap(), ("--ip", "255.255.255.255/32"), "--ip: 255.255.255.255 is the limited broadcast"),
    ("--ip 127.0.0.1/8", pcap(), ("--ip", "127.0.0.1/8"), "--ip: 127.0.0.1 is a loopback address"),
    ("--ip 224.0.0.1/24", pcap(), ("--ip", "224.0.0.1/24"), "--ip: 224.0.0.1 is a multicast address"),
    ("--mac multicast", pcap(), ("--mac", "01:00:5e:00:00:01"), "--mac: 01:00:5e:00:00:01: the stack needs a unicast"),
    ("--map to loopback", pcap(), ("--map", "10.0.0.1=127.0.0.1"), "--map gives the stack an address it cannot have"),
]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, subprocess.CompletedProcess[str]]]]:
    tmp = tmp_path_factory.mktemp("import")
    jobs: dict[str, Callable[[], subprocess.CompletedProcess[str]]] = {}
    for i, (case, data, args, _) in enumerate(IMPORT_CASES):
        cap = tmp / f"case{i}.pcapng"
        cap.write_bytes(data)
        jobs[case] = partial(simstack, "import", str(cap), "-o", f"{cap}.yaml", "--stack", "10.0.0.1", *args)
    yield tmp, run_all(jobs)


def test_the_import_cases_import_when_the_bad_value_is_put_right(tmp_path: Path) -> None:
    """The captures above differ from a good one only in the value under test."""
    for name, data in (("good.pcapng", pcapng(_option(9, b"\x06") + _option(14, struct.pack("<q", 0)) + END)),
                       ("good.pcap", pcap())):
        cap = tmp_path / name
        cap.write_bytes(data)
        r = simstack("import", str(cap), "-o", str(tmp_path / f"{name}.yaml"), "--stack", "10.0.0.1")
        assert r.returncode == 0 and r.stderr == "", r.stderr
        assert r.stdout.startswith("imported 4 frames")


@pytest.mark.parametrize(("case", "words"), [(c, w) for c, _, _, w in IMPORT_CASES], ids=[c for c, *_ in IMPORT_CASES])
def test_import_refuses_with_one_line(imported: tuple[Path, dict[str, subprocess.CompletedProcess[str]]], case: str,
                                      words: str) -> None:
    tmp, results = imported
    cap = tmp / f"case{[c for c, *_ in IMPORT_CASES].index(case)}.pcapng"
    prefix = "simstack import: " + ("" if case.startswith("--") else f"{cap}: ")
    assert_one_line(results[case], prefix, words)
    assert not Path(f"{cap}.yaml").exists()


def test_import_refuses_what_is_not_a_regular_file_or_too_big(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big.pcap"
    with big.open("wb") as f:
        f.truncate(MAX_CAPTURE_BYTES + 1)
    cases = {"/dev/zero": "character device", str(tmp_path): "directory", str(fifo): "FIFO",
             str(big): f"{MAX_CAPTURE_BYTES + 1} bytes is more than"}
    results = run_all({p: partial(simstack, "import", p, "-o", str(tmp_path / "o.yaml"), "--stack", "10.0.0.1")
                       for p in cases})
    for path, words in cases.items():
        assert_one_line(results[path], f"simstack import: {path}: cannot read {path}: ", words)


def test_import_refuses_to_write_over_its_capture(tmp_path: Path) -> None:
    """``import X.pcap -o X.pcap`` overwrote the capture with the YAML (16.13); so did a second name for it."""
    cap = tmp_path / "x.pcap"
    cap.write_bytes(pcap())
    (tmp_path / "link.pcap").symlink_to(cap)
    for out in (str(cap), str(tmp_path / "link.pcap"), f"{tmp_path}/./x.pcap"):
        r = simstack("import", str(cap), "-o", out, "--stack", "10.0.0.1")
        assert_one_line(r, "simstack import: ", f"-o {out} is the capture itself")
        assert cap.read_bytes() == pcap()
