"""Start, stop and clean up: signals, counters, a TAP simstack made versus one it found."""

import re
import signal

import pytest

from .conftest import Netns, received

pytestmark = pytest.mark.live


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_cleanly_with_counters_and_removes_created_tap(netns: Netns, sig: signal.Signals) -> None:
    s = netns.live()
    assert "created tap0, kernel side 10.0.0.2/24" in s.stdout
    assert netns.link_exists("tap0")
    assert received(netns.run("ping", "-c", "2", "-i", "0.1", "-W", "1", "10.0.0.1").stdout) == (2, 2)
    assert s.stop(sig) == 0, s.stderr
    out = s.stdout
    assert re.search(rf"^simstack: stopped by {sig.name} after [\d.]+ s; removed tap0$", out, re.M), out
    assert re.search(r"^icmp +.*\brx=2\b.*\btx\.echo_reply=2\b", out, re.M), out
    assert re.search(r"^arp +.*\btx\.reply=1\b", out, re.M), out
    assert s.stderr == ""
    assert not netns.link_exists("tap0")


def test_existing_tap_is_used_and_left_in_place(netns: Netns) -> None:
    netns.run("ip", "tuntap", "add", "tap0", "mode", "tap", check=True)
    netns.run("ip", "addr", "add", "10.0.0.2/24", "dev", "tap0", check=True)
    s = netns.live()
    assert "attached to existing tap0" in s.stdout
    assert received(netns.run("ping", "-c", "2", "-i", "0.1", "-W", "1", "10.0.0.1").stdout) == (2, 2)
    assert s.stop() == 0
    assert "removed tap0" not in s.stdout
    link = netns.run("ip", "-o", "link", "show", "tap0", check=True).stdout
    assert "state DOWN" in link, link  # brought back down, as it was found
    assert "10.0.0.2/24" in netns.run("ip", "-o", "addr", "show", "tap0", check=True).stdout


def test_no_host_config_leaves_kernel_side_unaddressed(netns: Netns) -> None:
    s = netns.live("--no-host-config")
    assert "kernel side not configured" in s.stdout
    assert "inet " not in netns.run("ip", "-o", "addr", "show", "tap0", check=True).stdout
    assert "UP" in netns.run("ip", "-o", "link", "show", "tap0", check=True).stdout.split(">")[0]
    assert s.stop() == 0


def test_tap_deleted_under_the_stack_ends_it_with_one_line(netns: Netns) -> None:
    s = netns.live()
    netns.run("ip", "link", "del", "tap0", check=True)
    assert s.wait() == 1
    assert s.stderr.splitlines() == ["simstack: tap0 was deleted under the running stack"]
    assert "simstack: stopped after" in s.stdout
