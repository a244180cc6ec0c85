"""The sans-IO host: frames and time in, frames and a deadline out.

Three inputs drive it, as in aioquic: frames from the wire (``receive``), the
timer (``on_timer`` at ``next_deadline()``), and calls from applications
(``ping``, sockets). ``transmit()`` hands back what to put on the wire. It never
reads a clock or a file descriptor and draws randomness only from the ``rng``
it is given, so one input sequence always gives the same output bytes.
"""

import errno
import os
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from . import arp, ethernet, icmp, ipv4, udp
from .addresses import BROADCAST_IP, BROADCAST_MAC, ZERO_IP, ZERO_MAC, is_multicast_mac
from .arp_cache import ArpConfig, NeighborCache
from .counters import Counters
from .errors import Malformed
from .fragments import Reassembler, ReassemblyConfig, fragment
from .ratelimit import IcmpErrorLimiter
from .timers import Timers
from .udp_ports import ANY, UdpEndpoint, UdpPorts

ICMP_ERROR_MAX = 576  # RFC 1812 4.3.2.3: an ICMP error SHOULD fit in 576 bytes


@dataclass(frozen=True)
class StackConfig:
    mac: bytes
    ip: bytes
    prefix_len: int = 24
    gateway: bytes | None = None
    mtu: int = 1500
    ttl: int = 64
    vlan: int | None = None  # tag every frame with this VID and accept only it
    arp: ArpConfig = field(default_factory=ArpConfig)
    reassembly: ReassemblyConfig = field(default_factory=ReassemblyConfig)
    echo_ignore_broadcasts: bool = True  # Linux icmp_echo_ignore_broadcasts
    udp_rcvbuf: int = 212992  # Linux's default rmem_default

    # Cached: read on every packet, and the config never changes.
    @cached_property
    def netmask(self) -> int:
        return (0xFFFFFFFF << (32 - self.prefix_len)) & 0xFFFFFFFF if self.prefix_len else 0

    @cached_property
    def subnet_broadcast(self) -> bytes:
        net = int.from_bytes(self.ip, "big") & self.netmask
        return (net | (~self.netmask & 0xFFFFFFFF)).to_bytes(4, "big")

    @cached_property
    def network(self) -> int:
        return int.from_bytes(self.ip, "big") & self.netmask

    def on_link(self, ip: bytes) -> bool:
        return int.from_bytes(ip, "big") & self.netmask == self.network


@dataclass(frozen=True, slots=True)
class EchoReply:
    src: bytes
    sequence: int
    data: bytes
    ttl: int
    time: float


@dataclass(frozen=True, slots=True)
class IcmpErrorEvent:
    src: bytes  # who reported it
    type: int
    code: int
    sequence: int
    time: float


class NoRoute(OSError):
    """No gateway for an off-link destination (ENETUNREACH)."""


# ICMP destination-unreachable codes as the errno a socket reports (Linux icmp_err_convert).
UNREACH_ERRNO = {
    icmp.NET_UNREACHABLE: errno.ENETUNREACH,
    icmp.HOST_UNREACHABLE: errno.EHOSTUNREACH,
    icmp.PROTOCOL_UNREACHABLE: errno.ENOPROTOOPT,
    icmp.PORT_UNREACHABLE: errno.ECONNREFUSED,
    icmp.FRAG_NEEDED: errno.EMSGSIZE,
}


class EchoEndpoint:
    """What a ping application sees: replies and errors for one identifier."""

    MAX_EVENTS = 1024

    def __init__(self, stack: "Stack", identifier: int) -> None:
        self.stack = stack
        self.identifier = identifier
        self.events: deque[EchoReply | IcmpErrorEvent] = deque(maxlen=self.MAX_EVENTS)

    def send(self, dst: bytes, sequence: int, data: bytes, now: float) -> None:
        self.stack.send_echo_request(dst, self.identifier, sequence, data, now)

    def close(self) -> None:
        self.stack.echo_endpoints.pop(self.identifier, None)


