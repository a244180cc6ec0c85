"""Two real stacks on a wire the fuzzer controls, one TCP connection put in a chosen state, and a decoder that
turns a stream of choices into frames, timer firings and application calls.

Both fuzzers share it: tests/test_tcp_fuzz.py feeds it Hypothesis draws, fuzz/fuzz_stack.py the bytes atheris
mutates (``ByteSource``). Stack A is the one under attack: it gets forged, mutated, truncated and random frames
through ``Stack.receive``; B is a well-behaved peer whose frames A also gets, when the choices deliver them.
After every frame and every call the invariants of tests/tcp_invariants.py run on both stacks.
"""

import random
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from tcp_invariants import Checker, InvariantError, StreamCheck, connections, drops, stream_bytes

from simstack.protocols import ethernet, ipv4, tcp
from simstack.protocols.checksum import internet_checksum
from simstack.protocols.seqnum import MASK
from simstack.protocols.stack import Stack, StackConfig
from simstack.protocols.tcp import ACK, FIN, PSH, RST, SYN, URG, Option, Tcp
from simstack.protocols.tcp_conn import TcpConfig, TcpConn

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
IP_A = bytes([10, 0, 0, 1])
IP_B = bytes([10, 0, 0, 2])
PORT = 80
DRAIN_STEPS = 400  # frames or timers one settle may take: a window of data is well under it

# The eleven: RFC 9293's ten states a connection lives in, and no connection at all.
STATES = ("CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT",
          "CLOSING", "LAST-ACK", "TIME-WAIT")

_SMALL = TcpConfig(rcvbuf=4096, sndbuf=4096, ooo_max_segments=4, max_syn_backlog=4)
_OPTIONS = TcpConfig(wscale=7, timestamps=True, sack=True, dsack=True)
# (A's config, B's config): nothing negotiated; everything; offered by A only; small buffers and queues;
# small buffers with scaling; the BSD-flavoured settings packetdrill profiles use.
CONFIGS: tuple[tuple[TcpConfig, TcpConfig], ...] = (
    (TcpConfig(), TcpConfig()),
    (_OPTIONS, _OPTIONS),
    (_OPTIONS, TcpConfig()),
    (_SMALL, _SMALL),
    (replace(_SMALL, wscale=2, timestamps=True, sack=True), replace(_SMALL, wscale=0, timestamps=True, sack=True)),
    (TcpConfig(rfc5961=False, accept_to_buffer=True, bsd_time_wait=True, ack_old_segments=True, resend_fin=True,
               window_steps=False, drop_future_ack=True, rfc1337=True, sack=True, timestamps=True, wscale=3,
               options_layout="freebsd", mss_buffers=True, drop_synfin=True, ack_second_segment=True, quickack=16,
               rto_slop=0.2, double_buffers=True, icmp_syn_sent="freebsd"),
     TcpConfig(sack=True, timestamps=True, wscale=1)),
)

# Seconds a timer step may advance: a tick, delayed ACK, the RTOs, TIME-WAIT, fin_timeout, keepalive.
DELAYS = (0.0005, 0.04, 0.2, 1.0, 3.0, 30.0, 61.0, 130.0, 7300.0)
# Offsets from a base sequence number: the window edges and the far side of the 2^32 wrap.
SEQ_DELTAS = (0, 1, -1, 2, -2, 100, -100, 535, 536, 1460, -1460, 4095, 4096, 8192, 65535, 65536, -65535, -65536,
              1 << 20, -(1 << 20), (1 << 30), -(1 << 30), (1 << 31) - 1, 1 << 31, -(1 << 31), (1 << 31) + 1)
WINDOWS = (0, 1, 2, 535, 536, 1460, 4096, 32767, 32768, 65534, 65535)
FLAG_SETS = (ACK, ACK | PSH, SYN, SYN | ACK, FIN | ACK, RST, RST | ACK, FIN, SYN | FIN, SYN | RST, FIN | RST,
             SYN | FIN | RST | ACK, URG | ACK, 0, 0xFF, FIN | PSH | URG)


