"""Two TCP layers back to back on a virtual clock, passing ``Tcp`` values (no codec in the way).

``FakeStack`` is exactly the surface ``TcpLayer`` codes against (config, rng,
counters, timers, ready, route, send_ipv4, send_icmp_error, register). ``Net``
wires two hosts together: every segment either side sends goes through
``tap`` (drop, duplicate, delay or reorder chosen segments) and into a queue
ordered by arrival time; ``step`` delivers the next segment or fires the next
timer, whichever is earlier, then runs the ``apps`` callbacks and the
invariant ``check``.
"""

import errno
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from simstack.protocols.counters import Counters
from simstack.protocols.tcp import Tcp
from simstack.protocols.tcp_conn import TcpConfig, TcpConn
from simstack.protocols.tcp_layer import TcpLayer
from simstack.protocols.timers import Timers
from simstack.protocols.transport import Readiness, Ready

A_IP = bytes([10, 0, 0, 1])
B_IP = bytes([10, 0, 0, 2])


@dataclass(frozen=True)
class FakeConfig:
    ip: bytes
    mac: bytes = b"\x02\x00\x00\x00\x00\x01"
    mtu: int = 1500


class Route(NamedTuple):
    src: bytes
    mtu: int
    iface: int = 0


class FakeStack:
    def __init__(self, ip: bytes, seed: int, mtu: int = 1500) -> None:
        self.config = FakeConfig(ip, mtu=mtu)
        self.rng = random.Random(seed)
        self.counters = Counters()
        self.timers = Timers()
        self.ready = Readiness()
        self.transports: dict[str, Any] = {}
        self.unreachable: set[bytes] = set()
        self.sent_ipv4: list[tuple[bytes, int, bytes, bytes | None, bool]] = []
        self.icmp_errors: list[tuple[int, int]] = []
        self.rx_csum_ok = False

    def tso_max(self, iface: int) -> int:
        return 0

    def register(self, transport: Any) -> None:
        self.transports[transport.name] = transport
        transport.attach(self)

    def is_local(self, ip: bytes) -> bool:
        return ip == self.config.ip

    def route(self, dst: bytes) -> Route:
        if dst in self.unreachable:
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        return Route(self.config.ip, self.config.mtu)

    def send_ipv4(self, dst: bytes, protocol: int, payload: bytes, now: float, *, src: bytes | None = None, tos: int = 0,
                  ttl: int | None = None, df: bool = False) -> None:
        self.route(dst)
        self.sent_ipv4.append((dst, protocol, payload, src, df))

    def send_icmp_error(self, ip: Any, raw: bytes, type_: int, code: int, now: float) -> bool:
        self.icmp_errors.append((type_, code))
        return True

    def on_timer(self, now: float) -> None:
        for kind, arg in self.timers.pop_due(now):
            self.transports[kind].on_timer(arg, now)


class Sent(NamedTuple):
    time: float
    src: bytes
    dst: bytes
    seg: Tcp


# What the wire does with a segment: None delivers it after the link delay; a list delivers one copy per
# entry, each after the link delay plus that entry; [] drops it.
Tap = Callable[[Sent], list[float] | None]


class WireTcp(TcpLayer):
    """The layer with its output going to the simulated wire instead of the codec."""

    def __init__(self, net: "Net", config: TcpConfig | None) -> None:
        super().__init__(config)
        self.net = net

    def _output(self, seg: Tcp, src: bytes, dst: bytes, now: float) -> None:
        self.net.transmit(seg, src, dst, now)


class Host:
    def __init__(self, net: "Net", ip: bytes, seed: int, config: TcpConfig | None, mtu: int) -> None:
        self.ip = ip
        self.stack = FakeStack(ip, seed, mtu)
        self.tcp = WireTcp(net, config)
        self.stack.register(self.tcp)
        self.marks: list[tuple[float, TcpConn, Ready]] = []

    def open(self) -> TcpConn:
        return self.tcp.open()

    @property
    def counters(self) -> Counters:
        return self.stack.counters


