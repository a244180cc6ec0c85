"""Memory in proportion to the input (issue 16, item 7): replay and import stream what they read, --record stops.

A replay of a long scenario peaked at 45 times the file's size (the YAML
node tree, then a dict per mapping and a __dict__ per step), an import at 40
times the capture's, and ``--record`` grew without a bound. The bounds here
are the issue's: the peak resident set over the interpreter's own (the
modules imported, nothing read yet) stays under ten times the input's size.
Each is measured in a subprocess, from its own ``VmHWM``.

The loader now reads scenarios from libyaml's events, checking each step as
it comes (``loader._Reader``); the whole-document reader it falls back on is
the reference it is held to, value for value and error for error.
"""

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SCENARIOS

from simstack.cli import build_parser
from simstack.engine.live.session import LiveOptions, plan
from simstack.engine.scenario import importer, loader, replay
from simstack.engine.scenario.fields import Context, Host, build_frame
from simstack.engine.scenario.loader import Scenario, ScenarioError
from simstack.engine.scenario.recorder import DEFAULT_RECORD_LIMIT, MAX_RECORD_LIMIT, Recorder
from simstack.engine.scenario.runner import Runner
from simstack.engine.wire.errors import SetupError
from simstack.engine.wire.pcap import PcapWriter
from simstack.protocols.addresses import ip_to_bytes, mac_to_bytes

FACTOR = 10  # the target: peak over the interpreter's at most ten times the input
STACK = Host("stack", mac_to_bytes("aa:bb:cc:dd:ee:ff"), ip_to_bytes("10.0.0.1"))


# -- the streaming reader against the whole-document one --------------------------------------------------------------
def outcome(text: str | bytes) -> Scenario | str:
    try:
        return loader.loads(text, "t.yaml")
    except ScenarioError as e:
        return str(e)


def whole(text: str | bytes, monkeypatch: pytest.MonkeyPatch) -> Scenario | str:
    """What ``loads`` gives when the streaming reader hands every document to the whole-document reader."""
    def fall_back(self: Any) -> Scenario:
        raise loader._Fallback

    with monkeypatch.context() as m:
        m.setattr(loader._Reader, "scenario", fall_back)
        return outcome(text)


