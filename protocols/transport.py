"""What a transport (UDP, ICMP echo, TCP) plugs into the stack with, and the readiness it reports.

The stack knows no transport by name. Each one registers itself
(``Stack.register``) with the IP protocol number it takes, its receive
handler, its ICMP-error handler and its timer kind; ``Stack.receive``,
``_rx_ipv4`` and the timer dispatch only look these up. Adding TCP is one
``register`` call, the way scapy's ``bind_layers`` adds a layer.

Readiness is data, not polling: an endpoint that becomes readable, writable,
acceptable, connected or hung up says so with ``Readiness.mark``; a host
(the live driver, the replay runner) drains the set after each batch of
frames, timers and calls, outside the stack's locked section, and runs its
callbacks there. A callback that calls back into the stack only marks
more endpoints; it never re-enters the drain.
"""

from collections.abc import Hashable
from enum import IntFlag
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from . import icmp, ipv4
    from .stack import Stack


class Ready(IntFlag):
    """What changed for an endpoint, as poll(2) would report it."""

    READABLE = 1  # data, a datagram, or a pending error: a receive would not block
    WRITABLE = 2  # send space: a send would not block
    ACCEPTABLE = 4  # a listening endpoint has a connection to accept
    CONNECTED = 8  # an active open completed
    HUP = 16  # the peer closed or the connection is gone
    ERROR = 32  # an error is pending (SO_ERROR)


class Readiness:
    """The set of endpoints whose readiness changed since the host last drained it."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: dict[Any, Ready] = {}  # insertion-ordered, so hosts see marks in the order they happened

    def mark(self, endpoint: Any, what: Ready) -> None:
        # Every received segment of a connection being read marks it, and an IntFlag's | (and the Ready(0)
        # it would start from) costs a lookup in the enum's tables: combine only what is already there.
        pending = self._pending
        old = pending.get(endpoint)
        pending[endpoint] = what if old is None or old is what else old | what

    def drain(self) -> list[tuple[Any, Ready]]:
        out = list(self._pending.items())
        self._pending.clear()
        return out

    def __bool__(self) -> bool:
        return bool(self._pending)

    def __len__(self) -> int:
        return len(self._pending)


class Transport(Protocol):
    """One protocol above IPv4, registered with ``Stack.register``.

    Every method that can send, schedule or rate-limit takes ``now``.
    ``name`` is the timer kind (``stack.timers.schedule((name, arg), when)``
    calls ``on_timer(arg, now)``) and the prefix of its counters.
    """

    name: str
    protocol: int  # IP protocol number (RFC 790 / IANA)

    def attach(self, stack: "Stack") -> None:
        """Called once by ``Stack.register``; keep the stack to send and schedule with."""

    def receive(self, ip: "ipv4.Ipv4", raw: bytes, broadcast: bool, now: float) -> None:
        """A datagram for this protocol; ``raw`` is its bytes for an ICMP error's quote (empty if reassembled)."""

    def icmp_error(self, reporter: bytes, msg: "icmp.Icmp", dst: bytes, inner: bytes, now: float) -> None:
        """An ICMP error quoting a datagram we sent to ``dst``; ``inner`` starts at that datagram's transport header."""

    def on_timer(self, arg: Hashable, now: float) -> None:
        """A timer this transport scheduled as ``(name, arg)`` is due."""
