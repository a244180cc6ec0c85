"""ICMP as a transport registered with the stack: echo (RFC 792), and errors handed to their senders.

Echo requests are answered here; echo replies and errors that quote an echo
request go to the ``EchoEndpoint`` of their identifier (what ``ping`` reads);
any other error goes to the transport whose datagram it quotes (RFC 1122
3.2.2), looked up in the stack's registry, so a new transport hears its
errors without a change here.
"""

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import icmp, ipv4
from .errors import Malformed
from .transport import Ready

if TYPE_CHECKING:
    from .stack import Stack


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


class EchoEndpoint:
    """What a ping application sees: replies and errors for one identifier."""

    MAX_EVENTS = 1024

    def __init__(self, layer: "IcmpLayer", identifier: int) -> None:
        self.layer = layer
        self.identifier = identifier
        self.events: deque[EchoReply | IcmpErrorEvent] = deque(maxlen=self.MAX_EVENTS)

    def send(self, dst: bytes, sequence: int, data: bytes, now: float) -> None:
        self.layer.send_echo_request(dst, self.identifier, sequence, data, now)

    def close(self) -> None:
        self.layer.endpoints.pop(self.identifier, None)

    def _event(self, event: "EchoReply | IcmpErrorEvent") -> None:
        if not self.events:
            self.layer.stack.ready.mark(self, Ready.READABLE)
        self.events.append(event)


class IcmpLayer:
    name = "icmp"
    protocol = ipv4.PROTO_ICMP

    def __init__(self, echo_ignore_broadcasts: bool = True) -> None:
        self.echo_ignore_broadcasts = echo_ignore_broadcasts  # Linux icmp_echo_ignore_broadcasts
        self.endpoints: dict[int, EchoEndpoint] = {}
        self._stack: Stack | None = None

    def attach(self, stack: "Stack") -> None:
        self._stack = stack

    @property
    def stack(self) -> "Stack":
        assert self._stack is not None, "IcmpLayer used before Stack.register"
        return self._stack

    # -- applications ---------------------------------------------------------------
    def open_echo(self, identifier: int | None = None) -> EchoEndpoint:
        if identifier is None:
            identifier = self.stack.rng.randrange(1, 0x10000)
            while identifier in self.endpoints:
                identifier = identifier % 0xFFFF + 1
        if identifier in self.endpoints:
            raise OSError(98, f"ICMP identifier {identifier} in use")
        ep = self.endpoints[identifier] = EchoEndpoint(self, identifier)
        return ep

    def send_echo_request(self, dst: bytes, identifier: int, sequence: int, data: bytes, now: float) -> None:
        msg = icmp.emit(icmp.Icmp(type=icmp.ECHO_REQUEST, code=0, data=data, identifier=identifier, sequence=sequence))
        self.stack.counters.inc("icmp.tx.echo_request")
        self.stack.send_ipv4(dst, ipv4.PROTO_ICMP, msg, now)

    # -- the transport interface ----------------------------------------------------
    def receive(self, ip: ipv4.Ipv4, raw: bytes, broadcast: bool, now: float) -> None:
        stack = self.stack
        c = stack.counters
        c.inc("icmp.rx")
        try:
            msg = icmp.parse(ip.payload)
        except Malformed as e:
            c.drop("icmp", e.reason)
            return
        t = msg.type
        if t == icmp.ECHO_REQUEST:
            if broadcast and self.echo_ignore_broadcasts:
                c.drop("icmp", "broadcast_echo")
                return
            # RFC 1122 3.2.2.6: same identifier, sequence and data; RFC 792 swaps addresses, so the
            # reply comes from the address the request went to (on a multihomed stack, not the route's).
            reply = icmp.emit(icmp.Icmp(type=icmp.ECHO_REPLY, code=0, data=msg.data, identifier=msg.identifier,
                                        sequence=msg.sequence))
            if stack.reply_ipv4(ip.src, ipv4.PROTO_ICMP, reply, now, tos=ip.tos, src=None if broadcast else ip.dst):
                c.inc("icmp.tx.echo_reply")
        elif t == icmp.ECHO_REPLY:
            ep = self.endpoints.get(msg.identifier)
            if ep is None:
                c.drop("icmp", "no_listener")
                return
            c.inc("icmp.rx.echo_reply")
            ep._event(EchoReply(ip.src, msg.sequence, msg.data, ip.ttl, now))
        elif msg.is_error:
            self._rx_error(ip, msg, now)
        else:
            c.drop("icmp", "unhandled_type")

    def _rx_error(self, ip: ipv4.Ipv4, msg: icmp.Icmp, now: float) -> None:
        """Hand an error to whoever sent the datagram it quotes (RFC 1122 3.2.2)."""
        stack = self.stack
        c = stack.counters
        data = msg.data
        if len(data) < ipv4.MIN_HEADER + 8 or data[0] >> 4 != 4:
            c.drop("icmp", "bad_quote")
            return
        hlen = (data[0] & 0x0F) * 4
        if hlen < ipv4.MIN_HEADER or len(data) < hlen + 8 or not stack.is_local(data[12:16]):
            c.drop("icmp", "bad_quote")
            return
        c.inc("icmp.rx.error")
        transport = stack.transport_for(data[9])
        if transport is None:
            c.drop("icmp", "no_listener")
            return
        if msg.type == icmp.DEST_UNREACHABLE and msg.code == icmp.FRAG_NEEDED and \
                msg.next_hop_mtu < stack.config.min_pmtu:
            # A forged "fragmentation needed" with a tiny MTU would cut every segment to a few octets: the
            # path MTU stops at a floor, as Linux's min_pmtu (552) does (RFC 1191 3, RFC 5927 7.1)
            c.inc("icmp.rx.pmtu_floor")
            msg = msg._replace(next_hop_mtu=stack.config.min_pmtu)
        transport.icmp_error(ip.src, msg, data[16:20], data[hlen:], now)

    def icmp_error(self, reporter: bytes, msg: icmp.Icmp, dst: bytes, inner: bytes, now: float) -> None:
        if inner[0] != icmp.ECHO_REQUEST:
            self.stack.counters.drop("icmp", "no_listener")
            return
        ep = self.endpoints.get(int.from_bytes(inner[4:6], "big"))
        if ep is None:
            self.stack.counters.drop("icmp", "no_listener")
            return
        ep._event(IcmpErrorEvent(reporter, msg.type, msg.code, int.from_bytes(inner[6:8], "big"), now))

    def on_timer(self, arg: Hashable, now: float) -> None:
        raise AssertionError("ICMP schedules no timers")
