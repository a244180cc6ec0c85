"""The routing table: longest prefix wins, connected routes are on-link, the limited broadcast is on every link."""

import errno

import pytest

from simstack.protocols.routes import NoRoute, RoutingTable
from simstack.protocols.stack import Stack, StackConfig

ME = bytes([10, 0, 1, 1])


def ip(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def table() -> RoutingTable:
    t = RoutingTable()
    t.add(ip("10.0.1.0"), 24, None, ME, 1500)
    t.add(ip("0.0.0.0"), 0, ip("10.0.1.254"), ME, 1500)
    t.add(ip("192.168.0.0"), 16, ip("10.0.1.253"), ME, 1400)
    t.add(ip("192.168.7.0"), 24, ip("10.0.1.252"), ME, 1300)
    return t


@pytest.mark.parametrize(("dst", "next_hop", "mtu"), [
    ("10.0.1.9", "10.0.1.9", 1500),  # connected: the destination itself
    ("10.0.1.255", "10.0.1.255", 1500),  # the subnet's broadcast is on the link too
    ("8.8.8.8", "10.0.1.254", 1500),  # only the default covers it
    ("192.168.3.4", "10.0.1.253", 1400),  # the /16 beats the default
    ("192.168.7.4", "10.0.1.252", 1300),  # the /24 beats the /16
    ("255.255.255.255", "255.255.255.255", 1500),  # RFC 919: never via a gateway
])
def test_longest_prefix_wins(dst: str, next_hop: str, mtu: int) -> None:
    hop = table().lookup(ip(dst))
    assert (hop.next_hop, hop.src, hop.mtu) == (ip(next_hop), ME, mtu)


def test_no_route_is_enetunreach_and_removing_a_route_takes_effect() -> None:
    t = table()
    t.remove(ip("0.0.0.0"), 0)
    with pytest.raises(NoRoute) as e:
        t.lookup(ip("8.8.8.8"))
    assert e.value.errno == errno.ENETUNREACH
    assert t.lookup(ip("192.168.3.4")).next_hop == ip("10.0.1.253")  # the cache forgot nothing it should keep
    t.remove(ip("192.168.0.0"), 16)
    with pytest.raises(NoRoute):
        t.lookup(ip("192.168.3.4"))


def test_the_stack_builds_its_table_from_its_config() -> None:
    config = StackConfig(mac=bytes(6), ip=ME, prefix_len=24, gateway=ip("10.0.1.254"),
                         routes=((ip("172.16.0.0"), 12, ip("10.0.1.2")),))
    stack = Stack(config)
    assert stack.route(ip("172.20.1.1")).next_hop == ip("10.0.1.2")
    assert stack.route(ip("1.1.1.1")).next_hop == ip("10.0.1.254")
    assert stack.route(ip("10.0.1.7")).next_hop == ip("10.0.1.7")
    without_gateway = Stack(StackConfig(mac=bytes(6), ip=ME))
    with pytest.raises(NoRoute):
        without_gateway.route(ip("1.1.1.1"))


def test_a_bad_prefix_length_is_refused() -> None:
    with pytest.raises(ValueError):
        RoutingTable().add(ME, 33, None, ME, 1500)
