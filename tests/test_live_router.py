"""The live driver with several devices, and a shaped device's held frames, without root: socket pairs play the TAPs.

A router needs the loop to read every interface's device and write each
frame to its own interface's; a delayed frame must leave when its time
comes, even when nothing else wakes the loop. Both are checked here on the
real loop and the real clock, with a stack forwarding between two "TAPs".
"""

import time
from collections.abc import Iterator

import pytest
from pair_device import PairDevice
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether

from simstack.engine.live.driver import HeldFrames, LiveDriver
from simstack.engine.live.router import plan_config, plan_link
from simstack.engine.live.session import LiveOptions
from simstack.engine.live.shaped import ShapedDevice
from simstack.engine.scenario.droprules import DropRules, parse_rule
from simstack.engine.wire.errors import SetupError
from simstack.engine.wire.impair import Impairment, LinkShaper
from simstack.protocols.stack import Interface, Stack, StackConfig

LAN_MAC, WAN_MAC = "02:00:00:00:01:01", "02:00:00:00:02:01"
CLIENT_MAC, SERVER_MAC = "02:00:00:00:01:02", "02:00:00:00:02:02"




def b(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", "")) if ":" in text else bytes(int(x) for x in text.split("."))


def router_stack() -> Stack:
    return Stack(StackConfig.of((Interface(b(LAN_MAC), b("10.0.1.1"), 24, name="lan"),
                                 Interface(b(WAN_MAC), b("10.0.2.1"), 24, name="wan")), forward=True))


def arp_request(mac: str, ip: str, target: str) -> bytes:
    return bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, psrc=ip, pdst=target))


def ping(seq: int) -> bytes:
    return bytes(Ether(src=CLIENT_MAC, dst=LAN_MAC) / IP(src="10.0.1.2", dst="10.0.2.2") / ICMP(id=1, seq=seq))


@pytest.fixture
def pairs() -> Iterator[tuple[PairDevice, PairDevice]]:
    lan, wan = PairDevice(), PairDevice()
    try:
        yield lan, wan
    finally:
        lan.close()
        wan.close()


def test_the_loop_reads_every_device_and_writes_each_frame_to_its_interface(pairs: tuple[PairDevice, PairDevice]) -> None:
    lan, wan = pairs
    driver = LiveDriver(router_stack(), lan, devices=[wan])
    driver.start()
    try:
        lan.wire.send(arp_request(CLIENT_MAC, "10.0.1.2", "10.0.1.1"))
        assert Ether(lan.wire.recv(2000))[ARP].hwsrc == LAN_MAC
        wan.wire.send(arp_request(SERVER_MAC, "10.0.2.2", "10.0.2.1"))
        assert Ether(wan.wire.recv(2000))[ARP].hwsrc == WAN_MAC
        lan.wire.send(ping(1))
        out = Ether(wan.wire.recv(2000))
        assert (out.src, out.dst, out[IP].ttl, out[ICMP].seq) == (WAN_MAC, SERVER_MAC, 63, 1)
    finally:
        driver.close()
    assert driver.stack.counters["ipv4.forward"] == 1


def test_a_driver_needs_a_device_per_interface(pairs: tuple[PairDevice, PairDevice]) -> None:
    with pytest.raises(ValueError, match="1 devices for a stack with 2 interfaces"):
        LiveDriver(router_stack(), pairs[0])


def test_a_delayed_frame_leaves_at_its_time_on_an_idle_loop(pairs: tuple[PairDevice, PairDevice]) -> None:
    """Outbound delay on the WAN: nothing else wakes the loop, its held-frame timer does."""
    lan, wan = pairs
    shaper = LinkShaper(Impairment(), Impairment(delay=0.2), seed=1, interfaces=2)
    devices = [ShapedDevice(d, shaper, k, time.monotonic) for k, d in enumerate((lan, wan))]
    assert all(isinstance(d, HeldFrames) for d in devices)
    driver = LiveDriver(router_stack(), devices[0], devices=devices[1:])
    driver.start()
    try:
        wan.wire.send(arp_request(SERVER_MAC, "10.0.2.2", "10.0.2.1"))
        wan.wire.recv(2000)  # the ARP reply, itself delayed
        lan.wire.send(arp_request(CLIENT_MAC, "10.0.1.2", "10.0.1.1"))
        lan.wire.recv(2000)
        sent = time.monotonic()
        lan.wire.send(ping(1))
        out = Ether(wan.wire.recv(2000))
        took = time.monotonic() - sent
    finally:
        driver.close()
    assert out[ICMP].seq == 1
    assert 0.2 <= took < 0.35, took
    assert shaper.counts()["wire.out.delayed"] == 3


