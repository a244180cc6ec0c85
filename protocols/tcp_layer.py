"""The TCP transport: demultiplexing, ports, listeners, ISNs, and the one place that meets the codec.

``TcpLayer`` registers with the stack (``stack.register(TcpLayer(config))``)
as protocol 6 and timer kind "tcp". Connections are found by their 4-tuple;
a SYN that matches none goes to a listener on the port (one bound to the
destination address, else one bound to the wildcard), and anything else is
answered with a RST (RFC 9293 3.10.7.1).

The codec is used in two small functions only, ``receive`` (parse) and
``_output`` (emit, then send_ipv4 with DF), so a test harness can pass
``Tcp`` values directly: call ``segment_arrives``, override ``_output``.

Application API
---------------
``layer.open() -> TcpConn`` makes an endpoint (CLOSED, unbound). On it (every
call that can send takes ``now``; errors are ``OSError(errno)``, which Python
turns into ``ConnectionResetError``, ``BrokenPipeError``, ``TimeoutError``...):

- ``bind(ip, port)``: port 0 picks a free one. EINVAL (bound), EADDRNOTAVAIL
  (not our address), EADDRINUSE (taken; SO_REUSEADDR on both sides lets a
  non-listening user share it), OverflowError (port out of range).
- ``listen(backlog=128)``: passive OPEN; binds a free port if unbound. Up to
  backlog+1 established connections wait for accept() (Linux), and up to
  backlog half-open ones (and max_syn_backlog). A SYN beyond the first is
  dropped, so the peer retries; beyond the second it gets a SYN cookie
  (tcp_cookies.py, ``syncookies``) or, without cookies, is dropped. Beyond
  ``max_connections`` in all a SYN is dropped and connect() raises ENOBUFS.
  EINVAL (connected), EADDRINUSE (another listener).
- ``accept() -> TcpConn | None``: None would block. EINVAL (not listening).
- ``connect(ip, port, now)``: sends the SYN and returns; then Ready.CONNECTED,
  or Ready.ERROR with ``error`` = ECONNREFUSED / ETIMEDOUT / EHOSTUNREACH...
  Raises EALREADY, EISCONN, ENETUNREACH (no route), EADDRNOTAVAIL, EINVAL.
- ``send(data, now) -> int``: what fitted in SO_SNDBUF, 0 would block. Raises
  the pending error once (ECONNRESET, ETIMEDOUT), then EPIPE; EPIPE after
  shutdown(SHUT_WR)/close or when never connected.
- ``recv(n, now, peek=False) -> bytes | None``: b"" at end of stream, None would
  block. Data that arrived before a reset comes first, then the error once,
  then b"". ENOTCONN if never connected or listening.
- ``shutdown(how, now)``: SHUT_RD, SHUT_WR (our FIN after the queued data),
  SHUT_RDWR. ENOTCONN, EINVAL.
- ``close(now)``: releases the endpoint (later calls: EBADF). Unread data ->
  RST (RFC 9293 3.10.4); otherwise FIN after the queued data and the
  connection finishes alone. A listener resets what nobody accepted.
- ``abort(now)``: RST where the state has a peer; released.
- ``take_error() -> int | None`` (SO_ERROR, cleared); ``error`` peeks.
- options: ``set_nodelay(on, now)`` (TCP_NODELAY), ``set_keepalive(on, now)``
  (SO_KEEPALIVE, off by default), ``set_rcvbuf(n, now)``, ``set_sndbuf(n)``,
  ``reuseaddr`` (SO_REUSEADDR, an attribute to set before bind).
- ``local_address``, ``remote_address`` ((ip, port); remote None when not
  connected), ``state`` (the RFC 9293 name), ``poll() -> Ready`` (readiness now).

Readiness marks (``stack.ready.mark``) are edges: READABLE when the receive
buffer stops being empty or the FIN arrives, WRITABLE when send space climbs
back to a third of SO_SNDBUF, ACCEPTABLE on the listener for each queued
connection, CONNECTED when an active open completes, HUP|ERROR (with
READABLE|WRITABLE) when the connection resets or times out, HUP on the FIN.
After a mark, read (or accept) until None; check ``poll()`` before waiting.
"""

