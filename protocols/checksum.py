"""The Internet checksum (RFC 1071), shared by IPv4, ICMP and UDP.

Kept out of the construct declarations on purpose: the checksum covers its own
field, so it is computed over the built bytes in ``emit`` and checked over the
received bytes in ``parse``.
"""

import sys
from array import array

_LITTLE = sys.byteorder == "little"


def ones_sum(data: bytes | bytearray, initial: int = 0) -> int:
    """16-bit ones' complement sum, folded, in network byte order.

    Summing native 16-bit words and swapping once at the end gives the same
    result as summing big-endian words (RFC 1071 2(B), byte order independence),
    and lets ``array`` do the loop in C.
    """
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    words = array("H", data)
    total = sum(words)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    if _LITTLE:
        total = ((total & 0xFF) << 8) | (total >> 8)
    total += initial
    total = (total & 0xFFFF) + (total >> 16)
    return (total & 0xFFFF) + (total >> 16)


def internet_checksum(data: bytes | bytearray, initial: int = 0) -> int:
    """The value to put in a checksum field that is zero in ``data``."""
    return ~ones_sum(data, initial) & 0xFFFF


def verify(data: bytes | bytearray, initial: int = 0) -> bool:
    """True when ``data`` (checksum field included) sums to all ones."""
    return ones_sum(data, initial) == 0xFFFF
