"""The routing table: connected prefixes, static routes and a default, longest prefix wins.

RFC 1812 5.2.4.3 and RFC 1122 3.3.1: a datagram goes to the most specific
route that covers its destination; a connected route's next hop is the
destination itself, any other route's next hop is its gateway. Every sender
(UDP, ICMP, TCP choosing its source address, a router forwarding) asks this
one table, so a second interface or a static route is one more row; each row
names the interface it leaves by (RFC 1812 5.2.4.3 "the physical interface").
"""

import errno
import ipaddress
from dataclasses import dataclass

from .addresses import BROADCAST_IP, netmask


class NoRoute(OSError):
    """No route covers the destination (ENETUNREACH)."""

    def __init__(self) -> None:
        super().__init__(errno.ENETUNREACH, "Network is unreachable")


@dataclass(frozen=True, slots=True)
class Route:
    """One row: ``network/length`` via ``gateway`` (None: on-link), leaving by interface ``iface`` with source ``src``."""

    network: int
    length: int
    gateway: bytes | None
    src: bytes
    mtu: int
    iface: int = 0


@dataclass(frozen=True, slots=True)
class NextHop:
    """Where one datagram goes: the neighbour to resolve, the source address, the link MTU and the interface."""

    next_hop: bytes
    src: bytes
    mtu: int
    iface: int = 0


class RoutingTable:
    """Rows kept grouped by prefix length, longest first, so a lookup stops at the first match."""

    __slots__ = ("_by_length", "_cache")

    CACHE_MAX = 1024  # destinations remembered; a lookup per datagram otherwise costs a loop over lengths

    def __init__(self) -> None:
        self._by_length: dict[int, dict[int, Route]] = {}
        self._cache: dict[bytes, NextHop] = {}

    def add(self, network: bytes, length: int, gateway: bytes | None, src: bytes, mtu: int, iface: int = 0) -> Route:
        if not 0 <= length <= 32:
            raise ValueError(f"prefix length {length} is not in 0..32")
        mask = netmask(length)
        net = int.from_bytes(network, "big") & mask
        route = Route(net, length, gateway, src, mtu, iface)
        rows = self._by_length.setdefault(length, {})
        rows[net] = route
        self._by_length = dict(sorted(self._by_length.items(), reverse=True))
        self._cache.clear()
        return route

    def remove(self, network: bytes, length: int) -> None:
        mask = netmask(length)
        rows = self._by_length.get(length, {})
        rows.pop(int.from_bytes(network, "big") & mask, None)
        self._cache.clear()

    def lookup(self, dst: bytes) -> NextHop:
        """The next hop for ``dst``, or ``NoRoute``. The limited broadcast is on every link (RFC 919)."""
        hit = self._cache.get(dst)
        if hit is not None:
            return hit
        if dst == BROADCAST_IP:
            # The first interface's link when there are several (Linux sends it by the route to 255.255.255.255).
            link = min((r for rows in self._by_length.values() for r in rows.values() if r.gateway is None),
                       key=lambda r: r.iface, default=None)
            if link is None:
                raise NoRoute()
            return NextHop(dst, link.src, link.mtu, link.iface)
        addr = int.from_bytes(dst, "big")
        for length, rows in self._by_length.items():
            mask = netmask(length)
            route = rows.get(addr & mask)
            if route is not None:
                hop = NextHop(route.gateway or dst, route.src, route.mtu, route.iface)
                break
        else:
            raise NoRoute()
        if len(self._cache) >= self.CACHE_MAX:
            self._cache.clear()
        self._cache[dst] = hop
        return hop


def parse_route(text: str) -> tuple[bytes, int, bytes]:
    """``192.168.0.0/16 via 10.0.2.254`` -> (network, prefix length, gateway), as ip-route(8) writes it.

    ``default via GW`` is 0.0.0.0/0. Host bits set in the network are refused, as ip-route refuses them.
    """
    words = text.split()
    if len(words) != 3 or words[1] != "via":
        raise ValueError(f"bad route {text!r}: want NETWORK/PREFIX via GATEWAY, e.g. 192.168.0.0/16 via 10.0.2.254")
    target = "0.0.0.0/0" if words[0] == "default" else words[0]
    try:
        network = ipaddress.IPv4Network(target, strict=True)
    except ValueError as e:
        raise ValueError(f"bad route {text!r}: {e}") from None
    try:
        gateway = ipaddress.IPv4Address(words[2]).packed
    except ValueError:
        raise ValueError(f"bad route {text!r}: {words[2]!r} is not an IPv4 address") from None
    return network.network_address.packed, network.prefixlen, gateway
