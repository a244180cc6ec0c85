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
