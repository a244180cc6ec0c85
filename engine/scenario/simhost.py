"""Socket hosts on a virtual clock: one stack on a simulated wire (a replay), or several on a simulated segment.

A blocking call moves the virtual clock, from one deadline to the next, until
it can return or its timeout passes; readiness callbacks run after every event
on the wire, as the live driver runs them after every batch.
"""

from collections.abc import Callable
from typing import Protocol, TypeVar

from simstack.protocols.stack import Stack
from simstack.protocols.transport import Ready

from ..api.sockets import SocketHost
from ..wire.impair import LinkShaper
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
