"""Socket hosts on a virtual clock: one stack on a simulated wire (a replay), or several on a simulated segment.

A blocking call moves the virtual clock, from one deadline to the next, until
it can return or its timeout passes; readiness callbacks run after every event
on the wire, as the live driver runs them after every batch.
"""

import random
from collections.abc import Callable
from socket import AF_INET, SOCK_STREAM
from typing import Protocol, TypeVar

from simstack.protocols.addresses import ip_to_str
from simstack.protocols.stack import Stack, StackConfig
from simstack.protocols.tcp_conn import TcpConfig
from simstack.protocols.transport import Ready

from ..api.sockets import SocketHost
from ..api.stream import StreamSocket
from ..wire.impair import Impairment, LinkShaper
from ..wire.network import SimNetwork, Station
from ..wire.sim import SimWire, Trace

T = TypeVar("T")


class RunawayCallbacks(RuntimeError):
    """Readiness callbacks kept marking each other ready without the clock moving."""


class _Clock(Protocol):
    """What a virtual host runs on: the simulated wire or the simulated network."""

    now: float

    def next_deadline(self) -> float | None: ...

    def step(self) -> bool: ...

    def advance(self, t: float) -> None: ...


class VirtualHost(SocketHost):
    """A socket host whose clock is virtual; ``clock`` and ``_collect`` are the subclass's."""

    DISPATCH_LIMIT = 10_000  # rounds of callbacks at one instant before the replay calls it a livelock

    def __init__(self, stack: Stack, clock: _Clock, default_wait: float) -> None:
        super().__init__()
        self.stack = stack
        self.clock = clock
        self.default_wait = default_wait  # how long a blocking call without a timeout may wait

    def _collect(self) -> None:
        raise NotImplementedError

    @property
    def now(self) -> float:
        return self.clock.now

    def next_deadline(self) -> float | None:
        return self.clock.next_deadline()

    def step(self) -> bool:
        return self.clock.step()

    def advance(self, t: float) -> None:
        self.clock.advance(t)

    def call(self, fn: Callable[[Stack, float], T]) -> T:
        try:
            return fn(self.stack, self.clock.now)
        finally:
            self._collect()

    def take_ready(self) -> list[tuple[object, Ready]]:
        return self.stack.ready.drain()

    def wait_until(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        clock = self.clock
        limit = clock.now + (self.default_wait if timeout is None else timeout)
        while not ready():
            deadline = clock.next_deadline()
            if deadline is None or deadline > limit:
                clock.advance(limit)
                return ready()
            clock.step()
        return True

    def _dispatch(self) -> None:
        if not self.stack.ready:
            return
        rounds = 0
        while self.dispatch_ready():
            rounds += 64
            if rounds >= self.DISPATCH_LIMIT:
                raise RunawayCallbacks(f"readiness callbacks ran {rounds} rounds at t={self.now:.6f} without settling")


class SimHost(VirtualHost):
    """The host of a replay: one stack, and the runner playing every other host on the wire."""

    def __init__(self, stack: Stack, *, trace: Trace | None = None, keep: Callable[[bytes], bool] | None = None,
                 default_wait: float = 5.0, shaper: LinkShaper | None = None) -> None:
        self.wire = SimWire(stack, trace=trace, keep=keep, shaper=shaper)
        super().__init__(stack, self.wire, default_wait)
        self.wire.after_event = self._dispatch

    def _collect(self) -> None:
        self.wire.collect()


class NetHost(VirtualHost):
    """One simstack on a ``SimNetwork``: a blocking call moves the whole network's clock, so the
    other hosts (and their services' callbacks) keep working while this one waits."""

    def __init__(self, network: SimNetwork, station: Station, default_wait: float = 5.0) -> None:
        super().__init__(station.stack, network, default_wait)
        self.network = network
        self.station = station
        station.after_event = self._dispatch

    def _collect(self) -> None:
        self.network.collect(self.station)


def host_pair(network: SimNetwork, link: Impairment, tcp: TcpConfig | None = None,
              seeds: tuple[int, int] = (1, 2)) -> tuple[NetHost, NetHost]:
    """Hosts ``a`` (10.0.0.1) and ``b`` (10.0.0.2) on one segment, both behind ``link``.

    Two simstacks on one simulated wire is what a transfer test or benchmark
    wants; each stack draws from its own seed, so a run repeats exactly.
    """
    hosts = []
    for n, (name, seed) in enumerate(zip("ab", seeds, strict=True), start=1):
        config = StackConfig(mac=bytes((2, 0, 0, 0, 0, n)), ip=bytes((10, 0, 0, n)), tcp=tcp or TcpConfig())
        hosts.append(NetHost(network, network.attach(name, Stack(config, random.Random(seed)), link)))
    return hosts[0], hosts[1]


def stream_pair(server: NetHost, client: NetHost, port: int = 9,
                timeout: float = 3600.0) -> tuple[StreamSocket, StreamSocket]:
    """A connected client socket on ``client`` and the server's non-blocking end of it on ``server``."""
    listener = server.socket(AF_INET, SOCK_STREAM)
    listener.bind(("", port))
    listener.listen()
    conn_out = client.socket(AF_INET, SOCK_STREAM)
    conn_out.settimeout(timeout)
    conn_out.connect((ip_to_str(server.stack.ports[0].ip), port))
    conn_in, _ = listener.accept()
    conn_in.setblocking(False)
    return conn_out, conn_in


def drain(host: NetHost, conn: StreamSocket, take: Callable[[bytes], None]) -> Callable[[], bool]:
    """Hand what ``conn`` receives to ``take`` as it comes; the result says whether the peer has closed."""
    eof = [False]

    def readable() -> None:
        while True:
            try:
                data = conn.recv(65536)
            except BlockingIOError:
                return
            if not data:
                eof[0] = True
                host.remove_reader(conn)
                return
            take(data)

    host.add_reader(conn, readable)
    return lambda: eof[0]
