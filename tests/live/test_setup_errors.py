"""Every way setup can fail: one line on stderr, exit 2, no traceback, nothing left behind."""

import subprocess

import pytest
from conftest import require_tool

from .conftest import Netns, received

pytestmark = pytest.mark.live

NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


def assert_one_line(r: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("simstack: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--ip", "10.0.0.1/33"], "--ip: bad address/prefix '10.0.0.1/33'"),
        (["--ip", "10.0.0.300/24"], "--ip: bad address/prefix '10.0.0.300/24'"),
        (["--ip", "10.0.0.1"], "want A.B.C.D/N"),
        (["--mac", "aa:bb:cc:dd:ee"], "--mac: bad MAC address 'aa:bb:cc:dd:ee'"),
        (["--mac", "zz:bb:cc:dd:ee:ff"], "--mac: bad MAC address 'zz:bb:cc:dd:ee:ff'"),
        (["--mac", "01:00:5e:00:00:01"], "unicast"),
        (["--gateway", "10.0.0.x"], "--gateway: bad IPv4 address '10.0.0.x'"),
        (["--host-ip", "10.0.0.2/99"], "--host-ip: bad address/prefix '10.0.0.2/99'"),
        (["--host-ip", "10.0.0.1/24"], "the stack's own address"),
    ],
)
def test_bad_arguments(netns: Netns, args: list[str], fragment: str) -> None:
    assert_one_line(netns.simstack_once("tap0", *args), fragment)
    assert not netns.link_exists("tap0")


def test_name_taken_by_a_non_tap_device(netns: Netns) -> None:
    netns.run("ip", "link", "add", "tap0", "type", "veth", "peer", "name", "tap0peer", check=True)
    assert_one_line(netns.simstack_once("tap0"), "tap0 exists and is not a TAP (it is a veth device)")
    assert netns.link_exists("tap0")  # not ours to delete


def test_name_taken_by_a_tun_device(netns: Netns) -> None:
    netns.run("ip", "tuntap", "add", "tap0", "mode", "tun", check=True)
    assert_one_line(netns.simstack_once("tap0"), "tap0 exists and is a TUN (IP-level) device, not a TAP")
    assert netns.link_exists("tap0")


def test_tap_already_attached(netns: Netns) -> None:
    first = netns.live()
    assert_one_line(netns.simstack_once("tap0"), "tap0: the TAP is already attached to another process")
    # The failed second attempt must not have disturbed the first.
    assert first.proc.poll() is None
    assert received(netns.run("ping", "-c", "1", "-W", "2", "10.0.0.1").stdout) == (1, 1)
    assert first.stop() == 0


def with_private_dev_net(netns: Netns, setup: str, *prefix: str) -> subprocess.CompletedProcess[str]:
    """Run simstack with its own /dev/net (a tmpfs in a private mount namespace) prepared by ``setup``.

    The real kernel paths are exercised, and the host's /dev/net/tun, whatever its mode, is untouched.
    """
    require_tool("unshare")
    command = " ".join([*prefix, *netns.simstack_argv("tap0")[4:]])  # drop "ip netns exec NS"
    script = f"mount -t tmpfs tmpfs /dev/net && {setup} exec {command}"
    return subprocess.run(netns.argv("unshare", "-m", "sh", "-c", script), capture_output=True, text=True, timeout=30)


def test_unprivileged_cannot_open_tun(netns: Netns) -> None:
    """A root-only tun node (mode 0600, the kernel's default): open(2) fails with EACCES."""
    require_tool("setpriv")
    r = with_private_dev_net(netns, "mknod -m 600 /dev/net/tun c 10 200 &&", *NOBODY)
    assert_one_line(r, "permission denied opening /dev/net/tun", "run as root")
    assert not netns.link_exists("tap0")


def test_unprivileged_cannot_create_tap(netns: Netns) -> None:
    """A world-writable tun node (as many distributions ship it): TUNSETIFF fails with EPERM."""
    require_tool("setpriv")
    r = with_private_dev_net(netns, "mknod -m 666 /dev/net/tun c 10 200 &&", *NOBODY)
    assert_one_line(r, "tap0: operation not permitted", "root or CAP_NET_ADMIN")
    assert not netns.link_exists("tap0")


def test_no_tun_device(netns: Netns) -> None:
    """An empty /dev/net: the real ENOENT, not a mocked path."""
    assert_one_line(with_private_dev_net(netns, ""), "/dev/net/tun does not exist", "modprobe tun")


def test_unwritable_pcap(netns: Netns) -> None:
    assert_one_line(netns.simstack_once("tap0", "--pcap", "/nonexistent-dir/x.pcap"), "cannot write pcap")
    assert not netns.link_exists("tap0")
