"""What ``-v``, ``-vv``, ``-e`` and ``-x`` print for a frame: tcpdump's lines at its matching flags.

``-v`` is tcpdump's plain line (the decode's summary); ``-vv`` is tcpdump's
``-v``, which adds the IPv4 header (TOS, TTL, ID, fragment offset and flags,
protocol, total length) on a line of its own, and ARP's hardware and protocol
formats; ``-e`` puts the Ethernet addresses, EtherType and frame length in
front; ``-x`` adds a hex dump of the network layer (Ethernet padding
included), 16 bytes a line. The
lines are tcpdump's so that a reader moves between the two without
translating, and tests/test_framelines.py holds them to tcpdump's own output.
"""

from dataclasses import dataclass

from simstack.protocols import ethernet, icmp, ipv4
from simstack.protocols.addresses import mac_to_str
from simstack.protocols.errors import Malformed

from .fields import decode_frame
from .ipv6_text import TYPE_IPV6
from .isn import Isns


@dataclass(frozen=True)
class Style:
    level: int = 1  # 1: -v, 2: -vv
    link: bool = False  # -e
    hex: bool = False  # -x


_ETHERTYPES = {ethernet.TYPE_IPV4: "IPv4", ethernet.TYPE_ARP: "ARP", TYPE_IPV6: "IPv6", ethernet.TYPE_VLAN: "802.1Q"}
_PROTOCOLS = {ipv4.PROTO_ICMP: "ICMP", ipv4.PROTO_TCP: "TCP", ipv4.PROTO_UDP: "UDP"}
_PREFIXES = ("IP ", "IP6 ", "ARP, ")  # what -e drops: the EtherType it prints says it


def frame_text(frame: bytes, isns: Isns | None = None, style: Style = Style()) -> str:
    """The frame's text; lines after the first carry tcpdump's own indentation."""
    text = decode_frame(frame, isns).summary
    try:
        eth = ethernet.parse(frame)
    except Malformed:
        return text
    if style.level >= 2 and eth.vlan is None:
        text = _detailed(eth, text)
    if style.link:
        text = _link(frame, eth) + next((text[len(p):] for p in _PREFIXES if text.startswith(p)), text)
        text = text.replace("\n\tIP (", "\n\t(")  # a quoted datagram loses its IP too
    if style.hex:
        text += "".join("\n" + line for line in hex_lines(eth.payload))  # padding too, as tcpdump -x dumps it
    return text


def _detailed(eth: ethernet.Ethernet, text: str) -> str:
    if eth.ethertype == ethernet.TYPE_ARP and text.startswith("ARP, "):
        return "ARP, Ethernet (len 6), IPv4 (len 4), " + text[len("ARP, "):]
    if eth.ethertype != ethernet.TYPE_IPV4 or not text.startswith("IP "):
        return text
    return _ip_detailed(eth.payload, text)


def _ip_detailed(data: bytes, text: str) -> str:
    """tcpdump -v's two lines for an IPv4 datagram whose plain line is ``text``; an ICMP error's quote follows."""
    try:
        ip = ipv4.parse(data, verify_checksum=False)
    except Malformed:
        return text
    flags = ("DF" if ip.df else "") + ("+" if ip.mf else "") + ("rsvd" if ip.reserved_flag else "")
    proto = _PROTOCOLS.get(ip.protocol, "unknown")
    header = (f"IP (tos {ip.tos:#x}, ttl {ip.ttl}, id {ip.identification}, offset {ip.frag_offset}, "
              f"flags [{flags or 'none'}], proto {proto} ({ip.protocol}), length {ip.total_length})")
    rest = text[len("IP "):]
    if ip.frag_offset:  # the header line gives the offset; the rest is tcpdump's bare protocol
        rest = rest.split(" (frag ", 1)[0]
    lines = f"{header}\n    {rest}"
    if ip.protocol == ipv4.PROTO_ICMP and not ip.frag_offset and len(ip.payload) > icmp.HEADER_LEN \
            and ip.payload[0] in (icmp.DEST_UNREACHABLE, icmp.TIME_EXCEEDED):
        quoted = ip.payload[icmp.HEADER_LEN:]
        inner = decode_frame(_AS_FRAME + quoted).summary
        if inner.startswith("IP ") and "[malformed" not in inner:
            lines += "\n\t" + _ip_detailed(quoted, inner)
    return lines


_AS_FRAME = bytes(12) + ethernet.TYPE_IPV4.to_bytes(2)  # an Ethernet header, to decode a quoted datagram alone


def _link(frame: bytes, eth: ethernet.Ethernet) -> str:
    ethertype = int.from_bytes(frame[12:14])  # the outer one: an 802.1Q tag says so
    name = _ETHERTYPES.get(ethertype, "Unknown")
    return f"{mac_to_str(eth.src)} > {mac_to_str(eth.dst)}, ethertype {name} ({ethertype:#06x}), length {len(frame)}: "


def hex_lines(data: bytes) -> list[str]:
    """tcpdump -x: offset, then 16 bytes as eight groups of two."""
    lines = []
    for at in range(0, len(data), 16):
        chunk = data[at : at + 16]
        groups = " ".join(chunk[i : i + 2].hex() for i in range(0, len(chunk), 2))
        lines.append(f"\t0x{at:04x}:  {groups}")
    return lines