class Net:
    def __init__(self, config: TcpConfig | None = None, *, config_b: TcpConfig | None = None, delay: float = 0.001,
                 seed: int = 1, mtu: int = 1500, mtu_b: int | None = None) -> None:
        self.now = 0.0
        self.delay = delay
        self.a = Host(self, A_IP, seed, config, mtu)
        self.b = Host(self, B_IP, seed + 1000, config_b if config_b is not None else config,
                      mtu_b if mtu_b is not None else mtu)
        self.hosts = {A_IP: self.a, B_IP: self.b}
        self.queue: list[tuple[float, int, Sent]] = []
        self._n = 0
        self.log: list[Sent] = []
        self.tap: Tap | None = None
        self.apps: list[Callable[[float], None]] = []
        self.check: Callable[[], None] | None = None
        self.steps = 0

    # -- the wire ---------------------------------------------------------------
    def transmit(self, seg: Tcp, src: bytes, dst: bytes, now: float) -> None:
        sent = Sent(now, src, dst, seg)
        self.log.append(sent)
        delays = self.tap(sent) if self.tap is not None else None
        for d in [0.0] if delays is None else delays:
            self._push(now + self.delay + d, sent)

    def inject(self, seg: Tcp, src: bytes, dst: bytes, delay: float = 0.0) -> None:
        """A segment from nowhere (a forged or crafted one), arriving after ``delay``."""
        self._push(self.now + delay, Sent(self.now, src, dst, seg))

    def _push(self, when: float, sent: Sent) -> None:
        self._n += 1
        heapq.heappush(self.queue, (when, self._n, sent))

    def sent_by(self, host: Host, since: int = 0) -> list[Tcp]:
        return [s.seg for s in self.log[since:] if s.src == host.ip]

    # -- the clock ---------------------------------------------------------------
    def next_time(self) -> float | None:
        times = [self.queue[0][0]] if self.queue else []
        for h in (self.a, self.b):
            d = h.stack.timers.next_deadline()
            if d is not None:
                times.append(d)
        return min(times) if times else None

    def step(self) -> bool:
        t = self.next_time()
        if t is None:
            return False
        self.now = max(self.now, t)
        if self.queue and self.queue[0][0] <= t:
            _, _, sent = heapq.heappop(self.queue)
            self.hosts[sent.dst].tcp.segment_arrives(sent.seg, sent.src, sent.dst, self.now)
        else:
            for h in (self.a, self.b):
                d = h.stack.timers.next_deadline()
                if d is not None and d <= self.now:
                    h.stack.on_timer(self.now)
        self.steps += 1
        self.settle()
        return True

    def settle(self) -> None:
        """Drain readiness, run the applications, check invariants (after every step and every app call)."""
        for h in (self.a, self.b):
            for ep, what in h.stack.ready.drain():
                h.marks.append((self.now, ep, what))
        for app in self.apps:
            app(self.now)
        if self.check is not None:
            self.check()

    def run(self, until: float | None = None, max_steps: int = 10_000_000) -> None:
        """Step until nothing is left to do, or until virtual time ``until``."""
        for _ in range(max_steps):
            t = self.next_time()
            if t is None or (until is not None and t > until):
                break
            self.step()
        else:
            raise AssertionError("the network did not settle")
        if until is not None:
            self.now = max(self.now, until)

    def run_until(self, done: Callable[[], bool], limit: float = 1e6, max_steps: int = 10_000_000) -> None:
        for _ in range(max_steps):
            if done():
                return
            t = self.next_time()
            if t is None or t > limit:
                break
            self.step()
        if not done():
            raise AssertionError(f"condition not reached by t={self.now}")


