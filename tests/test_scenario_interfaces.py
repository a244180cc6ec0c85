"""The scenario language for several interfaces, routes, impairment and drop rules: what loads, and every refusal."""

import pytest

from simstack.engine.scenario.loader import ScenarioError, loads
from simstack.engine.scenario.runner import Runner

TWO = """\
description: two interfaces
stack:
  interfaces:
    - {name: lan, mac: "02:00:00:00:01:01", ip: 10.0.1.1/24}
    - {name: wan, mac: "02:00:00:00:02:01", ip: 10.0.2.1/24, mtu: 576, vlan: 7}
  forward: true
  routes: ["192.168.0.0/16 via 10.0.2.254", "default via 10.0.1.254"]
hosts:
  client: {mac: "02:00:00:00:01:02", ip: 10.0.1.2}
  server: {mac: "02:00:00:00:02:02", ip: 10.0.2.2}
steps:
  - on: wan
    inject: {eth: {vlan: 7}, arp: {op: request}}
  - on: wan
    expect: {eth: {vlan: 7, src: wan}, arp: {op: reply, spa: wan, tpa: server}}
  - on: wan
    inject: {eth: {vlan: 7}, icmp: {type: echo-request}}
  - on: wan
    expect: {eth: {vlan: 7, src: wan, dst: server}, ipv4: {src: wan, dst: server}, icmp: {type: echo-reply}}
"""


def test_interfaces_routes_and_on_load_and_run() -> None:
    sc = loads(TWO)
    c = sc.config
    assert [i.name for i in c.ifaces] == ["lan", "wan"] and c.forward and c.ifaces[1].mtu == 576
    assert (c.mac, c.ip, c.mtu, c.vlan) == (c.ifaces[0].mac, c.ifaces[0].ip, 1500, None)
    assert c.routes == ((bytes([192, 168, 0, 0]), 16, bytes([10, 0, 2, 254])), (bytes(4), 0, bytes([10, 0, 1, 254])))
    assert [s.iface for s in sc.steps] == [1, 1, 1, 1]
    result = Runner(sc).run()
    assert result.passed, result.report


def test_a_frame_on_the_other_interface_is_not_taken_by_an_expect_on_this_one() -> None:
    text = TWO.replace("  - on: wan\n    expect:", "  - on: lan\n    expect:")
    result = Runner(loads(text)).run()
    assert not result.passed
    assert "expected 1 frame(s)" in result.report and "the stack sent nothing" in result.report


def test_an_unexpected_frame_on_any_interface_fails_the_scenario() -> None:
    text = TWO.rsplit("  - on: wan\n    expect:", 1)[0]
    result = Runner(loads(text)).run()
    assert not result.passed and "the stack sent frames no step expected" in result.report


