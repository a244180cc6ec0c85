"""What must hold for every TCB after every input, whatever the input was: the fuzzers' oracle.

``check_layer`` walks every connection a ``TcpLayer`` knows (the demux, the
listeners and their children and accept queues) plus any the caller still
holds, and raises ``InvariantError`` naming the connection and the rule. The
rules are the ones a hostile peer must not be able to break: sequence-space
orderings (RFC 9293 3.3.1), windows within what the fields and buffers allow
(RFC 7323 2.2), every queue within its bound, no negative counter. The byte
stream check (``StreamCheck``) needs the peer's bytes, so it lives apart:
the fuzz world writes the byte ``stream_bytes(s)`` at sequence number ``s``,
whoever sends it, and every byte an application reads must be the one at its
place in the stream.
"""

import weakref
from collections.abc import Iterable

from simstack.protocols.counters import Counters
from simstack.protocols.seqnum import HALF, MASK, seq_diff
from simstack.protocols.tcp_conn import TcpConn
from simstack.protocols.tcp_layer import TcpLayer

MAX_SND_WND = 1 << 30  # 0xFFFF << 14 (RFC 7323 2.3) is just below it
_UNSYNCHRONIZED = frozenset({"CLOSED", "LISTEN", "SYN-SENT"})


class InvariantError(AssertionError):
    pass


def _fail(conn: TcpConn, rule: str) -> InvariantError:
    return InvariantError(f"{conn!r}: {rule}")


def _le(a: int, b: int) -> bool:
    """a <= b in sequence space, and no more than half the space apart (RFC 9293 3.4's window comparisons)."""
    return 0 <= (b - a) & MASK < HALF


def check_conn(conn: TcpConn, rcvbuf_peak: int = 0, sndbuf_peak: int = 0) -> None:
    """One TCB's invariants; states with no sequence space yet check only their queues.

    ``rcvbuf_peak``, ``sndbuf_peak``: the largest SO_RCVBUF and SO_SNDBUF the connection has had (``Checker``
    keeps them): a window offered from a larger buffer stays offered, and queued bytes stay queued, when the
    application shrinks it.
    """
    cfg = conn.layer.config
    state = conn.state
    if len(conn.ooo) > cfg.ooo_max_segments:
        raise _fail(conn, f"{len(conn.ooo)} out-of-order segments > ooo_max_segments {cfg.ooo_max_segments}")
    if conn.ooo_bytes != sum(len(d) for _, d, _ in conn.ooo):
        raise _fail(conn, "ooo_bytes disagrees with the out-of-order queue")
    if len(conn.sndbuf) > max(conn.sndbuf_size, sndbuf_peak):
        raise _fail(conn, f"send buffer {len(conn.sndbuf)} > SO_SNDBUF {max(conn.sndbuf_size, sndbuf_peak)}")
    if state == "LISTEN" and conn.parent is None:
        # Linux: backlog + 1 established connections wait (tcp_layer's docstring); half-open ones are bounded too.
        if len(conn.accept_queue) > conn.backlog + 1:
            raise _fail(conn, f"accept queue {len(conn.accept_queue)} > backlog + 1 ({conn.backlog + 1})")
        if len(conn.children) > cfg.max_syn_backlog:
            raise _fail(conn, f"{len(conn.children)} half-open children > max_syn_backlog {cfg.max_syn_backlog}")
    if state in _UNSYNCHRONIZED:
        return
    if not (_le(conn.snd_una, conn.snd_nxt) and _le(conn.snd_nxt, conn.snd_max)):
        raise _fail(conn, f"not snd_una {conn.snd_una} <= snd_nxt {conn.snd_nxt} <= snd_max {conn.snd_max}")
    if not 0 <= conn.snd_wnd <= MAX_SND_WND or conn.snd_wnd > 0xFFFF << conn.snd_wscale:
        raise _fail(conn, f"snd_wnd {conn.snd_wnd} beyond what the field can carry (shift {conn.snd_wscale})")
    offered = seq_diff(conn.rcv_adv, conn.rcv_nxt)
    if not 0 <= offered <= 0xFFFF << conn.rcv_wscale:
        raise _fail(conn, f"offered window {offered} outside 0..{0xFFFF << conn.rcv_wscale}")
    # The offered window fits the free buffer, give or take the rounding of a scaled window (RFC 7323 2.3)
    # and SO_RCVBUF lowered after it was offered (the right edge never moves left, RFC 9293 3.8.6.2.2).
    room = max(conn.rcvbuf_size, rcvbuf_peak) + (1 << conn.rcv_wscale)
    if len(conn.rcvbuf) + offered > room:
        raise _fail(conn, f"buffered {len(conn.rcvbuf)} + offered {offered} > receive buffer {room}")
    if conn.ooo_bytes > room:
        raise _fail(conn, f"out-of-order bytes {conn.ooo_bytes} > receive buffer {room}")
    prev_end = conn.rcv_nxt
    for seq, data, _fin in conn.ooo:
        if seq_diff(seq, prev_end) < 0:
            raise _fail(conn, "out-of-order queue overlaps, or starts behind RCV.NXT")
        prev_end = (seq + len(data)) & MASK
        if seq_diff(prev_end, conn.rcv_adv) > 0 and not cfg.accept_to_buffer:
            raise _fail(conn, "out-of-order data past the window offered")
    if conn.syn_acked:
        if seq_diff(conn.snd_una, conn.buf_seq) not in (0, 1):  # 1 once our FIN is acknowledged
            raise _fail(conn, f"snd_una {conn.snd_una} is not the send buffer's start {conn.buf_seq}")
        if not _le(conn.snd_max, (conn.buf_seq + len(conn.sndbuf) + 1) & MASK):
            raise _fail(conn, "snd_max past the end of the send buffer and FIN")


