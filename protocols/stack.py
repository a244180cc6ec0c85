"""The sans-IO host: frames and time in, frames and a deadline out.

Three inputs drive it, as in aioquic: frames from the wire (``receive``), the
timer (``on_timer`` at ``next_deadline()``), and calls from applications
(ping, sockets). ``transmit()`` hands back what to put on the wire. It never
reads a clock or a file descriptor and draws randomness only from the ``rng``
it is given, so one input sequence always gives the same output bytes. Every
entry point that can send, schedule or rate-limit takes ``now``: the stack
keeps no clock of its own that a quiet spell could leave behind.

The stack itself is Ethernet, ARP, IPv4 and the routing table. Transports
(ICMP, UDP, TCP) register themselves (``register``, see ``transport.py``), so
the receive path and the timer dispatch know none of them by name.

A stack has one interface or several (``StackConfig.interfaces``, see
``interface.py``): frames come in with the index of the interface they
arrived on (``receive(frame, now, iface)``) and leave from a queue per
interface (``transmit(iface)``, ``transmit_all()``). With ``forward`` on, a
datagram for another host is routed on (``forwarding.py``, RFC 1812).
"""

import errno
import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import cached_property, partial

from . import arp, ethernet, icmp, ipv4
from .addresses import BROADCAST_IP, BROADCAST_MAC, ZERO_IP, ZERO_MAC, is_multicast_mac, netmask
from .arp_cache import ArpConfig, NeighborCache
from .counters import Counters
from .errors import Malformed
from .forwarding import Forwarder
from .fragments import Reassembler, ReassemblyConfig, fragment
from .icmp_layer import EchoEndpoint, EchoReply, IcmpErrorEvent, IcmpLayer
from .interface import Interface, Port
from .ratelimit import IcmpErrorLimiter
from .routes import NextHop, NoRoute, RoutingTable
from .tcp_conn import TcpConfig
from .tcp_layer import TcpLayer
from .timers import Timers
from .transport import Readiness, Transport
from .udp_layer import UNREACH_ERRNO, UdpLayer

__all__ = ["UNREACH_ERRNO", "EchoEndpoint", "EchoReply", "IcmpErrorEvent", "Interface", "NoRoute", "Stack", "StackConfig"]

_CONFIG_IFACE_FIELDS = ("mac", "ip", "prefix_len", "mtu", "vlan")  # StackConfig's own fields: interface 0's

ICMP_ERROR_MAX = 576  # RFC 1812 4.3.2.3: an ICMP error SHOULD fit in 576 bytes


