"""One TCP connection: the TCB of RFC 9293 3.3.1, and the endpoint an application holds.

Every state change goes through ``_fire(event)``, which looks the pair up in
``tcp_table.DISPATCH`` and runs the row's action (``_a_<action>``). The one
exception is the fast path at the top of ``segment_arrives``: an in-order
segment or a new ACK in ESTABLISHED changes no state, so it does the work of
the ESTABLISHED ACK and TEXT rows inline.

Sequence numbers (RFC 9293 3.3.1 names, lower case):
- ``snd_una`` oldest unacknowledged, ``snd_max`` one past the highest ever sent
  (the RFC's SND.NXT for acceptability), ``snd_nxt`` the next to send, which
  an RTO pulls back to ``snd_una`` (go-back-N, RFC 5681 3.1 loss window);
- ``sndbuf`` holds the bytes from ``buf_seq`` on: unacknowledged, then unsent;
  ``fin_seq`` is the FIN's number once the application closed;
- ``rcv_nxt``, and ``rcv_adv`` the right edge we advertised, which never moves
  left (RFC 9293 3.8.6.2.2); ``rcvbuf`` holds in-order bytes the application
  has not read, ``ooo`` later segments in sequence order.

Timers (retransmission or persist, delayed ACK, keepalive, TIME-WAIT or
FIN-WAIT-2) are deadlines on the connection; only the earliest sits in the
stack's heap, keyed ``("tcp", key)``, and only when it moves earlier is the
heap touched (``_arm``).
"""

import errno
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import tcp_table as T
from .seqnum import HALF, MASK, in_window, seq_diff, seq_ge, seq_gt, seq_le, seq_lt
from .tcp import (
    ACK,
    FIN,
    OPT_MSS,
    OPT_NOP,
    OPT_SACK,
    OPT_SACK_PERMITTED,
    OPT_TIMESTAMP,
    OPT_WSCALE,
    PSH,
    RST,
    SYN,
    URG,
    Option,
    Tcp,
)
from .tcp_cc import ALGORITHMS, DISORDER, LOSS, NEWRENO, OPEN, PHASES, RECOVERY, CubicState
from .tcp_sack import DUP_THRESH, Scoreboard
from .transport import Ready

if TYPE_CHECKING:
    from .tcp_layer import TcpLayer

ANY = b"\x00\x00\x00\x00"
Key = tuple[bytes, int, bytes, int]  # (local ip, local port, remote ip, remote port)
Buffer = bytes | bytearray | memoryview

CLOSED, LISTEN, SYN_SENT, SYN_RECEIVED = T.CLOSED, T.LISTEN, T.SYN_SENT, T.SYN_RECEIVED
ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT = T.ESTABLISHED, T.FIN_WAIT_1, T.FIN_WAIT_2, T.CLOSE_WAIT
CLOSING, LAST_ACK, TIME_WAIT = T.CLOSING, T.LAST_ACK, T.TIME_WAIT

DEFAULT_MSS = 536  # RFC 9293 3.7.1: assumed when the peer sends no MSS option
MIN_MSS = 64  # the floor of an MSS lowered by path MTU discovery (RFC 1191: a PMTU of 68 at least)
MIN_SND_MSS = (8, 65495)  # the range of TcpConfig.min_snd_mss: 8 bytes of data beside the timestamps; the IPv4 most
PAWS_IDLE = 24 * 86400.0  # RFC 7323 5.5: TS.Recent older than 24 days no longer rejects anything
MAX_WINDOW = 0xFFFF  # the window field, unscaled
MAX_WSCALE = 14  # RFC 7323 2.3
OPTION_LAYOUTS = ("linux", "freebsd")
# The settings that take a word, and the words each takes.
CHOICES: dict[str, tuple[str, ...]] = {"options_layout": OPTION_LAYOUTS, "icmp_syn_sent": ("rfc1122", "freebsd"),
                                       "congestion": tuple(ALGORITHMS)}
CLOCK_GRANULARITY = 0.001  # G of RFC 6298 2.3
SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2
_NOP = Option(OPT_NOP)
MAX_SACK_KEPT = 5  # blocks remembered besides the newest; at most four fit in a segment
_SACK_OK = Option(OPT_SACK_PERMITTED)

# States whose data and FIN may still go out (once our SYN is acknowledged).
_SENDING = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK})
_RECEIVING = frozenset({ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2})
_SYNCHRONIZED_SEND = frozenset({ESTABLISHED, CLOSE_WAIT})  # the SEND rows past the handshake
_ACK_OF_FIN = frozenset({FIN_WAIT_1, CLOSING, LAST_ACK})
_KEEPALIVE = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, FIN_WAIT_2})
_SLOW_FLAGS = SYN | FIN | RST | URG | ACK  # the fast path takes a segment whose only one of these is ACK


@dataclass(frozen=True)
class TcpConfig:
    msl: float = 30.0  # TIME-WAIT lasts 2*MSL: 60 s, Linux's TCP_TIMEWAIT_LEN
    rto_initial: float = 1.0  # RFC 6298 2.1
    rto_min: float = 1.0  # RFC 6298 2.4; Linux uses 0.2
    rto_max: float = 60.0  # RFC 6298 2.5
    syn_retries: int = 6  # Linux tcp_syn_retries
    synack_retries: int = 5  # Linux tcp_synack_retries
    retries: int = 15  # Linux tcp_retries2: then RST and ETIMEDOUT
    delack_time: float = 0.04  # Linux TCP_DELACK_MIN; RFC 1122 4.2.3.2 wants < 0.5 s, we cap at 0.2
    rcvbuf: int = 131072  # SO_RCVBUF default (Linux tcp_rmem[1]); the window is at most 65535 << our shift
    sndbuf: int = 131072  # SO_SNDBUF default
    ooo_max_segments: int = 256  # out-of-order queue bound; its bytes are bounded by the window
    rfc5961: bool = True  # challenge ACKs for in-window RST and SYN; False: RFC 793 behaviour
    challenge_ack_limit: int = 1000  # per second, for the whole layer (RFC 5961 7, Linux tcp_challenge_ack_limit)
    keepalive_time: float = 7200.0  # RFC 1122 4.2.3.6: no less than two hours by default
    keepalive_intvl: float = 75.0
    keepalive_probes: int = 9
    fin_timeout: float = 60.0  # an orphan in FIN-WAIT-2 is dropped after this (Linux tcp_fin_timeout)
    initial_window: int = 10  # segments (RFC 6928)
    max_syn_backlog: int = 1024  # half-open connections per listener at most (Linux tcp_max_syn_backlog)
    somaxconn: int = 4096  # listen() backlog cap (Linux net.core.somaxconn)
    ephemeral: tuple[int, int] = (32768, 60999)  # Linux ip_local_port_range
    # Bounds on what a peer can make the stack hold (docs/scenarios.md, scenarios/attacks/)
    syncookies: int = 1  # RFC 4987 3.6: 0 never, 1 when a listener's SYN queue is full, 2 always (Linux tcp_syncookies)
    max_connections: int = 65536  # connections with a peer at most, TIME-WAIT aside; a SYN beyond is dropped
    max_tw_buckets: int = 65536  # TIME-WAIT connections at most; beyond, closed at once (Linux tcp_max_tw_buckets)
    ooo_max_bytes: int = 1 << 20  # bytes held out of order per connection, besides ooo_max_segments
    rst_limit: int = 200  # RSTs a second to segments for closed ports (FreeBSD's badport_bandlim, icmplim 200)
    min_snd_mss: int = 48  # a peer's MSS below this is raised to it (Linux tcp_min_snd_mss): no 1-byte segments
    # The settings below let the stack behave as the stack a packetdrill script was written for
    # (engine/scenario/packetdrill_profiles.py); their defaults are simstack's own behaviour.
    rfc5961_rst: bool = True  # with rfc5961: the RST half (FreeBSD insecure_rst=0)
    rfc5961_syn: bool = True  # with rfc5961: the SYN half (FreeBSD insecure_syn=0)
    wscale: int = -1  # the window scale shift offered on a SYN (RFC 7323 2.2); -1 offers none
    timestamps: bool = False  # offer the timestamps option (RFC 7323 3)
    ts_hz: int = 1000  # ticks per second of the timestamp clock (RFC 7323 5.4: 1 ms to 1 s)
    sack: bool = False  # offer SACK-permitted, and report SACK blocks when the peer allows (RFC 2018)
    dsack: bool = False  # report duplicates in a first SACK block (RFC 2883)
    options_layout: str = "linux"  # where NOPs go and how the options area is padded: "linux" or "freebsd"
    mss_buffers: bool = False  # once the MSS is known, round socket buffers up to a multiple of it (FreeBSD tcp_mss)
    drop_synfin: bool = False  # drop a segment with both SYN and FIN (FreeBSD net.inet.tcp.drop_synfin)
    window_steps: bool = True  # move the window's right edge only by worthwhile steps (RFC 9293 3.8.6.2.2);
    # False: offer all free buffer space unless it is tiny, never less than before (BSD's tcp_output)
    accept_to_buffer: bool = False  # take segments up to the free buffer space, past the window offered (BSD rcv_wnd)
    rto_slop: float = 0.0  # seconds added to every RTO but the first (BSD's rexmit_slop in TCPT_RANGESET)
    ack_second_segment: bool = False  # ACK every second data segment whatever its size (BSD's DELAY_ACK)
    quickack: int = 0  # the first data segments of a connection ACKed at once (Linux's quick-ACK mode, 16)
    resend_fin: bool = False  # while our FIN is unacknowledged, an ACK we send repeats it (BSD's tcp_output)
    rfc1337: bool = False  # ignore a RST in TIME-WAIT (RFC 1337 "TIME-WAIT assassination" fix 1)
    time_wait_reopen: bool = True  # a SYN above RCV.NXT ends TIME-WAIT for a listener (RFC 1122 4.2.2.13)
    bsd_time_wait: bool = False  # TIME-WAIT as BSD's tcp_twcheck: no answer without ACK, an ACK for all else
    ack_old_segments: bool = False  # take the ACK of a segment wholly before RCV.NXT (BSD); RFC 9293: drop it
    listen_synack_rst: bool = True  # a SYN-ACK to a listener draws a RST (RFC 9293 3.10.7.2); False drops it
    drop_future_ack: bool = False  # a segment acknowledging what was never sent is discarded unanswered (Linux)
    congestion: str = "newreno"  # the congestion control algorithm: "newreno" (RFC 5681, 6582) or "cubic" (RFC 9438)
    prr: bool = False  # SACK recovery sends by RFC 6937 Proportional Rate Reduction (Linux); False: RFC 6675 cwnd - pipe
    abc_limit: int = 1  # an ACK counts for at most this many MSS in slow start and congestion avoidance
    # (RFC 3465 L; RFC 5681: 1; Linux: all, and simstack live: tcp_cong_avoid_ai counts stretch ACKs' segments)
    icmp_syn_sent: str = "rfc1122"  # which ICMP errors end a connection attempt: "rfc1122" (port and protocol
    # unreachable, RFC 1122 4.2.3.9) or "freebsd" (those, administratively prohibited and TTL exceeded: icmp_may_rst)
    double_buffers: bool = False  # SO_RCVBUF and SO_SNDBUF keep twice what the application sets (Linux's sock_setsockopt)

    def __post_init__(self) -> None:
        if not 0 < self.delack_time <= 0.2:
            raise ValueError("delack_time must be in (0, 0.2] s (RFC 1122 4.2.3.2 asks < 0.5 s)")
        if not 0 < self.rto_min <= self.rto_initial <= self.rto_max:
            raise ValueError("need 0 < rto_min <= rto_initial <= rto_max")
        if not MIN_SND_MSS[0] <= self.min_snd_mss <= MIN_SND_MSS[1]:
            raise ValueError(f"min_snd_mss must be from {MIN_SND_MSS[0]} to {MIN_SND_MSS[1]}")
        if not -1 <= self.wscale <= MAX_WSCALE:
            raise ValueError(f"wscale must be -1 (none) or a shift from 0 to {MAX_WSCALE} (RFC 7323 2.3)")
        if self.syncookies not in (0, 1, 2):
            raise ValueError("syncookies must be 0 (never), 1 (when a SYN queue is full) or 2 (always)")
        for key, words in CHOICES.items():
            if getattr(self, key) not in words:
                raise ValueError(f"{key} must be one of {', '.join(words)}")


# A Tcp built without the NamedTuple's keyword binding, on the per-segment output path.
_new = tuple.__new__


def make_tcp(sport: int, dport: int, seq: int, ack: int, flags: int, window: int, options: tuple[Option, ...],
             payload: bytes) -> Tcp:
    seg: Tcp = _new(Tcp, (sport, dport, seq, ack, flags, window, 0, options, payload, None, None))
    return seg


# The empty containers every endpoint starts with, shared: a listener gets its own queue and set, a
# connection its own out-of-order list when a segment first waits there. Nothing is ever added to these
# (the queue's maxlen of 0 would drop it anyway).
_NO_QUEUE: "deque[TcpConn]" = deque(maxlen=0)
_NO_CHILDREN: "set[TcpConn]" = set()
_NO_OOO: list[tuple[int, bytes, bool]] = []
_NO_BLOCKS: list[tuple[int, int]] = []


