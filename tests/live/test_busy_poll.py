"""``simstack live --busy-poll``: the kernel's ping and UDP echo get every answer from a busy-polling stack."""

import pytest
from conftest import require_tool

from .conftest import Netns, received

pytestmark = pytest.mark.live


def test_ping_and_udp_echo_work_with_busy_poll(netns: Netns) -> None:
    require_tool("ping")
    stack = netns.live("--busy-poll", "2000")
    # 1 ms apart: every request lands inside the window; 20 ms apart: every one after it, when the loop sleeps.
    for interval in ("0.001", "0.02"):
        r = netns.run("ping", "-c", "50", "-i", interval, "-W", "1", "-w", "15", "10.0.0.1")
        assert received(r.stdout) == (50, 50), r.stdout + r.stderr
    rc, out = netns.udp_peer("echo", "10.0.0.1", "7", "--count", "100", "--max-size", "1472", "--seed", "7")
    assert rc == 0 and out["ok"] == 100, out
    assert stack.proc.poll() is None, stack.stderr


def test_busy_poll_out_of_range_is_refused_before_setup(netns: Netns) -> None:
    r = netns.simstack_once("tap0", "--busy-poll", "1000001")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--busy-poll 1000001: want 0 (off) to 1,000,000 microseconds" in r.stderr
    assert not netns.link_exists("tap0")