class Source(Protocol):
    """Where the choices come from: Hypothesis draws or fuzz bytes."""

    def num(self, lo: int, hi: int) -> int: ...

    def blob(self, n: int) -> bytes: ...

    def more(self) -> bool: ...


class ByteSource:
    """Choices read from the front of a byte string; past its end every choice is the smallest."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def num(self, lo: int, hi: int) -> int:
        span = hi - lo
        if span <= 0:
            return lo
        width = (span.bit_length() + 7) // 8
        chunk = self.data[self.pos:self.pos + width]
        self.pos += width
        return lo + int.from_bytes(chunk, "big") % (span + 1)

    def blob(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def more(self) -> bool:
        return self.pos < len(self.data)


class ByteSink:
    """The inverse of ``ByteSource``: writes the choices that make a ByteSource give chosen values (seed files)."""

    def __init__(self) -> None:
        self.out = bytearray()

    def num(self, lo: int, hi: int, value: int) -> None:
        span = hi - lo
        if span <= 0:
            return
        width = (span.bit_length() + 7) // 8
        self.out += (value - lo).to_bytes(width, "big")

    def blob(self, data: bytes) -> None:
        self.out += data


def frame(src_mac: bytes, dst_mac: bytes, src: bytes, dst: bytes, segment: bytes, ident: int = 0) -> bytes:
    packet = ipv4.emit(ipv4.Ipv4(src=src, dst=dst, protocol=ipv4.PROTO_TCP, payload=segment, identification=ident,
                                 df=True))
    out: bytes = ethernet.emit(ethernet.Ethernet(dst=dst_mac, src=src_mac, ethertype=ethernet.TYPE_IPV4,
                                                 payload=packet), pad=False)
    return out


class World:
    """Stacks A and B, the frames in flight each way, the connections the applications hold, and a clock."""

    def __init__(self, configs: tuple[TcpConfig, TcpConfig], seed: int = 1) -> None:
        self.now = 0.0
        self.a = Stack(StackConfig(mac=MAC_A, ip=IP_A, tcp=configs[0]), random.Random(seed))
        self.b = Stack(StackConfig(mac=MAC_B, ip=IP_B, tcp=configs[1]), random.Random(seed + 1))
        self.to_a: deque[bytes] = deque()
        self.to_b: deque[bytes] = deque()
        self.held: dict[Stack, list[TcpConn]] = {self.a: [], self.b: []}
        self.readers: dict[int, StreamCheck] = {}
        self.written: dict[int, int] = {}
        self.recent: deque[bytes] = deque(maxlen=8)  # valid frames B sent A: templates for truncation and flips
        self.target: TcpConn | None = None  # A's connection in the state asked for
        self.frames = 0  # frames handed to either stack
        self.checkers = (Checker(self.a.tcp), Checker(self.b.tcp))
        # where each stack was sent a FIN: the stream a connection took ends at one of them (RFC 9293 3.10.7.4)
        self.fins: dict[Stack, set[int]] = {self.a: set(), self.b: set()}

    # -- the wire and the clock ------------------------------------------------
    def _collect(self) -> None:
        for _, f in self.a.transmit_all():
            self.to_b.append(f)
        for _, f in self.b.transmit_all():
            self.to_a.append(f)
            self.recent.append(f)

    def check(self) -> None:
        self.checkers[0](self.held[self.a])
        self.checkers[1](self.held[self.b])
        for stack in (self.a, self.b):
            for conn in connections(stack.tcp, self.held[stack]):
                if conn.fin_rcvd and (conn.rcv_nxt - 1) & MASK not in self.fins[stack]:
                    raise InvariantError(f"{conn!r}: the FIN taken at {(conn.rcv_nxt - 1) & MASK} is not one sent")
                held_bytes(conn)

    def receive(self, stack: Stack, f: bytes) -> None:
        self.frames += 1
        fin = fin_at(f)
        if fin is not None:
            self.fins[stack].add(fin)
        seen = stack.counters["eth.rx"]
        stack.receive(f, self.now)
        if stack.counters["eth.rx"] != seen + 1:
            raise InvariantError("a frame received was not counted once (eth.rx)")
        self._collect()
        self.check()

    def inject(self, f: bytes, malformed: bool = False) -> None:
        """A frame from nowhere into A; ``malformed`` ones must be counted as dropped."""
        before = drops(self.a.counters) if malformed else 0
        self.receive(self.a, f)
        if malformed and drops(self.a.counters) == before:
            raise InvariantError(f"a malformed frame was not counted as dropped: {f.hex()}")

    def deliver(self, to_a: bool) -> bool:
        q = self.to_a if to_a else self.to_b
        if not q:
            return False
        self.receive(self.a if to_a else self.b, q.popleft())
        return True

    def advance(self, dt: float) -> None:
        self.now += dt
        for stack in (self.a, self.b):
            d = stack.next_deadline()
            if d is not None and d <= self.now:
                stack.on_timer(self.now)
        self._collect()
        self.check()

    def settle(self, horizon: float = 0.5) -> None:
        """Deliver everything in flight, and fire timers due within ``horizon`` (delayed ACKs, not RTOs)."""
        self._collect()
        for _ in range(DRAIN_STEPS):
            if self.deliver(True) or self.deliver(False):
                continue
            deadlines = [d for d in (self.a.next_deadline(), self.b.next_deadline()) if d is not None]
            if not deadlines or min(deadlines) > self.now + horizon:
                return
            self.advance(max(0.0, min(deadlines) - self.now))

    # -- applications ------------------------------------------------------------
    def hold(self, stack: Stack, conn: TcpConn) -> TcpConn:
        self.held[stack].append(conn)
        self.readers[id(conn)] = StreamCheck(conn)
        return conn

    def write(self, conn: TcpConn, n: int) -> None:
        done = self.written.get(id(conn), 0)
        data = stream_bytes(conn.iss + 1 + done, n)
        self.written[id(conn)] = done + conn.send(data, self.now)
        self._collect()

    def read(self, conn: TcpConn, n: int) -> None:
        data = conn.recv(n, self.now)
        if data:
            self.readers[id(conn)].got(data)
        self._collect()

    def app(self, stack: Stack, which: int, call: int, n: int) -> None:
        """One socket call on one of ``stack``'s held connections; the errors a socket raises are fine."""
        conns = self.held[stack]
        if not conns:
            return
        conn = conns[which % len(conns)]
        try:
            if call == 0:
                self.write(conn, n)
            elif call <= 2:
                self.read(conn, n)
            elif call == 3:
                conn.shutdown(n % 3, self.now)
            elif call == 4:
                conn.close(self.now)
            elif call == 5:
                conn.abort(self.now)
            elif call == 6:
                conn.set_rcvbuf(256 + n * 16, self.now)
            elif call == 7:
                child = conn.accept() if conn.state == "LISTEN" else None
                if child is not None:
                    self.hold(stack, child)
            elif call == 8:
                conn.set_keepalive(bool(n & 1), self.now)
            elif call == 9:
                conn.set_nodelay(bool(n & 1), self.now)
            else:
                conn.poll()
                conn.set_sndbuf(256 + n * 16)
        except OSError as e:
            if e.errno is None:
                raise
        except (ValueError, OverflowError):
            pass
        self._collect()
        self.check()

    def connect(self, stack: Stack, port: int = PORT) -> TcpConn:
        conn = self.hold(stack, stack.tcp.open())
        conn.connect(IP_B if stack is self.a else IP_A, port, self.now)
        self._collect()
        self.check()
        return conn

    def listen(self, stack: Stack, backlog: int = 8) -> TcpConn:
        conn = self.hold(stack, stack.tcp.open())
        conn.bind(b"\x00\x00\x00\x00", PORT)
        conn.listen(backlog)
        return conn