import contextlib
import errno
import hashlib
import random
from collections.abc import Hashable
from typing import Protocol

from . import icmp, ipv4, tcp, tcp_cookies
from .counters import Counters
from .errors import Malformed
from .ratelimit import TokenBucket
from .seqnum import MASK, seq_ge, seq_lt
from .tcp import ACK, FIN, OPT_MSS, RST, SYN, Option, Tcp
from .tcp_conn import ANY, Key, TcpConfig, TcpConn
from .tcp_table import CLOSED, DISPATCH, LISTEN, SEGMENT, SYN_SENT
from .timers import Timers
from .transport import Readiness

PROTO_TCP = 6


# -- what TCP needs from the stack (structural: stack.Stack provides it) ----------
class _Config(Protocol):
    @property
    def ip(self) -> bytes: ...


class _Route(Protocol):
    @property
    def src(self) -> bytes: ...

    @property
    def mtu(self) -> int: ...

    @property
    def iface(self) -> int: ...


class StackSurface(Protocol):
    @property
    def config(self) -> _Config: ...

    @property
    def rng(self) -> random.Random: ...

    @property
    def counters(self) -> Counters: ...

    @property
    def timers(self) -> Timers: ...

    @property
    def ready(self) -> Readiness: ...

    @property
    def rx_csum_ok(self) -> bool: ...

    def route(self, dst: bytes) -> _Route: ...

    def tso_max(self, iface: int) -> int: ...

    def is_local(self, ip: bytes) -> bool: ...

    def send_ipv4(self, dst: bytes, protocol: int, payload: bytes, now: float, *, src: bytes | None = None,
                  tos: int = 0, ttl: int | None = None, df: bool = False) -> None: ...


# ICMP errors that end a connection attempt (RFC 1122 4.2.3.9, RFC 5461), by errno.
_HARD = {icmp.PROTOCOL_UNREACHABLE: errno.ENOPROTOOPT, icmp.PORT_UNREACHABLE: errno.ECONNREFUSED}
# FreeBSD's (tcp_ctlinput with net.inet.tcp.icmp_may_rst=1): (type, code) -> errno, as inetctlerrmap gives them
_ADMIN_PROHIBITED = (9, 10, 13)  # RFC 1812 5.2.7.1: network, host, communication administratively prohibited
_HARD_FREEBSD = {
    (icmp.DEST_UNREACHABLE, icmp.PORT_UNREACHABLE): errno.ECONNREFUSED,
    (icmp.DEST_UNREACHABLE, icmp.PROTOCOL_UNREACHABLE): errno.ECONNREFUSED,
    **{(icmp.DEST_UNREACHABLE, code): errno.ECONNREFUSED for code in _ADMIN_PROHIBITED},
    (icmp.TIME_EXCEEDED, icmp.TTL_EXCEEDED): errno.EHOSTUNREACH,
}
_SOFT = {icmp.NET_UNREACHABLE: errno.ENETUNREACH, icmp.HOST_UNREACHABLE: errno.EHOSTUNREACH}


