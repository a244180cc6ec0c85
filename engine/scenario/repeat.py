"""``repeat:`` on an inject step: one frame sent many times, some fields counting up (docs/scenarios.md, "repeat").

A flood of 100,000 SYNs is one step, not 100,000. The frame is built once;
each copy then has its varied fields rewritten in place and its checksums
updated, a few microseconds where building a frame from its fields costs
tens, so a flood replays in seconds.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from simstack.protocols import ethernet, ipv4

MAX_COUNT = 1_000_000  # copies one step may send: bounds the replay's work like every other range
# field -> (layer, offset in its header, size in bytes)
FIELDS: dict[str, tuple[str, int, int]] = {
    "ipv4.src": ("ipv4", 12, 4), "ipv4.dst": ("ipv4", 16, 4), "ipv4.id": ("ipv4", 4, 2),
    "tcp.sport": ("tcp", 0, 2), "tcp.dport": ("tcp", 2, 2), "tcp.seq": ("tcp", 4, 4), "tcp.ack": ("tcp", 8, 4),
    "udp.sport": ("udp", 0, 2), "udp.dport": ("udp", 2, 2),
    "icmp.id": ("icmp", 4, 2), "icmp.seq": ("icmp", 6, 2),
}
_PROTO = {"tcp": 6, "udp": 17, "icmp": 1}
_CHECKSUM_AT = {"tcp": 16, "udp": 6, "icmp": 2}


@dataclass(frozen=True, slots=True)
class Repeat:
    count: int
    vary: Mapping[str, int]  # field -> what each copy adds to it, modulo the field's width
    every: float = 0.0  # seconds of virtual time between copies
    keep_checksums: frozenset[str] = frozenset()  # layers whose checksum the step names: left as named


def check(frame: bytes, rep: Repeat) -> str | None:
    """Why ``rep`` cannot vary ``frame``, or None."""
    at = _ip_offset(frame)
    if at is None:
        return "repeat varies IPv4 datagrams; this frame is not one"
    proto = frame[at + 9]
    for name in rep.vary:
        layer = FIELDS[name][0]
        if layer != "ipv4" and _PROTO[layer] != proto:
            return f"repeat: {name} varies a {layer} field, and this datagram carries no {layer} header"
    if frame[at + 6] & 0x3F or frame[at + 7]:
        return "repeat varies whole datagrams, not fragments"
    return None


def _ip_offset(frame: bytes) -> int | None:
    if len(frame) < 14:
        return None
    at = 14
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == ethernet.TYPE_VLAN and len(frame) >= 18:
        at = 18
        ethertype = int.from_bytes(frame[16:18], "big")
    if ethertype != ethernet.TYPE_IPV4 or len(frame) < at + ipv4.MIN_HEADER:
        return None
    return at


def frames(frame: bytes, rep: Repeat) -> Iterator[bytes]:
    """The ``count`` copies of ``frame`` (already checked), the first unchanged.

    Every field that varies sits at an even offset of its header, so it adds its value to the
    Internet checksum's sum (RFC 1071: a 32-bit value counts as its two 16-bit words, modulo
    65535), and each copy's checksums follow from the first's by the change in those values
    (RFC 1624's incremental update, on the unfolded sum).
    """
    at = _ip_offset(frame)
    assert at is not None
    ihl = (frame[at] & 0x0F) * 4
    total = int.from_bytes(frame[at + 2:at + 4], "big")
    proto = frame[at + 9]
    t = at + ihl
    end = at + total
    layer = next((name for name, number in _PROTO.items() if number == proto), None)
    ip_sum = any(FIELDS[n][0] == "ipv4" for n in rep.vary) and "ipv4" not in rep.keep_checksums
    upper_sum = layer is not None and layer not in rep.keep_checksums and not (
        layer == "udp" and frame[t + 6:t + 8] == b"\0\0")  # RFC 768: zero means "no checksum"
    pseudo = layer in ("tcp", "udp")
    cs = t + _CHECKSUM_AT[layer] if layer is not None else 0
    # (position, size, first value, step, mask, counts in the IPv4 sum, counts in the transport sum)
    places = []
    for name, step in rep.vary.items():
        where, offset, size = FIELDS[name]
        pos = (at if where == "ipv4" else t) + offset
        in_ip = where == "ipv4"
        in_upper = not in_ip or (pseudo and name in ("ipv4.src", "ipv4.dst"))
        places.append((pos, size, int.from_bytes(frame[pos:pos + size], "big"), step, (1 << 8 * size) - 1, in_ip,
                       in_upper))
    base = bytearray(frame)
    ip_n = upper_n = 0
    if ip_sum:
        base[at + 10:at + 12] = b"\0\0"
        ip_n = int.from_bytes(base[at:t], "big")
    if upper_sum:
        base[cs:cs + 2] = b"\0\0"
        upper_n = int.from_bytes(base[t:end], "big") << (8 if (end - t) & 1 else 0)  # RFC 1071 4.1: pad odd
        if pseudo:
            upper_n += int.from_bytes(base[at + 12:at + 16], "big") + int.from_bytes(base[at + 16:at + 20], "big")
            upper_n += proto + (end - t)
    yield frame
    for i in range(1, rep.count):
        out = bytearray(base)
        ip_i, upper_i = ip_n, upper_n
        for pos, size, first, step, mask, in_ip, in_upper in places:
            value = (first + i * step) & mask
            out[pos:pos + size] = value.to_bytes(size, "big")
            if in_ip:
                ip_i += value - first
            if in_upper:
                upper_i += value - first
        if ip_sum:
            out[at + 10:at + 12] = (~((ip_i - 1) % 0xFFFF + 1) & 0xFFFF).to_bytes(2, "big")
        if upper_sum:
            value = ~((upper_i - 1) % 0xFFFF + 1) & 0xFFFF
            if layer == "udp" and value == 0:
                value = 0xFFFF  # RFC 768: a computed zero is sent as all ones
            out[cs:cs + 2] = value.to_bytes(2, "big")
        yield bytes(out)