# -- putting A's connection in a state ---------------------------------------------

def _pair(w: World) -> tuple[TcpConn, TcpConn]:
    """B connects to A's listener: (A's accepted end, B's end), ESTABLISHED both."""
    listener = w.listen(w.a)
    client = w.connect(w.b)
    w.settle()
    server = listener.accept()
    assert server is not None and client.state == "ESTABLISHED", (server, client)
    w.hold(w.a, server)
    return server, client


def _isn_near_wrap(lip: bytes, lport: int, rip: bytes, rport: int, now: float) -> int:
    """An ISN a few thousand below 2^32, so the first data and the windows straddle the wrap."""
    return (MASK - 2500 + (lport * 7 + rport) % 1000) & MASK


def build(state: str, configs: tuple[TcpConfig, TcpConfig], seed: int = 1, data: int = 0,
          wrap: bool = False) -> World:
    """A world whose A holds a connection in ``state`` (``w.target``; None for CLOSED), with ``data`` bytes sent
    each way first when the state has data behind it. Frames still in flight stay in flight: a state that lasts
    only while a segment is on the wire (SYN-SENT, FIN-WAIT-1, CLOSING, LAST-ACK) is held that way."""
    w = World(configs, seed)
    if wrap:
        for stack in (w.a, w.b):
            setattr(stack.tcp, "isn", _isn_near_wrap)  # noqa: B010 (an instance's own ISN function)
    if state == "CLOSED":
        w.hold(w.b, w.b.tcp.open())  # B's end, to connect to A's closed port
        return w
    if state == "LISTEN":
        w.target = w.listen(w.a)
        return w
    if state == "SYN-SENT":
        w.listen(w.b)
        w.target = w.connect(w.a)
        _resolve(w)
        return w
    if state == "SYN-RECEIVED":
        listener = w.listen(w.a)
        w.connect(w.b)
        _resolve(w)
        while w.to_a and not listener.children:
            w.deliver(True)
        w.target = next(iter(listener.children), None)
        return w
    a, b = _pair(w)
    w.target = a
    if data:
        w.write(a, data)
        w.write(b, data)
        w.settle()
        w.read(a, 1 << 20)
        w.read(b, 1 << 20)
        w.settle()
    if state == "FIN-WAIT-1":
        a.shutdown(1, w.now)
        w._collect()
    elif state == "FIN-WAIT-2":
        a.shutdown(1, w.now)
        w.settle()
    elif state == "CLOSE-WAIT":
        b.shutdown(1, w.now)
        w.settle()
    elif state == "CLOSING":
        a.shutdown(1, w.now)
        b.shutdown(1, w.now)
        w._collect()
        w.deliver(True)  # B's FIN reaches A in FIN-WAIT-1; A's FIN stays on the wire
    elif state == "LAST-ACK":
        b.shutdown(1, w.now)
        w.settle()
        a.shutdown(1, w.now)
        w._collect()
    elif state == "TIME-WAIT":
        a.shutdown(1, w.now)
        w.settle()
        b.shutdown(1, w.now)
        w.settle()
    w.check()
    return w


