"""A TAP seen through a ``LinkShaper``: drop rules and impairment on a live link.

``ShapedDevice`` is the ``FrameDevice`` the driver reads and writes when
``--drop`` or ``--impair`` is given; without them the driver has the TAP
itself and pays nothing. Inbound, each frame read meets the drop rules and
the inbound impairment before the stack sees it; outbound, each frame the
stack writes meets the outbound impairment. A frame that is delayed (delay,
jitter, reorder, rate) waits here, in time order, until the driver's loop
calls ``release`` at its time (``HeldFrames``, driver.py). The shaper is the
simulated wire's (engine/wire/impair.py), drawn from the session's seed.
"""

import heapq
import itertools
from collections.abc import Callable

from ..wire.impair import LinkShaper
from .driver import FrameDevice


class ShapedDevice:
    """Interface ``iface``'s device, shaped; its clock is the driver's, so held frames fall due on the loop's time."""

    def __init__(self, device: FrameDevice, shaper: LinkShaper, iface: int, clock: Callable[[], float]) -> None:
        self.device = device
        self.shaper = shaper
        self.iface = iface
        self.clock = clock
        self.write_errors = 0  # writes of released frames the kernel refused (a write now returns its error)
        self._inbound: list[tuple[float, int, bytes]] = []  # (due, order, frame) heaps
        self._outbound: list[tuple[float, int, bytes]] = []
        self._order = itertools.count()

    def fileno(self) -> int:
        return self.device.fileno()

    def read_batch(self, limit: int) -> list[bytes]:
        frames = self.device.read_batch(limit)
        if not frames:
            return frames
        now = self.clock()
        inbound = self.shaper.inbound
        out: list[bytes] = []
        for frame in frames:
            for due, shaped in inbound(frame, now, self.iface):
                if due <= now:
                    out.append(shaped)
                else:
                    heapq.heappush(self._inbound, (due, next(self._order), shaped))
        return out

    def write(self, frame: bytes) -> OSError | None:
        if not self.shaper.shapes_outbound:
            return self.device.write(frame)
        now = self.clock()
        error = None
        for due, shaped in self.shaper.outbound(frame, now, self.iface):
            if due <= now:
                error = self.device.write(shaped) or error
            else:
                heapq.heappush(self._outbound, (due, next(self._order), shaped))
        return error

    def write_vnet(self, header: bytes, frame: bytes) -> OSError | None:
        """With ``--offload``: the header travels with its frame, so a lost 64 KB segment is lost whole.

        The impairment moves whole TAP writes (header and frame), as netem on
        a virtio-net guest's link would move the segments before the host cuts
        them; a delayed one is written later by ``release`` as the raw bytes a
        TAP opened with IFF_VNET_HDR takes.
        """
        if not self.shaper.shapes_outbound:
            return self.device.write_vnet(header, frame)  # type: ignore[attr-defined,no-any-return]
        return self.write(header + frame)

    def next_release(self) -> float | None:
        first = self._inbound[0][0] if self._inbound else None
        if self._outbound and (first is None or self._outbound[0][0] < first):
            first = self._outbound[0][0]
        return first

    def release(self, now: float) -> list[bytes]:
        outbound = self._outbound
        while outbound and outbound[0][0] <= now:
            if self.device.write(heapq.heappop(outbound)[2]) is not None:
                self.write_errors += 1
        due: list[bytes] = []
        inbound = self._inbound
        while inbound and inbound[0][0] <= now:
            due.append(heapq.heappop(inbound)[2])
        return due

    @property
    def held(self) -> int:
        return len(self._inbound) + len(self._outbound)