def connections(layer: TcpLayer, held: Iterable[TcpConn] = ()) -> list[TcpConn]:
    """Every TCB the layer can reach, and those the caller holds, once each."""
    seen: dict[int, TcpConn] = {}
    for conn in (*layer.conns.values(), *(ep for eps in layer.listeners.values() for ep in eps), *held):
        seen[id(conn)] = conn
        for child in (*conn.children, *conn.accept_queue):
            seen[id(child)] = child
    return list(seen.values())


def check_counters(counters: Counters) -> None:
    negative = {name: value for name, value in counters.values.items() if value < 0}
    if negative:
        raise InvariantError(f"negative counters: {negative}")
    if counters["tcp.drop.no_transition"]:
        raise InvariantError("a segment found no row in the state table (tcp.drop.no_transition)")


def check_layer(layer: TcpLayer, held: Iterable[TcpConn] = ()) -> None:
    """Every TCB's invariants, and the layer's counters (stateless: see ``Checker`` for SO_RCVBUF changes)."""
    for conn in connections(layer, held):
        check_conn(conn, layer.config.rcvbuf, layer.config.sndbuf)
    check_counters(layer.counters)


class Checker:
    """``check_layer`` with a memory: each connection's largest SO_RCVBUF and SO_SNDBUF so far."""

    def __init__(self, layer: TcpLayer) -> None:
        self.layer = layer
        self.peak: weakref.WeakKeyDictionary[TcpConn, tuple[int, int]] = weakref.WeakKeyDictionary()

    def __call__(self, held: Iterable[TcpConn] = ()) -> None:
        peak = self.peak
        for conn in connections(self.layer, held):
            rcv, snd = peak.get(conn, (0, 0))
            sizes = max(conn.rcvbuf_size, rcv), max(conn.sndbuf_size, snd)
            peak[conn] = sizes
            check_conn(conn, *sizes)
        check_counters(self.layer.counters)


def drops(counters: Counters) -> int:
    """How many inputs were dropped so far, any layer and reason: a malformed frame must move it."""
    return sum(value for name, value in counters.values.items() if ".drop." in name)


# -- the byte stream -------------------------------------------------------------

_PAGE = bytes((i * 131 + (i >> 8) * 29 + (i >> 12)) & 0xFF for i in range(1 << 16))
_XOR = [bytes(i ^ c for i in range(256)) for c in range(256)]


def stream_bytes(seq: int, n: int) -> bytes:
    """The ``n`` bytes of the fuzz world's stream at sequence numbers ``seq``... (a function of the number alone,
    so a forged segment and the real peer agree, and a byte read at the wrong place shows)."""
    out = bytearray()
    seq &= MASK
    while n > 0:
        lo = seq & 0xFFFF
        take = min(n, 0x10000 - lo)
        out += _PAGE[lo:lo + take].translate(_XOR[((seq >> 16) * 151 + (seq >> 24)) & 0xFF])
        n -= take
        seq = (seq + take) & MASK
    return bytes(out)


class StreamCheck:
    """What one application read from one connection, checked against the stream as it arrives."""

    __slots__ = ("conn", "read", "start")

    def __init__(self, conn: TcpConn) -> None:
        self.conn = conn
        self.start: int | None = None  # the sequence number of the first data byte (IRS + 1)
        self.read = 0

    def got(self, data: bytes) -> None:
        if not data:
            return
        if self.start is None:
            self.start = (self.conn.irs + 1) & MASK
        want = stream_bytes(self.start + self.read, len(data))
        if data != want:
            raise InvariantError(f"{self.conn!r}: bytes read at stream offset {self.read} are not the peer's bytes")
        self.read += len(data)