def _resolve(w: World) -> None:
    """ARP both ways, leaving the first TCP segment in flight (the stacks queue it until the neighbour answers)."""
    for _ in range(8):
        moved = False
        for to_a in (True, False):
            q = w.to_a if to_a else w.to_b
            if q and q[0][12:14] == b"\x08\x06":
                w.deliver(to_a)
                moved = True
        if not moved:
            return


# -- the fuzz steps ------------------------------------------------------------------

def _bases(conn: TcpConn | None) -> tuple[list[int], list[int]]:
    if conn is None:
        return [0, 1 << 31, MASK], [0, 1 << 31, MASK]
    seqs = [conn.rcv_nxt, conn.rcv_adv, conn.irs, (conn.rcv_nxt + (1 << 31)) & MASK]
    acks = [conn.snd_una, conn.snd_nxt, conn.snd_max, conn.iss, (conn.iss + 1) & MASK]
    return seqs, acks


def near(src: Source, bases: list[int]) -> int:
    """A sequence number anywhere (one time in four), or one of ``bases`` moved by one of SEQ_DELTAS."""
    if src.num(0, 3) == 0:
        return src.num(0, MASK)
    return (bases[src.num(0, len(bases) - 1)] + SEQ_DELTAS[src.num(0, len(SEQ_DELTAS) - 1)]) & MASK


