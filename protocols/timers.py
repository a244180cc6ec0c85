"""Keyed deadlines in a heap, so ``next_deadline()`` is O(1) however many timers run.

Rescheduling leaves the old heap entry behind; it is skipped when popped and the
heap is rebuilt when stale entries outnumber live ones, so it stays bounded.
"""

import heapq
from collections.abc import Hashable

Key = tuple[str, Hashable]  # (timer kind, what it is for)


class Timers:
    __slots__ = ("_due", "_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Key]] = []
        self._due: dict[Key, tuple[float, int]] = {}
        self._seq = 0

    def schedule(self, key: Key, when: float) -> None:
        self._seq += 1
        self._due[key] = (when, self._seq)
        heapq.heappush(self._heap, (when, self._seq, key))
        if len(self._heap) > 2 * len(self._due) + 32:
            self._heap = [(w, s, k) for k, (w, s) in self._due.items()]
            heapq.heapify(self._heap)

    def cancel(self, key: Key) -> None:
        self._due.pop(key, None)

    def __contains__(self, key: Key) -> bool:
        return key in self._due

    def __len__(self) -> int:
        return len(self._due)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            when, seq, key = heap[0]
            if self._due.get(key) == (when, seq):
                return when
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list[Key]:
        """Keys whose deadline is at or before ``now``, earliest first."""
        out: list[Key] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, seq, key = heapq.heappop(heap)
            if self._due.get(key) == (when, seq):
                del self._due[key]
                out.append(key)
        return out