@dataclass(frozen=True)
class StackConfig:
    mac: bytes
    ip: bytes
    prefix_len: int = 24
    gateway: bytes | None = None
    mtu: int = 1500
    ttl: int = 64
    # RFC 1191 3 and Linux's route/min_pmtu: a "fragmentation needed" never lowers a path MTU below this
    min_pmtu: int = 552
    vlan: int | None = None  # tag every frame with this VID and accept only it
    arp: ArpConfig = field(default_factory=ArpConfig)
    reassembly: ReassemblyConfig = field(default_factory=ReassemblyConfig)
    echo_ignore_broadcasts: bool = True  # Linux icmp_echo_ignore_broadcasts
    udp_rcvbuf: int = 212992  # Linux's default rmem_default
    routes: tuple[tuple[bytes, int, bytes], ...] = ()  # static routes: (network, prefix length, gateway)
    tcp: TcpConfig = field(default_factory=TcpConfig)
    # Several interfaces, the first of which the fields above describe too (``StackConfig.of`` builds both);
    # empty: one interface, made of those fields.
    interfaces: tuple[Interface, ...] = ()
    # RFC 1122 1.1.4: a host may route, but only when configured to; off by default, as on Linux (ip_forward=0).
    forward: bool = False

    def __post_init__(self) -> None:
        if self.interfaces:
            first = self.interfaces[0]
            wrong = [name for name in _CONFIG_IFACE_FIELDS if getattr(first, name) != getattr(self, name)]
            if wrong:
                raise ValueError(f"StackConfig.{wrong[0]} differs from interfaces[0].{wrong[0]}: the top-level fields "
                                 "are the first interface's (build the config with StackConfig.of)")

    @classmethod
    def of(cls, interfaces: "tuple[Interface, ...] | list[Interface]", **settings: object) -> "StackConfig":
        """A config with these interfaces, the top-level address fields taken from the first."""
        if not interfaces:
            raise ValueError("a stack needs at least one interface")
        first = interfaces[0]
        own = {name: getattr(first, name) for name in _CONFIG_IFACE_FIELDS}
        return cls(**own, interfaces=tuple(interfaces), **settings)  # type: ignore[arg-type]

    @cached_property
    def ifaces(self) -> tuple[Interface, ...]:
        """Every interface, the first one first."""
        return self.interfaces or (Interface(self.mac, self.ip, self.prefix_len, self.mtu, self.vlan),)

    # Cached: read on every packet, and the config never changes.
    @cached_property
    def netmask(self) -> int:
        return netmask(self.prefix_len)

    @cached_property
    def subnet_broadcast(self) -> bytes:
        net = int.from_bytes(self.ip, "big") & self.netmask
        return (net | (~self.netmask & 0xFFFFFFFF)).to_bytes(4, "big")

    @cached_property
    def network(self) -> int:
        return int.from_bytes(self.ip, "big") & self.netmask

    @cached_property
    def network_address(self) -> bytes:
        """The subnet's own address (10.0.0.0 in 10.0.0.0/24): never a host's source (RFC 1122 3.2.1.3)."""
        return self.network.to_bytes(4, "big")

    def on_link(self, ip: bytes) -> bool:
        return int.from_bytes(ip, "big") & self.netmask == self.network