def test_drop_rules_on_a_shaped_device_keep_frames_from_the_stack(pairs: tuple[PairDevice, PairDevice]) -> None:
    lan, wan = pairs
    rules = DropRules([parse_rule("icmp.type=echo-request,every=2")])
    shaper = LinkShaper(Impairment(), Impairment(), seed=1, interfaces=2, admit=rules.admit)
    devices = [ShapedDevice(d, shaper, k, time.monotonic) for k, d in enumerate((lan, wan))]
    driver = LiveDriver(router_stack(), devices[0], devices=devices[1:])
    driver.start()
    try:
        wan.wire.send(arp_request(SERVER_MAC, "10.0.2.2", "10.0.2.1"))
        wan.wire.recv(2000)
        for seq in range(1, 5):
            lan.wire.send(ping(seq))
        got = [Ether(wan.wire.recv(2000))[ICMP].seq for _ in range(2)]
        wan.wire.settimeout(0.3)
        with pytest.raises(TimeoutError):
            wan.wire.recv(2000)
    finally:
        driver.close()
    assert got == [1, 3]
    assert rules.counts() == {"wire.rule.1.matched": 4, "wire.rule.1.dropped": 2}


# -- the live flags, checked before anything is touched ------------------------------------
def options(*more: str, **kw: object) -> LiveOptions:
    return LiveOptions("tap0", more_ifnames=more, **kw)  # type: ignore[arg-type]


def test_several_ifnames_get_the_lab_subnets_and_their_own_macs() -> None:
    config = plan_config(options("tap1", addrs=("tap1=192.168.5.1/24",), forward=True,
                                 routes=("10.9.0.0/16 via 192.168.5.254",)), StackConfig(mac=b(LAN_MAC), ip=b("10.0.0.1")))
    assert [(i.name, i.ip, i.prefix_len, i.mac) for i in config.ifaces] == [
        ("tap0", b("10.0.1.1"), 24, b(LAN_MAC)), ("tap1", b("192.168.5.1"), 24, b("02:00:00:00:01:02"))]
    assert config.forward and config.routes == ((b("10.9.0.0"), 16, b("192.168.5.254")),)
    assert Stack(config).route(b("10.9.8.7")).iface == 1


@pytest.mark.parametrize(("opts", "message"), [
    (options("tap1", ip="10.0.0.9/24"), "--ip is the address of a single interface"),
    (options("tap1", addrs=("tap2=10.0.3.1/24",)), "--addr tap2=10.0.3.1/24: tap2 is not one of the IFNAMEs"),
    (options("tap1", addrs=("tap1=10.0.2.1",)), "--addr tap1=10.0.2.1: want IFNAME=ADDR/PREFIX"),
    (options("tap1", addrs=("tap1=127.0.0.1/8",)), "--addr tap1=127.0.0.1/8: 127.0.0.1 is a loopback address"),
    (options("tap1", record="x.yaml"), "--record writes a single-interface scenario"),
    (options("tap1", gateway="10.0.7.1"), "--gateway: 10.0.7.1 is on none of the stack's subnets"),
    (options("tap1", routes=("10.0.0.0/8 via 10.0.2.1",)), "10.0.2.1 is one of the stack's own addresses"),
    (options("bad/name"), "bad interface name 'bad/name'"),
])
def test_bad_router_flags_are_one_line(opts: LiveOptions, message: str) -> None:
    # plan() has read --gateway into the single-interface config by now
    config = StackConfig(mac=b(LAN_MAC), ip=b("10.0.0.1"), gateway=b(opts.gateway) if opts.gateway else None)
    with pytest.raises(SetupError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        plan_config(opts, config)


def test_link_flags_become_a_shaper_plan_or_none() -> None:
    config = StackConfig(mac=b(LAN_MAC), ip=b("10.0.0.1"))
    assert plan_link(options(), config) is None
    link = plan_link(options(impair="delay=20ms", drops=("ipv4.src=stack",)), config)
    assert link is not None and link.inbound == link.outbound == Impairment(delay=0.02)
    shaper, rules = link.shaper(seed=5, interfaces=1)
    assert rules.rules[0].fields["ipv4.src"] == b("10.0.0.1") and shaper.admit is not None
    only_out = plan_link(options(impair_out="loss=1%"), config)
    assert only_out is not None and not only_out.inbound.active and only_out.outbound.loss == 0.01


def test_live_drops_the_frames_the_replay_drops_for_the_same_seed() -> None:
    """scenarios/wire/impair-loss-seeded.yaml's frames, fed in order to the live path (``ShapedDevice``) with its
    seed and loss: the same frames are lost as in the replay, where the scenario's expects pin them."""
    from conftest import SCENARIOS

    from simstack.engine.scenario.loader import load

    sc = load(SCENARIOS / "wire" / "impair-loss-seeded.yaml")
    frames = [step.frames[0] for step in sc.steps if step.kind == "inject"]
    link = plan_link(options(impair_in="loss=50%"), sc.config)
    assert link is not None
    shaper, _rules = link.shaper(seed=sc.seed, interfaces=1)
    device = PairDevice()
    try:
        shaped = ShapedDevice(device, shaper, 0, time.monotonic)
        passed = []
        for frame in frames:
            device.wire.send(frame)
            passed.append(bool(shaped.read_batch(1)))
    finally:
        device.close()
    # the ARP request, then echo requests 1 to 10: 3, 4 and 6 are lost, as the scenario's description says
    assert passed == [True, True, True, False, False, True, False, True, True, True, True]
    assert shaper.counts()["wire.in.dropped"] == 3
