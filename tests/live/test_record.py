"""``simstack live --record``: a real session with the kernel becomes a scenario that replays, and fails when edited.

The session mixes what a recording has to get right: the kernel's ARP
(resolution before its pings, then ``arping``'s broadcast), ICMP echo, UDP to
the echo service, and the kernel's own IPv6 chatter, which the stack ignores.
The replay runs on the virtual clock against a fresh stack with the recorded
seed, so it checks every field the live stack chose (IP IDs included).
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import require_tool

from .conftest import Netns, received

pytestmark = pytest.mark.live

TEXT = "simstack record test"


def replay(path: Path) -> subprocess.CompletedProcess[str]:
    """``simstack replay`` runs outside the namespace: it touches no network."""
    return subprocess.run([sys.executable, "-m", "simstack", "replay", str(path)], capture_output=True, text=True,
                          timeout=60)


def test_recorded_session_replays_and_an_edited_payload_fails(netns: Netns, tmp_path: Path) -> None:
    require_tool("ping")
    require_tool("arping")
    recording = tmp_path / "session.yaml"
    s = netns.live("--record", str(recording))
    assert received(netns.run("ping", "-c", "5", "-i", "0.2", "-W", "1", "-w", "10", "10.0.0.1").stdout) == (5, 5)
    r = netns.run("arping", "-c", "1", "-w", "5", "-I", "tap0", "10.0.0.1")
    assert r.returncode == 0 and "Received 1 response(s)" in r.stdout, r.stdout + r.stderr
    rc, out = netns.udp_peer("echo", "10.0.0.1", "7", "--count", "20", "--text", TEXT)
    assert (rc, out["ok"]) == (0, 20), out
    assert s.stop() == 0, s.stderr
    assert f"simstack: recorded {recording}" in s.stdout
    assert s.stderr == ""

    text = recording.read_text()
    doc = yaml.safe_load(text)
    assert doc["stack"]["services"] == ["echo", "discard", "http"]
    expects = [step["expect"] for step in doc["steps"] if "expect" in step]
    assert sum(1 for e in expects if e.get("icmp", {}).get("type") == "echo-reply") == 5, text
    assert sum(1 for e in expects if e.get("arp", {}).get("op") == "reply") >= 2, text  # ping's ARP, then arping's
    assert [e["udp"]["data"] for e in expects if "udp" in e] == [f"{TEXT} {i:02d}" for i in range(20)], text

    r = replay(recording)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == [f"PASS {recording}", "1 passed, 0 failed"]

    # One character of one expected payload: the echo of datagram 10, not the datagram the kernel sent.
    chunks = text.split("\n\n")
    [index] = [i for i, chunk in enumerate(chunks) if "expect:" in chunk and f'data: "{TEXT} 10"' in chunk]
    chunks[index] = chunks[index].replace(f'data: "{TEXT} 10"', f'data: "{TEXT} 1X"')
    edited = tmp_path / "edited.yaml"
    edited.write_text("\n\n".join(chunks))
    assert sum(a != b for a, b in zip(text, edited.read_text(), strict=True)) == 1
    r = replay(edited)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"FAIL {edited}" in r.stdout
    assert re.search(r"^  udp\.data +\"simstack record test 1X\" \(23 bytes\) +\"simstack record test 10\" \(23 bytes\)$",
                     r.stdout, re.M), r.stdout
    assert r.stdout.rstrip().endswith("0 passed, 1 failed"), r.stdout