class TcpLayer:
    name = "tcp"
    protocol = PROTO_TCP

    def __init__(self, config: TcpConfig | None = None) -> None:
        self.config = config if config is not None else TcpConfig()
        self.conns: dict[Key, TcpConn] = {}
        self.listeners: dict[int, list[TcpConn]] = {}
        self.ports: dict[int, list[TcpConn]] = {}  # every endpoint using a local port
        self.rx_addrs: tuple[bytes, bytes] = (ANY, ANY)  # (src, dst) of the segment being processed
        self._stack: StackSurface | None = None
        self._secret = b""
        self._next_ephemeral = 0
        self._challenge = TokenBucket(self.config.challenge_ack_limit, self.config.challenge_ack_limit)
        self.offload = False  # some interface completes TCP checksums (set by the stack): see _output
        self._rst_bucket = TokenBucket(self.config.rst_limit, self.config.rst_limit)
        self.time_wait: set[TcpConn] = set()  # bounded by max_tw_buckets
        self._cookie_key = b""
        self._cookie_sent_at: float | None = None  # when the last SYN cookie left (Linux's synq_overflow stamp)

    # -- the Transport interface --------------------------------------------------
    def attach(self, stack: StackSurface) -> None:
        self._stack = stack
        self.counters = stack.counters
        self.timers = stack.timers
        self.ready = stack.ready
        # RFC 6528 3: a secret for the ISN hash; RFC 6056 3.3.3: a start for the port counter
        self._secret = stack.rng.getrandbits(128).to_bytes(16, "big")
        self._cookie_key = tcp_cookies.key_from(self._secret)
        self._next_ephemeral = stack.rng.randrange(1 << 16)

    @property
    def stack(self) -> StackSurface:
        if self._stack is None:
            raise RuntimeError("TcpLayer is not attached to a stack")
        return self._stack

    def receive(self, ip: ipv4.Ipv4, raw: bytes, broadcast: bool, now: float) -> None:
        if broadcast:
            self.counters.drop("tcp", "broadcast")  # RFC 1122 4.2.3.10
            return
        try:
            seg = tcp.parse(ip.payload, ip.src, ip.dst, not self.stack.rx_csum_ok)  # type: ignore[attr-defined]
        except Malformed as e:
            self.counters.drop("tcp", e.reason)
            return
        self.segment_arrives(seg, ip.src, ip.dst, now)

    def _output(self, seg: Tcp, src: bytes, dst: bytes, now: float) -> None:
        partial = False
        if self.offload:  # the interface towards dst completes the checksum: leave it partial
            with contextlib.suppress(OSError):  # no route: send_ipv4 says so below
                partial = self.stack.tso_max(self.stack.route(dst).iface) > 0
        data: bytes = tcp.emit(seg, src, dst, True) if partial else tcp.emit(seg, src, dst)  # type: ignore[attr-defined]
        try:
            self.stack.send_ipv4(dst, PROTO_TCP, data, now, src=src, df=True)  # RFC 1191 path MTU discovery
        except OSError:
            self.counters.drop("tcp", "output_error")

    def on_timer(self, arg: Hashable, now: float) -> None:
        conn = self.conns.get(arg)  # type: ignore[call-overload]
        if conn is not None:
            conn.on_timer(now)

    def icmp_error(self, reporter: bytes, msg: icmp.Icmp, dst: bytes, inner: bytes, now: float) -> None:
        """RFC 5927: act only on errors quoting a sequence number we have in flight."""
        c = self.counters
        if len(inner) < 8:
            c.drop("tcp", "icmp_short_quote")
            return
        sport = int.from_bytes(inner[0:2], "big")
        dport = int.from_bytes(inner[2:4], "big")
        seq = int.from_bytes(inner[4:8], "big")
        # The quoted datagram left from one of our addresses (one per interface): its route's source.
        try:
            src = self.stack.route(dst).src
        except OSError:
            src = self.stack.config.ip
        conn = self.conns.get((src, sport, dst, dport))
        if conn is None:
            c.drop("tcp", "icmp_no_connection")
            return
        if not (seq_ge(seq, conn.snd_una) and seq_lt(seq, conn.snd_max)):
            c.drop("tcp", "icmp_out_of_window")
            return
        c.inc("tcp.rx.icmp_error")
        if msg.type == icmp.DEST_UNREACHABLE and msg.code == icmp.FRAG_NEEDED:
            conn.path_mtu(msg.next_hop_mtu, now)
            return
        if conn.state == SYN_SENT:
            if self.config.icmp_syn_sent == "freebsd":
                hard = _HARD_FREEBSD.get((msg.type, msg.code))
            else:
                hard = _HARD.get(msg.code) if msg.type == icmp.DEST_UNREACHABLE else None
            if hard is not None:
                conn.soft_error = hard
                conn.icmp_unreachable(now)
                return
        code = msg.code if msg.type == icmp.DEST_UNREACHABLE else -1
        conn.soft_error = _SOFT.get(code, _HARD.get(code, errno.EHOSTUNREACH))

    # -- segments ------------------------------------------------------------------
    def segment_arrives(self, seg: Tcp, src: bytes, dst: bytes, now: float) -> None:
        """One parsed segment from ``src`` to ``dst`` (our address)."""
        self.counters.inc("tcp.rx")
        self.rx_addrs = (src, dst)
        conn = self.conns.get((dst, seg.dst_port, src, seg.src_port))
        if seg.flags & (SYN | FIN) == SYN | FIN and self.config.drop_synfin and \
                (conn is None or conn.state == SYN_SENT):
            # FreeBSD net.inet.tcp.drop_synfin: not answered while a connection is being opened
            # (a synchronized connection, TIME-WAIT included, takes it as any SYN)
            self.counters.drop("tcp", "synfin")
            return
        if conn is not None and conn.segment_arrives(seg, now):
            return
        listener = self._listener(dst, seg.dst_port)
        if listener is not None:
            if seg.flags & (SYN | RST | ACK) == ACK and self._cookies_out(now) and self._cookie_ack(listener, seg, now):
                return
            listener.segment_arrives(seg, now)
            return
        # RFC 9293 3.10.7.1: no connection
        _, action = DISPATCH[(CLOSED, SEGMENT)]
        if action == "reply_rst":
            self.counters.drop("tcp", "no_connection")
            if seg.flags & RST or self._rst_bucket.allow(now):
                self.reply_rst(seg, src, dst, now)
            else:
                self.counters.inc("tcp.rst_rate_limited")  # FreeBSD badport_bandlim(BANDLIM_RST_CLOSEDPORT)

    def reply_rst(self, seg: Tcp, src: bytes, dst: bytes, now: float) -> None:
        """The reset RFC 9293 3.10.7.1 answers a segment with: never to a RST."""
        flags = seg.flags
        if flags & RST:
            return
        if flags & ACK:
            rst = Tcp(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
        else:
            seglen = len(seg.payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
            rst = Tcp(seg.dst_port, seg.src_port, 0, (seg.seq + seglen) & MASK, RST | ACK, 0)
        self.counters.inc("tcp.rst.tx")
        self.counters.inc("tcp.tx")
        self._output(rst, dst, src, now)

    def challenge_ack_allowed(self, now: float) -> bool:
        return self._challenge.allow(now)

    def _listener(self, ip: bytes, port: int) -> TcpConn | None:
        wildcard = None
        for ep in self.listeners.get(port, ()):
            if ep.local_ip == ip:
                return ep
            if ep.local_ip == ANY:
                wildcard = ep
        return wildcard

    def listening(self, ip: bytes, port: int) -> bool:
        return self._listener(ip, port) is not None

    # -- the bounds on what peers make us hold, and SYN cookies -------------------------
    def table_full(self) -> bool:
        """``max_connections``: every connection with a peer counts but TIME-WAIT ones (``max_tw_buckets``)."""
        return len(self.conns) - len(self.time_wait) >= self.config.max_connections

    def syn_to_listener(self, listener: TcpConn, seg: Tcp, now: float) -> None:
        """A SYN for a listener, in Linux's order (tcp_conn_request): the accept queue, the SYN queue, a cookie."""
        c = self.counters
        cfg = self.config
        if len(listener.accept_queue) > listener.backlog:
            c.drop("tcp", "accept_queue_full")  # Linux ListenOverflows: dropped, so the peer retries
            return
        if self.table_full():
            c.drop("tcp", "conn_table_full")  # dropped like a SYN the kernel cannot allocate a socket for
            return
        full = len(listener.children) >= max(1, min(listener.backlog, cfg.max_syn_backlog))
        if cfg.syncookies == 2 or (full and cfg.syncookies == 1):
            self._send_cookie(listener, seg, now)
        elif full:
            c.drop("tcp", "syn_backlog_full")
        else:
            self.fork(listener, seg, now)

    def _send_cookie(self, listener: TcpConn, seg: Tcp, now: float) -> None:
        """RFC 4987 3.6: a SYN-ACK whose ISN is the cookie, and nothing kept; MSS is the only option it offers."""
        src, dst = self.rx_addrs
        try:
            route = self.stack.route(src)
        except OSError:
            self.counters.drop("tcp", "no_route")
            return
        peer_mss = seg.option(OPT_MSS)
        mss = peer_mss if isinstance(peer_mss, int) and peer_mss else 536  # RFC 9293 3.7.1's default
        tup = tcp_cookies.four_tuple(dst, seg.dst_port, src, seg.src_port)
        cookie = tcp_cookies.encode(self._cookie_key, tup, seg.seq, mss, now)
        synack = Tcp(seg.dst_port, seg.src_port, cookie, (seg.seq + 1) & MASK, SYN | ACK,
                     min(listener.rcvbuf_size, 0xFFFF), 0, (Option(OPT_MSS, route.mtu - 40),), b"")
        self._cookie_sent_at = now
        self.counters.inc("tcp.syncookies_sent")
        self.counters.inc("tcp.tx")
        self._output(synack, dst, src, now)

    def _cookies_out(self, now: float) -> bool:
        """Whether an ACK to a listener may be a cookie's: always with syncookies 2, else while cookies are recent."""
        mode = self.config.syncookies
        sent = self._cookie_sent_at
        return mode == 2 or (mode == 1 and sent is not None and now - sent < tcp_cookies.MAX_AGE * tcp_cookies.PERIOD)

    def _cookie_ack(self, listener: TcpConn, seg: Tcp, now: float) -> bool:
        """The handshake's ACK for a cookie: a valid one makes an ESTABLISHED connection for accept(), at once.

        False when the cookie is not valid: the listener then answers the ACK as any other (a RST).
        """
        src, dst = self.rx_addrs
        c = self.counters
        peer_isn = (seg.seq - 1) & MASK
        tup = tcp_cookies.four_tuple(dst, seg.dst_port, src, seg.src_port)
        mss = tcp_cookies.decode(self._cookie_key, tup, peer_isn, (seg.ack - 1) & MASK, now)
        if mss is None:
            c.inc("tcp.syncookies_failed")
            return False
        c.inc("tcp.syncookies_ok")
        if len(listener.accept_queue) > listener.backlog:
            c.drop("tcp", "accept_queue_full")
            return True
        if self.table_full():
            c.drop("tcp", "conn_table_full")
            return True
        child = self._child(listener, seg, now)
        if child is None:
            return True
        syn = Tcp(seg.src_port, seg.dst_port, peer_isn, 0, SYN, seg.window, 0, (Option(OPT_MSS, mss),), b"")
        child.cookie_syn_received(syn, (seg.ack - 1) & MASK, now)
        c.inc("tcp.passive_open")
        child.segment_arrives(seg, now)  # SYN-RECEIVED takes the ACK (and any data) as after a SYN-ACK of its own
        return True

    def time_wait_admit(self, conn: TcpConn) -> bool:
        """A connection enters TIME-WAIT if a bucket is free (Linux tcp_max_tw_buckets); counted when not."""
        if len(self.time_wait) >= self.config.max_tw_buckets:
            self.counters.inc("tcp.tw_overflow")
            return False
        self.time_wait.add(conn)
        return True

    def fork(self, listener: TcpConn, seg: Tcp, now: float) -> None:
        """A SYN for a listener: a child TCB in LISTEN takes it (and so moves to SYN-RECEIVED)."""
        child = self._child(listener, seg, now)
        if child is not None:
            child.fire_syn(seg, now)

    def _child(self, listener: TcpConn, seg: Tcp, now: float) -> TcpConn | None:
        """A listener's new connection in LISTEN, in the demux, for the segment being processed."""
        src, dst = self.rx_addrs
        try:
            route = self.stack.route(src)
        except OSError:
            self.counters.drop("tcp", "no_route")
            return None
        child = TcpConn(self)
        child.state = LISTEN
        child.local_ip, child.local_port = dst, seg.dst_port
        child.remote_ip, child.remote_port = src, seg.src_port
        child.key = (dst, seg.dst_port, src, seg.src_port)
        child.our_mss = route.mtu - 40  # RFC 9293 3.7.1: MTU less the IP and TCP headers
        child.tso_max = self.stack.tso_max(route.iface)  # segments longer than the MTU, for the device to cut
        child.parent = listener
        child.released = True  # nobody holds it until accept()
        child.reuseaddr = listener.reuseaddr
        child.nodelay = listener.nodelay
        child.keepalive = listener.keepalive
        child.rcvbuf_size = listener.rcvbuf_size
        child.sndbuf_size = listener.sndbuf_size
        child.user_buffers = listener.user_buffers
        self.conns[child.key] = child
        self.ports.setdefault(child.local_port, []).append(child)
        listener.children.add(child)
        child.last_rx = now
        return child

    # -- endpoints -------------------------------------------------------------------
    def open(self) -> TcpConn:
        """A new endpoint, CLOSED and unbound (socket(AF_INET, SOCK_STREAM))."""
        return TcpConn(self)

    def bind(self, ep: TcpConn, ip: bytes, port: int) -> None:
        if not 0 <= port <= 0xFFFF:
            raise OverflowError("bind(): port must be 0-65535.")
        if ip != ANY and not self.stack.is_local(ip):
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        if port == 0:
            port = self._free_port()
        elif self._bind_conflict(ep, ip, port):
            raise OSError(errno.EADDRINUSE, "Address already in use")
        ep.local_ip = ip
        ep.local_port = port
        self.ports.setdefault(port, []).append(ep)

    def _bind_conflict(self, ep: TcpConn, ip: bytes, port: int) -> bool:
        """Linux's rule: the same port and overlapping addresses conflict unless both set SO_REUSEADDR
        and the other is not listening (so a server restarts over its TIME-WAIT connections)."""
        for other in self.ports.get(port, ()):
            if other is ep:
                continue
            if other.local_ip != ANY and ip != ANY and other.local_ip != ip:
                continue
            if ep.reuseaddr and other.reuseaddr and other.state != LISTEN:
                continue
            return True
        return False

    def check_listen(self, ep: TcpConn) -> None:
        for other in self.listeners.get(ep.local_port, ()):
            if other.local_ip == ANY or ep.local_ip == ANY or other.local_ip == ep.local_ip:
                raise OSError(errno.EADDRINUSE, "Address already in use")

    def add_listener(self, ep: TcpConn) -> None:
        self.listeners.setdefault(ep.local_port, []).append(ep)

    def remove_listener(self, ep: TcpConn) -> None:
        lst = self.listeners.get(ep.local_port)
        if lst is not None and ep in lst:
            lst.remove(ep)
            if not lst:
                del self.listeners[ep.local_port]
        self.release(ep)

    def _free_port(self) -> int:
        """bind(port 0): RFC 6056 3.3.1, a random start, then the next port nobody uses."""
        lo, hi = self.config.ephemeral
        count = hi - lo + 1
        start = self.stack.rng.randrange(count)
        for i in range(count):
            port = lo + (start + i) % count
            if port not in self.ports:
                return port
        raise OSError(errno.EADDRINUSE, "Address already in use: no ephemeral port free")

    def _ephemeral(self, lip: bytes, rip: bytes, rport: int) -> int:
        """connect() without bind: RFC 6056 3.3.3 (Algorithm 3, the double-hash idea with one table slot).

        A port is suitable when no bind()ed endpoint holds it and the 4-tuple is free.
        """
        lo, hi = self.config.ephemeral
        count = hi - lo + 1
        h = hashlib.blake2s(lip + rip + rport.to_bytes(2, "big"), key=self._secret, digest_size=4, person=b"port")
        offset = int.from_bytes(h.digest(), "big")
        for _ in range(count):
            port = lo + (self._next_ephemeral + offset) % count
            self._next_ephemeral += 1
            users = self.ports.get(port)
            if users and not all(u.autobound for u in users):
                continue
            if (lip, port, rip, rport) in self.conns:
                continue
            return port
        raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")

    def connect(self, ep: TcpConn, ip: bytes, port: int) -> None:
        """Pick the source address and port for an active open and enter the 4-tuple in the demux."""
        route = self.stack.route(ip)  # raises ENETUNREACH
        if self.table_full():
            raise OSError(errno.ENOBUFS, "No buffer space available: max_connections reached")
        lip = ep.local_ip if ep.local_ip != ANY else route.src
        if not ep.local_port:
            lport = self._ephemeral(lip, ip, port)
            ep.autobound = True
            self.ports.setdefault(lport, []).append(ep)
            ep.local_port = lport
        elif (lip, ep.local_port, ip, port) in self.conns:
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        ep.local_ip = lip
        ep.remote_ip, ep.remote_port = ip, port
        ep.key = (lip, ep.local_port, ip, port)
        ep.our_mss = route.mtu - 40  # RFC 9293 3.7.1
        ep.tso_max = self.stack.tso_max(route.iface)
        ep.sched = None
        self.conns[ep.key] = ep

    def isn(self, lip: bytes, lport: int, rip: bytes, rport: int, now: float) -> int:
        """RFC 6528 3: ISN = M + F(4-tuple, secret), M a 4-microsecond clock."""
        h = hashlib.blake2s(lip + lport.to_bytes(2, "big") + rip + rport.to_bytes(2, "big"), key=self._secret,
                            digest_size=4)
        return (int(now * 250_000) + int.from_bytes(h.digest(), "big")) & MASK

    def ts_offset(self, lip: bytes, lport: int, rip: bytes, rport: int) -> int:
        """RFC 7323 5.4: each connection's timestamp clock starts at its own offset, from the 4-tuple and the secret."""
        h = hashlib.blake2s(lip + lport.to_bytes(2, "big") + rip + rport.to_bytes(2, "big"), key=self._secret,
                            digest_size=4, person=b"tsoffset")
        return int.from_bytes(h.digest(), "big")

    def remove(self, conn: TcpConn) -> None:
        """The connection reached CLOSED: out of the demux and the timer heap; the port goes if nobody holds it."""
        key = conn.key
        self.time_wait.discard(conn)
        if key is not None:
            if self.conns.get(key) is conn:
                del self.conns[key]
            self.timers.cancel(("tcp", key))
            conn.sched = None
        parent = conn.parent
        if parent is not None:
            parent.children.discard(conn)
        if conn.released:
            self._unbind(conn)

    def release(self, conn: TcpConn) -> None:
        """The application let go: the port goes once the connection is CLOSED too."""
        if conn.state == CLOSED:
            self._unbind(conn)

    def _unbind(self, conn: TcpConn) -> None:
        users = self.ports.get(conn.local_port)
        if users is not None and conn in users:
            users.remove(conn)
            if not users:
                del self.ports[conn.local_port]
