"""The socket host of a replay: sockets, services and asyncio on a simulated wire's virtual clock.

A blocking call moves the virtual clock, from one deadline to the next, until
it can return or its timeout passes; readiness callbacks run after every event
on the wire, as the live driver runs them after every batch.
"""

from collections.abc import Callable
from typing import TypeVar

from simstack.protocols.stack import Stack
from simstack.protocols.transport import Ready

from ..api.sockets import SocketHost
from ..wire.impair import LinkShaper
from ..wire.network import SimNetwork, Station
from ..wire.sim import SimWire, Trace

T = TypeVar("T")


class RunawayCallbacks(RuntimeError):
    """Readiness callbacks kept marking each other ready without the clock moving."""


class SimHost(SocketHost):
    DISPATCH_LIMIT = 10_000  # rounds of callbacks at one instant before the replay calls it a livelock

    def __init__(self, stack: Stack, *, trace: Trace | None = None, keep: Callable[[bytes], bool] | None = None,
                 default_wait: float = 5.0, shaper: LinkShaper | None = None) -> None:
        super().__init__()
        self.stack = stack
        self.wire = SimWire(stack, trace=trace, keep=keep, shaper=shaper)
        self.wire.after_event = self._dispatch
        self.default_wait = default_wait  # how long a blocking call without a timeout may wait

    @property
    def now(self) -> float:
        return self.wire.now

    def next_deadline(self) -> float | None:
        return self.wire.next_deadline()

    def step(self) -> bool:
        return self.wire.step()

    def advance(self, t: float) -> None:
        self.wire.advance(t)

    def call(self, fn: Callable[[Stack, float], T]) -> T:
        try:
            return fn(self.stack, self.wire.now)
        finally:
            self.wire.collect()

    def take_ready(self) -> list[tuple[object, Ready]]:
        return self.stack.ready.drain()

    def wait_until(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        wire = self.wire
        limit = wire.now + (self.default_wait if timeout is None else timeout)
        while not ready():
            deadline = wire.next_deadline()
            if deadline is None or deadline > limit:
                wire.advance(limit)
                return ready()
            wire.step()
        return True

    def _dispatch(self) -> None:
        rounds = 0
        while self.dispatch_ready():
            rounds += 64
            if rounds >= self.DISPATCH_LIMIT:
                raise RunawayCallbacks(f"readiness callbacks ran {rounds} rounds at t={self.now:.6f} without settling")


class NetHost(SocketHost):
    """The socket host of one simstack on a ``SimNetwork``: several hosts, one virtual clock.

    A blocking call moves the whole network's clock, so the other hosts (and
    their services' callbacks) keep working while this one waits.
    """

    def __init__(self, network: SimNetwork, station: Station, default_wait: float = 5.0) -> None:
        super().__init__()
        self.network = network
        self.station = station
        self.stack = station.stack
        self.default_wait = default_wait
        station.after_event = self._dispatch

    @property
    def now(self) -> float:
        return self.network.now

    def next_deadline(self) -> float | None:
        return self.network.next_deadline()

    def step(self) -> bool:
        return self.network.step()

    def advance(self, t: float) -> None:
        self.network.advance(t)

    def call(self, fn: Callable[[Stack, float], T]) -> T:
        try:
            return fn(self.stack, self.network.now)
        finally:
            self.network.collect(self.station)

    def take_ready(self) -> list[tuple[object, Ready]]:
        return self.stack.ready.drain()

    def wait_until(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        limit = self.network.now + (self.default_wait if timeout is None else timeout)
        if not self.network.run_until(ready, limit):
            self.network.advance(limit)
            return ready()
        return True

    def _dispatch(self) -> None:
        rounds = 0
        while self.dispatch_ready():
            rounds += 64
            if rounds >= SimHost.DISPATCH_LIMIT:
                raise RunawayCallbacks(f"readiness callbacks ran {rounds} rounds at t={self.now:.6f} without settling")