def established_pair(net: Net, port: int = 80) -> tuple[TcpConn, TcpConn, TcpConn]:
    """A listens on ``port``, B connects: returns (listener, A's accepted end, B's end)."""
    listener = net.a.open()
    listener.bind(b"\x00\x00\x00\x00", port)
    listener.listen(8)
    client = net.b.open()
    client.connect(A_IP, port, net.now)
    net.run_until(lambda: bool(listener.accept_queue) and client.state == "ESTABLISHED")
    server = listener.accept()
    assert server is not None
    return listener, server, client


def check_conn(conn: TcpConn) -> None:
    """The TCB's invariants (RFC 9293 3.3.1 orderings, buffer and queue bounds)."""
    from simstack.protocols.seqnum import seq_diff, seq_le

    if conn.state in ("CLOSED", "LISTEN"):
        return
    assert seq_le(conn.snd_una, conn.snd_nxt) and seq_le(conn.snd_nxt, conn.snd_max), conn
    assert len(conn.sndbuf) <= conn.sndbuf_size
    if conn.state != "SYN-SENT":
        most = 0xFFFF << conn.rcv_wscale  # the largest window the field can offer (RFC 7323 2.2)
        assert 0 <= seq_diff(conn.rcv_adv, conn.rcv_nxt) <= most
        assert len(conn.rcvbuf) + seq_diff(conn.rcv_adv, conn.rcv_nxt) <= max(conn.rcvbuf_size, most) + most
    if conn.syn_acked:
        assert seq_diff(conn.snd_una, conn.buf_seq) in (0, 1)  # 1 once our FIN is acknowledged
        assert seq_le(conn.snd_max, (conn.buf_seq + len(conn.sndbuf) + 1) & 0xFFFFFFFF)
        assert conn.cwnd >= conn.snd_mss
    ooo = conn.ooo
    assert len(ooo) <= conn.layer.config.ooo_max_segments
    assert conn.ooo_bytes == sum(len(d) for _, d, _ in ooo)
    prev_end = conn.rcv_nxt
    for seq, data, _fin in ooo:
        assert seq_diff(seq, prev_end) >= 0, "out-of-order queue overlaps or is behind RCV.NXT"
        prev_end = (seq + len(data)) & 0xFFFFFFFF
        assert seq_le(prev_end, conn.rcv_adv)
    assert conn.snd_wnd <= 0xFFFF << conn.snd_wscale


def check_all(net: Net) -> None:
    for h in (net.a, net.b):
        for conn in h.tcp.conns.values():
            check_conn(conn)
        assert h.counters["tcp.drop.no_transition"] == 0


class Pump:
    """An application on each side: ``src`` writes ``data`` as fast as send() takes it (then shuts down
    writing); ``dst`` reads everything, checking at every step that what it read is a prefix of what was sent."""

    def __init__(self, net: Net, src: TcpConn, dst: TcpConn, data: bytes, *, read: bool = True, chunk: int = 65536,
                 shutdown: bool = True) -> None:
        self.net = net
        self.src = src
        self.dst = dst
        self.data = data
        self.sent = 0
        self.got = bytearray()
        self.read = read
        self.chunk = chunk
        self.shutdown = shutdown
        self.eof = False
        net.apps.append(self)
        self(net.now)

    def __call__(self, now: float) -> None:
        src, dst = self.src, self.dst
        while self.sent < len(self.data) and src.state in ("ESTABLISHED", "CLOSE-WAIT"):
            n = src.send(self.data[self.sent:self.sent + self.chunk], now)
            if not n:
                break
            self.sent += n
            if self.sent == len(self.data) and self.shutdown:
                src.shutdown(1, now)
        while self.read and not self.eof and not dst.released:
            r = dst.recv(65536, now)
            if r is None:
                break
            if r == b"":
                self.eof = True
                break
            n = len(self.got)
            assert self.data[n:n + len(r)] == r, "bytes read are not the bytes sent, in order"
            self.got += r

    @property
    def done(self) -> bool:
        return self.eof and len(self.got) == len(self.data)
