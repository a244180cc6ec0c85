"""The ARP neighbour cache: one small ``transitions`` machine per entry, shared.

RFC 826 says what to learn; RFC 1122 2.3.2.1 asks for cache timeouts and at
most one request per second per destination, and a bounded queue while an
answer is pending (2.3.2.2). The entry states follow RFC 4861 7.3.2 as adapted
to ARP by Linux: an entry is REACHABLE for a while after a confirmation, then
STALE; using a STALE entry sends the packet and re-verifies it (PROBE).

All entries share one class-level Machine (the transitions FAQ pattern), so an
entry costs a few slots, not a machine.
"""

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from transitions import Machine

from .counters import Counters
from .timers import Timers

INCOMPLETE = "INCOMPLETE"
REACHABLE = "REACHABLE"
STALE = "STALE"
PROBE = "PROBE"
FAILED = "FAILED"
STATES = [INCOMPLETE, REACHABLE, STALE, PROBE, FAILED]
INITIAL = INCOMPLETE

# The whole life of an entry. Everything that moves an entry's state is here.
TRANSITIONS: list[dict[str, str | list[str]]] = [
    # an ARP reply, or a request that names us, proves the peer is there
    {"trigger": "confirm", "source": STATES, "dest": REACHABLE},
    # someone else's ARP carried a new address for a peer we know (RFC 826 merge)
    {"trigger": "update", "source": [REACHABLE, STALE, PROBE, INCOMPLETE], "dest": STALE},
    # reachable_time passed with no confirmation
    {"trigger": "expire", "source": REACHABLE, "dest": STALE},
    # traffic to a STALE entry goes out, and the entry is re-verified
    {"trigger": "use_stale", "source": STALE, "dest": PROBE},
    # max_probes requests went unanswered
    {"trigger": "give_up", "source": [INCOMPLETE, PROBE], "dest": FAILED},
    # new traffic for a FAILED entry asks again
    {"trigger": "retry", "source": FAILED, "dest": INCOMPLETE},
]

MACHINE = Machine(model=None, states=STATES, transitions=TRANSITIONS, initial=INCOMPLETE, auto_transitions=False)


def fire(trigger: str, entry: "Neighbor") -> None:
    MACHINE.events[trigger].trigger(entry)


@dataclass(frozen=True)
class ArpConfig:
    reachable_time: float = 30.0  # Linux base_reachable_time
    retrans_time: float = 1.0  # RFC 1122 2.3.2.1: at most one request a second
    max_probes: int = 3
    # Packets held while an entry resolves (RFC 1122 2.3.2.2 asks for at least
    # one): Linux's unres_qlen and unres_qlen_bytes, so a burst an application
    # sends to a new neighbour survives, and a cap over all entries together.
    queue_len: int = 101
    queue_bytes: int = 212_992
    queue_total_bytes: int = 1 << 20
    stale_time: float = 60.0  # an unused STALE entry is removed after this
    failed_time: float = 20.0  # a FAILED entry answers "unreachable" this long
    max_entries: int = 512
    gc_min_age: float = 5.0  # Linux neigh_forced_gc: an INCOMPLETE entry this young is not evicted


class Neighbor:
    __slots__ = ("ip", "mac", "probes", "queue", "queued_bytes", "state", "updated")

    def __init__(self, ip: bytes, now: float) -> None:
        self.ip = ip
        self.mac: bytes | None = None
        self.state = INCOMPLETE
        self.probes = 0
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.updated = now  # last created, confirmed or changed: the garbage collector's age


