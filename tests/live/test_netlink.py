"""live mode's rtnetlink client against the kernel, with pyroute2's view of the same links as the reference."""

import json
import sys
from typing import Any

import pytest

from .conftest import Netns

pytestmark = pytest.mark.live

# Runs inside the test's namespace: every link there, as ours and as pyroute2 sees it.
COMPARE = """
import json, sys
from pyroute2 import IPRoute
from simstack.engine.live.netlink import Netlink
out = {}
with IPRoute() as ipr, Netlink() as nl:
    for msg in ipr.get_links():
        name = msg.get_attr("IFLA_IFNAME")
        info = msg.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        data = info.get_attr("IFLA_INFO_DATA") if kind == "tun" else None
        theirs = [name, msg["index"], kind, data.get_attr("IFLA_TUN_TYPE") if data is not None else None,
                  bool(data.get_attr("IFLA_TUN_MULTI_QUEUE")) if data is not None else False,
                  bool(msg["flags"] & 1), msg.get_attr("IFLA_MTU")]
        link = nl.link(name)
        ours = [link.name, link.index, link.kind, link.tun_type, link.multi_queue, link.up, link.mtu]
        out[name] = [ours, theirs]
    out["missing"] = nl.link("nosuchlink0")
print(json.dumps(out))
"""

CHANGE = """
import json
from simstack.engine.live.netlink import Netlink
from simstack.engine.wire.errors import SetupError
with Netlink() as nl:
    tap = nl.link("tap9")
    nl.set_mtu(tap, 9000)
    nl.set_up(tap)
    nl.add_address(tap, bytes([10, 9, 0, 2]), 24)
    after = nl.link("tap9")
    errors = []
    for step in (lambda: nl.add_address(tap, bytes([10, 9, 0, 2]), 24), lambda: nl.set_mtu(tap, 70000)):
        try:
            step()
        except SetupError as e:
            errors.append(str(e))
    nl.set_up(tap, False)
    down = nl.link("tap9")
    nl.delete(tap)
    print(json.dumps([after.up, after.mtu, down.up, errors, nl.link("tap9")]))
"""


def _json(netns: Netns, script: str) -> Any:
    r = netns.run(sys.executable, "-c", script)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_link_agrees_with_pyroute2(netns: Netns) -> None:
    netns.run("ip", "tuntap", "add", "tap1", "mode", "tap", check=True)
    netns.run("ip", "tuntap", "add", "tun1", "mode", "tun", check=True)
    netns.run("ip", "tuntap", "add", "mq1", "mode", "tap", "multi_queue", check=True)
    netns.run("ip", "link", "add", "veth1", "mtu", "1400", "type", "veth", "peer", "name", "veth2", check=True)
    netns.run("ip", "link", "add", "br1", "type", "bridge", check=True)
    netns.run("ip", "link", "set", "br1", "up", check=True)
    out = _json(netns, COMPARE)
    assert isinstance(out, dict)
    assert out.pop("missing") is None
    assert set(out) == {"lo", "tap1", "tun1", "mq1", "veth1", "veth2", "br1"}
    for name, (ours, theirs) in out.items():
        assert ours == theirs, name
    # And the facts the checks before attaching rely on, from the kernel itself:
    assert out["tap1"][0][2:5] == ["tun", 2, False]
    assert out["tun1"][0][2:5] == ["tun", 1, False]
    assert out["mq1"][0][2:5] == ["tun", 2, True]
    assert out["veth1"][0][2] == "veth" and out["veth1"][0][6] == 1400
    assert out["lo"][0][5] is True and out["br1"][0][5] is True


def test_set_up_mtu_address_and_delete(netns: Netns) -> None:
    netns.run("ip", "tuntap", "add", "tap9", "mode", "tap", check=True)
    up, mtu, down_up, errors, gone = _json(netns, CHANGE)
    assert (up, mtu, down_up, gone) == (True, 9000, False, None)
    assert errors == ["cannot add 10.9.0.2/24 to tap9: File exists",
                      "cannot set the MTU of tap9 to 70000: Invalid argument"]
    assert not netns.link_exists("tap9")


def test_address_as_ip_shows_it(netns: Netns) -> None:
    netns.run("ip", "tuntap", "add", "tap9", "mode", "tap", check=True)
    script = ("from simstack.engine.live.netlink import Netlink\n"
              "with Netlink() as nl:\n    nl.add_address(nl.link('tap9'), bytes([172, 16, 5, 1]), 20)\n")
    assert netns.run(sys.executable, "-c", script).returncode == 0
    shown = json.loads(netns.run("ip", "-j", "addr", "show", "tap9", check=True).stdout)[0]["addr_info"]
    assert [(a["family"], a["local"], a["prefixlen"]) for a in shown if a["family"] == "inet"] == [
        ("inet", "172.16.5.1", 20)]


def test_plain_live_session_never_imports_pyroute2(netns: Netns) -> None:
    """A whole ``simstack live`` run (TAP created, configured, pinged, removed), under ``-X importtime``."""
    r = netns.run(sys.executable, "-X", "importtime", "-m", "simstack", "live", "tap0", "--ping", "10.0.0.2",
                  "--count", "1", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert "1 received" in r.stdout or "1 packets received" in r.stdout, r.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")]
    assert "simstack.engine.live.netlink" in imported  # the check can fail: -X importtime did list imports
    assert not [m for m in imported if m.split(".")[0] == "pyroute2"]
    assert not netns.link_exists("tap0")
