"""IPv4 fragmentation (RFC 791 3.2) and bounded reassembly (RFC 815, RFC 1122 3.3.2).

Reassembly is where memory goes to die under attack, so every resource is
capped: concurrent datagrams, buffered bytes, and time. Overlapping fragments
drop the whole datagram, following RFC 5722's reasoning for IPv6: overlaps have
no legitimate use and are how filters get evaded. Exact duplicates (same
offset, same bytes) are harmless retransmissions and are ignored.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from .counters import Counters
from .ipv4 import MAX_PACKET, PROTO_TCP, Ipv4
from .timers import Timers

# RFC 1858 3.1: a first fragment of TCP must hold the whole fixed header (flags and ports), so that no
# later fragment is needed to read them; RFC 3128 2 keeps 20 as the bound.
TCP_MIN_FIRST = 20
Key = tuple[bytes, bytes, int, int]  # (src, dst, protocol, identification): RFC 791's datagram identity


@dataclass(frozen=True)
class ReassemblyConfig:
    timeout: float = 30.0  # Linux ipfrag_time; RFC 1122 suggests 60-120 s
    max_datagrams: int = 64
    max_bytes: int = 4 * 1024 * 1024  # Linux ipfrag_high_thresh
    max_fragments: int = 256  # per datagram: 65535 bytes at a 576-byte MTU need 119


@dataclass
class _Pending:
    pieces: dict[int, bytes] = field(default_factory=dict)  # offset -> data
    total: int | None = None  # payload length, known once the last fragment came
    first: Ipv4 | None = None  # the offset-0 fragment: header fields and ICMP quote
    first_raw: bytes = b""
    size: int = 0
    poisoned: str = ""  # why (frag_overlap, frag_tiny, ...): drop every later fragment for it until timeout
    broadcast: bool = False  # fragment zero came as a broadcast: no ICMP error for it


class Reassembler:
    """Collects fragments; ``add`` returns the whole datagram once complete.

    ``expired(first_fragment, raw, now)`` is called when a datagram times out with
    its first fragment in hand, so the stack can send ICMP time exceeded
    (RFC 792, RFC 1122 3.3.2); not for a datagram that came as a link-layer
    broadcast, which must never draw an ICMP error (RFC 1122 3.2.2).
    """

    def __init__(self, config: ReassemblyConfig, timers: Timers, counters: Counters,
                 expired: Callable[[Ipv4, bytes, float], None]) -> None:
        self.config = config
        self.timers = timers
        self.counters = counters
        self.expired = expired
        self.pending: dict[Key, _Pending] = {}
        self.bytes = 0

    def add(self, ip: Ipv4, raw: bytes, now: float, broadcast: bool = False) -> Ipv4 | None:
        c = self.counters
        c.inc("ipv4.frag.rx")
        key = (ip.src, ip.dst, ip.protocol, ip.identification)
        data = ip.payload
        start = ip.frag_offset
        end = start + len(data)
        # RFC 791: every fragment but the last carries a multiple of 8 bytes.
        if ip.mf and len(data) % 8:
            c.drop("ipv4", "frag_bad_length")
            return None
        if ip.header_len + end > MAX_PACKET:
            c.drop("ipv4", "frag_too_big")  # "ping of death"
            self._discard(key)
            return None
        entry = self.pending.get(key)
        if entry is None:
            self._make_room(0, new_entry=True)
            entry = self.pending[key] = _Pending()
            self.timers.schedule(("frag", key), now + self.config.timeout)
        if ip.protocol == PROTO_TCP and ((start == 0 and ip.mf and len(data) < TCP_MIN_FIRST) or start == 8):
            # RFC 1858 3.1 and 3.2: a tiny first fragment, or one at offset 1 (8 octets), can only be meant to
            # split or rewrite the TCP header past a filter: the whole datagram goes, as for an overlap
            reason = "frag_tiny" if start == 0 else "frag_offset_one"
            if entry.poisoned:
                c.drop("ipv4", reason)
            else:
                self._poison(entry, reason)
            return None
        if entry.poisoned:
            c.drop("ipv4", entry.poisoned)
            return None
        if not ip.mf:
            if (entry.total is not None and entry.total != end) or any(o + len(d) > end for o, d in entry.pieces.items()):
                self._poison(entry)
                return None
            entry.total = end
        elif entry.total is not None and end > entry.total:
            self._poison(entry)
            return None
        if len(entry.pieces) >= self.config.max_fragments:
            c.drop("ipv4", "frag_too_many")
            self._discard(key)
            return None
        old = entry.pieces.get(start)
        if old is not None and old == data:
            c.inc("ipv4.frag.duplicate")
            return None
        if any(off < end and start < off + len(piece) for off, piece in entry.pieces.items()):
            self._poison(entry)
            return None
        if not self._make_room(len(data), keep=key):
            c.drop("ipv4", "frag_no_room")
            self._discard(key)
            return None
        entry.pieces[start] = data
        entry.size += len(data)
        self.bytes += len(data)
        if start == 0:
            entry.first = ip
            entry.first_raw = raw
            entry.broadcast = broadcast
        if entry.total is None or entry.size != entry.total or entry.first is None:
            return None
        # Complete: no overlaps and the sizes add up, so the pieces tile [0, total).
        payload = b"".join(entry.pieces[o] for o in sorted(entry.pieces))
        first = entry.first
        self._discard(key)
        c.inc("ipv4.frag.reassembled")
        return Ipv4(src=first.src, dst=first.dst, protocol=first.protocol, payload=payload, ttl=first.ttl,
                    identification=first.identification, tos=first.tos, df=first.df, options=first.options,
                    reserved_flag=first.reserved_flag)

    def _poison(self, entry: _Pending, reason: str = "frag_overlap") -> None:
        self.counters.drop("ipv4", reason)
        self.bytes -= entry.size
        entry.pieces.clear()
        entry.size = 0
        entry.first = None
        entry.poisoned = reason  # later fragments of this datagram are dropped too, until the timer

    def _discard(self, key: Key) -> None:
        entry = self.pending.pop(key, None)
        if entry is not None:
            self.bytes -= entry.size
            self.timers.cancel(("frag", key))

    def _make_room(self, need: int, keep: Key | None = None, new_entry: bool = False) -> bool:
        """Evict the oldest other datagrams until this one fits (Linux evicts oldest first too)."""
        cfg = self.config
        while (new_entry and len(self.pending) >= cfg.max_datagrams) or self.bytes + need > cfg.max_bytes:
            victim = next((k for k in self.pending if k != keep), None)
            if victim is None:
                return False
            self.counters.inc("ipv4.frag.evicted")
            self._discard(victim)
        return True

    def on_timer(self, key: Key, now: float) -> None:
        entry = self.pending.pop(key, None)
        if entry is None:
            return
        self.bytes -= entry.size
        self.counters.drop("ipv4", "frag_timeout")
        if entry.first is not None and not entry.broadcast:
            self.expired(entry.first, entry.first_raw, now)


def fragment(header: Ipv4, mtu: int) -> list[Ipv4]:
    """Split ``header``'s payload so each piece fits ``mtu`` (RFC 791 3.2, "fragmentation").

    ``header`` may be a fragment itself (a router splitting it again): the
    pieces' offsets count from its offset, and the last piece keeps its MF
    (RFC 791 3.2). Only the first piece carries every option; the others carry
    those whose copied flag is set (RFC 791 3.1, "Options").
    """
    room = (mtu - header.header_len) // 8 * 8
    if room <= 0:
        raise ValueError(f"MTU {mtu} cannot carry a fragment")
    data = header.payload
    # Every piece takes the first one's room: later pieces, with fewer options, fall short of the MTU, which is allowed.
    later_options = copied_options(header.options) if header.options else b""
    pieces = []
    for start in range(0, len(data), room):
        chunk = data[start:start + room]
        last = start + room >= len(data)
        pieces.append(Ipv4(src=header.src, dst=header.dst, protocol=header.protocol, payload=chunk, ttl=header.ttl,
                           identification=header.identification, tos=header.tos, df=header.df,
                           mf=header.mf if last else True, frag_offset=header.frag_offset + start,
                           options=header.options if start == 0 else later_options))
    return pieces


OPTION_END, OPTION_NOP = 0, 1


def copied_options(options: bytes) -> bytes:
    """The options with the copied flag (the type's top bit), padded to four bytes (RFC 791 3.1).

    A malformed list (a length that runs past the end, or below 2) ends the scan:
    what follows it cannot be read as options.
    """
    out = bytearray()
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == OPTION_END:
            break
        if kind == OPTION_NOP:
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2 or i + options[i + 1] > len(options):
            break
        size = options[i + 1]
        if kind & 0x80:
            out += options[i:i + size]
        i += size
    out += bytes(-len(out) % 4)  # End of Option List, as padding
    return bytes(out)
