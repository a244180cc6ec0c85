"""UDP as a transport registered with the stack: demultiplexing, sending, ICMP errors.

The application side of a datagram socket: ``open``, ``bind``, ``connect``,
``send`` and ``close`` on a ``UdpEndpoint``, each taking ``now`` where it can
send. Blocking and the Python socket shape live in ``engine/api/sockets.py``.
"""

import errno
import os
from collections.abc import Hashable
from typing import TYPE_CHECKING

from . import icmp, ipv4, udp
from .errors import Malformed
from .transport import Ready
from .udp_ports import ANY, UdpEndpoint, UdpPorts

if TYPE_CHECKING:
    from .stack import Stack

# ICMP destination-unreachable codes as the errno a socket reports (Linux icmp_err_convert).
UNREACH_ERRNO = {
    icmp.NET_UNREACHABLE: errno.ENETUNREACH,
    icmp.HOST_UNREACHABLE: errno.EHOSTUNREACH,
    icmp.PROTOCOL_UNREACHABLE: errno.ENOPROTOOPT,
    icmp.PORT_UNREACHABLE: errno.ECONNREFUSED,
    icmp.FRAG_NEEDED: errno.EMSGSIZE,
}


class UdpLayer:
    name = "udp"
    protocol = ipv4.PROTO_UDP

    def __init__(self, rcvbuf: int = 212992) -> None:
        self.rcvbuf = rcvbuf  # Linux's default rmem_default
        self.ports: UdpPorts | None = None
        self._stack: Stack | None = None

    def attach(self, stack: "Stack") -> None:
        self._stack = stack
        self.ports = UdpPorts(stack.rng)

    @property
    def stack(self) -> "Stack":
        assert self._stack is not None, "UdpLayer used before Stack.register"
        return self._stack

    # -- applications ---------------------------------------------------------
    def open(self) -> UdpEndpoint:
        return UdpEndpoint(self.rcvbuf, self.stack.ready)

    def bind(self, ep: UdpEndpoint, ip: bytes, port: int) -> None:
        if ip != ANY and not self.stack.is_local(ip):
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        assert self.ports is not None
        self.ports.bind(ep, ip, port)

    def connect(self, ep: UdpEndpoint, ip: bytes, port: int, now: float) -> None:
        if not 0 < port <= 0xFFFF:
            raise OSError(errno.EINVAL, "Invalid argument")
        hop = self.stack.route(ip)
        assert self.ports is not None
        if not ep.local_port:
            self.ports.bind(ep, ANY, 0)
        if ep.local_ip == ANY:
            # As Linux's ip4_datagram_connect: the route's source address becomes
            # the local one, for getsockname and for what the socket receives.
            ep.local_ip = hop.src
        ep.remote = (ip, port)
        ep.error = None

    def send(self, ep: UdpEndpoint, data: bytes, dst: tuple[bytes, int] | None, now: float) -> int:
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
        stack = self.stack
        hop = stack.route(ip)
        if not ep.local_port:
            assert self.ports is not None
            self.ports.bind(ep, ANY, 0)
        src = hop.src if ep.local_ip == ANY else ep.local_ip
        dgram = udp.emit(udp.Udp(src_port=ep.local_port, dst_port=port, payload=data), src, ip)
        stack.counters.inc("udp.tx")
        stack.send_ipv4(ip, ipv4.PROTO_UDP, dgram, now, src=src)
        return len(data)

    def close(self, ep: UdpEndpoint, now: float) -> None:
        assert self.ports is not None
        self.ports.unbind(ep)
        ep.closed = True
        ep.queue.clear()
        ep.queued_bytes = 0

    # -- the transport interface --------------------------------------------------
    def receive(self, ip: ipv4.Ipv4, raw: bytes, broadcast: bool, now: float) -> None:
        stack = self.stack
        c = stack.counters
        c.inc("udp.rx")
        try:
            dgram = udp.parse(ip.payload, ip.src, ip.dst, not stack.rx_csum_ok)
        except Malformed as e:
            c.drop("udp", e.reason)
            return
        assert self.ports is not None
        ep = self.ports.lookup(ip.dst, dgram.dst_port)
        if ep is None:
            c.drop("udp", "no_port")
            if not broadcast:
                # RFC 1122 4.1.3.1: port unreachable, rate-limited by send_icmp_error.
                stack.send_icmp_error(ip, raw, icmp.DEST_UNREACHABLE, icmp.PORT_UNREACHABLE, now)
            return
        if ep.remote is not None and ep.remote != (ip.src, dgram.src_port):
            c.drop("udp", "not_connected_peer")
            return
        ep.deliver(dgram.payload, (ip.src, dgram.src_port), c)

    def icmp_error(self, reporter: bytes, msg: icmp.Icmp, dst: bytes, inner: bytes, now: float) -> None:
        """Linux reports ICMP errors only to connected UDP sockets (no IP_RECVERR)."""
        sport = int.from_bytes(inner[0:2], "big")
        dport = int.from_bytes(inner[2:4], "big")
        assert self.ports is not None
        ep = self.ports.bound.get(sport)
        c = self.stack.counters
        if ep is None or ep.remote != (dst, dport) or msg.type != icmp.DEST_UNREACHABLE:
            c.drop("icmp", "no_listener")
            return
        if msg.code == icmp.FRAG_NEEDED:
            c.inc("udp.rx.icmp_frag_needed")  # path MTU: no error for a datagram socket
            return
        ep.error = UNREACH_ERRNO.get(msg.code, errno.EHOSTUNREACH)
        self.stack.ready.mark(ep, Ready.READABLE | Ready.ERROR)
        c.inc("udp.rx.icmp_error")

    def on_timer(self, arg: Hashable, now: float) -> None:
        raise AssertionError("UDP schedules no timers")