class Stack:
    def __init__(self, config: StackConfig, rng: random.Random | None = None, now: float = 0.0) -> None:
        self.config = config
        self.rng = rng if rng is not None else random.Random(0)
        self.counters = Counters()
        self.timers = Timers()
        self.ready = Readiness()
        self._ip_id = self.rng.randrange(0x10000)
        self._icmp_limiter = IcmpErrorLimiter()
        self.ports = [Port(i, iface) for i, iface in enumerate(config.ifaces)]
        self._local = {port.ip: port for port in self.ports}  # our own addresses
        self.routes = RoutingTable()
        # RFC 1122 3.3.1.1: each connected prefix is on-link; everything else goes via a gateway,
        # out of the interface whose subnet holds that gateway.
        for port in self.ports:
            self.routes.add(port.ip, port.prefix_len, None, port.ip, port.mtu, port.index)
        for network, length, via in config.routes:
            port = self.port_towards(via)
            self.routes.add(network, length, via, port.ip, port.mtu, port.index)
        if config.gateway is not None:
            port = self.port_towards(config.gateway)
            self.routes.add(ZERO_IP, 0, config.gateway, port.ip, port.mtu, port.index)
        self._timer_handlers: dict[str, Callable[[Hashable, float], None]] = {}
        for port in self.ports:
            kind = "arp" if port.index == 0 else f"arp{port.index}"
            port.arp = NeighborCache(config.arp, self.timers, self.counters, partial(self._send_arp_request, port),
                                     partial(self._deliver_queued, port), partial(self._unresolved, port), kind)
            self._timer_handlers[kind] = port.arp.on_timer  # type: ignore[assignment]
        self.arp = self.ports[0].arp
        self.reassembler = Reassembler(config.reassembly, self.timers, self.counters, self._reassembly_expired)
        self.forwarder = Forwarder(self) if config.forward else None
        # Dispatch tables, one per layer (the role of scapy's bind_layers).
        self._ethertypes: dict[int, Callable[[ethernet.Ethernet, Port, float], None]] = {
            ethernet.TYPE_ARP: self._rx_arp,
            ethernet.TYPE_IPV4: self._rx_ipv4,
        }
        self._transports: dict[int, Transport] = {}
        self._timer_handlers["frag"] = self.reassembler.on_timer  # type: ignore[assignment]
        self.icmp = IcmpLayer(config.echo_ignore_broadcasts)
        self.udp = UdpLayer(config.udp_rcvbuf)
        self.tcp = TcpLayer(config.tcp)
        self.register(self.icmp)
        self.register(self.udp)
        self.register(self.tcp)
        # Some interface completes TCP checksums itself: TCP asks the route before it leaves one partial.
        self.tcp.offload = any(port.tso_max for port in self.ports)
        self.rx_csum_ok = False  # the frame being received came with its transport checksum vouched for

    def register(self, transport: Transport) -> None:
        """Take datagrams of ``transport.protocol``, its ICMP errors and its timers from now on."""
        if transport.protocol in self._transports:
            raise ValueError(f"IP protocol {transport.protocol} already has a transport")
        if transport.name in self._timer_handlers:
            raise ValueError(f"timer kind {transport.name!r} is taken")
        self._transports[transport.protocol] = transport
        self._timer_handlers[transport.name] = transport.on_timer
        transport.attach(self)

    def transport_for(self, protocol: int) -> Transport | None:
        return self._transports.get(protocol)

    def tso_max(self, iface: int) -> int:
        """The longest TCP payload interface ``iface`` takes in one frame with offload; 0 without."""
        return self.ports[iface].tso_max

    def port_towards(self, gateway: bytes) -> Port:
        """The interface whose subnet holds ``gateway`` (RFC 1812 5.2.4.3: a next hop is on a connected network).

        The first interface when none does, as a single-interface host always had it.
        """
        return next((port for port in self.ports if port.on_link(gateway)), self.ports[0])

    # -- the sans-IO interface --------------------------------------------
    def receive(self, frame: bytes, now: float, iface: int = 0, csum_ok: bool = False) -> None:
        """``frame`` arrived on interface ``iface`` (an index into ``config.ifaces``).

        ``csum_ok``: the device vouches for the TCP or UDP checksum, so the transport skips it (a TAP with
        offload: the kernel checked it, or left it partial in a segment of its own that never left the host).
        The IPv4 header checksum is checked all the same.
        """
        self.rx_csum_ok = csum_ok
        port = self.ports[iface]
        c = self.counters
        c.inc("eth.rx")
        try:
            eth = ethernet.parse(frame)
        except Malformed as e:
            c.drop("eth", e.reason)
            return
        dst = eth.dst
        if dst != port.mac and dst != BROADCAST_MAC:
            c.drop("eth", "multicast" if is_multicast_mac(dst) else "not_for_us")
            return
        # IEEE 802.1Q: VID 0 is a priority tag on an untagged frame.
        if (eth.vlan or None) != port.vlan:
            c.drop("eth", "wrong_vlan")
            return
        handler = self._ethertypes.get(eth.ethertype)
        if handler is None:
            c.drop("eth", "unknown_ethertype")
            return
        handler(eth, port, now)

    def transmit(self, iface: int = 0) -> list[bytes]:
        """The frames to send on interface ``iface``, oldest first."""
        port = self.ports[iface]
        out, port.out = port.out, []
        return out

    def transmit_all(self) -> list[tuple[int, bytes]]:
        """The frames to send on every interface, as (interface index, frame); each interface's in order."""
        out: list[tuple[int, bytes]] = []
        for port in self.ports:
            if port.out:
                out.extend((port.index, frame) for frame in port.out)
                port.out = []
        return out

    def next_deadline(self) -> float | None:
        return self.timers.next_deadline()

    def on_timer(self, now: float) -> None:
        for key in self.timers.pop_due(now):
            kind, arg = key
            self._timer_handlers[kind](arg, now)

    # -- applications (kept for the ping tools; the layers are the API) ---------
    def open_echo(self, identifier: int | None = None) -> EchoEndpoint:
        return self.icmp.open_echo(identifier)

    def send_echo_request(self, dst: bytes, identifier: int, sequence: int, data: bytes, now: float) -> None:
        self.icmp.send_echo_request(dst, identifier, sequence, data, now)

    # -- Ethernet / ARP ----------------------------------------------------
    def _send_frame(self, port: Port, dst: bytes, ethertype: int, payload: bytes) -> None:
        port.out.append(ethernet.emit(ethernet.Ethernet(dst=dst, src=port.mac, ethertype=ethertype, payload=payload,
                                                        vlan=port.vlan)))
        self.counters.inc("eth.tx")

    def _send_arp_request(self, port: Port, ip: bytes, unicast_mac: bytes | None) -> None:
        self.counters.inc("arp.tx.request")
        req = arp.Arp(op=arp.REQUEST, sha=port.mac, spa=port.ip, tha=ZERO_MAC, tpa=ip)
        self._send_frame(port, unicast_mac or BROADCAST_MAC, ethernet.TYPE_ARP, arp.emit(req))

    def _deliver_queued(self, port: Port, mac: bytes, packet: bytes) -> None:
        self._send_frame(port, mac, ethernet.TYPE_IPV4, packet)

    def _unresolved(self, port: Port, ip: bytes, packets: list[bytes], now: float) -> None:
        """RFC 1122 2.3.2.2 / 3.2.2.1: the local sender learns the host is unreachable.

        A datagram this stack was forwarding goes back to its source as an ICMP
        host unreachable instead (RFC 1812 5.2.7.1).
        """
        note = icmp.Icmp(type=icmp.DEST_UNREACHABLE, code=icmp.HOST_UNREACHABLE)
        for packet in packets:
            if packet[12:16] not in self._local:
                if self.forwarder is not None:
                    self.forwarder.unresolved(packet, now)
                continue
            hlen = (packet[0] & 0x0F) * 4
            transport = self._transports.get(packet[9])
            if transport is not None and len(packet) >= hlen + 8:
                transport.icmp_error(port.ip, note, packet[16:20], packet[hlen:], now)

    def _rx_arp(self, eth: ethernet.Ethernet, port: Port, now: float) -> None:
        c = self.counters
        c.inc("arp.rx")
        try:
            pkt = arp.parse(eth.payload)
        except Malformed as e:
            c.drop("arp", e.reason)
            return
        me = port.ip
        if pkt.op not in (arp.REQUEST, arp.REPLY):
            c.drop("arp", "bad_op")
            return
        if pkt.sha == port.mac:
            c.drop("arp", "own_frame")
            return
        if pkt.spa == me:
            c.drop("arp", "address_conflict")
            return
        if pkt.sha == BROADCAST_MAC or is_multicast_mac(pkt.sha):
            c.drop("arp", "bad_sender")
            return
        for_us = pkt.tpa == me
        # What to learn is Linux's policy (arp_process with arp_accept=0):
        # - RFC 5227 probes carry sender 0.0.0.0: nothing to learn from them;
        # - only a sender on our own subnet, and not its network or broadcast
        #   address, can be a neighbour (a forged off-link sender is not);
        # - a request for us creates an entry (RFC 826 "add"); a reply creates
        #   none, since we never asked, or it would update the entry we have;
        # - an existing entry is updated by any ARP packet from its address,
        #   gratuitous ARP included (RFC 826 "merge"); a packet naming us
        #   confirms it (REACHABLE), any other one leaves it STALE to re-verify.
        if pkt.spa != ZERO_IP and port.is_neighbour(pkt.spa):
            confirmed = for_us and (pkt.op == arp.REQUEST or pkt.tha == port.mac)
            port.arp.learn(pkt.spa, pkt.sha, now, confirmed=confirmed, create=for_us and pkt.op == arp.REQUEST)
        elif pkt.spa != ZERO_IP:
            c.inc("arp.rx.not_a_neighbour")
        if not for_us:
            c.inc("arp.rx.not_for_us")
            return
        if pkt.op == arp.REQUEST:
            # RFC 826: swap the fields, fill in our address, set the opcode to reply.
            reply = arp.Arp(op=arp.REPLY, sha=port.mac, spa=me, tha=pkt.sha, tpa=pkt.spa)
            c.inc("arp.tx.reply")
            self._send_frame(port, pkt.sha, ethernet.TYPE_ARP, arp.emit(reply))

    # -- IPv4 --------------------------------------------------------------
    def route(self, dst: bytes) -> NextHop:
        """Next hop, source address and MTU for ``dst`` from the routing table; raises ``NoRoute``."""
        return self.routes.lookup(dst)

    def is_local(self, ip: bytes) -> bool:
        """Is ``ip`` one of this host's own addresses (on any interface)?"""
        return ip in self._local

    def next_ip_id(self) -> int:
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        return self._ip_id

    def send_ipv4(self, dst: bytes, protocol: int, payload: bytes, now: float, *, src: bytes | None = None,
                  tos: int = 0, ttl: int | None = None, df: bool = False) -> None:
        """Route, build, fragment if needed (RFC 791 3.2) and send one datagram.

        Raises NoRoute, or OSError(EMSGSIZE) for an oversized DF datagram or one
        that no IPv4 header can describe.
        """
        hop = self.routes.lookup(dst)
        if len(payload) + ipv4.MIN_HEADER > ipv4.MAX_PACKET:
            raise OSError(errno.EMSGSIZE, "Message too long")
        header = ipv4.Ipv4(src=hop.src if src is None else src, dst=dst, protocol=protocol, payload=payload,
                           ttl=self.config.ttl if ttl is None else ttl, identification=self.next_ip_id(), tos=tos,
                           df=df)
        mtu = hop.mtu
        port = self.ports[hop.iface]
        # A TCP segment longer than the MTU on an offload interface: the device cuts it (GSO).
        if ipv4.MIN_HEADER + len(payload) <= mtu or (port.tso_max and protocol == ipv4.PROTO_TCP):
            self.counters.inc("ipv4.tx")
            self.output(port, hop.next_hop, ipv4.emit(header), now)
            return
        if df:
            raise OSError(errno.EMSGSIZE, "Message too long")
        for piece in fragment(header, mtu):
            self.counters.inc("ipv4.tx")
            self.counters.inc("ipv4.frag.tx")
            self.output(port, hop.next_hop, ipv4.emit(piece), now)

    def output(self, port: Port, next_hop: bytes, packet: bytes, now: float) -> None:
        """Send one IPv4 packet out of ``port`` to ``next_hop``, resolving it with that link's ARP."""
        if next_hop == BROADCAST_IP or next_hop == port.subnet_broadcast:
            self._send_frame(port, BROADCAST_MAC, ethernet.TYPE_IPV4, packet)
            return
        mac = port.arp.resolve(next_hop, packet, now)
        if mac is not None:
            self._send_frame(port, mac, ethernet.TYPE_IPV4, packet)

    def reply_ipv4(self, dst: bytes, protocol: int, payload: bytes, now: float, tos: int = 0,
                   src: bytes | None = None) -> bool:
        """Send in answer to a peer; a peer we cannot route back to is a counted drop."""
        try:
            self.send_ipv4(dst, protocol, payload, now, tos=tos, src=src)
        except NoRoute:
            self.counters.drop("ipv4", "no_route")
            return False
        except OSError:
            self.counters.drop("ipv4", "too_big")
            return False
        return True

    def _rx_ipv4(self, eth: ethernet.Ethernet, port: Port, now: float) -> None:
        c = self.counters
        c.inc("ipv4.rx")
        try:
            ip = ipv4.parse(eth.payload)
        except Malformed as e:
            c.drop("ipv4", e.reason)
            return
        dst = ip.dst
        # RFC 1122 3.2.1.3: ours, limited broadcast or the subnet's broadcast;
        # RFC 1122 3.3.4.2: another interface's address is ours too (the weak host model, as Linux).
        if dst == port.ip:
            broadcast = eth.dst == BROADCAST_MAC
        elif dst == BROADCAST_IP or dst == port.subnet_broadcast:
            broadcast = True
        elif dst in self._local:
            broadcast = eth.dst == BROADCAST_MAC
        else:
            forwarder = self.forwarder
            if forwarder is None:
                c.drop("ipv4", "not_for_us")
                if eth.dst == port.mac:  # sent to us to be routed on: say why it was not
                    c.inc("ipv4.forward.disabled")
                return
            if self._bad_source(ip.src, port):
                c.drop("ipv4", "bad_source")
                return
            forwarder.forward(port, eth, ip, now)
            return
        if self._bad_source(ip.src, port):
            c.drop("ipv4", "bad_source")
            return
        # The datagram's own bytes, kept (not copied) for an ICMP error's quote;
        # send_icmp_error trims them to Total Length.
        raw = eth.payload
        if ip.mf or ip.frag_offset:
            whole = self.reassembler.add(ip, raw, now, broadcast)
            if whole is None:
                return
            ip = whole
            raw = b""  # a reassembled datagram's header exists only as fields until an error needs it
            self.rx_csum_ok = False  # what the device said was about the last fragment, not the datagram
        transport = self._transports.get(ip.protocol)
        if transport is None:
            c.drop("ipv4", "unknown_protocol")
            if not broadcast:
                # RFC 1122 3.2.2.1: protocol unreachable from the destination host.
                self.send_icmp_error(ip, raw, icmp.DEST_UNREACHABLE, icmp.PROTOCOL_UNREACHABLE, now)
            return
        transport.receive(ip, raw, broadcast, now)

    def _bad_source(self, src: bytes, port: Port) -> bool:
        """RFC 1122 3.2.1.3: a source that is broadcast, multicast, loopback or "this network" (0/8).

        So is one of our own addresses arriving from the wire (Linux calls all of these martians).
        """
        src0 = src[0]
        return src == BROADCAST_IP or src == port.subnet_broadcast or 224 <= src0 <= 239 or src0 in (0, 127) \
            or src in self._local or (src == port.network_address and port.prefix_len < 31)

    # -- ICMP errors, for every transport ----------------------------------------
    def send_icmp_error(self, ip: ipv4.Ipv4, raw: bytes, type_: int, code: int, now: float, mtu: int = 0) -> bool:
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
        if not self._icmp_limiter.allow(ip.src, now):
            c.inc("icmp.suppressed.rate_limited")
            return False
        if not raw:
            raw = ipv4.emit(ip)
        limit = ICMP_ERROR_MAX - ipv4.MIN_HEADER - icmp.HEADER_LEN
        quote = raw[: min(limit, ip.total_length or len(raw))]
        msg = icmp.emit(icmp.Icmp(type=type_, code=code, data=quote, next_hop_mtu=mtu))
        if not self.reply_ipv4(ip.src, ipv4.PROTO_ICMP, msg, now):
            return False
        c.inc(f"icmp.tx.error.{type_}.{code}")
        return True

    def _reassembly_expired(self, first: ipv4.Ipv4, raw: bytes, now: float) -> None:
        # RFC 792 / RFC 1122 3.3.2: time exceeded, code 1, only if fragment zero arrived.
        self.send_icmp_error(first, raw, icmp.TIME_EXCEEDED, icmp.REASSEMBLY_EXCEEDED, now)