def option(src: Source) -> Option:
    """A known option well formed, or with a bad length, or an unknown kind, or padding."""
    kind = src.num(0, 11)
    if kind == 0:
        return Option(tcp.OPT_MSS, src.num(0, 0xFFFF))
    if kind == 1:
        return Option(tcp.OPT_WSCALE, src.num(0, 255))
    if kind == 2:
        return Option(tcp.OPT_SACK_PERMITTED)
    if kind == 3:
        return Option(tcp.OPT_TIMESTAMP, (src.num(0, MASK), src.num(0, MASK)))
    if kind == 4:
        n = src.num(1, 4)
        return Option(tcp.OPT_SACK, tuple((src.num(0, MASK), src.num(0, MASK)) for _ in range(n)))
    if kind == 5:
        return Option(tcp.OPT_NOP)
    if kind == 6:
        return Option(tcp.OPT_EOL)
    # raw bytes for any kind: a bad length for a known one, or one we do not implement (RFC 9293 3.2 MUST-5, -7)
    return Option(src.num(0, 255), src.blob(src.num(0, 12)))


SIZES = (1, 7, 100, 536, 1000, 1448, 1460)


def burst(w: World, src: Source) -> list[bytes]:
    """A run of the peer's data segments from near RCV.NXT, overlapping or not, in a drawn order (holes and
    duplicates included): the out-of-order queue, SACK and D-SACK (RFC 2018, RFC 2883)."""
    conn = w.target
    if conn is None or not conn.remote_port:
        return []
    size = SIZES[src.num(0, len(SIZES) - 1)]
    stride = max(1, size - src.num(0, size)) if src.num(0, 1) else size
    start = (conn.rcv_nxt + SEQ_DELTAS[src.num(0, 8)] * (1 if src.num(0, 3) else stride)) & MASK
    n = src.num(1, 8)
    window = 0 if src.num(0, 3) == 0 else 0xFFFF  # a closed window: A's data waits for the persist timer
    segs = []
    for i in range(n):
        seq = (start + i * stride) & MASK
        options: tuple[Option, ...] = ()
        if conn.ts_ok:
            options = (Option(tcp.OPT_NOP), Option(tcp.OPT_NOP), Option(tcp.OPT_TIMESTAMP, (conn.ts_recent + i, 0)))
        fin = FIN if i == n - 1 and src.num(0, 7) == 0 else 0
        seg = Tcp(conn.remote_port, conn.local_port, seq, conn.snd_nxt, ACK | fin, window, 0, options,
                  stream_bytes(seq, size))
        segs.append(frame(MAC_B, MAC_A, IP_B, IP_A, tcp.emit(seg, IP_B, IP_A)))
    out = []
    while segs:
        out.append(segs.pop(src.num(0, len(segs) - 1)))
        if src.num(0, 5) == 0:
            out.append(out[-1])  # a duplicate
    return out


def segment(w: World, src: Source) -> tuple[bytes, bool]:
    """A segment to A's target connection (or port) with fields chosen near the values that matter; the frame,
    and whether it is malformed (a Data Offset that cannot be right)."""
    conn = w.target
    seqs, acks = _bases(conn)
    if conn is not None and conn.remote_port:
        sport, dport = conn.remote_port, conn.local_port
    else:
        held = w.held[w.b]
        sport = held[0].local_port if held and held[0].local_port else 40000
        dport = PORT
    if src.num(0, 15) == 0:
        sport, dport = src.num(0, 0xFFFF), src.num(0, 0xFFFF)
    seq = near(src, seqs)
    ack = near(src, acks)
    flags = FLAG_SETS[src.num(0, len(FLAG_SETS) - 1)] if src.num(0, 3) else src.num(0, 255)
    window = WINDOWS[src.num(0, len(WINDOWS) - 1)] if src.num(0, 3) else src.num(0, 0xFFFF)
    options: list[Option] = []
    for _ in range(src.num(0, 3)):
        options.append(option(src))
    if conn is not None and conn.ts_ok and src.num(0, 1):
        options.append(Option(tcp.OPT_TIMESTAMP, (conn.ts_recent + src.num(0, 3) - 1, src.num(0, MASK))))
    length = (0, 1, 10, 536, 1460, 3000, 65400)[src.num(0, 6)] if src.num(0, 3) else src.num(0, 2000)
    payload = stream_bytes(seq + (1 if flags & SYN else 0), length)  # the first data byte follows a SYN
    urgent = src.num(0, 0xFFFF) if flags & URG else 0
    try:
        opts = tcp.emit_options(options)
    except ValueError:
        opts = b""
        options = []
    offset = None
    if src.num(0, 7) == 0:
        offset = src.num(0, 15)
    seg = Tcp(sport, dport, seq, ack, flags, window, urgent, tuple(options), payload, offset)
    raw: bytes = tcp.emit(seg, IP_B, IP_A)
    total = 20 + len(opts) + len(payload)
    malformed = offset is not None and (offset < 5 or offset * 4 > total)
    out = bytearray(frame(MAC_B, MAC_A, IP_B, IP_A, raw, src.num(0, 0xFFFF)))
    if offset is not None and not malformed:
        _fix_tcp_checksum(out)  # a Data Offset past the options: the payload is what follows the header it says
    return bytes(out), malformed