HEAD = 'description: d\nhosts:\n  peer: {mac: "02:00:00:00:00:02", ip: 10.0.0.2}\n'
ARP = "  - at: +0.5\n    inject: {eth: {dst: stack, src: peer}, arp: {op: request, sha: peer, spa: peer, tpa: stack}}\n"
BAD = "  - {expect: nothing, for: x}\n"  # a check error: a YAML error anywhere in the file is reported instead
OK = "  - {expect: nothing, for: 1}\n"


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _laughs(indent: str) -> str:
    """Eight anchors, each ten of the one before: 10**8 values once expanded."""
    rows = [f"{indent}&a [1, 2]"]
    rows += [f"{indent}&{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in zip("abcdefg", "bcdefgh", strict=True)]
    return "".join(row + "\n" for row in rows)


EDGE_CASES = [
    "", "---\n", "[]\n", "5\n", "description: d\n", HEAD, HEAD + "steps: []\n", HEAD + "steps: 5\n",
    HEAD + "steps: {}\n", HEAD + "steps:\n" + ARP, "steps:\n" + ARP + HEAD,
    HEAD + "steps:\n" + ARP + "stack: {ip: 10.0.0.1/24}\n", "steps:\n" + ARP, HEAD + "steps:\n" + ARP + "steps:\n" + ARP,
    HEAD + "steps: &s\n" + ARP, HEAD + "x: &s\n" + ARP + "steps: *s\n", HEAD + "steps: !!seq\n" + ARP,
    HEAD + "steps: !!set {a, b}\n", HEAD + "steps:\n  - !!omap [{expect: nothing}, {for: 1}]\n",
    HEAD + "steps:\n  - !foo {expect: nothing, for: 1}\n",
    # scalar tags, resolved and explicit, and a collection tag on a scalar
    HEAD + "steps:\n  - {expect: nothing, for: !!float 1}\n", HEAD + "steps:\n  - {expect: nothing, for: !!str 1}\n",
    HEAD + "steps:\n  - {expect: nothing, for: ! 1}\n", HEAD + "steps:\n  - {expect: nothing, for: !!map 1}\n",
    HEAD + "steps:\n  - {expect: nothing, for: 2001-01-01}\n", HEAD + "steps:\n  - {expect: nothing, for: .nan}\n",
    HEAD + "steps:\n  - {expect: nothing, for: !!binary aGVsbG8=}\n",
    HEAD + "steps:\n  - {expect: nothing, for: 1" + "0" * 200 + "}\n",
    # keys: duplicate, complex, merge
    HEAD + "steps:\n  - {expect: nothing, for: 1, for: 2}\n", HEAD + "steps:\n  - {? [a, b] : 1}\n",
    HEAD + "steps:\n  - {1: 2}\n", HEAD + "steps:\n  - {null: 2}\n", HEAD + "steps:\n  - {<<: {expect: nothing}, for: 1}\n",
    # anchors and aliases: shared, undefined, duplicate, looping, and the billion laughs in and out of the steps
    HEAD + "steps:\n  - {expect: nothing, for: *nope}\n",
    HEAD + "steps:\n  - {expect: nothing, for: &a 1}\n  - {expect: nothing, for: *a}\n",
    HEAD + "steps:\n  - &a {expect: nothing, for: 1}\n  - *a\n", HEAD + "steps:\n  - &a {expect: nothing, for: *a}\n",
    HEAD + "steps:\n  - &a [*a]\n", HEAD + "steps:\n  - {expect: nothing, for: &a 1}\n  - {expect: nothing, for: &a 2}\n",
    _laughs(""), HEAD + "steps:\n" + _laughs("  - "),
    # relative times: the plus sign is the text's, so a quoted one or an alias to one behaves as read whole
    HEAD + "steps:\n  - {at: +1, expect: nothing, for: 1}\n  - {at: \"+0.5\", expect: nothing, for: 1}\n",
    HEAD + "steps:\n  - {at: &t +1, expect: nothing, for: 1}\n  - {at: *t, expect: nothing, for: 1}\n",
    HEAD + "steps:\n  - {at: +1, expect: nothing, for: 1}\n  - {at: +0.5, app: recv, socket: s, until: +1}\n",
    # which error comes first: YAML errors anywhere, then checks in file order
    HEAD + "steps:\n" + OK + "  - {expect: nothing, for: 1\n", HEAD + "steps:\n" + BAD + "  - {expect: nothing, for: 1\n",
    HEAD + "steps:\n" + BAD + "  - {expect: nothing, for: 1, for: 1}\n", HEAD + "steps:\n" + BAD + "---\n",
    HEAD + "steps:\n" + OK + "---\nb: 1\n", HEAD + "steps:\n" + BAD + "description: e\n",
    HEAD + "steps:\n" + OK + "bogus: 1\n", "bogus: 1\n" + HEAD + "steps:\n" + OK,
    "description: 5\nsteps:\n  - {expect: nothing, for: 1, bogus: 2}\n", "description: 5\nsteps:\n  - {expect: nothing\n",
    HEAD + "steps:\n" + BAD + "  - " + _nested(150) + "\n", HEAD + "steps:\n" + BAD + "  - *x\n",
    # the document around it
    "\ufeff" + HEAD + "steps:\n" + ARP, HEAD + "steps:\n" + ARP + "...\n", "%YAML 1.1\n---\n" + HEAD + "steps:\n" + ARP,
    HEAD + "steps:\n" + ARP + "  - \t\n", HEAD + "steps:\n  - " + _nested(90) + "\n",
]


@pytest.mark.parametrize("text", EDGE_CASES, ids=range(len(EDGE_CASES)))
def test_the_streaming_reader_reads_what_the_whole_document_reader_reads(text: str, monkeypatch: pytest.MonkeyPatch
                                                                         ) -> None:
    want = whole(text, monkeypatch)
    assert outcome(text) == want
    assert outcome(text.encode()) == want  # load() hands libyaml the file's bytes


def _mutants() -> Iterator[tuple[str, str]]:
    """Scenario files with one line dropped or doubled: errors of every kind, at every line."""
    for name in ("ping.yaml", "tcp/active-open.yaml", "sockets/blocking-recv.yaml",
                 "fragments/echo-fragmented-both-ways.yaml", "arp/queue-bounds.yaml", "udp/echo.yaml"):
        lines = (SCENARIOS / name).read_text().splitlines(keepends=True)
        for i in range(len(lines)):
            yield f"{name}-{i + 1}", "".join(lines[:i] + lines[i + 1:])
            yield f"{name}+{i + 1}", "".join(lines[:i + 1] + lines[i:])


def test_the_streaming_reader_agrees_on_every_line_dropped_or_doubled(monkeypatch: pytest.MonkeyPatch) -> None:
    differ = [name for name, text in _mutants() if outcome(text) != whole(text, monkeypatch)]
    assert not differ


def test_every_scenario_reads_as_it_does_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = sorted(SCENARIOS.rglob("*.yaml"))
    assert len(paths) > 50
    for path in paths:
        assert outcome(path.read_bytes()) == whole(path.read_text(), monkeypatch), path


def test_too_deep_is_one_line_whichever_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """500 brackets overflowed Python's stack in the whole-document reader: a traceback."""
    text = HEAD + "steps:\n  - 1\n  - " + _nested(500) + "\n"
    assert outcome(text) == "t.yaml:6: YAML: values nested more than 100 deep"
    assert whole(text, monkeypatch) == "t.yaml:6: YAML: values nested more than 100 deep"
    # the document's mapping, its steps, and 98 lists in a step: 100
    assert outcome(HEAD + "steps:\n  - " + _nested(98) + "\n") == "t.yaml:5: a step must be a mapping"
    assert outcome(HEAD + "steps:\n  - " + _nested(99) + "\n") == "t.yaml:5: YAML: values nested more than 100 deep"


def test_steps_share_equal_values() -> None:
    """Interned keys and one object per equal payload, address and time: what lets 200,000 steps fit."""
    text = HEAD + "steps:\n" + "".join(
        f"  - {{at: +0.1, inject: {{eth: {{src: peer}}, ipv4: {{src: peer}}, icmp: {{seq: {i}, data: {{size: 56}}}}}}}}\n"
        f"  - expect: {{eth: {{dst: peer}}, ipv4: {{dst: peer}}, icmp: {{seq: {i}, data: {{size: 56}}}}}}\n"
        for i in range(3))
    steps = loader.loads(text).steps
    injects, expects = steps[0::2], steps[1::2]
    assert all(s.at is injects[0].at for s in injects)
    assert len({id(f) for s in injects for f in s.frames}) == 3  # the frames differ by their sequence number
    for key in ("eth.dst", "ipv4.dst", "icmp.data"):
        assert len({id(s.expected[key]) for s in expects}) == 1, key
    assert len({id(k) for s in expects for k in s.expected if k == "icmp.seq"}) == 1
    assert not hasattr(steps[0], "__dict__")


# -- peak memory, measured in a subprocess ------------------------------------------------------------------------------
PEAK = """
import json, sys
def hwm():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) * 1024
from simstack.engine.scenario import importer, replay  # the modules both commands import
base = hwm()
code = {command}
print(json.dumps({{"base": base, "peak": hwm(), "code": code}}))
"""


def peak_over_base(command: str, *args: str) -> tuple[int, int]:
    """(peak - the interpreter's own, exit status) of ``command`` run in a fresh interpreter."""
    r = subprocess.run([sys.executable, "-c", PEAK.format(command=command), *args], capture_output=True, text=True,
                       timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.splitlines()[-1])
    return got["peak"] - got["base"], got["code"]


KERNEL = '{mac: "02:00:00:00:00:02", ip: 10.0.0.2}'


def long_scenario(exchanges: int) -> str:
    """ARP, then ``exchanges`` pings, one flow mapping a step: the compact form a generator writes."""
    rows = ["description: a long scenario", "hosts:", f"  kernel: {KERNEL}", "steps:",
            "  - {at: 0, inject: {eth: {dst: broadcast, src: kernel}, arp: {op: request, sha: kernel, spa: kernel, "
            "tpa: stack}}}",
            "  - expect: {arp: {op: reply, tpa: kernel}}"]
    for i in range(1, exchanges + 1):
        seq = i % 0xFFFF + 1
        rows.append(f"  - {{at: +0.0001, inject: {{eth: {{dst: stack, src: kernel}}, ipv4: {{src: kernel, dst: stack}}, "
                    f"icmp: {{type: echo-request, id: 7, seq: {seq}, data: {{size: 56}}}}}}}}")
        rows.append(f"  - expect: {{ipv4: {{src: stack, dst: kernel}}, icmp: {{type: echo-reply, id: 7, seq: {seq}}}}}")
    return "\n".join(rows) + "\n"


def test_replaying_a_long_scenario_stays_under_ten_times_its_size(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text(long_scenario(25_000))
    size = path.stat().st_size
    over, code = peak_over_base("replay.run_files([sys.argv[1]])", str(path))
    assert code == 0
    assert over <= FACTOR * size, f"{over / size:.1f} times the file's {size} bytes"


def ping_capture(path: Path, exchanges: int) -> Path:
    """The kernel's ARP request and the stack's reply, then ``exchanges`` pings of the stack, as a pcap."""
    kernel, stack = Host("kernel", mac_to_bytes("02:00:00:00:00:02"), ip_to_bytes("10.0.0.2")), STACK
    ctx = Context(stack, {"kernel": kernel}, kernel)  # every address is given: the context names nothing
    request = {"eth.dst": b"\xff" * 6, "eth.src": kernel.mac, "arp.op": 1, "arp.sha": kernel.mac, "arp.spa": kernel.ip,
               "arp.tpa": stack.ip}
    reply = {"eth.dst": kernel.mac, "eth.src": stack.mac, "arp.op": 2, "arp.sha": stack.mac, "arp.spa": stack.ip,
             "arp.tha": kernel.mac, "arp.tpa": kernel.ip}
    with path.open("wb") as f:
        w = PcapWriter(f, flush=False)
        t = 1_700_000_000.0
        w.write(t, build_frame(request, ctx))
        w.write(t, build_frame(reply, ctx))
        for i in range(exchanges):
            t += 0.001
            seq = i % 0xFFFF + 1
            echo = {"ipv4.src": kernel.ip, "ipv4.dst": stack.ip, "ipv4.id": seq, "icmp.type": 8, "icmp.id": 7,
                    "icmp.seq": seq, "icmp.data": bytes(range(56))}
            w.write(t, build_frame({"eth.dst": stack.mac, "eth.src": kernel.mac, **echo}, ctx))
            answer = {**echo, "ipv4.src": stack.ip, "ipv4.dst": kernel.ip, "icmp.type": 0}
            w.write(t + 0.00002, build_frame({"eth.dst": kernel.mac, "eth.src": stack.mac, **answer}, ctx))
    return path


def test_importing_a_long_capture_streams_under_ten_times_its_size(tmp_path: Path) -> None:
    cap = ping_capture(tmp_path / "long.pcap", 12_500)
    size = cap.stat().st_size
    out = tmp_path / "long.yaml"
    over, code = peak_over_base("importer.main(importer.ImportOptions(sys.argv[1], sys.argv[2], '10.0.0.1'))",
                                str(cap), str(out))
    assert code == 0
    assert over <= FACTOR * size, f"{over / size:.1f} times the capture's {size} bytes"
    scenario = loader.load(out)
    assert sum(s.kind == "inject" for s in scenario.steps) == 12_501  # every frame made a step: nothing was lost
    assert sum(s.kind == "expect" for s in scenario.steps) == 12_501


def test_the_import_writes_what_it_returns(tmp_path: Path) -> None:
    """``main`` writes the spooled steps straight to the file; ``import_capture`` returns the same text."""
    cap = ping_capture(tmp_path / "c.pcap", 3)
    out = tmp_path / "o.yaml"
    opts = importer.ImportOptions(str(cap), str(out), "10.0.0.1")
    assert importer.main(opts, io.StringIO(), io.StringIO()) == 0
    text = out.read_text()
    assert text == importer.import_capture(opts).yaml
    assert "\n\n\n" not in text and text.count("\n  - ") == 8
    assert replay.run_files([str(out)], out=io.StringIO()) == 0


# -- --record stops at its limit ------------------------------------------------------------------------------------------
def traced(name: str) -> list[tuple[float, str, bytes]]:
    frames: list[tuple[float, str, bytes]] = []
    assert Runner(loader.load(SCENARIOS / name), trace=lambda t, d, f: frames.append((t, d, f))).run().passed
    return frames


def test_the_recording_stops_at_its_limit_keeps_what_it_has_and_says_so(tmp_path: Path) -> None:
    scenario = loader.load(SCENARIOS / "udp/echo.yaml")
    frames = traced("udp/echo.yaml")
    assert len(frames) > 4
    full: list[int] = []
    rec = Recorder(scenario.config, scenario.seed, scenario.services, limit=2, on_full=full.append)
    for t, direction, frame in frames:
        rec.record(t, direction, frame)
    assert full == [2]  # heard once, at the first frame past the limit
    assert [e[2] for e in rec.events] == [f for _, _, f in frames[:2]]
    assert rec.dropped == len(frames) - 2
    path = tmp_path / "capped.yaml"
    rec.write(path)
    text = path.read_text()
    assert f"The recording stopped at its limit of 2 frames: the {len(frames) - 2} frames after them are not here." in \
        " ".join(text.split())
    kept = loader.load(path)
    assert [s.kind for s in kept.steps] == ["inject", "expect"]  # the kernel's ARP request and the stack's reply
    assert replay.run_files([str(path)], out=io.StringIO()) == 0


def test_an_unlimited_recorder_keeps_every_frame() -> None:
    scenario = loader.load(SCENARIOS / "udp/echo.yaml")
    frames = traced("udp/echo.yaml")
    rec = Recorder(scenario.config, scenario.seed, scenario.services, limit=len(frames))
    for t, direction, frame in frames:
        rec.record(t, direction, frame)
    assert (len(rec.events), rec.dropped) == (len(frames), 0)
    assert "stopped at its limit" not in rec.to_yaml()


def test_record_limit_is_checked_with_the_other_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "r.yaml")
    for limit in (0, -1, MAX_RECORD_LIMIT + 1):
        with pytest.raises(SetupError, match=rf"^--record-limit {limit}: want 1 to {MAX_RECORD_LIMIT} frames$"):
            plan(LiveOptions("tap0", record=out, record_limit=limit))
    with pytest.raises(SetupError, match=r"^--record-limit 7: goes with --record"):
        plan(LiveOptions("tap0", record_limit=7))
    assert plan(LiveOptions("tap0", record=out, record_limit=MAX_RECORD_LIMIT)).seed >= 0
    args = build_parser().parse_args(["live", "tap0", "--record", out, "--record-limit", "7"])
    assert args.record_limit == 7
    with pytest.raises(SystemExit):
        build_parser().parse_args(["live", "--help"])
    assert f"(default {DEFAULT_RECORD_LIMIT})" in " ".join(capsys.readouterr().out.split())
