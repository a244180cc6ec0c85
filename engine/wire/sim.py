"""The simulated wire: one sans-IO stack on a virtual clock.

Time moves only when asked, and then jumps from one deadline to the next, the
stack's own or one its host set with ``call_at`` (the way gVisor's fake clock
fires timers in order), so a 30-second ARP timeout replays in microseconds and
every run is identical. Frames the stack sends wait in ``pending``, stamped
with the virtual time they left, until whoever plays the other hosts takes
them.

After every event (a frame in, a timer, a host's call) ``after_event`` runs:
the host hangs its readiness dispatch there, the way the live driver runs it
after each batch.

A stack with several interfaces has a pending queue per interface
(``pendings``; ``pending`` is the first one's). A ``LinkShaper`` (``shaper``)
stands between the wire and the stack when a scenario asks for drop rules or
impairment: an injected frame may be lost, delayed, duplicated or corrupted
before the stack sees it, and a sent frame before it is pending; a delayed
frame arrives, or becomes pending, at its own virtual time.
"""

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from functools import partial

from simstack.protocols.stack import Stack

from . import vnet
from .impair import LinkShaper

Trace = Callable[[float, str, bytes], None]  # (time, "<" into the stack | ">" out of it, frame)


class SimWire:
    def __init__(self, stack: Stack, *, trace: Trace | None = None,
                 keep: Callable[[bytes], bool] | None = None, shaper: LinkShaper | None = None) -> None:
        self.stack = stack
        self.trace = trace
        self.keep = keep  # frames it rejects are set aside (traced, never pending)
        self.shaper = shaper
        self.now = 0.0
        self.pending: deque[tuple[float, bytes]] = deque()
        self.pendings = [self.pending, *(deque[tuple[float, bytes]]() for _ in stack.ports[1:])]
        # With several interfaces, a traced frame's direction names its interface too ("wan <").
        self._arrows = [(f"{p.name} <", f"{p.name} >") for p in stack.ports] if len(stack.ports) > 1 else [("<", ">")]
        self.after_event: Callable[[], None] | None = None
        # Interfaces with offload: their TCP checksums are left partial for the device, which is this wire.
        self._complete = [bool(p.tso_max) for p in stack.ports]
        self._calls: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    # -- frames ---------------------------------------------------------------
    def inject(self, frame: bytes, iface: int = 0) -> None:
        """``frame`` arrives now on interface ``iface``."""
        if self.trace:
            self.trace(self.now, self._arrows[iface][0], frame)
        shaper = self.shaper
        if shaper is None:
            self.stack.receive(frame, self.now, iface)
        else:
            for when, out in shaper.inbound(frame, self.now, iface):
                if when <= self.now:
                    self.stack.receive(out, self.now, iface)
                else:
                    self.call_at(when, partial(self._arrive, out, iface))
        self.settle()

    def _arrive(self, frame: bytes, iface: int) -> None:
        self.stack.receive(frame, self.now, iface)

    def collect(self) -> None:
        """Move what the stack sent onto the wire, stamped with the current time."""
        keep = self.keep
        if self.shaper is None and len(self.pendings) == 1:  # one interface, nothing in between: the common case
            for frame in self.stack.transmit():
                if self._complete[0]:
                    frame = vnet.complete(frame)
                if self.trace:
                    self.trace(self.now, ">", frame)
                if keep is None or keep(frame):
                    self.pending.append((self.now, frame))
            return
        shaper = self.shaper if self.shaper is not None and self.shaper.shapes_outbound else None
        for iface, frame in self.stack.transmit_all():
            if self._complete[iface]:
                frame = vnet.complete(frame)
            if self.trace:
                self.trace(self.now, self._arrows[iface][1], frame)
            if keep is not None and not keep(frame):
                continue
            if shaper is None:
                self.pendings[iface].append((self.now, frame))
                continue
            for when, out in shaper.outbound(frame, self.now, iface):
                if when <= self.now:
                    self.pendings[iface].append((self.now, out))
                else:
                    self.call_at(when, partial(self.pendings[iface].append, (when, out)))

    def settle(self) -> None:
        """After an event: let the host react (readiness), then collect what everyone sent."""
        if self.after_event is not None:
            self.after_event()
        self.collect()

    # -- time -----------------------------------------------------------------
    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` when the clock reaches ``when`` (a host's own timer: a call's timeout, an event loop's)."""
        heapq.heappush(self._calls, (when, next(self._seq), fn))

    def next_deadline(self) -> float | None:
        stack_deadline = self.stack.next_deadline()
        if not self._calls:
            return stack_deadline
        mine = self._calls[0][0]
        return mine if stack_deadline is None else min(mine, stack_deadline)

    def advance(self, t: float) -> None:
        """Fire every deadline up to ``t``, in order and each at its own time, then stand at ``t``."""
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > t:
                break
            self.step()
        self.now = max(self.now, t)

    def step(self) -> bool:
        """Move to the next deadline and fire what is due there; False when there is none."""
        deadline = self.next_deadline()
        if deadline is None:
            return False
        self.now = max(self.now, deadline)
        calls = self._calls
        while calls and calls[0][0] <= self.now:
            _, _, fn = heapq.heappop(calls)
            fn()
        stack_deadline = self.stack.next_deadline()
        if stack_deadline is not None and stack_deadline <= self.now:
            self.stack.on_timer(self.now)
        self.settle()
        return True
