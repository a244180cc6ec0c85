"""Address text forms. Addresses travel as ``bytes``; text is for people."""

import ipaddress

BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
BROADCAST_IP = b"\xff" * 4
ZERO_IP = b"\x00" * 4


def mac_to_bytes(text: str) -> bytes:
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"bad MAC address {text!r}: want six hex octets like aa:bb:cc:dd:ee:ff")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"bad MAC address {text!r}: want six hex octets like aa:bb:cc:dd:ee:ff") from None


def mac_to_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def ip_to_bytes(text: str) -> bytes:
    try:
        return ipaddress.IPv4Address(text).packed
    except ValueError:
        raise ValueError(f"bad IPv4 address {text!r}") from None


def ip_to_str(ip: bytes) -> str:
    return f"{ip[0]}.{ip[1]}.{ip[2]}.{ip[3]}"


def parse_interface(text: str) -> tuple[bytes, int]:
    """``10.0.0.1/24`` -> (address bytes, prefix length)."""
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError:
        raise ValueError(f"bad address/prefix {text!r}: want A.B.C.D/N with N from 0 to 32") from None
    return iface.ip.packed, iface.network.prefixlen


def is_multicast_mac(mac: bytes) -> bool:
    return bool(mac[0] & 1)


def netmask(length: int) -> int:
    """The mask of a /``length`` prefix as a 32-bit integer (/0 is 0)."""
    return (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF if length else 0


def _in(ip: bytes, prefix: bytes, length: int) -> bool:
    mask = netmask(length)
    return int.from_bytes(ip, "big") & mask == int.from_bytes(prefix, "big") & mask


def why_not_host_address(ip: bytes) -> str | None:
    """Why ``ip`` cannot be an interface's own address anywhere, or None (RFC 1122 3.2.1.3, RFC 1112 4)."""
    if ip == BROADCAST_IP:
        return "is the limited broadcast address"
    if _in(ip, b"\x00\x00\x00\x00", 8):
        return "is in 0.0.0.0/8, 'this network' (RFC 1122 3.2.1.3), a source only while a host learns its address"
    if _in(ip, b"\x7f\x00\x00\x00", 8):
        return "is a loopback address (127.0.0.0/8), which never appears on a wire (RFC 1122 3.2.1.3)"
    if _in(ip, b"\xe0\x00\x00\x00", 4):
        return "is a multicast address (224.0.0.0/4), a group, not a host (RFC 1112 4)"
    return None


class AddressError(ValueError):
    """A stack address that cannot be; ``what`` says which: "ip", "mac" or "gateway"."""

    def __init__(self, what: str, message: str) -> None:
        super().__init__(message)
        self.what = what


def check_stack_addresses(ip: bytes, prefix_len: int, mac: bytes | None = None, gateway: bytes | None = None) -> None:
    """The one check live, replay and import make of the stack's own addresses and its gateway.

    Raises AddressError naming the address and what is wrong with it; the
    caller adds which option or key it came from. The network and broadcast
    addresses of the subnet are refused only where the subnet has them (a
    /31 has neither, RFC 3021; a /32 is the host alone).
    """
    text = f"{ip_to_str(ip)}/{prefix_len}"
    why = why_not_host_address(ip)
    if why:
        raise AddressError("ip", f"{ip_to_str(ip)} {why}")
    mask = netmask(prefix_len)
    network = int.from_bytes(ip, "big") & mask
    special = (network, network | (~mask & 0xFFFFFFFF)) if prefix_len <= 30 else ()
    if int.from_bytes(ip, "big") in special:
        raise AddressError("ip", f"{text} is the subnet's network or broadcast address")
    if mac is not None and (is_multicast_mac(mac) or mac == ZERO_MAC):
        raise AddressError("mac", f"{mac_to_str(mac)}: the stack needs a unicast MAC address, not a multicast, "
                                  f"broadcast or zero one")
    if gateway is None:
        return
    g = ip_to_str(gateway)
    if gateway == ip:
        raise AddressError("gateway", f"{g} is the stack's own address: a gateway is another host on the subnet")
    why = why_not_host_address(gateway)
    if why:
        raise AddressError("gateway", f"{g} {why}")
    if int.from_bytes(gateway, "big") & mask != network:
        raise AddressError("gateway", f"{g} is not on the stack's subnet {text}")
    if int.from_bytes(gateway, "big") in special:
        raise AddressError("gateway", f"{g} is the subnet's network or broadcast address")
