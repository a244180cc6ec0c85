"""UDP endpoints and the port table: the sans-IO half of a datagram socket.

An endpoint is what a socket is inside the stack: an address, an optional
peer, a bounded receive queue and a pending error. Blocking, timeouts and the
Python socket shape live in ``engine/api/sockets.py``, outside the core.
"""

import errno
import random
from collections import deque

from .counters import Counters
from .transport import Readiness, Ready

ANY = b"\x00\x00\x00\x00"
# Linux's default net.ipv4.ip_local_port_range.
EPHEMERAL = (32768, 60999)


class UdpEndpoint:
    __slots__ = ("closed", "error", "local_ip", "local_port", "queue", "queued_bytes", "rcvbuf", "ready", "remote")

    MAX_DATAGRAMS = 1024

    def __init__(self, rcvbuf: int, ready: Readiness) -> None:
        self.ready = ready  # where this endpoint says it became readable
        self.local_ip = ANY
        self.local_port = 0
        self.remote: tuple[bytes, int] | None = None
        self.queue: deque[tuple[bytes, tuple[bytes, int]]] = deque()
        self.queued_bytes = 0
        self.rcvbuf = rcvbuf
        self.error: int | None = None  # errno reported by ICMP, raised by the next call (RFC 1122 4.1.3.3)
        self.closed = False

    @property
    def readable(self) -> bool:
        return bool(self.queue) or self.error is not None

    def deliver(self, data: bytes, source: tuple[bytes, int], counters: Counters) -> None:
        # Bounded like SO_RCVBUF: a full queue drops the newcomer, as Linux does.
        if len(self.queue) >= self.MAX_DATAGRAMS or self.queued_bytes + len(data) > self.rcvbuf:
            counters.drop("udp", "queue_full")
            return
        if not self.queue:
            self.ready.mark(self, Ready.READABLE)  # empty to non-empty: the edge a waiter needs
        self.queue.append((data, source))
        self.queued_bytes += len(data)
        counters.inc("udp.delivered")

    def pop(self) -> tuple[bytes, tuple[bytes, int]]:
        data, source = self.queue.popleft()
        self.queued_bytes -= len(data)
        return data, source

    def take_error(self) -> int | None:
        err, self.error = self.error, None
        return err


class UdpPorts:
    """Which endpoint owns which local port (one per port; no SO_REUSEADDR)."""

    def __init__(self, rng: random.Random, ephemeral: tuple[int, int] = EPHEMERAL) -> None:
        self.rng = rng
        self.ephemeral = ephemeral
        self.bound: dict[int, UdpEndpoint] = {}

    def bind(self, ep: UdpEndpoint, ip: bytes, port: int) -> None:
        if ep.local_port:
            raise OSError(errno.EINVAL, "Invalid argument: socket already bound")
        if not 0 <= port <= 0xFFFF:
            raise OverflowError("bind(): port must be 0-65535.")
        if port == 0:
            port = self._pick()
        elif port in self.bound:
            raise OSError(errno.EADDRINUSE, "Address already in use")
        ep.local_ip = ip
        ep.local_port = port
        self.bound[port] = ep

    def _pick(self) -> int:
        """RFC 6056 3.3.1 (Algorithm 1): a random start, then the next free port."""
        lo, hi = self.ephemeral
        count = hi - lo + 1
        start = self.rng.randrange(count)
        for i in range(count):
            port = lo + (start + i) % count
            if port not in self.bound:
                return port
        raise OSError(errno.EADDRINUSE, "Address already in use: no ephemeral port free")

    def unbind(self, ep: UdpEndpoint) -> None:
        if ep.local_port and self.bound.get(ep.local_port) is ep:
            del self.bound[ep.local_port]

    def lookup(self, ip: bytes, port: int) -> UdpEndpoint | None:
        ep = self.bound.get(port)
        if ep is None or (ep.local_ip != ANY and ep.local_ip != ip):
            return None
        return ep