def _error(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        loads(text, "x.yaml")
    return str(info.value)


@pytest.mark.parametrize(("old", "new", "message"), [
    ("ip: 10.0.2.1/24, mtu", "ip: 10.0.1.9/16, mtu",
     "x.yaml:3: stack.interfaces: wan (10.0.0.0/16) and lan (10.0.1.0/24) overlap"),
    ("name: wan", "name: lan", "x.yaml:3: stack.interfaces: two interfaces are called lan"),
    ("name: wan", "name: stack", "x.yaml:5: interface name must be a word"),
    ("{name: wan, ", "{", "x.yaml:5: an interface needs name"),
    ("ip: 10.0.2.1/24, mtu", "ip: 10.0.2.255/24, mtu",
     "x.yaml:5: interface wan: 10.0.2.255/24 is the subnet's network or broadcast"),
    ("mtu: 576", "mtu: 40", "x.yaml:5: mtu must be an integer from 68 to 65535, got 40"),
    ("forward: true", "forward: yes please", "x.yaml:6: forward must be true or false"),
    ("192.168.0.0/16 via 10.0.2.254", "192.168.0.0/16 via 10.9.0.1",
     "x.yaml:7: stack.routes: 10.9.0.1 is on none of the stack's subnets"),
    ("192.168.0.0/16 via 10.0.2.254", "192.168.0.1/16 via 10.0.2.254", "x.yaml:7: stack.routes: bad route"),
    ("default via 10.0.1.254", "default via 10.0.1.1", "x.yaml:7: stack.routes: 10.0.1.1 is one of the stack's own addresses"),
    ("  forward: true\n", "  forward: true\n  ip: 10.0.0.1/24\n", "x.yaml:7: stack.ip goes with each interface"),
    ("  server: {mac", "  wan: {mac", "x.yaml:8: host 'wan' has the name of an interface"),
    ("  - on: wan\n    inject", "  - on: dmz\n    inject", "x.yaml:12: on: 'dmz' must name one of lan, wan"),
    ("  - on: wan\n    inject: {eth: {vlan: 7}, icmp: {type: echo-request}}", "  - on: wan\n    counters: {ipv4.rx: 0}",
     "x.yaml:16: unknown key 'on' in an counters step"),
])
def test_what_is_wrong_is_said_on_its_line(old: str, new: str, message: str) -> None:
    assert old in TWO
    assert _error(TWO.replace(old, new, 1)).startswith(message)


def test_on_needs_named_interfaces() -> None:
    text = "description: one\nsteps:\n  - on: lan\n    inject: {arp: {op: request}}\n"
    assert _error(text) == "x.yaml:3: on: 'lan' must name an interface of stack.interfaces, and this stack lists none"


def test_a_gateway_on_the_second_interface_is_its_route() -> None:
    sc = loads(TWO.replace("  forward: true\n", "  forward: true\n  gateway: 10.0.2.254\n"))
    assert sc.config.gateway == bytes([10, 0, 2, 254])
    assert _error(TWO.replace("  forward: true\n", "  forward: true\n  gateway: 10.0.3.1\n")).startswith(
        "x.yaml:7: stack.gateway: 10.0.3.1 is on none of the stack's subnets")


LINK = """\
description: impairment and drop rules
options:
{options}
steps:
  - expect: nothing
    for: 1
"""


@pytest.mark.parametrize(("options", "message"), [
    ("  impair: loss=200%", "x.yaml:3: impair: loss must be a probability"),
    ("  impair_in: 5", "x.yaml:3: impair_in must be text"),
    ("  impair: loss=1%\n  impair_out: delay=1ms", "x.yaml:3: impair applies to both directions"),
    ("  drop: icmp.type=8", "x.yaml:3: drop must be a list of rules"),
    ("  drop: ['icmp.typo=8']", "x.yaml:3: drop: 'icmp.typo=8': icmp.typo: unknown field"),
])
def test_link_options_refuse_what_they_cannot_read(options: str, message: str) -> None:
    assert _error(LINK.format(options=options)).startswith(message)


def test_link_options_load() -> None:
    sc = loads(LINK.format(options="  impair: loss=1%,delay=2ms\n  drop: ['udp.dport=9,every=2']"))
    assert sc.impair_in == sc.impair_out and sc.impair_in.loss == 0.01 and sc.impair_in.delay == 0.002
    assert [(r.text, r.every) for r in sc.drop] == [("udp.dport=9,every=2", 2)]
    sc = loads(LINK.format(options="  impair_out: duplicate=1%"))
    assert not sc.impair_in.active and sc.impair_out.duplicate == 0.01


def test_a_scenario_run_twice_counts_its_rules_from_zero_each_time() -> None:
    text = """\
description: drop twice
hosts:
  peer: {mac: "02:00:00:00:00:02", ip: 10.0.0.2}
options:
  drop: ["icmp.type=echo-request"]
steps:
  - inject: {icmp: {type: echo-request}}
  - counters: {wire.rule.1.dropped: 1, icmp.rx: 0}
"""
    sc = loads(text)
    for _ in range(2):
        result = Runner(sc).run()
        assert result.passed, result.report