class NeighborCache:
    """Resolves next hops for IPv4 output.

    ``solicit(ip, unicast_mac)`` sends an ARP request; ``deliver(mac, packet)``
    sends a queued IPv4 packet; ``unreachable(ip, packets, now)`` reports packets
    given up on. The stack passes these in, so the cache does no I/O. Each
    interface has a cache of its own, its timers scheduled as ``(kind, ip)``.
    """

    def __init__(
        self,
        config: ArpConfig,
        timers: Timers,
        counters: Counters,
        solicit: Callable[[bytes, bytes | None], None],
        deliver: Callable[[bytes, bytes], None],
        unreachable: Callable[[bytes, list[bytes], float], None],
        kind: str = "arp",
    ) -> None:
        self.config = config
        self.kind = kind  # its timers' kind: one cache per interface, each with its own
        self.timers = timers
        self.counters = counters
        self.entries: dict[bytes, Neighbor] = {}
        self.queued_bytes = 0  # over every entry's queue, bounded by queue_total_bytes
        self._solicit = solicit
        self._deliver = deliver
        self._unreachable = unreachable

    def lookup(self, ip: bytes) -> Neighbor | None:
        return self.entries.get(ip)

    # -- output path -------------------------------------------------------
    def resolve(self, ip: bytes, packet: bytes, now: float) -> bytes | None:
        """The MAC to send ``packet`` to, or None when it was queued or dropped."""
        entry = self.entries.get(ip)
        if entry is not None:
            state = entry.state
            if state in (REACHABLE, PROBE):
                return entry.mac
            if state == STALE:
                # The packet goes first; the probe follows from the timer.
                fire("use_stale", entry)
                entry.probes = 0
                self.timers.schedule((self.kind, ip), now)
                return entry.mac
            if state == FAILED:
                fire("retry", entry)
                entry.probes = 0
                self._probe(entry, now)
            self._enqueue(entry, packet)
            return None
        entry = self._new_entry(ip, now)
        if entry is None:
            self.counters.drop("arp", "cache_full")
            return None
        self._probe(entry, now)
        self._enqueue(entry, packet)
        return None

    def _enqueue(self, entry: Neighbor, packet: bytes) -> None:
        c, size = self.config, len(packet)
        if size > c.queue_bytes or size > c.queue_total_bytes:
            self.counters.drop("arp", "queue_full")
            return
        # RFC 1122 2.3.2.2: SHOULD keep the latest, so the oldest of this entry make room...
        while entry.queue and (len(entry.queue) >= c.queue_len or entry.queued_bytes + size > c.queue_bytes
                               or self.queued_bytes + size > c.queue_total_bytes):
            old = entry.queue.popleft()
            entry.queued_bytes -= len(old)
            self.queued_bytes -= len(old)
            self.counters.drop("arp", "queue_full")
        if self.queued_bytes + size > c.queue_total_bytes:
            # ...but other entries' packets are not ours to push out.
            self.counters.drop("arp", "queue_full")
            return
        entry.queue.append(packet)
        entry.queued_bytes += size
        self.queued_bytes += size

    def _take_queue(self, entry: Neighbor) -> list[bytes]:
        packets = list(entry.queue)
        entry.queue.clear()
        self.queued_bytes -= entry.queued_bytes
        entry.queued_bytes = 0
        return packets

    def _probe(self, entry: Neighbor, now: float) -> None:
        entry.probes += 1
        # A PROBE is unicast to the address we still believe (RFC 4861 7.3.3).
        self._solicit(entry.ip, entry.mac if entry.state == PROBE else None)
        self.timers.schedule((self.kind, entry.ip), now + self.config.retrans_time)

    def _new_entry(self, ip: bytes, now: float) -> Neighbor | None:
        if len(self.entries) >= self.config.max_entries and not self._evict(now):
            return None
        entry = Neighbor(ip, now)
        self.entries[ip] = entry
        return entry

    def _evict(self, now: float) -> bool:
        """Make room as Linux's forced garbage collection does (neigh_forced_gc).

        FAILED entries go first, then the entry updated longest ago, whatever
        its state, so a burst of forged senders cannot hold the cache against
        a new neighbour. An INCOMPLETE entry younger than ``gc_min_age`` stays:
        a resolution under way is not cut short by the flood it competes with.
        """
        for ip, entry in self.entries.items():
            if entry.state == FAILED:
                self._remove(ip)
                self.counters.inc("arp.evicted")
                return True
        victim: Neighbor | None = None
        for entry in self.entries.values():
            if entry.state == INCOMPLETE and now - entry.updated < self.config.gc_min_age:
                continue
            if victim is None or entry.updated < victim.updated:
                victim = entry
        if victim is None:
            return False
        self._remove(victim.ip)
        self.counters.inc("arp.evicted")
        return True

    def _remove(self, ip: bytes) -> None:
        entry = self.entries.pop(ip, None)
        if entry is not None:
            self._take_queue(entry)  # empty already: only INCOMPLETE and PROBE entries hold packets
        self.timers.cancel((self.kind, ip))

    # -- input path --------------------------------------------------------
    def learn(self, ip: bytes, mac: bytes, now: float, *, confirmed: bool, create: bool) -> None:
        """Apply what an ARP packet says about ``ip`` (RFC 826 "merge" and "add").

        ``confirmed``: the packet was a reply to us or a request naming us.
        ``create``: RFC 826 adds a new entry only when we are the target.
        """
        entry = self.entries.get(ip)
        if entry is None:
            if not create:
                return
            entry = self._new_entry(ip, now)
            if entry is None:
                self.counters.drop("arp", "cache_full")
                return
        if confirmed:
            fire("confirm", entry)
        elif (entry.mac == mac and entry.state != INCOMPLETE) or entry.state == FAILED:
            return
        else:
            fire("update", entry)
        entry.mac = mac
        entry.probes = 0
        entry.updated = now
        if entry.state == REACHABLE:
            self.timers.schedule((self.kind, ip), now + self.config.reachable_time)
        else:
            self.timers.schedule((self.kind, ip), now + self.config.stale_time)
        self.counters.inc("arp.learned")
        for packet in self._take_queue(entry):
            self._deliver(mac, packet)

    # -- timers ------------------------------------------------------------
    def on_timer(self, ip: bytes, now: float) -> None:
        entry = self.entries.get(ip)
        if entry is None:
            return
        state = entry.state
        if state in (INCOMPLETE, PROBE):
            if entry.probes < self.config.max_probes:
                self._probe(entry, now)
                return
            fire("give_up", entry)
            entry.mac = None
            packets = self._take_queue(entry)
            for _ in packets:
                self.counters.drop("arp", "unresolved")
            self._unreachable(ip, packets, now)
            self.timers.schedule((self.kind, ip), now + self.config.failed_time)
        elif state == REACHABLE:
            fire("expire", entry)
            self.timers.schedule((self.kind, ip), now + self.config.stale_time)
        else:  # STALE or FAILED past their time: forget the entry
            self._remove(ip)
