"""One line for an IPv6 frame, in tcpdump's words.

simstack does not speak IPv6, but a live TAP carries the kernel's IPv6
chatter (router solicitations, MLD reports), and ``-v`` should say what it
is rather than print an EtherType. Display only: nothing here feeds a field,
and every length is checked against the buffer before it is read.
"""

import ipaddress

from simstack.protocols.tcp import HEADER_LEN as TCP_HEADER_LEN

from .tcp_words import flags_text

TYPE_IPV6 = 0x86DD
HEADER_LEN = 40  # RFC 8200 3
HOP_BY_HOP, TCP, UDP, ICMPV6 = 0, 6, 17, 58

_ICMPV6_NAMES = {
    1: "destination unreachable", 2: "packet too big", 3: "time exceeded in-transit", 4: "parameter problem",
    130: "multicast listener query", 131: "multicast listener report", 132: "multicast listener done",
    133: "router solicitation", 134: "router advertisement", 135: "neighbor solicitation",
    136: "neighbor advertisement", 137: "redirect", 143: "multicast listener report v2",
}


def _address(raw: bytes) -> str:
    return str(ipaddress.IPv6Address(raw))


def summary(data: bytes) -> str:
    if len(data) < HEADER_LEN or data[0] >> 4 != 6:
        return f"IP6 [malformed: {len(data)} bytes, not an IPv6 header], length {len(data)}"
    src, dst = _address(data[8:24]), _address(data[24:40])
    payload_length = int.from_bytes(data[4:6])
    next_header = data[6]
    body = data[HEADER_LEN : HEADER_LEN + payload_length]
    prefix = ""
    if next_header == HOP_BY_HOP and len(body) >= 2:  # RFC 8200 4.3: length in 8-byte units, not counting the first 8
        ext = (body[1] + 1) * 8
        if ext <= len(body):
            next_header, body, prefix = body[0], body[ext:], "HBH "
    head = f"IP6 {src} > {dst}: {prefix}"
    if next_header == ICMPV6 and len(body) >= 4:
        return head + _icmpv6(body)
    if next_header == UDP and len(body) >= 8:
        sport, dport, length = int.from_bytes(body[0:2]), int.from_bytes(body[2:4]), int.from_bytes(body[4:6])
        return f"IP6 {src}.{sport} > {dst}.{dport}: {prefix}UDP, length {max(length - 8, 0)}"
    if next_header == TCP and len(body) >= TCP_HEADER_LEN:
        sport, dport = int.from_bytes(body[0:2]), int.from_bytes(body[2:4])
        seq, ack = int.from_bytes(body[4:8]), int.from_bytes(body[8:12])
        offset, flags, window = (body[12] >> 4) * 4, body[13], int.from_bytes(body[14:16])
        parts = [f"Flags [{flags_text(flags)}]", f"seq {seq}", *([f"ack {ack}"] if flags & 0x10 else []), f"win {window}",
                 f"length {max(len(body) - offset, 0)}"]
        return f"IP6 {src}.{sport} > {dst}.{dport}: {prefix}" + ", ".join(parts)
    return head + f"ip-proto-{next_header} {len(body)}"


def _icmpv6(body: bytes) -> str:
    kind = body[0]
    if kind in (128, 129) and len(body) >= 8:
        word = "request" if kind == 128 else "reply"
        return (f"ICMP6, echo {word}, id {int.from_bytes(body[4:6])}, seq {int.from_bytes(body[6:8])}, "
                f"length {len(body)}")
    if kind in (135, 136) and len(body) >= 24:
        what = "who has" if kind == 135 else "tgt is"
        return f"ICMP6, {_ICMPV6_NAMES[kind]}, {what} {_address(body[8:24])}, length {len(body)}"
    if kind == 143 and len(body) >= 8:
        return f"ICMP6, {_ICMPV6_NAMES[kind]}, {int.from_bytes(body[6:8])} group record(s), length {len(body)}"
    name = _ICMPV6_NAMES.get(kind, f"type {kind}")
    return f"ICMP6, {name}, length {len(body)}"
