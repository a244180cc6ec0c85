"""A stack's interfaces: each its own link, with its own MAC, address, prefix, MTU and VLAN.

RFC 1122 3.3.4 calls a host with several interfaces multihomed, and RFC 1812
2.2.7 a router is exactly that plus forwarding. ``Interface`` is the
configuration of one (what ``StackConfig.interfaces`` lists); ``Port`` is what
the running stack keeps for it: the subnet numbers read on every packet, the
neighbour cache of its link and the frames waiting to leave through it.
"""

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .arp_cache import NeighborCache


@dataclass(frozen=True)
class Interface:
    mac: bytes
    ip: bytes
    prefix_len: int = 24
    mtu: int = 1500
    vlan: int | None = None  # tag every frame with this VID and accept only it
    name: str = ""  # what scenarios and the live command call it; "" is its index

    @cached_property
    def netmask(self) -> int:
        return (0xFFFFFFFF << (32 - self.prefix_len)) & 0xFFFFFFFF if self.prefix_len else 0

    @cached_property
    def network(self) -> int:
        return int.from_bytes(self.ip, "big") & self.netmask

    @cached_property
    def subnet_broadcast(self) -> bytes:
        return (self.network | (~self.netmask & 0xFFFFFFFF)).to_bytes(4, "big")

    @cached_property
    def network_address(self) -> bytes:
        """The subnet's own address (10.0.0.0 in 10.0.0.0/24): never a host's source (RFC 1122 3.2.1.3)."""
        return self.network.to_bytes(4, "big")

    def on_link(self, ip: bytes) -> bool:
        return int.from_bytes(ip, "big") & self.netmask == self.network


class Port:
    """One interface of a running stack; plain slots, since the receive path reads them for every frame."""

    __slots__ = ("arp", "iface", "index", "ip", "mac", "mtu", "name", "network_address", "out", "prefix_len",
                 "subnet_broadcast", "vlan")

    def __init__(self, index: int, iface: Interface) -> None:
        self.index = index
        self.iface = iface
        self.name = iface.name or str(index)
        self.mac = iface.mac
        self.ip = iface.ip
        self.prefix_len = iface.prefix_len
        self.mtu = iface.mtu
        self.vlan = iface.vlan
        self.subnet_broadcast = iface.subnet_broadcast
        self.network_address = iface.network_address
        self.out: list[bytes] = []  # frames to send on this link, oldest first
        self.arp: NeighborCache  # set by the stack, which owns the callbacks

    def on_link(self, ip: bytes) -> bool:
        return self.iface.on_link(ip)

    def is_neighbour(self, ip: bytes) -> bool:
        """On this subnet, and neither its network address nor its broadcast (RFC 1122 3.2.1.3)."""
        return self.iface.on_link(ip) and ip != self.subnet_broadcast and (
            self.prefix_len >= 31 or ip != self.network_address)