OPS = 16
RAW_TCP_MAX = 1600


def step(w: World, src: Source) -> None:
    """One choice of input: a forged segment, a broken frame, genuine traffic, time, or an application call."""
    op = src.num(0, OPS - 1)
    if op <= 4:
        f, malformed = segment(w, src)
        w.inject(f, malformed)
    elif op == 5:
        for f in burst(w, src):
            w.inject(f)
    elif op == 6:
        w.inject(src.blob(src.num(0, 120)))
    elif op == 7 and w.recent:
        # a truncation anywhere in a valid frame: short of its IP length, so some layer must drop it
        f = w.recent[src.num(0, len(w.recent) - 1)]
        cut = src.num(0, max(0, _unpadded(f) - 1))
        w.inject(f[:cut], malformed=True)
    elif op == 8 and w.recent:
        # one byte changed; with the TCP checksum made right again only a header byte, the payload then made the
        # stream's bytes wherever the header now puts them (else it would be data the peer never sent)
        flipped = bytearray(w.recent[src.num(0, len(w.recent) - 1)])
        fix = src.num(0, 1) == 1
        i = src.num(0, (_headers_end(flipped) if fix else len(flipped)) - 1)
        flipped[i] = src.num(0, 255)
        if fix:
            _fix_tcp_checksum(flipped)
        w.inject(bytes(flipped))
    elif op == 9:
        w.deliver(True)
    elif op == 10:
        w.deliver(False)
    elif op == 11:
        q = w.to_a if src.num(0, 1) else w.to_b
        if q:
            q.popleft()
    elif op == 12:
        w.advance(DELAYS[src.num(0, len(DELAYS) - 1)] if src.num(0, 3) else src.num(0, 5000) / 1000)
    elif op == 13:
        w.app(w.a, src.num(0, 7), src.num(0, 10), src.num(0, 5000))
    elif op == 14:
        w.app(w.b, src.num(0, 7), src.num(0, 10), src.num(0, 5000))
    else:
        kind = src.num(0, 5)
        if kind == 0:
            w.settle()
        elif kind == 1 and len(w.held[w.b]) < 12:
            w.connect(w.b)  # one more client: the listener's queues fill
        elif kind == 2:
            w.advance(0.0)
        elif kind == 5:
            w.inject(icmp_error(w, src))
        else:
            # raw TCP bytes, as they are (2) or moved onto the target's ports and sequence spaces (3)
            w.inject(tcp_frame(w, src.blob(src.num(20, RAW_TCP_MAX)), rebase=kind == 3))


# (type, code) of the ICMP errors a TCP connection acts on or must ignore (RFC 5927, RFC 1122 4.2.3.9)
ICMP_ERRORS = ((3, 0), (3, 1), (3, 2), (3, 3), (3, 4), (3, 4), (3, 4), (3, 9), (3, 10), (3, 13), (11, 0), (12, 0),
               (4, 0), (5, 0))
