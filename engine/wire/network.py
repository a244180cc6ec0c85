"""Several sans-IO stacks on one simulated segment, each link impaired in its own way, on one virtual clock.

A scenario's runner plays every host but the stack; this plays none: every
host is a simstack, and frames pass between them through a hub (each stack
keeps what is addressed to it). Each host's outgoing frames go through its
own ``Impairer`` (loss, duplication, reordering, delay, corruption, rate),
drawn from one seeded rng, so a run with the same seed repeats exactly: the
same frames, at the same virtual times, in the same order.
"""

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from simstack.protocols.stack import Stack

from . import vnet
from .impair import Impairer, Impairment

NetTrace = Callable[[float, str, str, bytes], None]  # (time, host name, ">" sent | "<" delivered, frame)


@dataclass
class Station:
    name: str
    stack: Stack
    impairer: Impairer
    after_event: Callable[[], None] | None = None  # the host's readiness dispatch
    sent: int = 0
    delivered: int = 0
    counts: dict[str, int] = field(default_factory=dict)


class SimNetwork:
    def __init__(self, seed: int = 0, trace: NetTrace | None = None) -> None:
        self.now = 0.0
        self.rng = random.Random(seed)
        self.trace = trace
        self.stations: list[Station] = []
        self._frames: list[tuple[float, int, int, bytes]] = []  # (when, seq, sender index, frame)
        self._calls: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def attach(self, name: str, stack: Stack, impair: Impairment | None = None) -> Station:
        """Put ``stack`` on the segment; ``impair`` applies to what it sends."""
        # Each link draws from its own rng, seeded from the network's, so adding
        # traffic on one link does not change the fate of frames on another.
        rng = random.Random(self.rng.getrandbits(64))
        station = Station(name, stack, Impairer(impair or Impairment(), rng))
        self.stations.append(station)
        return station

    # -- frames ---------------------------------------------------------------------
    def collect(self, station: Station) -> None:
        index = self.stations.index(station)
        offload = station.stack.ports[0].tso_max > 0  # the checksums it left partial: this wire completes them
        for frame in station.stack.transmit():
            if offload:
                frame = vnet.complete(frame)
            station.sent += 1
            if self.trace:
                self.trace(self.now, station.name, ">", frame)
            for when, out in station.impairer.apply(frame, self.now):
                heapq.heappush(self._frames, (when, next(self._seq), index, out))

    def settle(self, station: Station) -> None:
        if station.after_event is not None:
            station.after_event()
        self.collect(station)

    # -- time -----------------------------------------------------------------------
    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._calls, (when, next(self._seq), fn))

    def next_deadline(self) -> float | None:
        times = [s.stack.next_deadline() for s in self.stations]
        if self._frames:
            times.append(self._frames[0][0])
        if self._calls:
            times.append(self._calls[0][0])
        known = [t for t in times if t is not None]
        return min(known) if known else None

    def step(self) -> bool:
        """Move to the next event and run everything due then; False when nothing is left to happen."""
        t = self.next_deadline()
        if t is None:
            return False
        self.now = max(self.now, t)
        now = self.now
        while self._frames and self._frames[0][0] <= now:
            _, _, sender, frame = heapq.heappop(self._frames)
            for i, station in enumerate(self.stations):
                if i == sender:
                    continue
                station.delivered += 1
                if self.trace:
                    self.trace(now, station.name, "<", frame)
                station.stack.receive(frame, now)
                self.settle(station)
        for station in self.stations:
            deadline = station.stack.next_deadline()
            if deadline is not None and deadline <= now:
                station.stack.on_timer(now)
                self.settle(station)
        while self._calls and self._calls[0][0] <= now:
            _, _, fn = heapq.heappop(self._calls)
            fn()
            for station in self.stations:
                self.settle(station)
        return True

    def advance(self, t: float) -> None:
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > t:
                break
            self.step()
        self.now = max(self.now, t)

    def run_until(self, done: Callable[[], bool], limit: float) -> bool:
        """Step until ``done()`` or the clock would pass ``limit``; the final ``done()``."""
        while not done():
            deadline = self.next_deadline()
            if deadline is None or deadline > limit:
                return done()
            self.step()
        return True
