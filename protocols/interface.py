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

from .addresses import AddressError, check_stack_addresses, ip_to_str, netmask

TSO_MAX = 65535 - 60 - 60  # RFC 791: Total Length is 16 bits; IP and TCP headers of up to 60 bytes each

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
    # The device takes TCP segments of up to 64 KB and cuts them to the MTU, completing their checksums
    # (segmentation and checksum offload: a TAP with IFF_VNET_HDR, ``simstack live --offload``).
    offload: bool = False

    @cached_property
    def netmask(self) -> int:
        return netmask(self.prefix_len)

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
                 "subnet_broadcast", "tso_max", "vlan")

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
        # The longest TCP payload one frame may carry with offload (0: none, the MTU rules): the largest IPv4
        # datagram less the longest IP and TCP headers.
        self.tso_max = TSO_MAX if iface.offload else 0
        self.out: list[bytes] = []  # frames to send on this link, oldest first
        self.arp: NeighborCache  # set by the stack, which owns the callbacks

    def on_link(self, ip: bytes) -> bool:
        return self.iface.on_link(ip)

    def is_neighbour(self, ip: bytes) -> bool:
        """On this subnet, and neither its network address nor its broadcast (RFC 1122 3.2.1.3)."""
        return self.iface.on_link(ip) and ip != self.subnet_broadcast and (
            self.prefix_len >= 31 or ip != self.network_address)


def check_interfaces(interfaces: "tuple[Interface, ...] | list[Interface]") -> None:
    """Several interfaces on one stack: distinct names, and subnets that do not overlap (RFC 1812 2.2.7).

    Each interface's own address is checked with ``check_stack_addresses``;
    this checks them against each other. Raises AddressError("interfaces", ...).
    """
    seen: dict[str, Interface] = {}
    for i, iface in enumerate(interfaces):
        name = iface.name or str(i)
        if name in seen:
            raise AddressError("interfaces", f"two interfaces are called {name}")
        for other in seen.values():
            shorter = iface if iface.prefix_len <= other.prefix_len else other
            longer = other if shorter is iface else iface
            if shorter.on_link(longer.ip):
                raise AddressError("interfaces", f"{_text(iface)} and {_text(other)} overlap: each interface needs a "
                                                 "subnet of its own")
        seen[name] = iface


def check_next_hop(interfaces: "tuple[Interface, ...] | list[Interface]", gateway: bytes, what: str = "gateway") -> None:
    """A gateway or a static route's next hop: a host on one of the interfaces' subnets, not the stack itself.

    Raises AddressError(``what``, ...).
    """
    if any(gateway == iface.ip for iface in interfaces):
        raise AddressError(what, f"{ip_to_str(gateway)} is one of the stack's own addresses: a gateway is another host")
    home = next((iface for iface in interfaces if iface.on_link(gateway)), None)
    if home is None:
        subnets = ", ".join(_text(iface) for iface in interfaces)
        raise AddressError(what, f"{ip_to_str(gateway)} is on none of the stack's subnets ({subnets})")
    try:
        check_stack_addresses(home.ip, home.prefix_len, None, gateway)
    except AddressError as e:
        raise AddressError(what, str(e)) from None


def _text(iface: Interface) -> str:
    net = f"{ip_to_str(iface.network_address)}/{iface.prefix_len}"
    return f"{iface.name} ({net})" if iface.name else net