MTUS = (0, 1, 67, 68, 100, 296, 576, 1280, 1499, 1500, 9000, 65535)


def icmp_error(w: World, src: Source) -> bytes:
    """An ICMP error from B quoting a segment of A's target connection, its sequence number near the flight."""
    conn = w.target
    type_, code = ICMP_ERRORS[src.num(0, len(ICMP_ERRORS) - 1)]
    if conn is not None and conn.remote_port:
        if conn.snd_una == conn.snd_max and conn.state in ("ESTABLISHED", "CLOSE-WAIT") and not conn.released:
            w.write(conn, 3000)  # something in flight for the error to quote
        ports = conn.local_port.to_bytes(2, "big") + conn.remote_port.to_bytes(2, "big")
        if src.num(0, 1):
            seq = (conn.snd_una + src.num(0, max(0, (conn.snd_max - conn.snd_una - 1) & MASK))) & MASK
        else:
            seq = near(src, [conn.snd_una, conn.snd_nxt, (conn.snd_max - 1) & MASK, conn.iss])
    else:
        ports, seq = src.blob(4).ljust(4, b"\0"), src.num(0, MASK)
    mtu = MTUS[src.num(0, len(MTUS) - 1)] if type_ == 3 and code == 4 else 0
    quoted = ipv4.emit(ipv4.Ipv4(src=IP_A, dst=IP_B, protocol=ipv4.PROTO_TCP, payload=ports + seq.to_bytes(4, "big"),
                                 df=True))
    body = bytearray(bytes((type_, code, 0, 0, 0, 0)) + mtu.to_bytes(2, "big") + quoted)
    body[2:4] = internet_checksum(bytes(body), 0).to_bytes(2, "big")
    packet = ipv4.emit(ipv4.Ipv4(src=IP_B, dst=IP_A, protocol=ipv4.PROTO_ICMP, payload=bytes(body)))
    out: bytes = ethernet.emit(ethernet.Ethernet(dst=MAC_A, src=MAC_B, ethertype=ethernet.TYPE_IPV4, payload=packet))
    return out


def held_bytes(conn: TcpConn, tail: int = 2048) -> None:
    """What a connection holds for its application is the stream's bytes at their places: the newest ``tail``
    bytes of the receive buffer (the end is RCV.NXT, less a FIN), and every out-of-order segment."""
    if conn.state in ("CLOSED", "LISTEN", "SYN-SENT"):
        return
    end = (conn.rcv_nxt - (1 if conn.fin_rcvd else 0)) & MASK
    n = min(tail, len(conn.rcvbuf))
    if n and conn.rcvbuf[-n:] != stream_bytes(end - n, n):
        raise InvariantError(f"{conn!r}: the receive buffer holds bytes the peer did not send there")
    for seq, data, _fin in conn.ooo:
        if data != stream_bytes(seq, len(data)):
            raise InvariantError(f"{conn!r}: the out-of-order queue holds at {seq} bytes the peer did not send there")


def fin_at(f: bytes) -> int | None:
    """The sequence number of the FIN in an Ethernet/IPv4/TCP frame, as its lengths describe it; None without."""
    if len(f) < 54 or f[12:14] != b"\x08\x00" or f[23] != ipv4.PROTO_TCP:
        return None
    ihl = (f[14] & 0x0F) * 4
    end = 14 + int.from_bytes(f[16:18], "big")
    at = 14 + ihl
    if ihl < 20 or end > len(f) or end < at + 20 or not f[at + 13] & FIN:
        return None
    hlen = (f[at + 12] >> 4) * 4
    syn = 1 if f[at + 13] & SYN else 0
    return (int.from_bytes(f[at + 4:at + 8], "big") + syn + max(0, end - at - hlen)) & MASK


def _unpadded(f: bytes) -> int:
    """The frame's length without Ethernet padding: its IP total length, plus the header."""
    if len(f) >= 18 and f[12:14] == b"\x08\x00":
        return min(len(f), 14 + int.from_bytes(f[16:18], "big"))
    if f[12:14] == b"\x08\x06":
        return min(len(f), 14 + 28)  # RFC 826 over Ethernet: 28 bytes of ARP
    return len(f)