def _err(code: int) -> OSError:
    # OSError(EPIPE, ...) is a BrokenPipeError, ECONNRESET a ConnectionResetError, and so on.
    return OSError(code, os.strerror(code))


class TcpConn:
    """A TCB. Applications call the methods under "application API"; the layer calls the rest."""

    __slots__ = (
        "__weakref__", "accept_queue", "ack_now", "ack_pending", "autobound", "backlog", "buf_seq",
        "ca_state", "cc", "cc_state",  # congestion control (tcp_cc)
        "children", "close_at",
        "cwnd", "delack_at", "dsack", "dupacks", "error", "fin_next", "fin_rcvd", "fin_seq", "in_recovery", "irs", "iss",
        "ka_at", "ka_probes", "keepalive", "key", "last_ack_sent", "last_rx", "last_send", "layer", "local_ip", "local_port",
        "max_snd_wnd", "nodelay", "ooo", "ooo_bytes", "our_mss", "parent", "persist_at", "persist_backoff", "prev_state",
        "probes", "quick", "rcv_adv", "rcv_mss", "rcv_nxt", "rcv_shut", "rcv_wscale", "rcvbuf", "rcvbuf_size", "recover",
        "released", "remote_ip", "remote_port", "retries", "reuseaddr", "rto", "rto_at", "rto_base", "rtt_seq", "rtt_time",
        "rttvar",
        "sack_blocks", "sack_ok", "sb", "sched", "snd_max", "snd_mss", "snd_nxt", "snd_shut", "snd_una", "snd_wl1", "snd_wl2",
        "snd_wnd", "snd_wscale", "sndbuf", "sndbuf_size", "soft_error", "srtt", "ssthresh", "state", "syn_acked",
        "syn_retransmitted", "ts_offset", "ts_ok", "ts_recent", "ts_recent_age", "tso_max", "user_buffers",
        "was_connected", "ws_ok",
    )

    def __init__(self, layer: "TcpLayer") -> None:
        cfg = layer.config
        self.layer = layer
        self.state = CLOSED
        self.prev_state = CLOSED
        self.key: Key | None = None
        self.local_ip = ANY
        self.local_port = 0
        self.remote_ip = ANY
        self.remote_port = 0
        # options (setsockopt)
        self.reuseaddr = False
        self.nodelay = False
        self.keepalive = False
        self.rcvbuf_size = cfg.rcvbuf
        self.sndbuf_size = cfg.sndbuf
        # application-side flags
        self.released = False  # the application closed or never had it (an unaccepted child)
        self.autobound = False  # the port came from connect(), not bind()
        self.was_connected = False
        self.snd_shut = False
        self.rcv_shut = False
        self.fin_rcvd = False
        self.fin_next = False  # set by the TEXT action: the stream reached the peer's FIN
        self.syn_acked = False
        self.error: int | None = None  # SO_ERROR
        self.soft_error: int | None = None  # from ICMP, reported if the connection times out (RFC 1122 4.2.3.9)
        # listener: its own queue and set come with listen() (_a_listen); every other endpoint shares
        # empty ones, which nothing adds to (a deque and a set cost 0.9 KB, idle, per connection)
        self.backlog = 0
        self.accept_queue: deque[TcpConn] = _NO_QUEUE
        self.children: set[TcpConn] = _NO_CHILDREN  # half-open children, SYN-RECEIVED
        self.parent: TcpConn | None = None
        # send sequence space
        self.iss = 0
        self.snd_una = self.snd_nxt = self.snd_max = self.buf_seq = 0
        self.snd_wnd = self.max_snd_wnd = 0
        self.snd_wl1 = self.snd_wl2 = 0
        self.sndbuf = bytearray()
        self.fin_seq: int | None = None
        self.our_mss = DEFAULT_MSS
        self.snd_mss = DEFAULT_MSS
        self.tso_max = 0  # offload: data segments of up to this many bytes, whole MSS multiples (0: one MSS)
        # congestion control (RFC 5681, NewReno RFC 6582): the algorithm is a singleton (tcp_cc)
        self.cc = ALGORITHMS[cfg.congestion]
        self.cc_state: CubicState | None = None
        self.ca_state = OPEN  # the recovery phase (tcp_cc.PHASES)
        self.sb: Scoreboard | None = None  # what the peer SACKed (RFC 6675), made at its first SACK block
        self.last_send = 0.0  # when data last went out, for the restart window (RFC 5681 4.1)
        self.cwnd = 0
        self.ssthresh = 1 << 30
        self.dupacks = 0
        self.in_recovery = False
        self.recover = 0
        # receive sequence space
        self.irs = 0
        self.rcv_nxt = self.rcv_adv = 0
        self.rcvbuf = bytearray()
        self.ooo: list[tuple[int, bytes, bool]] = _NO_OOO  # (seq, data, fin), ascending, disjoint; own list once used
        self.ooo_bytes = 0
        self.rcv_mss = DEFAULT_MSS
        self.ack_pending = 0  # bytes received since our last ACK
        self.ack_now = False
        self.last_ack_sent = 0  # RFC 7323 4.3 Last.ACK.sent
        # options negotiated on the SYNs (RFC 7323, RFC 2018)
        self.ws_ok = False
        self.rcv_wscale = 0  # our shift: the windows we send are scaled down by it
        self.snd_wscale = 0  # the peer's: the windows it sends are scaled up by it
        self.ts_ok = False
        self.ts_recent = 0  # RFC 7323 TS.Recent
        self.ts_recent_age = 0.0  # when TS.Recent was recorded (RFC 7323 5.5)
        self.ts_offset = 0  # our timestamp clock's offset for this connection (RFC 7323 5.4)
        self.sack_ok = False
        self.sack_blocks: list[tuple[int, int]] = _NO_BLOCKS  # what we hold above RCV.NXT, the most recently changed
        # first; replaced, never changed in place
        self.dsack: tuple[int, int] | None = None  # a duplicate to report once, first (RFC 2883)
        self.user_buffers = False  # SO_RCVBUF or SO_SNDBUF set: their sizes stay as the application asked
        # RTT and retransmission (RFC 6298)
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto = self.rto_base = cfg.rto_initial  # rto_base: before rto_slop (BSD's TCP_REXMTVAL)
        self.quick = 0  # data segments still to be ACKed at once (Linux quick-ACK mode)
        self.rtt_seq: int | None = None  # the segment being timed ends here (one at a time, Karn)
        self.rtt_time = 0.0
        self.retries = 0
        self.syn_retransmitted = False
        self.probes = 0  # zero-window probes without an answer
        self.persist_backoff = 0
        self.ka_probes = 0
        self.last_rx = 0.0
        # deadlines; ``sched`` is the one in the stack's heap
        self.rto_at: float | None = None
        self.persist_at: float | None = None
        self.delack_at: float | None = None
        self.ka_at: float | None = None
        self.close_at: float | None = None  # TIME-WAIT or orphan FIN-WAIT-2
        self.sched: float | None = None

    def __repr__(self) -> str:
        return f"<TcpConn {self.state} {self.local_address} -> {self.remote_address}>"

    # ======================================================================
    # application API
    # ======================================================================
    @property
    def local_address(self) -> tuple[bytes, int]:
        return (self.local_ip, self.local_port)

    @property
    def remote_address(self) -> tuple[bytes, int] | None:
        """getpeername: None (ENOTCONN) before connect and once the connection is CLOSED, as Linux."""
        return (self.remote_ip, self.remote_port) if self.key is not None and self.state != CLOSED else None

    def bind(self, ip: bytes, port: int) -> None:
        """Raises EBADF, EINVAL (already bound or in use), EADDRNOTAVAIL, EADDRINUSE; OverflowError for a bad port."""
        self._check_open()
        if self.local_port or self.state != CLOSED:
            raise OSError(errno.EINVAL, "Invalid argument: socket already bound")
        self.layer.bind(self, ip, port)

    def listen(self, backlog: int = 128) -> None:
        """Passive OPEN. Raises EBADF, EINVAL (connected), EADDRINUSE (another listener on the port)."""
        self._check_open()
        backlog = max(0, min(backlog, self.layer.config.somaxconn))
        if self.state == LISTEN:
            self.backlog = backlog
            return
        if self.state != CLOSED or self.was_connected:
            raise OSError(errno.EINVAL, "Invalid argument")
        if not self.local_port:
            self.layer.bind(self, ANY, 0)
        self.layer.check_listen(self)
        self.backlog = backlog
        self._fire(T.OPEN_PASSIVE, None, 0.0)

    def accept(self) -> "TcpConn | None":
        """The next established connection, or None (would block). Raises EBADF, EINVAL (not listening)."""
        self._check_open()
        if self.state != LISTEN:
            raise OSError(errno.EINVAL, "Invalid argument")
        if not self.accept_queue:
            return None
        child = self.accept_queue.popleft()
        child.parent = None
        child.released = False
        return child

    def connect(self, ip: bytes, port: int, now: float) -> None:
        """Active OPEN: sends the SYN; wait for Ready.CONNECTED, or Ready.ERROR and ``error``.

        Raises EBADF, EALREADY (handshake under way), EISCONN, ENETUNREACH (no route),
        EADDRNOTAVAIL (no port, or the 4-tuple is taken), EINVAL (bad port, listening socket).
        """
        self._check_open()
        if self.state in (SYN_SENT, SYN_RECEIVED):
            raise OSError(errno.EALREADY, "Operation already in progress")
        if self.state != CLOSED or self.was_connected:
            raise OSError(errno.EISCONN, "Transport endpoint is already connected")
        if not 0 < port <= 0xFFFF:
            raise OSError(errno.EINVAL, "Invalid argument")
        self.layer.connect(self, ip, port)
        self.error = None
        self.soft_error = None
        self._fire(T.OPEN_ACTIVE, None, now)

    def send(self, data: Buffer, now: float) -> int:
        """Queue what fits in SO_SNDBUF; returns the count, 0 when the buffer is full (would block).

        Raises the pending error (ECONNRESET, ETIMEDOUT, ...) once, then EPIPE when
        sending is over: after shutdown(SHUT_WR) or close, after a reset, or never connected.
        """
        self._check_open()
        if self.error is not None:
            raise _err(self.take_error() or errno.EPIPE)
        if self.snd_shut or (self.state, T.SEND) not in T.DISPATCH:
            raise _err(errno.EPIPE)
        free = self.sndbuf_size - len(self.sndbuf)
        if free <= 0 or not data:
            return 0
        n = len(data)
        if n > free:
            data, n = data[:free], free
        self.sndbuf += data
        if self.state in _SYNCHRONIZED_SEND:
            # the SEND rows (RFC 9293 3.10.2) keep the state; their action, done here without the table
            # (_a_queue_data), sends what the windows allow once the connection is synchronized
            self._push(now)
            self._arm()
        return n

    def recv(self, n: int, now: float, peek: bool = False) -> bytes | None:
        """Up to ``n`` bytes; b"" at end of stream; None when nothing is there yet (would block).

        Data that arrived before a reset is returned first, then the error is raised
        once (ECONNRESET, ETIMEDOUT, ...). Raises EBADF, ENOTCONN (never connected, listening).
        """
        self._check_open()
        if n < 0:
            raise ValueError("negative buffersize in recv")
        buf = self.rcvbuf
        if buf and n:
            if n >= len(buf):
                data = bytes(buf)  # the usual read takes all: one copy, and no slice to shift
                if not peek:
                    buf.clear()
            else:
                with memoryview(buf) as view:
                    data = bytes(view[:n])  # one copy, not a bytearray slice and then bytes of it
                if not peek:
                    del buf[:n]
            if not peek and self.state in _RECEIVING:
                # the RECEIVE rows (RFC 9293 3.10.3) keep the state; their action, done here without the
                # table, is a window update where data can still come (_a_read)
                self._maybe_window_update(now)
            return data
        if self.error is not None:
            raise _err(self.take_error() or errno.ENOTCONN)
        if not n or self.fin_rcvd or self.rcv_shut:
            return b""
        state = self.state
        if (state, T.RECEIVE) in T.DISPATCH:
            return None
        if state == CLOSED and self.was_connected:
            return b""
        raise _err(errno.ENOTCONN)

    def shutdown(self, how: int, now: float) -> None:
        """SHUT_RD, SHUT_WR (sends our FIN: RFC 9293 CLOSE) or SHUT_RDWR. Raises EBADF, EINVAL, ENOTCONN."""
        self._check_open()
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise OSError(errno.EINVAL, "Invalid argument")
        if self.state in (CLOSED, LISTEN):
            raise _err(errno.ENOTCONN)
        if how != SHUT_WR:
            self.rcv_shut = True
            self._mark(Ready.READABLE)
        if how != SHUT_RD and not self.snd_shut:
            self.snd_shut = True
            if (self.state, T.CLOSE) in T.DISPATCH:
                self._fire(T.CLOSE, None, now)
            self._mark(Ready.WRITABLE)

    def close(self, now: float) -> None:
        """Release the endpoint. Unread data makes it an abort with RST (RFC 9293 3.10.4, RFC 1122 4.2.2.13);
        otherwise our FIN goes after the queued data and the connection finishes on its own (an orphan).
        A listener resets the connections nobody accepted. Closing twice is a no-op."""
        if self.released:
            return
        self.released = True
        state = self.state
        if state == LISTEN:
            self._fire(T.CLOSE, None, now)
        elif self.rcvbuf and (state, T.ABORT) in T.DISPATCH:
            self.layer.counters.inc("tcp.abort_on_close")
            self._fire(T.ABORT, None, now)
        elif (state, T.CLOSE) in T.DISPATCH and not self.snd_shut:
            self.snd_shut = True
            self._fire(T.CLOSE, None, now)
        elif self.state == FIN_WAIT_2:
            self.close_at = now + self.layer.config.fin_timeout
            self._arm()
        if self.state == CLOSED:
            self.layer.release(self)

    def abort(self, now: float) -> None:
        """RFC 9293 ABORT: RST where the table says so, and the endpoint is released."""
        if self.released:
            return
        self.released = True
        if (self.state, T.ABORT) in T.DISPATCH:
            self._fire(T.ABORT, None, now)
        self.layer.release(self)

    def take_error(self) -> int | None:
        """SO_ERROR: the pending errno, cleared by reading it."""
        err, self.error = self.error, None
        return err

    def set_nodelay(self, on: bool, now: float) -> None:
        """TCP_NODELAY; turning it on sends what Nagle held back (as Linux does)."""
        self.nodelay = on
        if on and self.state in _SENDING:
            self._push(now)
            self._arm()

    def set_keepalive(self, on: bool, now: float) -> None:
        """SO_KEEPALIVE (RFC 1122 4.2.3.6): probes after keepalive_time of silence."""
        self.keepalive = on
        self.ka_probes = 0
        self.ka_at = now + self.layer.config.keepalive_time if on and self.state in _KEEPALIVE else None
        self._arm()

    def set_congestion(self, name: str) -> None:
        """TCP_CONGESTION: another algorithm from here on, starting afresh from cwnd and ssthresh. ENOENT if unknown."""
        cc = ALGORITHMS.get(name)
        if cc is None:
            raise _err(errno.ENOENT)  # as Linux's tcp_set_congestion_control
        self.cc = cc
        self.cc_state = None

    def set_rcvbuf(self, size: int, now: float) -> None:
        """SO_RCVBUF: the window offered never shrinks below what was already advertised."""
        self.rcvbuf_size = max(256, size * 2 if self.layer.config.double_buffers else size)
        self.user_buffers = True
        if self.state in _RECEIVING:
            self._maybe_window_update(now)

    def set_sndbuf(self, size: int) -> None:
        self.sndbuf_size = max(256, size * 2 if self.layer.config.double_buffers else size)
        self.user_buffers = True

    @property
    def readable(self) -> bool:
        """A recv would not block."""
        return bool(self.rcvbuf) or self.error is not None or self.fin_rcvd or self.rcv_shut or \
            (self.state == CLOSED and self.was_connected)

    @property
    def writable(self) -> bool:
        """Send space is at least a third of SO_SNDBUF (Linux's sk_stream_is_writeable), or a send would fail at once."""
        if self.state in (SYN_SENT, SYN_RECEIVED, LISTEN):
            return False
        if self.error is not None or self.snd_shut or (self.state, T.SEND) not in T.DISPATCH:
            return True
        return self.sndbuf_size - len(self.sndbuf) >= self.sndbuf_size // 3

    def poll(self) -> Ready:
        """The readiness now, as poll(2) would report it; the marks tell when it changes."""
        r = Ready(0)
        if self.state == LISTEN:
            return Ready.ACCEPTABLE if self.accept_queue else r
        if self.readable:
            r |= Ready.READABLE
        if self.writable:
            r |= Ready.WRITABLE
        if self.was_connected and self.state != CLOSED:
            r |= Ready.CONNECTED
        if self.fin_rcvd or (self.state == CLOSED and (self.was_connected or self.error is not None)):
            r |= Ready.HUP
        if self.error is not None:
            r |= Ready.ERROR
        return r

    def _check_open(self) -> None:
        if self.released:
            raise _err(errno.EBADF)

    # -- called by the layer for ICMP errors (RFC 5927) ----------------------
    def path_mtu(self, mtu: int, now: float) -> None:
        """RFC 1191, RFC 9293 3.7.2: a smaller path MTU lowers the MSS, and what was lost is resent."""
        mss = max(MIN_MSS, mtu - 40)
        if mtu < 68 or mss >= self.snd_mss:
            return
        self.snd_mss = mss
        self.layer.counters.inc("tcp.pmtu")
        if self.syn_acked and self.state in _SENDING:
            self.snd_nxt = self.snd_una  # resend at the new size (Linux tcp_simple_retransmit)
            self.rtt_seq = None
            self._push(now)
            self._arm()

    def fire_syn(self, seg: Tcp, now: float) -> None:
        """A forked child (in LISTEN) takes the listener's SYN: LISTEN -> SYN-RECEIVED."""
        self._fire(T.SYN, seg, now)

    def cookie_syn_received(self, syn: Tcp, iss: int, now: float) -> None:
        """RFC 4987 3.6: the SYN-RECEIVED a valid SYN cookie stands for, rebuilt as its ACK arrives (nothing was kept)."""
        self.state = SYN_RECEIVED
        self._learn_syn(syn, now)
        self.iss = self.snd_una = self.snd_wl2 = self.recover = iss
        self.snd_nxt = self.snd_max = self.buf_seq = (iss + 1) & MASK
        self.ts_offset = self.layer.ts_offset(self.local_ip, self.local_port, self.remote_ip, self.remote_port)

    def icmp_unreachable(self, now: float) -> None:
        self._fire(T.ICMP_UNREACHABLE, None, now)

    # ======================================================================
    # the table
    # ======================================================================
    def _fire(self, event: str, seg: Tcp | None, now: float) -> bool:
        row = _DISPATCH.get((self.state, event))
        if row is None:
            self.layer.counters.drop("tcp", "no_transition")
            return False
        self.prev_state = self.state
        self.state = row[0]
        row[1](self, seg, now)
        return True

    def _mark(self, what: Ready) -> None:
        self.layer.ready.mark(self, what)

    # ======================================================================
    # segment arrival (RFC 9293 3.10.7)
    # ======================================================================
    def segment_arrives(self, seg: Tcp, now: float) -> bool:
        """Process one segment for this connection; False if it is not ours after all (TIME-WAIT reopened)."""
        self.last_rx = now
        state = self.state
        # -- fast path: ESTABLISHED, in order, nothing but ACK (and PSH) -----------
        if state == ESTABLISHED and seg.flags & _SLOW_FLAGS == ACK and seg.seq == self.rcv_nxt and not self.ooo:
            ack = seg.ack
            una = self.snd_una
            acked = (ack - una) & MASK
            payload = seg.payload
            n = len(payload)
            if acked <= ((self.snd_max - una) & MASK) and n <= ((self.rcv_adv - seg.seq) & MASK) \
                    and (acked or n or self.snd_max == una) and not self.in_recovery:
                if self.ts_ok and not self._ts_seen(seg, now):
                    self._push(now)  # RFC 7323 5.3 R1: PAWS dropped it; the ACK it draws goes now
                    return True
                if acked:
                    self._acked(ack, acked, now)
                # RFC 9293 3.10.7.4 window update: SND.WL1 < SEG.SEQ, or equal and SND.WL2 =< SEG.ACK,
                # always true in order.
                wnd = seg.window << self.snd_wscale
                self.snd_wnd = wnd
                self.probes = 0  # an answer to a zero-window probe lands here too
                self.snd_wl1 = seg.seq
                self.snd_wl2 = ack
                if wnd > self.max_snd_wnd:
                    self.max_snd_wnd = wnd
                if n:
                    self.rcvbuf += payload
                    self.rcv_nxt = (self.rcv_nxt + n) & MASK
                    self._data_in(n, now)
                if self.ack_now or len(self.sndbuf) > ((self.snd_nxt - self.buf_seq) & MASK) or \
                        self.persist_at is not None:
                    self._push(now)
                self._arm()
                return True
        if state == SYN_SENT:
            self._syn_sent(seg, now)
        elif state == LISTEN:
            self._listen(seg, now)
        elif state == CLOSED:
            return False
        else:
            if not self._other(seg, now):
                return False
        if self.state != CLOSED:
            if self.ack_now:
                self._push(now)
            self._arm()
        return True

    def _listen(self, seg: Tcp, now: float) -> None:
        """RFC 9293 3.10.7.2 (the listener forks a child for a SYN; see TcpLayer.fork)."""
        flags = seg.flags
        if flags & RST:
            self._fire(T.RST, seg, now)
        elif flags & ACK and flags & SYN and not self.layer.config.listen_synack_rst:
            self.layer.counters.drop("tcp", "no_syn")  # FreeBSD: "SYN|ACK invalid, segment rejected"
        elif flags & ACK:
            self._fire(T.BAD_ACK, seg, now)
        elif flags & SYN:
            self.layer.syn_to_listener(self, seg, now)  # the queues' bounds and SYN cookies
        else:
            self.layer.counters.drop("tcp", "no_syn")

    def _syn_sent(self, seg: Tcp, now: float) -> None:
        """RFC 9293 3.10.7.3."""
        flags = seg.flags
        if flags & ACK:
            ack = seg.ack
            # SEG.ACK =< ISS or SEG.ACK > SND.NXT: not ours
            if not (seq_gt(ack, self.iss) and not seq_gt(ack, self.snd_max)):
                if flags & RST:
                    self.layer.counters.drop("tcp", "bad_ack")
                else:
                    self._fire(T.BAD_ACK, seg, now)
                return
        if flags & RST:
            # RFC 5961 3.2: in SYN-SENT a RST counts only with an acceptable ACK
            if flags & ACK:
                self._fire(T.RST, seg, now)
            else:
                self.layer.counters.drop("tcp", "rst_without_ack")
            return
        if not flags & SYN:
            self.layer.counters.drop("tcp", "no_syn")
            return
        if flags & ACK:
            self._fire(T.SYN_ACK, seg, now)
            if seg.payload or flags & FIN:
                # "continue processing at the sixth step": text and FIN of a SYN-ACK, trimmed to the window
                # offered (RFC 9293 3.10.7.4: segments are tailored to fit the window, FIN included)
                start = (seg.seq + 1) & MASK
                room = max(seq_diff(self.rcv_adv, start), 0)
                if self.layer.config.accept_to_buffer:
                    room = max(room, self.rcvbuf_size - len(self.rcvbuf))
                payload, fin = seg.payload, bool(flags & FIN)
                if len(payload) > room:
                    payload, fin = payload[:room], False
                self._text_and_fin(start, payload, fin, seg, now)
        else:
            self._fire(T.SYN, seg, now)

    def _other(self, seg: Tcp, now: float) -> bool:
        """SYN-RECEIVED and the synchronized states: RFC 9293 3.10.7.4, step by step."""
        flags = seg.flags
        seq = seg.seq
        state = self.state
        payload = seg.payload
        c = self.layer.counters
        cfg = self.layer.config
        # Before the acceptability test, three segments that it would refuse but that mean something:
        if state == SYN_RECEIVED and flags & (SYN | ACK | RST) == SYN and seq == self.irs:
            return self._fire(T.DUP_SYN, seg, now) or True
        if state == SYN_RECEIVED and flags & (SYN | ACK | RST) == SYN | ACK and seq == self.irs:
            # RFC 9293 3.5 figure 7, simultaneous open: the peer's SYN-ACK repeats the SYN we took;
            # its ACK completes the handshake (the acceptability test's letter would refuse it)
            flags &= ~SYN
            seq = (seq + 1) & MASK
        if state == TIME_WAIT:
            if flags & RST and cfg.rfc1337:
                c.drop("tcp", "ignored")  # RFC 1337 fix 1: no TIME-WAIT assassination
                return True
            if flags & (SYN | ACK | RST) == SYN and seq_gt(seq, self.rcv_nxt) and cfg.time_wait_reopen and \
                    self.layer.listening(self.local_ip, self.local_port):
                self._fire(T.SYN_REOPEN, seg, now)  # RFC 1122 4.2.2.13: a new incarnation, for the listener
                return False
            if cfg.bsd_time_wait and not flags & (SYN | RST | ACK):
                c.drop("tcp", "no_ack")  # tcp_twcheck(): a segment without ACK goes unanswered
                return True
            if flags & FIN and not flags & RST and (seq + len(payload) + 1) & MASK == self.rcv_nxt:
                self._fire(T.FIN, seg, now)  # the peer's FIN again: our last ACK was lost
                return True
            if cfg.bsd_time_wait and not flags & (SYN | RST):
                # tcp_twcheck(): an ACK for anything but a duplicate ACK, in the window or not
                if payload or flags & FIN or seq != self.rcv_nxt or seg.ack != self.snd_max:
                    self._send_ack(now)
                return True
        if flags & (SYN | RST) == SYN and state != SYN_RECEIVED and cfg.rfc5961 and cfg.rfc5961_syn:
            # RFC 5961 4.2: "If the SYN bit is set, irrespective of the sequence number, TCP MUST send
            # an ACK (also referred to as challenge ACK)" (the fourth step, ahead of the first)
            self._fire(T.SYN, seg, now)
            return True
        if self.ts_ok and self._paws(seg, now):
            return True  # RFC 7323 5.3 R1 comes before R2, the acceptability test
        if payload and self.sack_ok and cfg.dsack:
            self._note_duplicate(seq, len(payload))
        # -- first: sequence number (acceptability) -------------------------------
        wnd = seq_diff(self.rcv_adv, self.rcv_nxt)
        if cfg.accept_to_buffer and self.parent is None and state != TIME_WAIT and \
                self.rcvbuf_size - len(self.rcvbuf) > wnd:
            wnd = self.rcvbuf_size - len(self.rcvbuf)  # BSD: a socket's rcv_wnd is its buffer's free space
        if wnd < 0:
            wnd = 0
        fin = bool(flags & FIN)
        syn = bool(flags & SYN)
        seglen = len(payload) + syn + fin
        rel = seq_diff(seq, self.rcv_nxt)
        if seglen == 0:
            ok = rel == 0 if wnd == 0 else 0 <= rel < wnd
        else:
            ok = wnd > 0 and (0 <= rel < wnd or in_window((seq + seglen - 1) & MASK, self.rcv_nxt, wnd))
        if not ok:
            if wnd == 0 and rel == 0 and flags & ACK:
                # a zero window still takes valid ACKs, URGs and RSTs (3.10.7.4)
                payload, fin, syn, seglen = b"", False, False, 0
                self.ack_now = True
                c.drop("tcp", "zero_window")
            elif cfg.ack_old_segments and rel < 0 and flags & ACK and not flags & (RST | SYN) and \
                    not seq_gt((seq + seglen) & MASK, self.rcv_nxt):
                # BSD trims an old duplicate to nothing, acknowledges it, and goes on with its ACK field
                payload, fin, seglen, rel = b"", False, 0, 0
                seq = self.rcv_nxt
                self.ack_now = True
                c.drop("tcp", "duplicate")
            else:
                if flags & RST:
                    c.drop("tcp", "rst_out_of_window")
                else:
                    c.drop("tcp", "out_of_window")
                    if flags & SYN:
                        self._send(self.snd_max, ACK, b"", now)  # the ACK a SYN draws, never with our FIN again
                    else:
                        self._fire(T.UNACCEPTABLE, seg, now)
                return True
        # trim to the window: the part before RCV.NXT was received already
        if rel < 0:
            cut = -rel
            if syn:
                syn = False
                cut -= 1
            payload = payload[cut:]
            seq = self.rcv_nxt
            rel = 0
        if rel + len(payload) + (1 if fin else 0) > wnd:
            payload = payload[:max(0, wnd - rel)]
            fin = False
        # -- second: RST (RFC 5961 3.2) --------------------------------------------
        if flags & RST:
            if not (cfg.rfc5961 and cfg.rfc5961_rst) or seq == self.rcv_nxt:
                self._fire(T.RST, seg, now)
            else:
                self._fire(T.RST_IN_WINDOW, seg, now)
            return True
        # -- fourth: SYN (RFC 5961 4.2) ---------------------------------------------
        if syn:
            self._fire(T.SYN if cfg.rfc5961 and cfg.rfc5961_syn else T.SYN_RFC793, seg, now)
            return True
        # -- fifth: ACK -----------------------------------------------------------------
        if not flags & ACK:
            c.drop("tcp", "no_ack")
            return True
        ack = seg.ack
        if cfg.drop_future_ack and state != SYN_RECEIVED and seq_gt(ack, self.snd_max):
            c.drop("tcp", "bad_ack")  # Linux tcp_ack(): discarded whole, unanswered, its TSval unrecorded
            return True
        if self.ts_ok:
            self._ts_seen(seg, now)  # RFC 7323 5.3 R3 (no segment between it and here changes TS.Recent's rule)
        if state == SYN_RECEIVED:
            if seq_gt(ack, self.snd_una) and not seq_gt(ack, self.snd_max):
                parent = self.parent
                if parent is not None and len(parent.accept_queue) > parent.backlog:
                    c.drop("tcp", "accept_queue_full")  # Linux (tcp_abort_on_overflow=0): the peer retries
                    return True
                self._fire(T.ACK_OF_SYN, seg, now)
                state = self.state
            else:
                self._fire(T.BAD_ACK, seg, now)
                return True
        if seq_gt(ack, self.snd_max) or seq_lt(ack, (self.snd_una - max(self.max_snd_wnd, 1)) & MASK):
            # acknowledges what we never sent, or far older than anything in flight (RFC 5961 5.2)
            c.drop("tcp", "bad_ack")
            self._fire(T.BAD_ACK, seg, now)
            return True
        fin_seq = self.fin_seq
        if state in _ACK_OF_FIN and fin_seq is not None and ack == (fin_seq + 1) & MASK:
            self._fire(T.ACK_OF_FIN, seg, now)
        else:
            self._fire(T.ACK, seg, now)
        if self.state == CLOSED:
            return True
        # -- sixth: URG is ignored (RFC 9293 3.8.5: new applications SHOULD NOT use it) --
        # -- seventh and eighth: text, FIN ------------------------------------------------
        if payload or fin:
            self._text_and_fin(seq, payload, fin, seg, now)
        return True

    def _text_and_fin(self, seq: int, payload: bytes, fin: bool, seg: Tcp, now: float) -> None:
        """Steps seven and eight: the text (in order or held), then the FIN once the stream reaches it."""
        if payload or (fin and seq != self.rcv_nxt):
            if payload and self.released and self.parent is None and self.state in _RECEIVING:
                self._fire(T.TEXT_AFTER_CLOSE, seg, now)  # nobody will read it: RST, as Linux does
                return
            if seq != seg.seq or payload is not seg.payload or fin != bool(seg.flags & FIN):
                seg = Tcp(seg.src_port, seg.dst_port, seq, seg.ack, (seg.flags & ~FIN) | (FIN if fin else 0),
                          seg.window, 0, (), payload)  # the trimmed segment
            self.fin_next = False
            self._fire(T.TEXT, seg, now)
            fin = self.fin_next
        if fin:
            self._fire(T.FIN, seg, now)

    # ======================================================================
    # receiving data
    # ======================================================================
    def _deliver(self, seq: int, data: bytes, fin: bool, now: float) -> bool:
        """Text processing (3.10.7.4 seventh): in order into rcvbuf, later ones into ooo. True when a FIN is next."""
        if seq != self.rcv_nxt:
            self._ooo_insert(seq, data, fin)
            self.ack_now = True  # RFC 5681 4.2: an out-of-order segment is acknowledged at once
            if self.sack_ok:
                self._sack_update(seq)
            return False
        n = len(data)
        if n:
            self.rcvbuf += data
            self.rcv_nxt = (self.rcv_nxt + n) & MASK
            self._data_in(n, now)  # before the out-of-order queue adds to the buffer: its edge test needs that
        if self.ooo and fin:
            # The stream ends at this FIN (RFC 9293 3.10.7.4 eighth): what is held beyond it was never part of
            # it, and is dropped rather than read past the end (Linux's tcp_fin purges the queue the same way).
            for _ in self.ooo:
                self.layer.counters.drop("tcp", "ignored")
            self.ooo.clear()
            self.ooo_bytes = 0
            self.sack_blocks = []
        elif self.ooo:
            fin = self._drain_ooo()
            self.ack_now = True  # RFC 5681 4.2: filling a hole is acknowledged at once
        if self.sack_blocks:
            self._sack_update(None)
        if self.dsack is not None:
            self.ack_now = True  # a duplicate is reported at once: the next segment in order would clear it
        return fin

    # -- SACK blocks we report (RFC 2018 4, RFC 2883) --------------------------------
    def _note_duplicate(self, seq: int, n: int) -> None:
        """A segment carrying data we hold already: its first duplicate range goes in the next ACK (RFC 2883 4)."""
        end = (seq + n) & MASK
        nxt = self.rcv_nxt
        if seq_lt(seq, nxt):
            self.dsack = (seq, end if seq_le(end, nxt) else nxt)
            return
        for oseq, odata, _ in self.ooo:
            oend = (oseq + len(odata)) & MASK
            lo = seq if seq_gt(seq, oseq) else oseq
            hi = end if seq_lt(end, oend) else oend
            if seq_lt(lo, hi):
                self.dsack = (lo, hi)
                return

    def _sack_update(self, seq: int | None) -> None:
        """The blocks above RCV.NXT: the one holding the segment just queued out of order first (RFC 2018 4),
        then the others as they were, less those now acknowledged or joined to it."""
        head = self._ooo_run(seq) if seq is not None else None
        nxt = self.rcv_nxt
        keep = []
        for start, end in self.sack_blocks:
            if seq_le(start, nxt):
                continue
            if head is not None and seq_le(head[0], end) and seq_ge(head[1], start):
                head = (start if seq_lt(start, head[0]) else head[0], end if seq_gt(end, head[1]) else head[1])
                continue
            keep.append((start, end))
        self.sack_blocks = ([head] if head is not None else []) + keep[:MAX_SACK_KEPT]

    def _ooo_run(self, seq: int) -> tuple[int, int] | None:
        """The contiguous stretch of the out-of-order queue that holds ``seq``."""
        ooo = self.ooo
        for i, (oseq, odata, _) in enumerate(ooo):
            if seq_le(oseq, seq) and seq_lt(seq, (oseq + len(odata)) & MASK):
                lo = i
                while lo and (ooo[lo - 1][0] + len(ooo[lo - 1][1])) & MASK == ooo[lo][0]:
                    lo -= 1
                hi = i
                while hi + 1 < len(ooo) and (ooo[hi][0] + len(ooo[hi][1])) & MASK == ooo[hi + 1][0]:
                    hi += 1
                return ooo[lo][0], (ooo[hi][0] + len(ooo[hi][1])) & MASK
        return None

    def _paws(self, seg: Tcp, now: float, ts: tuple[int, int] | None = None) -> bool:
        """RFC 7323 5.3 R1: a segment whose TSval is older than TS.Recent is an old duplicate (from an earlier
        trip round the sequence space, or a replay): it draws an ACK (the UNACCEPTABLE row) and is dropped.

        A RST is exempt (R1: "and if the RST bit is not set"), so is a segment without timestamps, and
        TS.Recent recorded more than 24 days ago may be from a clock that has wrapped since (5.5).
        ``ts``: the segment's timestamps when the caller parsed them already.
        """
        if ts is None:
            ts = seg.option(OPT_TIMESTAMP)
        if not isinstance(ts, tuple) or not seq_lt(ts[0], self.ts_recent) or seg.flags & RST or \
                now - self.ts_recent_age > PAWS_IDLE:
            return False
        self.layer.counters.drop("tcp", "paws")
        self._fire(T.UNACCEPTABLE, seg, now)
        return True

    def _ts_seen(self, seg: Tcp, now: float) -> bool:
        """An acceptable segment's timestamps: TS.Recent (RFC 7323 4.3, 5.3 R3) and an RTT sample (4.1).

        False when PAWS drops the segment (the fast path, which has no earlier test; ``_other`` made it before).
        """
        ts = seg.option(OPT_TIMESTAMP)
        if not isinstance(ts, tuple):
            return True
        val, ecr = ts
        newer = ((val - self.ts_recent) & MASK) < HALF  # SEG.TSval >= TS.Recent, in 32-bit sequence arithmetic
        if not newer and self._paws(seg, now, ts):
            return False
        # RFC 7323 4.3 (2): TS.Recent follows the peer's clock only on segments that start at or before
        # Last.ACK.sent, the ACK we sent last. Delayed ACKs then echo the earliest segment they cover
        # (4.2 (A)), an ACK for a segment past a hole the last one in order (B), and the ACK for the
        # segment that fills a hole that segment's TSval (C): losses overestimate the RTT, never under.
        # After 24 days idle, TS.Recent is no reference and the newest TSval replaces it (5.5).
        if (newer or now - self.ts_recent_age > PAWS_IDLE) and ((self.last_ack_sent - seg.seq) & MASK) < HALF:
            self.ts_recent = val
            self.ts_recent_age = now
        # RFC 7323 4.1 RTTM: an ACK of new data is an RTT sample, now minus the TSval it echoes. Unlike
        # Karn's timing this is not ambiguous after a retransmission: the peer echoes the TSval of the
        # segment that made it send the ACK, the retransmission or the original, so the sample measures
        # that copy's round trip (an ACK held back by loss echoes an older TSval: a longer RTT, 4.2).
        # A TSecr of 0 is taken as none, as Linux does (a peer may send it before it saw our clock).
        una = self.snd_una
        acked = (seg.ack - una) & MASK
        if acked and ecr:
            flight = (self.snd_max - una) & MASK
            ticks = (self._ts_val(now) - ecr) & MASK
            if acked <= flight and ticks < HALF:
                # RFC 7323 appendix G: with a sample every ACK, weight each by the samples a flight gives
                self._rtt_sample(ticks / self.layer.config.ts_hz, -(-flight // (2 * self.snd_mss)))
                self.rtt_seq = None  # taken: Karn's timing (RFC 6298 3) is for connections without timestamps
        return True

    def _data_in(self, n: int, now: float) -> None:
        """Delayed ACK (RFC 1122 4.2.3.2, RFC 5681 4.2): every second full-sized segment, or after delack_time."""
        if n > self.rcv_mss:
            self.rcv_mss = min(n, self.our_mss)
        self.ack_pending += n
        cfg = self.layer.config
        if self.quick:
            self.quick -= 1
            self.ack_now = True
        elif self.ack_pending >= 2 * self.rcv_mss or (cfg.ack_second_segment and self.delack_at is not None):
            self.ack_now = True
        elif self.delack_at is None:
            self.delack_at = now + cfg.delack_time
        if len(self.rcvbuf) <= n:
            # readable is an edge: marked when the buffer stops being empty (a mark costs about 1 us)
            self.layer.ready.mark(self, Ready.READABLE)

    def _ooo_insert(self, seq: int, data: bytes, fin: bool) -> None:
        """Hold a segment above RCV.NXT, trimmed against its neighbours so entries stay disjoint."""
        c = self.layer.counters
        ooo = self.ooo
        if len(ooo) >= self.layer.config.ooo_max_segments:
            c.drop("tcp", "ooo_full")
            return
        if self.ooo_bytes + len(data) > self.layer.config.ooo_max_bytes:
            c.drop("tcp", "ooo_bytes_full")
            return
        base = self.rcv_nxt
        rel = (seq - base) & MASK
        i = 0
        while i < len(ooo) and ((ooo[i][0] - base) & MASK) < rel:
            i += 1
        if i:
            pseq, pdata, _ = ooo[i - 1]
            over = ((pseq + len(pdata)) - seq) & MASK
            if 0 < over < HALF:
                if over >= len(data):
                    c.drop("tcp", "duplicate")
                    return
                data = data[over:]
                seq = (seq + over) & MASK
        while i < len(ooo):
            nseq, ndata, nfin = ooo[i]
            gap = (nseq - seq) & MASK
            if gap >= len(data):
                break
            if ((nseq + len(ndata) - seq) & MASK) <= len(data):
                del ooo[i]  # entirely inside the new segment
                self.ooo_bytes -= len(ndata)
                # its FIN stays only where it was: the end of the new segment (the FIN is a place in the stream)
                fin = fin or (nfin and (nseq + len(ndata)) & MASK == (seq + len(data)) & MASK)
                continue
            data = data[:gap]
            fin = False
            break
        if not data and not fin:
            c.drop("tcp", "duplicate")
            return
        if ooo is _NO_OOO:
            ooo = self.ooo = []
        ooo.insert(i, (seq, bytes(data), fin))
        self.ooo_bytes += len(data)
        c.inc("tcp.rx.ooo")

    def _drain_ooo(self) -> bool:
        """Move what is now in order from ooo to rcvbuf; True when that reaches the FIN."""
        ooo = self.ooo
        while ooo:
            seq, data, fin = ooo[0]
            off = seq_diff(self.rcv_nxt, seq)
            if off < 0:
                return False
            del ooo[0]
            self.ooo_bytes -= len(data)
            if off < len(data):
                part = data[off:]
                self.rcvbuf += part
                self.rcv_nxt = (self.rcv_nxt + len(part)) & MASK
                self._data_in(len(part), self.last_rx)
            elif fin and off > len(data):
                continue  # a FIN behind RCV.NXT: the stream in order ran past it, so it is stale (Linux tcp_ofo_queue)
            if fin:
                self.ooo_bytes = 0
                ooo.clear()
                return True
        return False

    def _window(self, syn: bool = False) -> int:
        """The window to advertise, in bytes; a SYN's is never scaled (RFC 7323 2.2).

        With ``window_steps`` the right edge moves only by worthwhile steps (RFC 9293 3.8.6.2.2);
        without, as BSD, it offers all the free space unless that is below min(buffer/4, MSS), and
        never less than it offered before (RFC 9293 3.8.6.2.2 MUST NOT shrink).
        """
        shift = 0 if syn else self.rcv_wscale
        free = self.rcvbuf_size - len(self.rcvbuf)
        limit = MAX_WINDOW << shift
        if free > limit:
            free = limit
        free = (free >> shift) << shift if free > 0 else 0  # what the field can say
        cur = seq_diff(self.rcv_adv, self.rcv_nxt)
        if cur < 0:
            cur = 0
        elif cur > limit:
            # A SYN-ACK resent after a scaled window went out: its field is unscaled (RFC 7323 2.2), so it
            # repeats what 16 bits can say; the right edge offered before stays where it was (RFC 9293 3.8.6.2.2).
            cur = limit
        if cur & ((1 << shift) - 1):
            # RFC 7323 2.4 and appendix F: the field counts units of 2^shift, and the edge offered last,
            # rounded down, would move left (a shrunk window): round it up, as Linux's tcp_select_window,
            # unless that takes the edge past the buffer by a unit, as rounding up at every ACK would
            # (each one drifts it < 2^shift further); then retract by less than 2^shift, which 2.4 allows
            # (the segments up to the old edge are still taken).
            up = ((cur >> shift) + 1) << shift
            if len(self.rcvbuf) + up <= self.rcvbuf_size + (1 << shift):
                cur = up
                self.rcv_adv = (self.rcv_nxt + cur) & MASK
            else:
                cur = (cur >> shift) << shift
        if self.layer.config.window_steps:
            if free - cur >= min(self.rcvbuf_size // 2, self.our_mss) or (free > cur and free == self.rcvbuf_size):
                self.rcv_adv = (self.rcv_nxt + free) & MASK
                return free
            return cur
        if free < self.rcvbuf_size // 4 and free < self.our_mss:
            free = 0  # receiver SWS avoidance (RFC 1122 4.2.3.3): no tiny windows
        if free > cur:
            self.rcv_adv = (self.rcv_nxt + free) & MASK
            return free
        return cur

    def _maybe_window_update(self, now: float) -> None:
        """After a read: tell the peer when the window grew enough to matter (RFC 1122 4.2.3.3)."""
        free = min(self.rcvbuf_size - len(self.rcvbuf), MAX_WINDOW << self.rcv_wscale)
        cur = max(seq_diff(self.rcv_adv, self.rcv_nxt), 0)
        if self.layer.config.window_steps:
            send = free - cur >= min(self.rcvbuf_size // 2, self.our_mss) and free >= 2 * cur
        else:
            # BSD's tcp_output: two segments' worth and a quarter of the buffer, or half the buffer
            adv = free - cur
            mss = self.snd_mss
            send = (adv >= 2 * mss and (adv >= self.rcvbuf_size // 4 or free <= self.rcvbuf_size // 8
                                        or self.rcvbuf_size <= 8 * mss)) or 2 * adv >= self.rcvbuf_size
        if send:
            self.ack_now = True
            self._push(now)
            self._arm()

    # ======================================================================
    # acknowledgments (3.10.7.4 fifth) and congestion control (RFC 5681, 6582)
    # ======================================================================
    def _process_ack(self, seg: Tcp, now: float) -> None:
        ack = seg.ack
        una = self.snd_una
        acked = seq_diff(ack, una)
        self.probes = 0
        sacked = 0
        sb = self.sb
        before = sb.sacked if sb is not None else 0
        blocks = seg.option(OPT_SACK) if self.sack_ok and seg.options else None
        if isinstance(blocks, tuple) and blocks:
            sacked = self._sack_in(blocks, ack if acked > 0 else una)
            sb = self.sb
        else:
            blocks = None
        if acked > 0:
            self._acked(ack, acked, now)
        elif acked == 0 and self.snd_max != una and (sacked > 0 or (
                sb is None and blocks is None and not seg.payload and not seg.flags & (SYN | FIN) and seg.window
                and seg.window << self.snd_wscale == self.snd_wnd)):
            # RFC 5681 2 DUPLICATE ACKNOWLEDGMENT (answers to zero-window probes are not), or with SACK in
            # use one that SACKs new data (RFC 6675 2)
            self._dupack(now)
        # window update (3.10.7.4): only from a segment newer than the last that set it
        if acked >= 0 and (seq_lt(self.snd_wl1, seg.seq) or (self.snd_wl1 == seg.seq and seq_ge(ack, self.snd_wl2))):
            wnd = seg.window << self.snd_wscale
            if wnd and not self.snd_wnd:
                self.persist_backoff = 0
            self.snd_wnd = wnd
            self.snd_wl1 = seg.seq
            self.snd_wl2 = ack
            if wnd > self.max_snd_wnd:
                self.max_snd_wnd = wnd
        sb = self.sb
        if sb is not None and self.ca_state == RECOVERY:
            # RFC 6937: what this ACK delivered, newly acknowledged or newly SACKed
            self._sack_send((acked if acked > 0 else 0) + sb.sacked - before, acked > 0, now)
        self._push(now)

    def _sack_in(self, blocks: tuple[tuple[int, int], ...], base: int) -> int:
        """An ACK's SACK blocks onto the scoreboard; the octets they newly SACK. D-SACKs are counted (RFC 2883)."""
        sb = self.sb
        if sb is None:
            sb = self.sb = Scoreboard(self.snd_una)
        new, dsack = sb.update(blocks, base, self.snd_max)
        if dsack:
            self.layer.counters.inc("tcp.rx.dsack", dsack)
            if sb.undo_cwnd:
                sb.undo_retrans -= dsack
                if self.ca_state != RECOVERY:
                    self._undo(sb)
        if sb.blocks and self.ca_state == OPEN:
            self.ca_state = PHASES[(OPEN, "dupack")]
            self.in_recovery = True
        elif not sb.blocks and self.ca_state == OPEN and not sb.undo_cwnd:
            self.sb = None
        return new

    def _undo(self, sb: Scoreboard) -> None:
        """RFC 3708 3.2, RFC 4015's response: a recovery whose every retransmission was D-SACKed was spurious
        (reordering, not loss), so cwnd and ssthresh go back to what they were before it (Linux tcp_try_undo_dsack)."""
        if sb.undo_retrans > 0:
            return
        if self.cwnd < sb.undo_cwnd:
            self.cwnd = sb.undo_cwnd
        if self.ssthresh < sb.undo_ssthresh:
            self.ssthresh = sb.undo_ssthresh
        sb.undo_cwnd = 0
        self.layer.counters.inc("tcp.undo")

    def _acked(self, ack: int, acked: int, now: float) -> None:
        """New data acknowledged: free it, time it, grow cwnd, restart the timer (RFC 6298 5.2-5.3)."""
        self.snd_una = ack
        if not self.syn_acked:
            self.syn_acked = True
            acked -= 1  # the SYN's sequence number: no data, cwnd does not grow for it (RFC 5681 3.1)
        if seq_lt(self.snd_nxt, ack):
            self.snd_nxt = ack
        sndbuf = self.sndbuf
        before = len(sndbuf)
        nbuf = (ack - self.buf_seq) & MASK
        if nbuf and nbuf < HALF:
            if nbuf > before:
                nbuf = before  # the rest was our FIN
            del sndbuf[:nbuf]
            self.buf_seq = (self.buf_seq + nbuf) & MASK
        rtt_seq = self.rtt_seq
        if rtt_seq is not None and ((ack - rtt_seq) & MASK) < HALF:
            self._rtt_sample(now - self.rtt_time)
            self.rtt_seq = None
        self.retries = 0
        self.probes = 0
        if self.in_recovery:
            self._acked_phase(ack, acked, now)
        elif self.cc is NEWRENO and self.cwnd >= self.ssthresh:
            mss = self.snd_mss  # NEWRENO.on_ack's congestion avoidance, inline on the per-ACK path
            covered = min(acked, self.layer.config.abc_limit * mss)
            self.cwnd += max(1, mss * (covered if covered > mss else mss) // self.cwnd)
        else:
            self.cc.on_ack(self, acked, self.layer.config.abc_limit * self.snd_mss, now)
        self.dupacks = 0  # RFC 6675 5: a cumulative ACK resets DupAcks
        self.rto_at = None if ack == self.snd_max else now + self.rto
        low = self.sndbuf_size // 3
        if self.sndbuf_size - before < low <= self.sndbuf_size - len(sndbuf):
            self.layer.ready.mark(self, Ready.WRITABLE)

    def _acked_phase(self, ack: int, acked: int, now: float) -> None:
        """New data acknowledged outside the open phase: end or continue the recovery (tcp_cc.PHASES)."""
        state = self.ca_state
        sb = self.sb
        if sb is not None:
            sb.prune(ack)
        if state == RECOVERY:
            if seq_ge(ack, self.recover):
                # RFC 6582 3.2 step 3, RFC 6675 5 (A), RFC 6937: full acknowledgment ends recovery at ssthresh
                state = PHASES[(state, "recovered")]
                self.cwnd = self.ssthresh
            else:
                state = PHASES[(state, "partial")]
                if sb is None:
                    # RFC 6582 3.2 step 4, partial acknowledgment: the next hole is lost too; retransmit it, deflate
                    self._send_head(now)
                    self.cwnd = max(self.cwnd - acked, 0) + self.snd_mss
                # with SACK the ACK's delivery drives _sack_send (RFC 6675 5 (C), RFC 6937)
        else:
            self.cc.on_ack(self, acked, self.layer.config.abc_limit * self.snd_mss, now)
            if state == LOSS and not seq_ge(ack, self.recover):
                state = PHASES[(state, "partial")]
            elif state == LOSS or sb is None or not sb.blocks:
                state = PHASES[(state, "recovered")]
            else:
                state = PHASES[(state, "partial")]
        if state == OPEN and self.ca_state == RECOVERY and sb is not None and sb.undo_cwnd:
            sb.undo_until = self.snd_max
        self.ca_state = state
        if state == OPEN:
            self.in_recovery = False
            if sb is None:
                return
            if sb.undo_cwnd and sb.undo_retrans <= 0:
                self._undo(sb)
            if sb.blocks:
                self.ca_state = DISORDER  # SACKed data remains above the recovery point
                self.in_recovery = True
            elif sb.undo_cwnd and seq_lt(ack, sb.undo_until):
                self.in_recovery = True  # the slow path, which reads D-SACKs, until the recovery's are in (RFC 3708)
            elif not sb.undo_cwnd:
                self.sb = None

    def _dupack(self, now: float) -> None:
        """RFC 5681 3.2 fast retransmit on the third duplicate, or RFC 6675 5 on IsLost(SND.UNA);
        RFC 6582 4.1 (the recovery point) guards against entering twice for one window."""
        self.dupacks += 1
        mss = self.snd_mss
        state = self.ca_state
        sb = self.sb
        if state == RECOVERY:
            if sb is None:
                self.cwnd += mss  # RFC 6582 3.2 step 3: each duplicate means a segment left the network
            return
        una = self.snd_una
        lost = self.dupacks >= DUP_THRESH or (sb is not None and sb.is_lost(una, una, mss))
        if not lost or not seq_ge(una, self.recover):
            self.ca_state = PHASES[(state, "dupack")]  # RFC 3042 limited transmit in _push
            self.in_recovery = True
            return
        self.ca_state = PHASES[(state, "lost")]
        self.in_recovery = True
        flight = seq_diff(self.snd_max, una)
        if sb is not None:
            sb.undo_cwnd, sb.undo_ssthresh, sb.undo_retrans = self.cwnd, self.ssthresh, 0
        self.cc.on_congestion(self, flight, now)
        self.recover = self.snd_max
        self.layer.counters.inc("tcp.fast_retransmit")
        if sb is None:
            self._send_head(now)
            self.cwnd = self.ssthresh + 3 * mss
        else:
            # RFC 6675 5 (4): the first unSACKed segment goes at once (in _sack_send); RFC 6937 counts from here
            self.layer.counters.inc("tcp.sack_recovery")
            sb.high_rxt = una
            sb.rxt_mark = None
            sb.prr_delivered = sb.prr_out = 0
            sb.recover_fs = flight
            if not self.layer.config.prr:
                self.cwnd = self.ssthresh  # RFC 6675 5 (4.2)

    def _sack_send(self, delivered: int, una_moved: bool, now: float) -> None:
        """Loss recovery from the scoreboard: how much may go (RFC 6937 PRR, or RFC 6675's cwnd - pipe), and
        what (NextSeg, RFC 6675 4): a lost hole, new data, another hole. The first hole goes regardless."""
        sb = self.sb
        assert sb is not None
        mss = self.snd_mss
        una = self.snd_una
        ssthresh = self.ssthresh
        if sb.retransmission_lost(una, mss):
            sb.high_rxt = una  # what we resent may go again, as NextSeg finds it lost
            sb.rxt_mark = None
            self.layer.counters.inc("tcp.lost_retransmit")
        pipe = sb.pipe(una, self.snd_max, mss)
        if self.layer.config.prr:
            sb.prr_delivered += delivered
            if pipe > ssthresh:
                # RFC 6937 3: proportional to what was delivered, ssthresh / RecoverFS of it
                sndcnt = -(-sb.prr_delivered * ssthresh // max(sb.recover_fs, 1)) - sb.prr_out
            else:
                # slow start back up to ssthresh, by what was delivered; a segment more on an ACK that moved
                # SND.UNA (RFC 6937's SSRB, as its revision and Linux's tcp_cwnd_reduction limit it)
                limit = max(sb.prr_delivered - sb.prr_out, delivered) + (mss if una_moved else 0)
                sndcnt = min(ssthresh - pipe, limit)
            step = 1
        else:
            sndcnt = self.cwnd - pipe
            step = mss
        # the first hole goes at once on entry (RFC 6675 5 (4.3)), and after a partial ACK that left it
        # unretransmitted: the ACK of a retransmission stopped short of it (RFC 6582 3.2 step 4's inference)
        first = sb.prr_out == 0 or (una_moved and not seq_lt(una, sb.high_rxt) and sb.blocks != [])
        if first and sndcnt < mss:
            sndcnt = mss
        sent = 0
        while sndcnt - sent >= step:
            if first:
                nb = sb.next_sacked(una, una)
                seq = una
                n = min(mss, ((nb if nb is not None else self.snd_max) - una) & MASK)
                first = False
            else:
                hole = sb.next_hole(una, mss)
                if hole is not None and hole[2]:
                    seq, n = hole[0], hole[1]  # rule (1): a lost hole
                else:
                    n = self._send_new(now)  # rule (2): new data
                    if n:
                        sent += n
                        sb.prr_out += n
                        continue
                    if hole is None:
                        break
                    seq, n = hole[0], hole[1]  # rule (3): a hole not yet taken for lost
            if n <= 0 or not self._send_range(seq, n, now):
                break
            end = (seq + n) & MASK
            if seq_lt(sb.high_rxt, end):
                sb.high_rxt = end
            sb.rxt_mark = self.snd_max
            sent += n
            sb.prr_out += n
        if sent:
            self.rto_at = now + self.rto if self.rto_at is None else self.rto_at

    def _rtt_sample(self, r: float, samples: int = 1) -> None:
        """RFC 6298 2.2-2.3; ``samples`` the RTT samples expected in a flight (RFC 7323 appendix G's
        ExpectedSamples), which divides the gains alpha and beta: one sample an ACK then moves SRTT and
        RTTVAR in a round trip as much as RFC 6298's one sample a round trip does."""
        if r < 0:
            return
        if self.srtt is None:
            self.srtt = r
            self.rttvar = r / 2
        else:
            beta = 0.25 / samples if samples > 1 else 0.25
            alpha = 0.125 / samples if samples > 1 else 0.125
            self.rttvar = (1 - beta) * self.rttvar + beta * abs(self.srtt - r)
            self.srtt = (1 - alpha) * self.srtt + alpha * r
        cfg = self.layer.config
        self.rto_base = max(self.srtt + max(CLOCK_GRANULARITY, 4 * self.rttvar), cfg.rto_min)
        self.rto = min(self.rto_base + cfg.rto_slop, cfg.rto_max)

    # ======================================================================
    # output
    # ======================================================================
    def _send(self, seq: int, flags: int, payload: bytes, now: float, options: tuple[Option, ...] = ()) -> None:
        """Build and hand one segment to the layer; any segment with ACK carries our pending acknowledgment."""
        if flags & ACK:
            ack = self.rcv_nxt
            if flags & SYN:
                wnd = self._window(syn=True)
            else:
                wnd = self._window() >> self.rcv_wscale
                if self.ts_ok or self.sack_ok:
                    options = self._options(now)
            self.last_ack_sent = ack
            self.ack_pending = 0
            self.ack_now = False
            self.delack_at = None
        else:
            ack = 0
            wnd = min(self.rcvbuf_size, MAX_WINDOW)
        layer = self.layer
        layer.counters.inc("tcp.tx")
        layer._output(make_tcp(self.local_port, self.remote_port, seq, ack, flags, wnd, options, payload),
                      self.local_ip, self.remote_ip, now)

    def _send_syn(self, now: float, with_ack: bool) -> None:
        self._send(self.iss, SYN | ACK if with_ack else SYN, b"", now, self._syn_options(now, with_ack))

    def _ts_val(self, now: float) -> int:
        """Our timestamp clock (RFC 7323 5.4): ticks of ts_hz, from this connection's own offset."""
        return (int(now * self.layer.config.ts_hz + 1e-6) + self.ts_offset) & MASK

    def _syn_options(self, now: float, with_ack: bool) -> tuple[Option, ...]:
        """MSS, and what RFC 7323 and RFC 2018 let us offer: on a SYN all we do, on a SYN-ACK what the peer offered too.

        The order and the NOPs are the profile's (``options_layout``); either way each option sits
        where its fields align, and emit pads the area with EOL and zeros (RFC 9293 3.1).
        """
        cfg = self.layer.config
        if with_ack:
            ws = self.rcv_wscale if self.ws_ok else -1
            sack, ts = self.sack_ok, self.ts_ok
        else:
            ws, sack, ts = cfg.wscale, cfg.sack, cfg.timestamps
        out = [Option(OPT_MSS, self.our_mss)]
        ts_opt = Option(OPT_TIMESTAMP, (self._ts_val(now), self.ts_recent if with_ack else 0))
        if cfg.options_layout == "freebsd":
            # tcp_addoptions(): each option padded with NOPs to its alignment, in this order
            n = 4
            if ws >= 0:
                while n % 2 != 1:
                    out.append(_NOP)
                    n += 1
                out.append(Option(OPT_WSCALE, ws))
                n += 3
            if sack:
                if n % 2:
                    out.append(_NOP)
                    n += 1
                out.append(_SACK_OK)
                n += 2
            if ts:
                while n % 4 != 2:
                    out.append(_NOP)
                    n += 1
                out.append(ts_opt)
        else:
            # Linux tcp_options_write(): SACK-permitted shares a word with the timestamps when both go
            if ts:
                out += (_SACK_OK, ts_opt) if sack else (_NOP, _NOP, ts_opt)
            elif sack:
                out += (_NOP, _NOP, _SACK_OK)
            if ws >= 0:
                out += (_NOP, Option(OPT_WSCALE, ws))
        return tuple(out)

    def _options(self, now: float) -> tuple[Option, ...]:
        """A synchronized segment's options: timestamps, then SACK blocks, each after two NOPs (both layouts).

        The SACK blocks (RFC 2018 4): a D-SACK first, once (RFC 2883), then the blocks above RCV.NXT,
        the most recently changed first, as many as fit in 40 bytes beside the timestamps.
        """
        out: list[Option] = []
        if self.ts_ok:
            out += (_NOP, _NOP, Option(OPT_TIMESTAMP, (self._ts_val(now), self.ts_recent)))
        if self.sack_ok and (self.sack_blocks or self.dsack):
            blocks = ([self.dsack] if self.dsack else []) + self.sack_blocks
            self.dsack = None
            out += (_NOP, _NOP, Option(OPT_SACK, tuple(blocks[:3 if self.ts_ok else 4])))
        return tuple(out)

    def _send_rst(self, now: float) -> None:
        """Our reset for this connection: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=RST,ACK> (3.10.5), timestamped if we do."""
        self.layer.counters.inc("tcp.rst.tx")
        self.layer.counters.inc("tcp.tx")
        options = (_NOP, _NOP, Option(OPT_TIMESTAMP, (self._ts_val(now), self.ts_recent))) if self.ts_ok else ()
        self.layer._output(Tcp(self.local_port, self.remote_port, self.snd_max, self.rcv_nxt, RST | ACK, 0, 0, options),
                           self.local_ip, self.remote_ip, now)

    def _send_ack(self, now: float) -> None:
        # SEQ=SND.NXT in the RFC's sense: the highest we sent, whatever a go-back-N pulled snd_nxt to
        fin = self.fin_seq
        if fin is not None and self.layer.config.resend_fin and self.state in _ACK_OF_FIN and \
                self.snd_max == (fin + 1) & MASK and self.snd_una != self.snd_max:
            self._send(fin, FIN | ACK, b"", now)  # BSD: the ACK goes out on our FIN again
            return
        self._send(self.snd_max, ACK, b"", now)

    def _push(self, now: float, force: bool = False) -> None:
        """Send what the windows, Nagle and SWS avoidance allow, or a bare ACK if one is owed.

        ``force`` (an RTO) sends one segment even into a closed window: it is the probe.
        This loop is the per-segment output path, so it works on locals and emits inline.
        """
        sent = 0
        if self.state in _SENDING and self.syn_acked:
            mss = self.snd_mss
            buf = self.sndbuf
            buflen = len(buf)
            fin_seq = self.fin_seq
            una = self.snd_una
            snd_max = self.snd_max
            nxt = self.snd_nxt
            off = (nxt - self.buf_seq) & MASK
            wnd_end = (una + self.snd_wnd) & MASK
            cwnd = self.cwnd
            sb = self.sb
            if self.in_recovery:
                cwnd = self._push_window(cwnd)
            elif una == snd_max and buflen > off and now - self.last_send > self.rto:
                self._idle_restart(now)
                cwnd = self.cwnd
            rtt_seq = self.rtt_seq
            retransmits = 0
            ack = wnd = 0
            options: tuple[Option, ...] = ()
            while True:
                if sb is not None and 0 < ((snd_max - nxt) & MASK) < HALF:
                    sacked_end = sb.sacked_end(nxt, una)
                    if sacked_end is not None:  # resend only what the peer does not hold (RFC 6675 5.1)
                        off += (sacked_end - nxt) & MASK
                        nxt = sacked_end
                        continue
                avail = buflen - off
                if avail <= 0:
                    if fin_seq is None or nxt != fin_seq:
                        break
                    n = 0
                    flags = FIN | ACK  # a FIN needs no window
                else:
                    rexmit = 0 < ((snd_max - nxt) & MASK) < HALF
                    wnd_room = seq_diff(wnd_end, nxt)
                    room = cwnd - ((nxt - una) & MASK)
                    if wnd_room < room:
                        room = wnd_room
                    n = mss if avail > mss else avail
                    if self.tso_max and avail > mss and room > mss:  # offload: whole MSS multiples, the device cuts
                        n = min(avail, max(mss, self.tso_max // mss * mss), room - room % mss)
                    if rexmit and sb is not None:
                        hole_end = sb.next_sacked(nxt, una)
                        if hole_end is not None and ((hole_end - nxt) & MASK) < n:
                            n = (hole_end - nxt) & MASK
                    if room < n:
                        if room <= 0:
                            if not force:
                                break
                            room = 1  # RFC 9293 3.8.6.1: probe a closed window with one octet
                        elif not rexmit and not force and (room < wnd_room or room < self.max_snd_wnd // 2):
                            break  # sender SWS avoidance (3.8.6.2.1): wait for a worthwhile window
                        n = room
                    elif n < mss and not rexmit and not self.nodelay and una != snd_max \
                            and not (fin_seq is not None and n == avail):
                        break  # Nagle (RFC 1122 4.2.3.4): one small segment in flight at a time
                    flags = (ACK | PSH | FIN if fin_seq is not None else ACK | PSH) if n == avail else ACK
                end = (nxt + n + (flags & FIN)) & MASK  # FIN is 0x01: it takes one sequence number
                if 0 < ((end - snd_max) & MASK) < HALF:  # new data beyond SND.MAX
                    if nxt == snd_max and rtt_seq is None:
                        rtt_seq = self.rtt_seq = end  # time this one (RFC 6298 3, one at a time)
                        self.rtt_time = now
                    if 0 < ((snd_max - nxt) & MASK) < HALF:
                        retransmits += 1
                    snd_max = end
                else:
                    retransmits += 1
                if not sent:
                    # the ACK, window and options every segment of this burst carries (as _send would set them)
                    ack = self.last_ack_sent = self.rcv_nxt
                    wnd = self._window() >> self.rcv_wscale
                    if self.ts_ok or self.sack_ok:
                        options = self._options(now)
                    self.ack_pending = 0
                    self.ack_now = False
                    self.delack_at = None
                self.layer._output(make_tcp(self.local_port, self.remote_port, nxt, ack, flags, wnd, options,
                                            bytes(buf[off:off + n]) if n else b""), self.local_ip, self.remote_ip, now)
                sent += 1
                nxt = end
                off += n
                force = False
                if flags & FIN:
                    break
            if sent:
                self.snd_nxt = nxt
                self.snd_max = snd_max
                self.last_send = now
                if self.rto_at is None:
                    self.rto_at = now + self.rto
                self.persist_at = None
                c = self.layer.counters
                c.inc("tcp.tx", sent)
                if retransmits:
                    c.inc("tcp.retransmit", retransmits)
            elif una == snd_max and self.persist_at is None and buflen > off:
                # data waits and nothing is in flight to bring an ACK: RFC 1122 4.2.2.17 persist
                self.persist_at = now + self._persist_interval()
        if not sent and self.ack_now:
            self._send_ack(now)

    def _push_window(self, cwnd: int) -> int:
        """The window _push may fill outside the open phase."""
        state = self.ca_state
        if state == DISORDER and not seq_lt(self.snd_una, self.recover):
            # RFC 3042 limited transmit: new data on the first two duplicate ACKs, cwnd unchanged
            return cwnd + min(self.dupacks, 2) * self.snd_mss
        if state == RECOVERY and self.sb is not None:
            return 0  # _sack_send decides what goes (RFC 6675 5, RFC 6937)
        return cwnd

    def _initial_window(self) -> int:
        mss = self.snd_mss
        return min(self.layer.config.initial_window * mss, max(2 * mss, 14600))  # RFC 6928

    def _idle_restart(self, now: float) -> None:
        """RFC 5681 4.1: after more than an RTO without sending, cwnd is at most RW = min(IW, cwnd)."""
        if self.cwnd > self._initial_window():
            self.cc.on_idle_restart(self, self._initial_window(), now)
            self.layer.counters.inc("tcp.idle_restart")

    def _send_head(self, now: float) -> None:
        """Retransmit the first unacknowledged segment, leaving SND.NXT alone (fast retransmit)."""
        una = self.snd_una
        out = seq_diff(self.snd_max, una)
        n = min(self.snd_mss, len(self.sndbuf), out)
        flags = ACK
        fin_seq = self.fin_seq
        if fin_seq is not None and (una + n) & MASK == fin_seq and out > n:
            flags |= FIN
        if n <= 0 and not flags & FIN:
            return
        self.rtt_seq = None  # Karn
        self.layer.counters.inc("tcp.retransmit")
        self._send(una, flags | (PSH if n and n == len(self.sndbuf) else 0), bytes(self.sndbuf[:n]), now)  # PSH as sent
        self.rto_at = now + self.rto

    def _send_range(self, seq: int, n: int, now: float) -> bool:
        """Retransmit ``n`` octets of the send buffer from ``seq`` (with our FIN if they end at it); False if none."""
        off = (seq - self.buf_seq) & MASK
        buf = self.sndbuf
        if off >= HALF or off >= len(buf):
            return False
        if off + n > len(buf):
            n = len(buf) - off
        flags = ACK | (PSH if off + n == len(buf) else 0)
        fin_seq = self.fin_seq
        if fin_seq is not None and (seq + n) & MASK == fin_seq and self.snd_max != fin_seq:
            flags |= FIN
        self.rtt_seq = None  # Karn
        self.layer.counters.inc("tcp.retransmit")
        self.last_send = now
        sb = self.sb
        if sb is not None and sb.undo_cwnd:
            sb.undo_retrans += 1
        self._send(seq, flags, bytes(buf[off:off + n]), now)
        return True

    def _send_new(self, now: float) -> int:
        """One segment of new data in SACK recovery (RFC 6675 4 NextSeg rule 2), as the peer's window allows."""
        nxt = self.snd_nxt
        if nxt != self.snd_max:
            return 0
        off = (nxt - self.buf_seq) & MASK
        avail = len(self.sndbuf) - off
        room = seq_diff((self.snd_una + self.snd_wnd) & MASK, nxt)
        n = min(self.snd_mss, avail, room)
        if n <= 0:
            return 0
        flags = ACK | (PSH if n == avail else 0)
        end = (nxt + n) & MASK
        if n == avail and self.fin_seq == end:
            flags |= FIN
        self.snd_nxt = self.snd_max = (end + (flags & FIN)) & MASK
        self.last_send = now
        self._send(nxt, flags, bytes(self.sndbuf[off:off + n]), now)
        return n

    def _persist_interval(self) -> float:
        cfg = self.layer.config
        return min(max(self.rto, 0.2) * (1 << min(self.persist_backoff, 16)), cfg.rto_max)

    # ======================================================================
    # timers
    # ======================================================================
    def _arm(self) -> None:
        """Put the earliest deadline in the stack's heap if it is earlier than the one there."""
        d = self.rto_at
        t = self.delack_at
        if t is not None and (d is None or t < d):
            d = t
        t = self.persist_at
        if t is not None and (d is None or t < d):
            d = t
        t = self.ka_at
        if t is not None and (d is None or t < d):
            d = t
        t = self.close_at
        if t is not None and (d is None or t < d):
            d = t
        if d is not None and (self.sched is None or d < self.sched) and self.key is not None and self.state != CLOSED:
            self.layer.timers.schedule(("tcp", self.key), d)
            self.sched = d

    def on_timer(self, now: float) -> None:
        self.sched = None
        if self.delack_at is not None and now >= self.delack_at:
            self.delack_at = None
            if self.ack_pending or self.ack_now:
                self.layer.counters.inc("tcp.delayed_ack")
                self._send_ack(now)
        if self.rto_at is not None and now >= self.rto_at:
            self.rto_at = None
            self._fire(T.RETRANSMISSION_TIMEOUT, None, now)
        if self.persist_at is not None and now >= self.persist_at and self.state != CLOSED:
            self.persist_at = None
            self._persist(now)
        if self.ka_at is not None and now >= self.ka_at and self.state != CLOSED:
            self._keepalive(now)
        if self.close_at is not None and now >= self.close_at and self.state != CLOSED:
            self.close_at = None
            self._fire(T.TIME_WAIT_TIMEOUT if self.state == TIME_WAIT else T.FIN_WAIT_2_TIMEOUT, None, now)
        if self.state != CLOSED:
            self._arm()

    def _persist(self, now: float) -> None:
        """Zero-window probe (RFC 9293 3.8.6.1, RFC 1122 4.2.2.17), as Linux sends it: <SEQ=SND.UNA-1><CTL=ACK>.

        An old sequence number draws an ACK with the current window from any receiver, and needs no
        SND.NXT beyond a zero window: an octet sent there would make our later ACKs unacceptable to the
        peer (its RCV.NXT stays behind our SND.NXT), so neither side could learn the other's progress.
        """
        if self.state not in _SENDING:
            return
        off = (self.snd_nxt - self.buf_seq) & MASK
        avail = len(self.sndbuf) - off
        if avail <= 0:
            return
        room = seq_diff((self.snd_una + self.snd_wnd) & MASK, self.snd_nxt)
        if room > 0:
            self._push(now, force=True)  # the SWS override timeout (3.8.6.2.1 (4))
            return
        self.probes += 1
        # RFC 1122 4.2.2.17: the window may stay closed indefinitely while the peer answers the probes
        # (an answer resets ``probes``); an orphan, which nobody will ever read for, gives up after
        # as many probes as the retry limit however they are answered (as Linux's tcp_orphan_retries).
        cfg = self.layer.config
        if self.probes > cfg.retries or (self.released and self.persist_backoff >= cfg.retries):
            self._fire(T.USER_TIMEOUT, None, now)
            return
        self.layer.counters.inc("tcp.persist_probe")
        self._send((self.snd_una - 1) & MASK, ACK, b"", now)
        self.persist_backoff += 1
        self.persist_at = now + self._persist_interval()

    def _keepalive(self, now: float) -> None:
        """RFC 1122 4.2.3.6: after idle time, probes <SEQ=SND.UNA-1> with no data until one is answered."""
        cfg = self.layer.config
        if not self.keepalive or self.state not in _KEEPALIVE:
            self.ka_at = None
            return
        if now - self.last_rx < cfg.keepalive_time or self.snd_max != self.snd_una:
            # heard from the peer lately, or data in flight (the retransmission timer watches that)
            self.ka_probes = 0
            self.ka_at = max(self.last_rx, now if self.snd_max != self.snd_una else 0.0) + cfg.keepalive_time
            return
        if self.ka_probes >= cfg.keepalive_probes:
            self.ka_at = None
            self._fire(T.USER_TIMEOUT, None, now)
            return
        self.ka_probes += 1
        self.layer.counters.inc("tcp.keepalive_probe")
        self._send((self.snd_una - 1) & MASK, ACK, b"", now)
        self.ka_at = now + cfg.keepalive_intvl

    # ======================================================================
    # connection set-up helpers
    # ======================================================================
    def _learn_syn(self, seg: Tcp, now: float) -> None:
        self.irs = seg.seq
        self.rcv_nxt = (seg.seq + 1) & MASK
        self.rcv_adv = (self.rcv_nxt + min(self.rcvbuf_size, MAX_WINDOW)) & MASK
        cfg = self.layer.config
        c = self.layer.counters
        peer_mss = seg.option(OPT_MSS)
        # The peer's MSS (none, or 0, means 536: Linux's tcp_parse_options ignores an MSS of 0), raised to
        # min_snd_mss (a tiny one would make every byte a segment: Linux's tcp_min_snd_mss, CVE-2019-11479),
        # and no higher than what our own MTU carries (RFC 9293 3.7.1).
        mss = peer_mss if isinstance(peer_mss, int) and peer_mss else DEFAULT_MSS
        if mss < cfg.min_snd_mss:
            mss = cfg.min_snd_mss
            c.inc("tcp.mss_floor")
        self.snd_mss = min(mss, self.our_mss)
        self.rcv_mss = min(self.our_mss, DEFAULT_MSS)
        # RFC 7323 2.2, 3.2 and RFC 2018 2: an option is in use when both SYNs carried it
        shift = seg.option(OPT_WSCALE)
        self.ws_ok = cfg.wscale >= 0 and isinstance(shift, int)
        if self.ws_ok:
            if shift > MAX_WSCALE:
                shift = MAX_WSCALE  # RFC 7323 2.3: "use 14 instead of the specified value"
                c.inc("tcp.wscale_clamped")
            self.snd_wscale = shift
            self.rcv_wscale = cfg.wscale
        ts = seg.option(OPT_TIMESTAMP)
        self.ts_ok = cfg.timestamps and isinstance(ts, tuple)
        if self.ts_ok:
            self.ts_recent = ts[0]  # RFC 7323 4.3: the SYN's TSval is TS.Recent's first value
            self.ts_recent_age = now
            self.snd_mss = max(8, self.snd_mss - 12)  # RFC 9293 3.7.1: room for the option on every segment
        self.sack_ok = cfg.sack and seg.option(OPT_SACK_PERMITTED) is True
        if self.parent is None:
            self._size_buffers()

    def _size_buffers(self) -> None:
        """FreeBSD's tcp_mss(): once the MSS is known, both buffers grow to a whole number of segments."""
        if not self.layer.config.mss_buffers or self.user_buffers:
            return
        mss = self.snd_mss
        self.rcvbuf_size = -(-self.rcvbuf_size // mss) * mss
        self.sndbuf_size = -(-self.sndbuf_size // mss) * mss

    def _init_send(self, now: float) -> None:
        self.iss = self.layer.isn(self.local_ip, self.local_port, self.remote_ip, self.remote_port, now)
        self.snd_una = self.iss
        self.snd_nxt = self.snd_max = self.buf_seq = (self.iss + 1) & MASK
        self.snd_wl2 = self.iss
        self.recover = self.iss
        self.ts_offset = self.layer.ts_offset(self.local_ip, self.local_port, self.remote_ip, self.remote_port)

    def _established(self, now: float) -> None:
        self.cwnd = self._initial_window()
        self.was_connected = True
        if self.syn_retransmitted and self.srtt is None:
            self.rto = self.rto_base = min(max(self.rto, 3.0), self.layer.config.rto_max)  # RFC 6298 5.7
        elif self.srtt is None:
            self.rto = self.rto_base = self.layer.config.rto_initial
        self.last_rx = now
        self.quick = self.layer.config.quickack
        if self.keepalive:
            self.ka_at = now + self.layer.config.keepalive_time
        self.layer.counters.inc("tcp.established")

    def _destroy(self, now: float, err: int | None) -> None:
        """The TCB goes (state already CLOSED): leave the demux, stop the timers, wake the application."""
        if err is not None and (not self.released or self.parent is not None):
            self.error = err
        self.rto_at = self.persist_at = self.delack_at = self.ka_at = self.close_at = None
        self.sndbuf.clear()
        self.ooo = _NO_OOO
        self.ooo_bytes = 0
        self.layer.remove(self)
        if not self.released:
            what = Ready.READABLE | Ready.WRITABLE | Ready.HUP
            self._mark(what | Ready.ERROR if err is not None else what)

    # ======================================================================
    # actions (named by the table's action column)
    # ======================================================================
    def _a_listen(self, seg: Tcp | None, now: float) -> None:
        self.accept_queue = deque()
        self.children = set()
        self.layer.add_listener(self)

    def _a_send_syn(self, seg: Tcp | None, now: float) -> None:
        self._init_send(now)
        self._send_syn(now, with_ack=False)
        self.rtt_seq = self.snd_max
        self.rtt_time = now
        self.rto_at = now + self.rto
        self.layer.counters.inc("tcp.active_open")
        self._arm()

    def _a_send_syn_ack(self, seg: Tcp | None, now: float) -> None:
        assert seg is not None
        self._learn_syn(seg, now)
        if self.prev_state == LISTEN:
            self._init_send(now)
            self.rtt_seq = self.snd_max
            self.rtt_time = now
            self.layer.counters.inc("tcp.passive_open")
        else:
            self.rtt_seq = None  # simultaneous open: our SYN goes out again, so it cannot be timed
            self.layer.counters.inc("tcp.simultaneous_open")
        self._send_syn(now, with_ack=True)
        self.rto_at = now + self.rto
        self._arm()

    def _a_resend_syn_ack(self, seg: Tcp | None, now: float) -> None:
        self.layer.counters.inc("tcp.retransmit")
        self.rtt_seq = None
        self._send_syn(now, with_ack=True)

    def _a_connected(self, seg: Tcp | None, now: float) -> None:
        assert seg is not None
        self._learn_syn(seg, now)
        self.snd_una = seg.ack
        self.syn_acked = True
        self.snd_wnd = self.max_snd_wnd = seg.window
        self.snd_wl1 = seg.seq
        self.snd_wl2 = seg.ack
        if self.rtt_seq is not None:
            self._rtt_sample(now - self.rtt_time)
            self.rtt_seq = None
        self.retries = 0
        self.rto_at = None
        self._established(now)
        self.ack_now = True
        self._mark(Ready.CONNECTED | Ready.WRITABLE)
        self._push(now)

    def _a_established(self, seg: Tcp | None, now: float) -> None:
        assert seg is not None
        self.snd_wnd = self.max_snd_wnd = seg.window << self.snd_wscale
        if self.parent is not None:
            self._size_buffers()  # the listener's connection is a socket of its own from here (syncache_socket)
        self.snd_wl1 = seg.seq
        self.snd_wl2 = seg.ack
        self.retries = 0
        self._established(now)
        parent = self.parent
        if parent is not None:
            parent.children.discard(self)
            parent.accept_queue.append(self)
            self.layer.ready.mark(parent, Ready.ACCEPTABLE)
        else:
            self._mark(Ready.CONNECTED | Ready.WRITABLE)

    def _a_process_ack(self, seg: Tcp | None, now: float) -> None:
        assert seg is not None
        self._process_ack(seg, now)

    def _a_fin_acked(self, seg: Tcp | None, now: float) -> None:
        assert seg is not None
        self._process_ack(seg, now)
        if self.released:
            self.close_at = now + self.layer.config.fin_timeout

    def _a_enter_time_wait(self, seg: Tcp | None, now: float) -> None:
        if seg is not None:
            self._process_ack(seg, now)
        self._time_wait(now)

    def _time_wait(self, now: float) -> None:
        self.rto_at = self.persist_at = self.ka_at = None
        self.close_at = now + 2 * self.layer.config.msl
        self.sndbuf.clear()
        if not self.layer.time_wait_admit(self):
            # Linux tcp_time_wait(): no bucket left, so the connection closes now, its last ACK sent first
            if self.ack_now:
                self._send_ack(now)
            self.state = CLOSED
            self._destroy(now, None)
            return
        self.layer.counters.inc("tcp.time_wait")
        self._arm()

    def _a_fin_received(self, seg: Tcp | None, now: float) -> None:
        self.rcv_nxt = (self.rcv_nxt + 1) & MASK
        self.fin_rcvd = True
        self.ack_now = True
        self.layer.counters.inc("tcp.rx.fin")
        self._mark(Ready.READABLE | Ready.HUP)

    def _a_fin_time_wait(self, seg: Tcp | None, now: float) -> None:
        self._a_fin_received(seg, now)
        self._time_wait(now)

    def _a_restart_time_wait(self, seg: Tcp | None, now: float) -> None:
        self.close_at = now + 2 * self.layer.config.msl
        self.ack_now = True
        self._send_ack(now)
        self._arm()

    def _a_deliver(self, seg: Tcp | None, now: float) -> None:
        assert seg is not None
        self.fin_next = self._deliver(seg.seq, seg.payload, bool(seg.flags & FIN), now)

    def _a_ignore(self, seg: Tcp | None, now: float) -> None:
        self.layer.counters.drop("tcp", "ignored")

    def _a_send_ack(self, seg: Tcp | None, now: float) -> None:
        self.ack_now = True

    def _a_challenge_ack(self, seg: Tcp | None, now: float) -> None:
        """RFC 5961 3.2 / 4.2: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, rate-limited (section 7)."""
        if self.layer.challenge_ack_allowed(now):
            self.layer.counters.inc("tcp.challenge_ack")
            self._send(self.snd_max, ACK, b"", now)
        else:
            self.layer.counters.drop("tcp", "challenge_ack_limit")

    def _a_reply_rst(self, seg: Tcp | None, now: float) -> None:
        assert seg is not None
        src, dst = self.layer.rx_addrs
        self.layer.reply_rst(seg, src, dst, now)

    def _a_send_rst(self, seg: Tcp | None, now: float) -> None:
        self._send_rst(now)
        self._destroy(now, None)

    def _a_delete_tcb(self, seg: Tcp | None, now: float) -> None:
        if seg is not None and seg.flags & ACK and not seg.flags & RST:
            self.snd_una = seg.ack
        self._destroy(now, None)

    def _a_refused(self, seg: Tcp | None, now: float) -> None:
        self.layer.counters.inc("tcp.refused")
        self._destroy(now, errno.ECONNREFUSED if seg is not None else self.soft_error or errno.ECONNREFUSED)

    def _a_reset(self, seg: Tcp | None, now: float) -> None:
        self.layer.counters.inc("tcp.rst.rx")
        if self.prev_state == SYN_RECEIVED:
            # passive: back to LISTEN, which for us means the child goes and the listener stays;
            # active (simultaneous open): "connection refused"
            self._destroy(now, None if self.parent is not None else errno.ECONNREFUSED)
        else:
            self._destroy(now, errno.ECONNRESET)

    def _a_reset_by_syn(self, seg: Tcp | None, now: float) -> None:
        self._send_rst(now)
        self._destroy(now, None if self.parent is not None else errno.ECONNRESET)

    def _a_reopen(self, seg: Tcp | None, now: float) -> None:
        self.layer.counters.inc("tcp.time_wait_reopen")
        self._destroy(now, None)

    def _a_retransmit(self, seg: Tcp | None, now: float) -> None:
        """RFC 6298 5.4-5.6: retransmit the earliest segment, back off, and give up after the retry limit."""
        cfg = self.layer.config
        self.retries += 1
        state = self.state
        limit = cfg.syn_retries if state == SYN_SENT else cfg.synack_retries if state == SYN_RECEIVED else cfg.retries
        if self.syn_acked and self.snd_una == self.snd_max and \
                len(self.sndbuf) <= ((self.snd_nxt - self.buf_seq) & MASK):
            self.retries -= 1  # nothing outstanding: a stale deadline
            return
        if self.retries > limit:
            self._fire(T.USER_TIMEOUT, None, now)
            return
        self.layer.counters.inc("tcp.timeout")
        self.rto_base = min(self.rto_base * 2, cfg.rto_max)
        self.rto = min(self.rto_base + cfg.rto_slop, cfg.rto_max)
        self.rtt_seq = None  # Karn
        if not self.syn_acked:
            self.syn_retransmitted = True
            self.layer.counters.inc("tcp.retransmit")
            self._send_syn(now, with_ack=state != SYN_SENT)
        else:
            self.cc.on_rto(self, seq_diff(self.snd_max, self.snd_una), now)  # RFC 5681 (4): the loss window
            self.ca_state = PHASES[(self.ca_state, "rto")]
            self.in_recovery = True  # until the recovery point is acknowledged
            self.recover = self.snd_max  # RFC 6582 4.1
            self.dupacks = 0
            # RFC 2018 8 (which RFC 6675 5.1 leaves in force): the receiver may have reneged, so what it
            # SACKed is forgotten; SACK blocks arriving from here on steer the resending again
            self.sb = None
            self.snd_nxt = self.snd_una  # go back N: what followed the lost segment is resent as cwnd opens
            self.rto_at = None
            self._push(now, force=True)
        self.rto_at = now + self.rto

    def _a_timed_out(self, seg: Tcp | None, now: float) -> None:
        self.layer.counters.inc("tcp.timed_out")
        self._destroy(now, self.soft_error or errno.ETIMEDOUT)

    def _a_timed_out_rst(self, seg: Tcp | None, now: float) -> None:
        self._send_rst(now)
        self._a_timed_out(seg, now)

    def _a_close_listener(self, seg: Tcp | None, now: float) -> None:
        for child in [*self.children, *self.accept_queue]:
            child.released = True
            child.abort_child(now)
        self.children.clear()
        self.accept_queue.clear()
        self.layer.remove_listener(self)

    def abort_child(self, now: float) -> None:
        if (self.state, T.ABORT) in T.DISPATCH:
            self._fire(T.ABORT, None, now)
        self.layer.release(self)

    def _a_send_fin(self, seg: Tcp | None, now: float) -> None:
        self.fin_seq = (self.buf_seq + len(self.sndbuf)) & MASK
        self._push(now)
        self._arm()

    def _a_queue_data(self, seg: Tcp | None, now: float) -> None:
        if self.state != SYN_SENT and self.state != SYN_RECEIVED:
            self._push(now)
            self._arm()

    def _a_read(self, seg: Tcp | None, now: float) -> None:
        if self.state in _RECEIVING:
            self._maybe_window_update(now)


Action = Callable[[TcpConn, "Tcp | None", float], None]
# DISPATCH with the action names resolved to methods once, at import.
_DISPATCH: dict[tuple[str, str], tuple[str, Action]] = {
    key: (next_state, getattr(TcpConn, "_a_" + action)) for key, (next_state, action) in T.DISPATCH.items()
}
