"""The replay command as a user meets it: exit codes, diffs, errors, pcaps."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SCENARIOS, require_tool

from simstack.cli import main

PING = SCENARIOS / "ping.yaml"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "simstack", *args], capture_output=True, text=True, timeout=60)


def test_ping_passes() -> None:
    r = run("replay", str(PING))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("1 passed, 0 failed")


def test_wrong_sequence_number_fails_with_field_diff(tmp_path: Path) -> None:
    text = PING.read_text()
    old = "icmp: {type: echo-reply, code: 0, id: 0x1c2d, seq: 1,"
    changed = text.replace(old, old.replace("seq: 1", "seq: 2"))
    assert changed != text
    bad = tmp_path / "ping.yaml"
    bad.write_text(changed)
    r = run("replay", str(bad))
    assert r.returncode == 1, r.stdout
    line = next(i for i, ln in enumerate(changed.splitlines(), 1) if "seq: 2," in ln) - 3  # the step's "- expect:" line
    assert f"{bad}:{line}: step 4 (expect) failed" in r.stdout
    assert re.search(r"icmp\.seq\s+2\s+1", r.stdout), r.stdout
    assert "ICMP echo reply, id 7213, seq 1" in r.stdout  # one-line decode of the actual frame
    assert "0 passed, 1 failed" in r.stdout


def test_yaml_syntax_error_exits_2_with_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("description: x\nsteps:\n  - inject: {eth: {src: peer}\n  - expect: nothing\n")
    r = run("replay", str(bad))
    assert r.returncode == 2
    assert re.search(rf"{re.escape(str(bad))}:\d+: YAML", r.stderr), r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_unknown_step_key_exits_2_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text("description: typo in a step\nsteps:\n  - at: 0\n    injekt:\n      eth: {}\n")
    r = run("replay", str(bad))
    assert r.returncode == 2
    assert f"{bad}:4: unknown step key 'injekt'" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("  - inject: {ipv4: {ttl: 300}}\n", 3, "ipv4.ttl: 300 does not fit in 8 bits"),
        ("  - inject: {icmp: {sequence: 1}}\n", 3, "icmp.sequence: unknown field"),
        ("  - inject:\n      eth: {dst: nobody}\n", 4, "eth.dst: bad MAC address 'nobody'"),
        ("  - expect: nothing\n", 3, "expect: nothing needs 'for: SECONDS'"),
        ("  - app: teleport\n", 3, "unknown app operation 'teleport'"),
        ("  - expect: nothing\n    for: 1\noptions:\n  ignore:\n    - arp: {opcode: 1}\n", 7,
         "ignore: arp.opcode: unknown field"),
        ("  - expect: nothing\n    for: 1\noptions:\n  ignore: {arp: {op: request}}\n", 6,
         "ignore must be a non-empty list of frame descriptions"),
    ],
)
def test_invalid_fields_name_their_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, line: int,
                                        message: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("description: bad field\nsteps:\n" + body)
    assert main(["replay", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:{line}: {message}" in err, err


def test_missing_file_is_invalid(tmp_path: Path) -> None:
    r = run("replay", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2
    assert f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory" in r.stderr.splitlines()


def test_two_replays_give_identical_pcaps_and_output(tmp_path: Path) -> None:
    outs = []
    for name in ("a", "b"):
        r = run("replay", str(PING), "-v", "--pcap", str(tmp_path / f"{name}.pcap"))
        assert r.returncode == 0
        outs.append(r.stdout)
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()
    assert outs[0] == outs[1]
    assert "> IP 10.0.0.1 > 10.0.0.2: ICMP echo reply" in outs[0]


def test_tshark_decodes_replay_pcap_with_valid_checksums(tmp_path: Path) -> None:
    tshark = require_tool("tshark")
    pcap = tmp_path / "ping.pcap"
    assert run("replay", str(PING), "--pcap", str(pcap)).returncode == 0
    fields = ["frame.protocols", "arp.opcode", "icmp.type", "ip.checksum.status", "icmp.checksum.status"]
    r = subprocess.run(
        [tshark, "-r", str(pcap), "-o", "ip.check_checksum:TRUE", "-T", "fields", *[arg for f in fields for arg in ("-e", f)]],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.strip().splitlines()]
    assert len(rows) == 4
    assert [row[1] for row in rows[:2]] == ["1", "2"]  # ARP request, reply
    assert [row[2] for row in rows[2:]] == ["8", "0"]  # echo request, reply
    for row in rows[2:]:
        assert row[3] == "1" and row[4] == "1", row  # 1 = Good (0 Bad, 2 Unverified)
    expert = subprocess.run([tshark, "-r", str(pcap), "-o", "ip.check_checksum:TRUE", "-z", "expert,warn", "-q"],
                            capture_output=True, text=True, timeout=60)
    assert "checksum" not in expert.stdout.lower(), expert.stdout


def test_leftover_frames_fail_unless_allowed(tmp_path: Path) -> None:
    # The ping scenario without its last expectation: the echo reply is left over.
    text = PING.read_text()
    cut = text[: text.index("  - expect:\n      eth: {dst: kernel, src: stack, type: ipv4}")]
    left = tmp_path / "left.yaml"
    left.write_text(cut)
    r = run("replay", str(left))
    assert r.returncode == 1
    assert "the stack sent frames no step expected" in r.stdout
    assert "ICMP echo reply, id 7213, seq 1" in r.stdout
    allowed = tmp_path / "allowed.yaml"
    allowed.write_text(cut.replace("steps:\n", "options:\n  allow_unexpected: true\n\nsteps:\n", 1))
    assert run("replay", str(allowed)).returncode == 0