class Stack:
    def __init__(self, config: StackConfig, rng: random.Random | None = None, now: float = 0.0) -> None:
        self.config = config
        self.rng = rng if rng is not None else random.Random(0)
        self.now = now
        self.counters = Counters()
        self.timers = Timers()
        self._out: list[bytes] = []
        self._ip_id = self.rng.randrange(0x10000)
        self._icmp_limiter = IcmpErrorLimiter()
        self.echo_endpoints: dict[int, EchoEndpoint] = {}
        self.arp = NeighborCache(config.arp, self.timers, self.counters, self._send_arp_request, self._deliver_queued,
                                 self._unresolved)
        self.reassembler = Reassembler(config.reassembly, self.timers, self.counters, self._reassembly_expired)
        self.udp_ports = UdpPorts(self.rng)
        # Dispatch tables, one per layer (the role of scapy's bind_layers).
        self._ethertypes: dict[int, Callable[[ethernet.Ethernet], None]] = {
            ethernet.TYPE_ARP: self._rx_arp,
            ethernet.TYPE_IPV4: self._rx_ipv4,
        }
        self._ip_protocols: dict[int, Callable[[ipv4.Ipv4, bytes, bool], None]] = {
            ipv4.PROTO_ICMP: self._rx_icmp,
            ipv4.PROTO_UDP: self._rx_udp,
        }
        # Who hears about an ICMP error, by the protocol of the datagram it quotes.
        self._error_handlers: dict[int, Callable[[bytes, icmp.Icmp, bytes, bytes], None]] = {
            ipv4.PROTO_ICMP: self._echo_error,
            ipv4.PROTO_UDP: self._udp_error,
        }
        self._timer_handlers: dict[str, Callable[[object, float], None]] = {
            "arp": self.arp.on_timer,  # type: ignore[dict-item]
            "frag": self.reassembler.on_timer,  # type: ignore[dict-item]
        }

    # -- the sans-IO interface --------------------------------------------
    def receive(self, frame: bytes, now: float) -> None:
        self.now = now
        c = self.counters
        c.inc("eth.rx")
        try:
            eth = ethernet.parse(frame)
        except Malformed as e:
            c.drop("eth", e.reason)
            return
        dst = eth.dst
        if dst != self.config.mac and dst != BROADCAST_MAC:
            c.drop("eth", "multicast" if is_multicast_mac(dst) else "not_for_us")
            return
        # IEEE 802.1Q: VID 0 is a priority tag on an untagged frame.
        if (eth.vlan or None) != self.config.vlan:
            c.drop("eth", "wrong_vlan")
            return
        handler = self._ethertypes.get(eth.ethertype)
        if handler is None:
            c.drop("eth", "unknown_ethertype")
            return
        handler(eth)

    def transmit(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        return self.timers.next_deadline()

    def on_timer(self, now: float) -> None:
        self.now = now
        for key in self.timers.pop_due(now):
            kind, arg = key
            self._timer_handlers[kind](arg, now)

    # -- applications ------------------------------------------------------
    def open_echo(self, identifier: int | None = None) -> EchoEndpoint:
        if identifier is None:
            identifier = self.rng.randrange(1, 0x10000)
            while identifier in self.echo_endpoints:
                identifier = identifier % 0xFFFF + 1
        if identifier in self.echo_endpoints:
            raise OSError(98, f"ICMP identifier {identifier} in use")
        ep = self.echo_endpoints[identifier] = EchoEndpoint(self, identifier)
        return ep

    def send_echo_request(self, dst: bytes, identifier: int, sequence: int, data: bytes, now: float) -> None:
        self.now = now
        msg = icmp.emit(icmp.Icmp(icmp.ECHO_REQUEST, 0, data, identifier, sequence))
        self.counters.inc("icmp.tx.echo_request")
        self.send_ipv4(dst, ipv4.PROTO_ICMP, msg)

    # -- Ethernet / ARP ----------------------------------------------------
    def _send_frame(self, dst: bytes, ethertype: int, payload: bytes) -> None:
        self._out.append(ethernet.emit(ethernet.Ethernet(dst, self.config.mac, ethertype, payload, self.config.vlan)))
        self.counters.inc("eth.tx")

    def _send_arp_request(self, ip: bytes, unicast_mac: bytes | None) -> None:
        self.counters.inc("arp.tx.request")
        req = arp.Arp(arp.REQUEST, self.config.mac, self.config.ip, ZERO_MAC, ip)
        self._send_frame(unicast_mac or BROADCAST_MAC, ethernet.TYPE_ARP, arp.emit(req))

    def _deliver_queued(self, mac: bytes, packet: bytes) -> None:
        self._send_frame(mac, ethernet.TYPE_IPV4, packet)

    def _unresolved(self, ip: bytes, packets: list[bytes]) -> None:
        """RFC 1122 2.3.2.2 / 3.2.2.1: the local sender learns the host is unreachable."""
        note = icmp.Icmp(icmp.DEST_UNREACHABLE, icmp.HOST_UNREACHABLE)
        for packet in packets:
            hlen = (packet[0] & 0x0F) * 4
            handler = self._error_handlers.get(packet[9])
            if handler is not None and len(packet) >= hlen + 8:
                handler(self.config.ip, note, packet[16:20], packet[hlen:])

    def _rx_arp(self, eth: ethernet.Ethernet) -> None:
        c = self.counters
        c.inc("arp.rx")
        try:
            pkt = arp.parse(eth.payload)
        except Malformed as e:
            c.drop("arp", e.reason)
            return
        me = self.config.ip
        if pkt.op not in (arp.REQUEST, arp.REPLY):
            c.drop("arp", "bad_op")
            return
        if pkt.sha == self.config.mac:
            c.drop("arp", "own_frame")
            return
        if pkt.spa == me:
            c.drop("arp", "address_conflict")
            return
        if pkt.sha == BROADCAST_MAC or is_multicast_mac(pkt.sha):
            c.drop("arp", "bad_sender")
            return
        for_us = pkt.tpa == me
        # RFC 5227 probes carry sender 0.0.0.0: nothing to learn from them.
        if pkt.spa != ZERO_IP:
            confirmed = for_us and (pkt.op == arp.REQUEST or pkt.tha == self.config.mac)
            self.arp.learn(pkt.spa, pkt.sha, self.now, confirmed=confirmed, create=for_us)
        if not for_us:
            c.inc("arp.rx.not_for_us")
            return
        if pkt.op == arp.REQUEST:
            # RFC 826: swap the fields, fill in our address, set the opcode to reply.
            reply = arp.Arp(arp.REPLY, self.config.mac, me, pkt.sha, pkt.spa)
            c.inc("arp.tx.reply")
            self._send_frame(pkt.sha, ethernet.TYPE_ARP, arp.emit(reply))

    # -- IPv4 --------------------------------------------------------------
    def route(self, dst: bytes) -> bytes:
        """Next hop for ``dst``: itself when on-link or broadcast, else the gateway."""
        cfg = self.config
        if dst == BROADCAST_IP or cfg.on_link(dst):
            return dst
        if cfg.gateway is None:
            raise NoRoute(101, "Network is unreachable")
        return cfg.gateway

    def next_ip_id(self) -> int:
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        return self._ip_id

    def send_ipv4(self, dst: bytes, protocol: int, payload: bytes, *, tos: int = 0, ttl: int | None = None,
                  df: bool = False) -> None:
        """Route, build, fragment if needed (RFC 791 3.2) and send one datagram.

        Raises NoRoute, or OSError(EMSGSIZE) for an oversized DF datagram or one
        that no IPv4 header can describe.
        """
        next_hop = self.route(dst)
        cfg = self.config
        if len(payload) + ipv4.MIN_HEADER > ipv4.MAX_PACKET:
            raise OSError(errno.EMSGSIZE, "Message too long")
        header = ipv4.Ipv4(cfg.ip, dst, protocol, payload, cfg.ttl if ttl is None else ttl, self.next_ip_id(), tos, df)
        if header.header_len + len(payload) <= cfg.mtu:
            self.counters.inc("ipv4.tx")
            self._output(next_hop, ipv4.emit(header))
            return
        if df:
            raise OSError(errno.EMSGSIZE, "Message too long")
        for piece in fragment(header, cfg.mtu):
            self.counters.inc("ipv4.tx")
            self.counters.inc("ipv4.frag.tx")
            self._output(next_hop, ipv4.emit(piece))

    def _output(self, next_hop: bytes, packet: bytes) -> None:
        if next_hop == BROADCAST_IP or next_hop == self.config.subnet_broadcast:
            self._send_frame(BROADCAST_MAC, ethernet.TYPE_IPV4, packet)
            return
        mac = self.arp.resolve(next_hop, packet, self.now)
        if mac is not None:
            self._send_frame(mac, ethernet.TYPE_IPV4, packet)

    def _reply_ipv4(self, dst: bytes, protocol: int, payload: bytes, tos: int = 0) -> bool:
        """Send in answer to a peer; a peer we cannot route back to is a counted drop."""
        try:
            self.send_ipv4(dst, protocol, payload, tos=tos)
        except NoRoute:
            self.counters.drop("ipv4", "no_route")
            return False
        except OSError:
            self.counters.drop("ipv4", "too_big")
            return False
        return True

    def _rx_ipv4(self, eth: ethernet.Ethernet) -> None:
        c = self.counters
        c.inc("ipv4.rx")
        try:
            ip = ipv4.parse(eth.payload)
        except Malformed as e:
            c.drop("ipv4", e.reason)
            return
        cfg = self.config
        # RFC 1122 3.2.1.3: ours, limited broadcast or the subnet's broadcast.
        if ip.dst == cfg.ip:
            broadcast = eth.dst == BROADCAST_MAC
        elif ip.dst == BROADCAST_IP or ip.dst == cfg.subnet_broadcast:
            broadcast = True
        else:
            c.drop("ipv4", "not_for_us")
            return
        # RFC 1122 3.2.1.3: a source that is broadcast, multicast, loopback or
        # "this network" (0/8) is discarded; so is our own address arriving from
        # the wire (Linux calls all of these martians).
        src0 = ip.src[0]
        if ip.src == BROADCAST_IP or ip.src == cfg.subnet_broadcast or 224 <= src0 <= 239 or src0 in (0, 127) \
                or ip.src == cfg.ip:
            c.drop("ipv4", "bad_source")
            return
        # The datagram's own bytes, kept (not copied) for an ICMP error's quote;
        # send_icmp_error trims them to Total Length.
        raw = eth.payload
        if ip.mf or ip.frag_offset:
            whole = self.reassembler.add(ip, raw, self.now, broadcast)
            if whole is None:
                return
            ip = whole
            raw = b""  # a reassembled datagram's header exists only as fields until an error needs it
        handler = self._ip_protocols.get(ip.protocol)
        if handler is None:
            c.drop("ipv4", "unknown_protocol")
            if not broadcast:
                # RFC 1122 3.2.2.1: protocol unreachable from the destination host.
                self.send_icmp_error(ip, raw, icmp.DEST_UNREACHABLE, icmp.PROTOCOL_UNREACHABLE)
            return
        handler(ip, raw, broadcast)

    # -- ICMP --------------------------------------------------------------
    def send_icmp_error(self, ip: ipv4.Ipv4, raw: bytes, type_: int, code: int, mtu: int = 0) -> bool:
        """RFC 1122 3.2.2 and RFC 1812 4.3.2.7: when an error must not be sent.

        ``raw`` starts with the offending datagram and may run past its end
        (Ethernet padding); empty means "build it from ``ip``".
        """
        c = self.counters
        if ip.protocol == ipv4.PROTO_ICMP and ip.payload[:1] and ip.payload[0] in icmp.ERROR_TYPES:
            c.inc("icmp.suppressed.about_error")
            return False
        if ip.frag_offset:
            c.inc("icmp.suppressed.non_initial_fragment")
            return False
        if ip.src == ZERO_IP or ip.src[0] == 127 or ip.src[0] >= 224:
            c.inc("icmp.suppressed.bad_source")
            return False
        if not self._icmp_limiter.allow(ip.src, self.now):
            c.inc("icmp.suppressed.rate_limited")
            return False
        if not raw:
            raw = ipv4.emit(ip)
        limit = ICMP_ERROR_MAX - ipv4.MIN_HEADER - icmp.HEADER_LEN
        quote = raw[: min(limit, ip.total_length or len(raw))]
        msg = icmp.emit(icmp.Icmp(type_, code, quote, next_hop_mtu=mtu))
        if not self._reply_ipv4(ip.src, ipv4.PROTO_ICMP, msg):
            return False
        c.inc(f"icmp.tx.error.{type_}.{code}")
        return True

    def _rx_icmp(self, ip: ipv4.Ipv4, raw: bytes, broadcast: bool) -> None:
        c = self.counters
        c.inc("icmp.rx")
        try:
            msg = icmp.parse(ip.payload)
        except Malformed as e:
            c.drop("icmp", e.reason)
            return
        t = msg.type
        if t == icmp.ECHO_REQUEST:
            if broadcast and self.config.echo_ignore_broadcasts:
                c.drop("icmp", "broadcast_echo")
                return
            # RFC 1122 3.2.2.6: same identifier, sequence and data; RFC 792 swaps addresses.
            reply = icmp.emit(icmp.Icmp(icmp.ECHO_REPLY, 0, msg.data, msg.identifier, msg.sequence))
            if self._reply_ipv4(ip.src, ipv4.PROTO_ICMP, reply, tos=ip.tos):
                c.inc("icmp.tx.echo_reply")
        elif t == icmp.ECHO_REPLY:
            ep = self.echo_endpoints.get(msg.identifier)
            if ep is None:
                c.drop("icmp", "no_listener")
                return
            c.inc("icmp.rx.echo_reply")
            ep.events.append(EchoReply(ip.src, msg.sequence, msg.data, ip.ttl, self.now))
        elif msg.is_error:
            self._rx_icmp_error(ip, msg)
        else:
            c.drop("icmp", "unhandled_type")

    def _rx_icmp_error(self, ip: ipv4.Ipv4, msg: icmp.Icmp) -> None:
        """Hand an error to whoever sent the datagram it quotes (RFC 1122 3.2.2)."""
        c = self.counters
        data = msg.data
        if len(data) < ipv4.MIN_HEADER + 8 or data[0] >> 4 != 4:
            c.drop("icmp", "bad_quote")
            return
        hlen = (data[0] & 0x0F) * 4
        if hlen < ipv4.MIN_HEADER or len(data) < hlen + 8 or data[12:16] != self.config.ip:
            c.drop("icmp", "bad_quote")
            return
        c.inc("icmp.rx.error")
        proto = data[9]
        inner = data[hlen:]
        handler = self._error_handlers.get(proto)
        if handler is None:
            c.drop("icmp", "no_listener")
            return
        handler(ip.src, msg, data[16:20], inner)

    def _echo_error(self, reporter: bytes, msg: icmp.Icmp, _dst: bytes, inner: bytes) -> None:
        if inner[0] != icmp.ECHO_REQUEST:
            self.counters.drop("icmp", "no_listener")
            return
        ep = self.echo_endpoints.get(int.from_bytes(inner[4:6], "big"))
        if ep is None:
            self.counters.drop("icmp", "no_listener")
            return
        ep.events.append(IcmpErrorEvent(reporter, msg.type, msg.code, int.from_bytes(inner[6:8], "big"), self.now))

    def _reassembly_expired(self, first: ipv4.Ipv4, raw: bytes) -> None:
        # RFC 792 / RFC 1122 3.3.2: time exceeded, code 1, only if fragment zero arrived.
        self.send_icmp_error(first, raw, icmp.TIME_EXCEEDED, icmp.REASSEMBLY_EXCEEDED)

    # -- UDP -----------------------------------------------------------------
    def udp_open(self) -> UdpEndpoint:
        return UdpEndpoint(self.config.udp_rcvbuf)

    def udp_bind(self, ep: UdpEndpoint, ip: bytes, port: int) -> None:
        if ip != ANY and ip != self.config.ip:
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        self.udp_ports.bind(ep, ip, port)

    def udp_connect(self, ep: UdpEndpoint, ip: bytes, port: int) -> None:
        if not 0 < port <= 0xFFFF:
            raise OSError(errno.EINVAL, "Invalid argument")
        self.route(ip)
        if not ep.local_port:
            self.udp_ports.bind(ep, ANY, 0)
        if ep.local_ip == ANY:
            # As Linux's ip4_datagram_connect: the route's source address becomes
            # the local one, for getsockname and for what the socket receives.
            ep.local_ip = self.config.ip
        ep.remote = (ip, port)
        ep.error = None

    def udp_send(self, ep: UdpEndpoint, data: bytes, dst: tuple[bytes, int] | None = None) -> int:
        """Send one datagram; returns its length like ``sendto``."""
        if ep.closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        err = ep.take_error()
        if err is not None:
            raise OSError(err, os.strerror(err))
        if dst is None:
            if ep.remote is None:
                raise OSError(errno.EDESTADDRREQ, "Destination address required")
            dst = ep.remote
        ip, port = dst
        if not 0 < port <= 0xFFFF:
            raise OSError(errno.EINVAL, "Invalid argument")
        if len(data) > udp.MAX_PAYLOAD:
            raise OSError(errno.EMSGSIZE, "Message too long")
        self.route(ip)
        if not ep.local_port:
            self.udp_ports.bind(ep, ANY, 0)
        dgram = udp.emit(udp.Udp(ep.local_port, port, data), self.config.ip, ip)
        self.counters.inc("udp.tx")
        self.send_ipv4(ip, ipv4.PROTO_UDP, dgram)
        return len(data)

    def udp_close(self, ep: UdpEndpoint) -> None:
        self.udp_ports.unbind(ep)
        ep.closed = True
        ep.queue.clear()
        ep.queued_bytes = 0

    def _rx_udp(self, ip: ipv4.Ipv4, raw: bytes, broadcast: bool) -> None:
        c = self.counters
        c.inc("udp.rx")
        try:
            dgram = udp.parse(ip.payload, ip.src, ip.dst)
        except Malformed as e:
            c.drop("udp", e.reason)
            return
        ep = self.udp_ports.lookup(ip.dst, dgram.dst_port)
        if ep is None:
            c.drop("udp", "no_port")
            if not broadcast:
                # RFC 1122 4.1.3.1: port unreachable, rate-limited by send_icmp_error.
                self.send_icmp_error(ip, raw, icmp.DEST_UNREACHABLE, icmp.PORT_UNREACHABLE)
            return
        if ep.remote is not None and ep.remote != (ip.src, dgram.src_port):
            c.drop("udp", "not_connected_peer")
            return
        ep.deliver(dgram.payload, (ip.src, dgram.src_port), c)

    def _udp_error(self, reporter: bytes, msg: icmp.Icmp, dst: bytes, inner: bytes) -> None:
        """Linux reports ICMP errors only to connected UDP sockets (no IP_RECVERR)."""
        sport = int.from_bytes(inner[0:2], "big")
        dport = int.from_bytes(inner[2:4], "big")
        ep = self.udp_ports.bound.get(sport)
        if ep is None or ep.remote != (dst, dport) or msg.type != icmp.DEST_UNREACHABLE:
            self.counters.drop("icmp", "no_listener")
            return
        err = UNREACH_ERRNO.get(msg.code, errno.EHOSTUNREACH)
        if msg.code == icmp.FRAG_NEEDED:
            self.counters.inc("udp.rx.icmp_frag_needed")  # path MTU: no error for a datagram socket
            return
        ep.error = err
        self.counters.inc("udp.rx.icmp_error")