def _headers_end(f: bytes | bytearray) -> int:
    """Where the TCP payload of an Ethernet/IPv4/TCP frame starts (the whole frame when it is not one)."""
    if len(f) < 34 or f[12:14] != b"\x08\x00":
        return len(f)
    tcp_at = 14 + (f[14] & 0x0F) * 4
    if len(f) < tcp_at + 20:
        return len(f)
    return min(len(f), tcp_at + (f[tcp_at + 12] >> 4) * 4)


def _fix_tcp_checksum(f: bytearray) -> None:
    """Make a changed frame's TCP checksum right again, its payload first made the stream's bytes at the place
    the (perhaps changed) header now puts them: a flipped sequence number or SYN bit moves the data."""
    ihl = (f[14] & 0x0F) * 4
    start = 14 + ihl
    end = min(len(f), 14 + int.from_bytes(f[16:18], "big"))
    if ihl < 20 or end - start < 20 or f[23] != ipv4.PROTO_TCP:
        return
    seg = bytearray(f[start:end])
    hlen = (seg[12] >> 4) * 4
    if 20 <= hlen < len(seg):
        seq = int.from_bytes(seg[4:8], "big") + (1 if seg[13] & SYN else 0)
        seg[hlen:] = stream_bytes(seq, len(seg) - hlen)
    seg[16:18] = b"\x00\x00"
    pseudo = ipv4.pseudo_header_sum(bytes(f[26:30]), bytes(f[30:34]), ipv4.PROTO_TCP, len(seg))
    seg[16:18] = internet_checksum(bytes(seg), pseudo).to_bytes(2, "big")
    f[start:end] = seg


def tcp_frame(w: World, raw: bytes, rebase: bool = False) -> bytes:
    """Raw TCP bytes from B to A, with their checksum made right (so the parser, not the checksum, judges them).

    ``rebase``: the ports become the target connection's, and the sequence and acknowledgment numbers count
    from its IRS and ISS (how fuzz/seed_corpus.py writes a scenario's segments: relative to the ISNs).
    """
    seg = bytearray(raw)
    conn = w.target
    if rebase and len(seg) >= 20 and conn is not None and conn.remote_port:
        seg[0:4] = conn.remote_port.to_bytes(2, "big") + conn.local_port.to_bytes(2, "big")
        seq = (int.from_bytes(seg[4:8], "big") + conn.irs) & MASK
        ack = (int.from_bytes(seg[8:12], "big") + conn.iss) & MASK
        seg[4:12] = seq.to_bytes(4, "big") + ack.to_bytes(4, "big")
    if len(seg) >= 20:
        hlen = (seg[12] >> 4) * 4
        if 20 <= hlen < len(seg):  # the payload: the stream's bytes at its place, as every sender here sends
            seq = int.from_bytes(seg[4:8], "big") + (1 if seg[13] & SYN else 0)
            seg[hlen:] = stream_bytes(seq, len(seg) - hlen)
        seg[16:18] = b"\x00\x00"
        pseudo = ipv4.pseudo_header_sum(IP_B, IP_A, ipv4.PROTO_TCP, len(seg))
        seg[16:18] = internet_checksum(bytes(seg), pseudo).to_bytes(2, "big")
    return frame(MAC_B, MAC_A, IP_B, IP_A, bytes(seg))


def run(src: Source, max_steps: int = 10_000, on_step: Callable[[World], None] | None = None) -> World:
    """Decode a world (state, configs, history) and then steps until the source runs dry or ``max_steps``."""
    state = STATES[src.num(0, len(STATES) - 1)]
    configs = CONFIGS[src.num(0, len(CONFIGS) - 1)]
    w = build(state, configs, seed=src.num(0, 255), data=(0, 100, 5000)[src.num(0, 2)], wrap=src.num(0, 1) == 1)
    for _ in range(max_steps):
        if not src.more():
            break
        step(w, src)
        if on_step is not None:
            on_step(w)
    return w


