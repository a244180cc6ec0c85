"""``simstack live --record`` under a flood: the recording stops at its limit, says so, and keeps what it has.

Without a limit a 200,000-frame flood grew the recording by 230 bytes a frame
and took 17 s to write on exit (issue 16.7).
"""

import re
import time
from pathlib import Path

import pytest
from conftest import require_tool

from simstack.engine.scenario.loader import load

from .conftest import Netns

pytestmark = pytest.mark.live

LIMIT = 50


def test_a_flood_fills_the_recording_to_its_limit_and_no_further(netns: Netns, tmp_path: Path) -> None:
    require_tool("ping")
    recording = tmp_path / "flood.yaml"
    s = netns.live("--record", str(recording), "--record-limit", str(LIMIT))
    flood = netns.run("ping", "-f", "-c", "2000", "-w", "20", "10.0.0.1", timeout=30)
    assert flood.returncode == 0, flood.stdout + flood.stderr
    warned = s.stderr.splitlines()
    assert warned == [f"simstack: WARNING: --record: {LIMIT} frames recorded, the limit (--record-limit); the session "
                      "goes on, and the frames after them are not recorded"], s.stderr
    start = time.monotonic()
    assert s.stop() == 0, s.stderr
    assert time.monotonic() - start < 5
    m = re.search(rf"^simstack: recorded {re.escape(str(recording))} \(its first {LIMIT} frames; (\d+) more were not "
                  r"recorded\)$", s.stdout, re.M)
    assert m and int(m.group(1)) >= 2 * 2000 - LIMIT, s.stdout  # 2000 requests and their replies, at least
    scenario = load(recording)
    assert sum(step.kind in ("inject", "expect") for step in scenario.steps) == LIMIT
    assert f"stopped at its limit of {LIMIT} frames" in " ".join(scenario.description.split())
