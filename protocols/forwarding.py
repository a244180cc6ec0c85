"""Forwarding: a datagram for another host, routed on out of the interface the table names (RFC 1812 5.2).

The stack hands a datagram here only with ``StackConfig.forward`` on, once
it is known not to be for this host and its source is not a martian. The
checks run in RFC 1812 5.2.1.2's order: may it be forwarded at all (5.3.4
link-layer broadcasts, 5.3.7 martian destinations, 5.3.5.2 directed
broadcasts), is its TTL spent (5.3.1), is there a route (5.2.4.3), does it
fit the outgoing link (5.2.6, RFC 1191). Each verdict is a counter: a
datagram forwarded is ``ipv4.forward``, one discarded is ``ipv4.drop.REASON``.

Fragments are forwarded as they come, never reassembled (RFC 1812 5.2.6).
IP options are carried unchanged: no record-route or timestamp entry is added.
"""

from typing import TYPE_CHECKING

from . import ethernet, icmp, ipv4
from .errors import Malformed
from .fragments import fragment
from .interface import Port
from .routes import NoRoute

if TYPE_CHECKING:
    from .stack import Stack


def decrement_ttl(packet: bytes) -> bytes:
    """``packet`` with its TTL one lower and the header checksum updated, not recomputed (RFC 1624 3, RFC 1812 5.3.1).

    TTL is the high byte of the header's fifth 16-bit word, so the word drops
    by 0x0100: HC' = ~(~HC + ~m + m') with ~m + m' = 0xFFFF - 0x0100 = 0xFEFF.
    The caller makes sure the TTL is at least 2.
    """
    data = bytearray(packet)
    data[8] -= 1
    total = (~((data[10] << 8) | data[11]) & 0xFFFF) + 0xFEFF
    total = (total & 0xFFFF) + (total >> 16)
    checksum = ~total & 0xFFFF
    data[10] = checksum >> 8
    data[11] = checksum & 0xFF
    return bytes(data)


class Forwarder:
    """The router half of a stack; ``Stack`` makes one when ``config.forward`` is on."""

    def __init__(self, stack: "Stack") -> None:
        self.stack = stack
        # RFC 1812 5.3.5.2 and RFC 2644: directed broadcasts to a connected subnet are not forwarded
        # by default; RFC 1812 4.2.3.1: nor the obsolete all-zeros form of them (the subnet's own address).
        self.broadcasts = frozenset(
            address for port in stack.ports
            for address in ((port.subnet_broadcast, port.network_address) if port.prefix_len <= 30 else ()))

    def forward(self, port: Port, eth: ethernet.Ethernet, ip: ipv4.Ipv4, now: float) -> None:
        """``ip`` (in ``eth``, received on ``port``) is addressed to another host: send it on, or say why not."""
        stack = self.stack
        c = stack.counters
        # RFC 1812 5.3.4: a router MUST NOT forward what it received as a link-layer broadcast.
        # (Multicast MACs never get this far: the stack takes none.)
        if eth.dst != port.mac:
            c.drop("ipv4", "link_broadcast")
            return
        dst = ip.dst
        # RFC 1812 5.3.7: not to network 0 or 127, nor to a multicast (no multicast routing here) or Class E address.
        if dst[0] in (0, 127) or dst[0] >= 224:
            c.drop("ipv4", "martian")
            return
        # RFC 1812 5.3.7: a source that is not a unicast address (Class E); the stack refused the other martians.
        if ip.src[0] >= 240 or ip.src in self.broadcasts:
            c.drop("ipv4", "bad_source")
            return
        if dst in self.broadcasts:
            c.drop("ipv4", "directed_broadcast")
            return
        raw = eth.payload
        # RFC 1812 5.3.1: the TTL is decremented by one; at zero the datagram is
        # discarded with a time exceeded, code 0, to its source (RFC 792).
        if ip.ttl <= 1:
            c.drop("ipv4", "ttl_exceeded")
            stack.send_icmp_error(ip, raw, icmp.TIME_EXCEEDED, icmp.TTL_EXCEEDED, now)
            return
        # RFC 1812 5.2.4.3: longest prefix; RFC 1812 5.2.7.1: no route at all is "network unreachable".
        try:
            hop = stack.routes.lookup(dst)
        except NoRoute:
            c.drop("ipv4", "no_route")
            stack.send_icmp_error(ip, raw, icmp.DEST_UNREACHABLE, icmp.NET_UNREACHABLE, now)
            return
        out = stack.ports[hop.iface]
        total = ip.total_length or len(raw)
        if total <= hop.mtu:
            c.inc("ipv4.forward")
            stack.output(out, hop.next_hop, decrement_ttl(raw[:total]), now)
            return
        # RFC 1812 5.2.6 / RFC 1191: too big for the next link. DF set: discard, and
        # tell the source the next hop's MTU; otherwise split it (RFC 791 3.2).
        if ip.df:
            c.drop("ipv4", "frag_needed")
            stack.send_icmp_error(ip, raw, icmp.DEST_UNREACHABLE, icmp.FRAG_NEEDED, now, mtu=hop.mtu)
            return
        c.inc("ipv4.forward")
        c.inc("ipv4.forward.fragmented")
        shorter = ip._replace(ttl=ip.ttl - 1, ihl=None, total_length=None, checksum=None)
        for piece in fragment(shorter, hop.mtu):
            c.inc("ipv4.frag.tx")
            stack.output(out, hop.next_hop, ipv4.emit(piece), now)

    def unresolved(self, packet: bytes, now: float) -> None:
        """ARP gave up on the next hop of a datagram being forwarded: host unreachable to its source (RFC 1812 5.2.7.1)."""
        try:
            ip = ipv4.parse(packet)
        except Malformed:  # it was parsed on the way in and rebuilt here: only a bug gets here
            return
        self.stack.send_icmp_error(ip, packet, icmp.DEST_UNREACHABLE, icmp.HOST_UNREACHABLE, now)
