"""The scenario runner: one scenario against one stack on the simulated wire.

The runner plays every host that is not the stack. Time moves only when a
step asks for it (``engine/wire/sim.py``), so a 30-second ARP timeout replays
in microseconds and every run is identical.

An ``app:`` call that can block runs as a generator that yields whenever the
socket would block, naming the readiness it waits for. Without ``until:`` or
``within:`` the runner waits for it in place, moving the clock; with them the
call stays blocked across later steps (packetdrill's ``0...0.1 read()``): its
readiness callback resumes it when a later inject or timer makes it ready, and
its result and return time are checked when it returns.
"""

import errno
import math
import os
import traceback
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

from simstack.protocols.addresses import ip_to_str
from simstack.protocols.icmp_layer import EchoEndpoint
from simstack.protocols.stack import Stack
from simstack.protocols.tcp import ACK, OPT_TIMESTAMP, SYN, Option

from ..api.services import start_services
from ..api.sockets import AF_INET, SOCK_DGRAM, SOCK_STREAM, Socket
from ..api.stream import (
    IPPROTO_TCP,
    MSG_PEEK,
    SO_ERROR,
    SO_KEEPALIVE,
    SO_RCVBUF,
    SO_REUSEADDR,
    SO_SNDBUF,
    SOL_SOCKET,
    TCP_NODELAY,
    StreamSocket,
)
from ..wire.impair import LinkShaper
from ..wire.sim import Trace
from .defrag import DefragError, reassemble
from .droprules import DropRule, DropRules
from .fields import BYTES, SpecError, build_frame, compare, decode_frame, show
from .isn import Isns, Rel
from .loader import Scenario, ScenarioError, Step, fragment_frame
from .repeat import Repeat
from .repeat import frames as repeat_frames
from .simhost import SimHost
from .tcp_words import ANY as ANY_VALUE
from .tcp_words import OptionsPattern

# A blocking call: yields ("read" | "write", socket) while it would block, returns its result.
Call = Generator[tuple[str, "Socket | StreamSocket"], None, Any]
AnySocket = Socket | StreamSocket
_TsMatch = tuple[tuple[int, int], int, int | None]  # (stack port, peer port), TS val named, TS val sent
# app: setsockopt / getsockopt option names -> (level, option)
SOCKET_OPTIONS = {
    "nodelay": (IPPROTO_TCP, TCP_NODELAY), "reuseaddr": (SOL_SOCKET, SO_REUSEADDR), "rcvbuf": (SOL_SOCKET, SO_RCVBUF),
    "sndbuf": (SOL_SOCKET, SO_SNDBUF), "keepalive": (SOL_SOCKET, SO_KEEPALIVE), "error": (SOL_SOCKET, SO_ERROR),
}


_MAC_FIELDS = frozenset({"eth.", "eth.dst", "eth.src"})  # "eth." marks the layer as named


class StepFailed(Exception):
    def __init__(self, message: str, step: Step | None = None) -> None:
        super().__init__(message)
        self.step = step  # the step that failed, when it is not the one running (a blocked call)


@dataclass
class Result:
    path: str
    passed: bool
    report: str = ""


def describe(frame: bytes, isns: Isns | None = None) -> str:
    return decode_frame(frame, isns).summary


@dataclass
class _Blocked:
    """An app call left blocked across later steps."""

    step: Step
    sock: AnySocket
    call: Call
    check: Callable[[Any], None]
    started: float
    deadline: float  # when it must have returned by (until + tolerance, or start + within)
    done: bool = False


class Runner(SimHost):
    """Also the socket host of the replay: blocking calls move the virtual clock."""

    def __init__(self, scenario: Scenario, trace: Trace | None = None) -> None:
        stack = Stack(scenario.config, scenario.rng())
        ignore = scenario.ignore
        # ISNs, learned from the SYNs as they cross the wire (both ways), for relative sequence numbers
        self.isns = isns = Isns()
        if scenario.tcp:
            user_trace = trace

            def learning(t: float, direction: str, frame: bytes) -> None:
                isns.see(frame, direction)
                if user_trace is not None:
                    user_trace(t, direction, frame)

            trace = learning
        keep: Callable[[bytes], bool] | None = None
        if ignore:
            # A spec naming MAC addresses alone is matched on the frame's bytes: a flood's answers
            # (repeat:) are set aside without decoding each one.
            by_mac = [(spec.get("eth.dst"), spec.get("eth.src")) for spec in ignore if set(spec) <= _MAC_FIELDS]
            decoded_specs = [spec for spec in ignore if not set(spec) <= _MAC_FIELDS]

            def keep(frame: bytes) -> bool:
                """``options.ignore``: set aside a frame any spec matches; the frame is decoded once for them all."""
                for dst, src in by_mac:
                    if (dst is None or frame[0:6] == dst) and (src is None or frame[6:12] == src):
                        return False
                if not decoded_specs:
                    return True
                decoded = decode_frame(frame, isns)
                return all(compare(spec, decoded, isns) for spec in decoded_specs)
        self.shaper, self.drop_rules = link_shaper(scenario)
        super().__init__(stack, trace=trace, keep=keep, default_wait=scenario.expect_within, shaper=self.shaper)
        self.scenario = scenario
        self.echo: dict[int, EchoEndpoint] = {}
        self.sockets: dict[str, AnySocket] = {}
        self.nonblocking: set[str] = set()  # socket names set non-blocking (app: setblocking)
        self.blocked: dict[str, _Blocked] = {}  # by socket name
        self.services = start_services(self, scenario.services)
        # TS val on the scenario's clock -> the stack's, per (stack port, peer port): the first pair, and each named
        self.ts_base: dict[tuple[int, int], tuple[int, int]] = {}
        self.ts_vals: dict[tuple[int, int], dict[int, int]] = {}

    @property
    def pending(self) -> Any:
        """What the stack sent that no step took yet, on every interface."""
        pendings = self.wire.pendings
        return pendings[0] if len(pendings) == 1 else [p for queue in pendings for p in queue]

    def _target(self, step: Step) -> float:
        if step.at is None:
            return self.now
        t = self.now + step.at if step.relative else step.at
        if t < self.now - 1e-9:
            raise ScenarioError(self.scenario.path, step.line, f"at: {step.at:g} is before the current time {self.now:.6f}")
        return t

    # -- running ----------------------------------------------------------------
    def run(self) -> Result:
        sc = self.scenario
        index = 0
        step: Step | None = None
        try:
            for index, step in enumerate(sc.steps, 1):  # noqa: B007 (index names the step that failed)
                getattr(self, f"_do_{step.kind}")(step)
            for b in self.blocked.values():
                if not b.done:
                    raise StepFailed(f"  {b.step.app} was still blocked when the scenario ended", b.step)
        except StepFailed as e:
            failed = e.step or step
            assert failed is not None
            where = sc.steps.index(failed) + 1 if e.step is not None else index
            head = f"{sc.path}:{failed.line}: step {where} ({failed.kind}) failed at t={self.now:.6f}"
            return Result(sc.path, False, f"{head}\n{e}")
        except ScenarioError:
            raise
        except Exception:
            # In a replay a bug in the stack is a failed test, shown with its traceback.
            line = step.line if step is not None else 0
            return Result(sc.path, False, f"{sc.path}:{line}: step {index} raised\n{traceback.format_exc()}")
        if self.pending and not sc.allow_unexpected:
            lines = "\n".join(f"  {t:.6f} > {describe(f)}" for t, f in self.pending)
            return Result(sc.path, False, f"{sc.path}: the stack sent frames no step expected:\n{lines}")
        return Result(sc.path, True)

    def _do_inject(self, step: Step) -> None:
        self.advance(self._target(step))
        frames = step.frames
        if step.build is not None:
            # TCP: relative numbers count from the ISNs seen so far, so the frame is built now
            try:
                flat = step.build
                if step.quote is not None:
                    flat = {**flat, "icmp.data": self._quoted(step.quote)}
                frame = build_frame(flat, self.scenario.ctx, self.isns)
                frames = fragment_frame(frame, *step.fragment) if step.fragment else [frame]
            except (SpecError, ValueError) as e:
                raise ScenarioError(self.scenario.path, step.line, str(e)) from None
            if step.build.get("tcp.flags", 0) & ACK and any(o.kind == OPT_TIMESTAMP for o in options_of(step.build)):
                frame = build_frame(self._ts_echo(step.build), self.scenario.ctx, self.isns)
                frames = fragment_frame(frame, *step.fragment) if step.fragment else [frame]
            if step.build.get("tcp.flags", 0) & SYN and not isinstance(step.build.get("tcp.seq", 0), Rel):
                self.isns.learn_syn(frame)  # seq: {abs: N} on a SYN: a new ISN for its sender
        if step.repeat is not None:
            self._repeat(step.repeat, frames[0], step.iface or 0)
            return
        for frame in frames:
            self.wire.inject(frame, step.iface or 0)

    def _repeat(self, rep: Repeat, frame: bytes, iface: int) -> None:
        """``repeat:``: the copies one after the other, ``every`` seconds apart; the clock stands at the last."""
        start = self.now
        inject = self.wire.inject
        for i, copy in enumerate(repeat_frames(frame, rep)):
            if i and rep.every:
                self.advance(start + i * rep.every)
            inject(copy, iface)

    def _quoted(self, quote: dict[str, Any]) -> bytes:
        """What an ICMP error quotes of the stack's segment: its IP header and first 8 octets (RFC 792)."""
        frame = build_frame(quote, self.scenario.ctx, self.isns)
        ip = frame[14:]
        return ip[:(ip[0] & 0x0F) * 4 + 8]

    def _do_expect(self, step: Step) -> None:
        sc = self.scenario
        timed = step.at is not None
        target = self._target(step)
        tolerance = sc.tolerance if step.tolerance is None else step.tolerance
        end = target  # a range (at: A~B) lets the frame leave any time from target to end
        if step.at_hi is not None:
            end = self.now + step.at_hi if step.hi_relative else step.at_hi
        deadline = end + tolerance if timed else self.now + (sc.expect_within if step.within is None else step.within)
        wanted = max(step.fragments, 1)
        pending = self.wire.pendings[step.iface or 0]
        while len(pending) < wanted:
            next_deadline = self.next_deadline()
            if next_deadline is None or next_deadline > deadline + 1e-9:  # the slack the time check allows
                break
            self.step()
        if len(pending) < wanted:
            if step.optional:
                return
            self.advance(deadline)
            sent = f"only {len(pending)} of {wanted} frames" if pending else "nothing"
            raise StepFailed(f"  expected {wanted} frame(s) by t={deadline:.6f}; the stack sent {sent}\n"
                             f"  wanted: {_show_expected(step)}")
        t, frame = pending[0]
        if step.fragments:
            t = pending[wanted - 1][0]
            frame = _reassemble([f for _, f in list(pending)[:wanted]], self.stack.ports[step.iface or 0].mtu)
        decoded = decode_frame(frame, self.isns)
        expected, ts = self._ts_expected(step.expected, decoded)
        rows = compare(expected, decoded, self.isns)
        if ts is not None:
            rows += self._ts_check(ts, sc.tolerance if step.tolerance is None else step.tolerance)
        if timed and not target - tolerance - 1e-9 <= t <= end + tolerance + 1e-9:
            if step.at_hi is None:
                rows.append(("time", f"{target:.6f} ±{tolerance:g}", f"{t:.6f}"))
            else:
                rows.append(("time", f"{target:.6f}~{end:.6f}" + (f" ±{tolerance:g}" if tolerance else ""), f"{t:.6f}"))
        if rows:
            if step.optional:
                return
            width = max(len("field"), *(len(r[0]) for r in rows)) + 2
            wcol = max(len("expected"), *(len(r[1]) for r in rows)) + 2
            table = "\n".join(f"  {k:<{width}}{w:<{wcol}}{h}" for k, w, h in rows)
            raise StepFailed(f"  {'field':<{width}}{'expected':<{wcol}}actual\n{table}\n  frame: {t:.6f} > {decoded.summary}")
        for _ in range(wanted):
            pending.popleft()
        if ts is not None:
            self._ts_learn(ts)
        # A timed expect leaves the clock at its own time, not the (earlier) send
        # time it tolerated, so a recording's relative times do not drift; after a
        # range, at the time the frame left (packetdrill's rule).
        if timed and step.at_hi is None:
            self.advance(target)  # what falls due before that time happens first (a delayed frame, a timer)
        else:
            self.wire.now = max(self.now, t)

    # -- timestamps as packetdrill maps them (RFC 7323 values on two clocks) --------------
    # A scenario cannot know the stack's timestamp clock (RFC 7323 5.4 lets it start anywhere), so
    # the TS val an expect names counts on the scenario's clock: the first one named on a connection
    # sets the offset to the stack's, and later ones must agree within the tolerance (in ticks of
    # stack.tcp.ts_hz). An injected segment's TS ecr names the val of the expect it echoes, and the
    # runner puts in what the stack sent there (packetdrill's run_packet.c does the same).
    def _ts_expected(self, expected: Mapping[str, Any], decoded: Any) -> tuple[Mapping[str, Any], _TsMatch | None]:
        opts = expected.get("tcp.options")
        items = opts.options if isinstance(opts, OptionsPattern) else opts
        if not items or not any(o.kind == OPT_TIMESTAMP and isinstance(o.value, tuple) and type(o.value[0]) is int
                                for o in items):
            return expected, None
        got = decoded.fields
        have = next((o.value[0] for o in got.get("tcp.options") or () if o.kind == OPT_TIMESTAMP
                     and isinstance(o.value, tuple)), None)
        want = next(o.value[0] for o in items if o.kind == OPT_TIMESTAMP and isinstance(o.value, tuple)
                    and type(o.value[0]) is int)
        loose = tuple(Option(o.kind, (ANY_VALUE, o.value[1])) if o.kind == OPT_TIMESTAMP and isinstance(o.value, tuple)
                      else o for o in items)
        out = dict(expected)
        out["tcp.options"] = OptionsPattern(loose)
        key = (got.get("tcp.sport", 0), got.get("tcp.dport", 0))
        return out, (key, want, have)

    def _ts_check(self, ts: _TsMatch, tolerance: float) -> list[tuple[str, str, str]]:
        key, want, have = ts
        base = self.ts_base.get(key)
        if base is None or have is None:
            return []
        shown = (base[0] + (have - base[1])) & 0xFFFFFFFF  # the stack's value on the scenario's clock
        off = (shown - want) & 0xFFFFFFFF
        off = off - (1 << 32) if off >= 1 << 31 else off
        if abs(off) <= tolerance * self.stack.config.tcp.ts_hz + 1e-9:
            return []
        return [("tcp.options TS val", str(want), f"{shown} (abs {have})")]

    def _ts_learn(self, ts: _TsMatch) -> None:
        key, want, have = ts
        if have is None:
            return
        self.ts_base.setdefault(key, (want, have))
        self.ts_vals.setdefault(key, {})[want] = have

    def _ts_echo(self, flat: dict[str, Any]) -> dict[str, Any]:
        """An injected TS ecr, from the scenario's clock to the stack's (the val it echoes)."""
        key = (flat.get("tcp.dport", 0), flat.get("tcp.sport", 0))
        base = self.ts_base.get(key)
        vals = self.ts_vals.get(key, {})
        if base is None:
            return flat

        def stack_clock(ecr: int) -> int:
            return vals.get(ecr, (base[1] + ecr - base[0]) & 0xFFFFFFFF)

        out = dict(flat)
        out["tcp.options"] = tuple(Option(o.kind, (o.value[0], stack_clock(o.value[1])))
                                   if o.kind == OPT_TIMESTAMP and isinstance(o.value, tuple) else o
                                   for o in options_of(flat))
        return out

    def _do_nothing(self, step: Step) -> None:
        start = self._target(step)
        self.advance(start)
        self.advance(start + step.span)
        pending = self.pending if step.iface is None else self.wire.pendings[step.iface]
        if pending:
            lines = "\n".join(f"  {t:.6f} > {describe(f)}" for t, f in pending)
            raise StepFailed(f"  expected no frame for {step.span:g}s, the stack sent:\n{lines}")

    def _do_counters(self, step: Step) -> None:
        self.advance(self._target(step))
        publish_link_counts(self)
        rows = [(name, want, self.stack.counters[name]) for name, want in step.counters.items()
                if self.stack.counters[name] != want]
        if rows:
            table = "\n".join(f"  {name:<40}{want:<10}{have}" for name, want, have in rows)
            raise StepFailed(f"  {'counter':<40}{'expected':<10}actual\n{table}")

    def _do_app(self, step: Step) -> None:
        self.advance(self._target(step))
        getattr(self, f"_app_{step.app}")(step)
        self.wire.settle()

    def _app_ping(self, step: Step) -> None:
        a = step.args
        ident = a.get("id", 1)
        ep = self.echo.get(ident)
        if ep is None:
            ep = self.echo[ident] = self.stack.open_echo(ident)
        start = self.now
        for i in range(a.get("count", 1)):
            self.advance(start + i * a.get("interval", 1.0))
            try:
                ep.send(a["dst"], a.get("seq", 1) + i, a.get("data", b""), self.now)
            except OSError as e:
                raise StepFailed(f"  ping {ip_to_str(a['dst'])}: {e.strerror or e}") from None
            self.wire.collect()

    # -- calls that may block ------------------------------------------------------
    def _blocking(self, step: Step, sock: AnySocket, call: Call, check: Callable[[Any], None]) -> None:
        """Run ``call``: in place (moving the clock) or, with until:/within:, across later steps.

        A call on a stream socket only yields when it would block on a blocking
        socket; with neither until, within nor timeout, that fails the step.
        """
        if step.until is None and step.within is None:
            timeout = step.args.get("timeout", 0.0)
            limit = self.now + timeout
            while True:
                want, outcome = _run_call(call)
                if want is None:
                    break
                if timeout == 0.0:
                    if isinstance(sock, StreamSocket):
                        raise StepFailed(f"  {step.app} would block: give until or within to let it block across "
                                         "later steps, or timeout to wait in place")
                    outcome = (False, BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable"))
                    break
                ready = (lambda: sock.readable) if want == "read" else (lambda: sock.writable)
                if not self.wait_until(ready, limit - self.now):
                    outcome = (False, TimeoutError("timed out"))
                    break
            result = self._hold(step, outcome)
            if result is not _NOTHING:
                check(result)
            return
        start = self.now
        if step.until is not None:
            until = start + step.until if step.until_relative else step.until
            deadline = until + self.scenario.tolerance
        else:
            assert step.within is not None
            deadline = start + step.within
        blocked = _Blocked(step, sock, call, check, start, deadline)
        self.blocked[step.args["socket"]] = blocked
        self._resume(blocked)
        if not blocked.done:
            # Just past the deadline: a frame injected at the deadline itself still counts.
            self.wire.call_at(math.nextafter(deadline, math.inf), lambda: self._expire(blocked))

    def _resume(self, b: _Blocked) -> None:
        """Run a blocked call on until it blocks again or returns; readiness callbacks call this."""
        self.remove_reader(b.sock)
        self.remove_writer(b.sock)
        want, outcome = _run_call(b.call)
        if want == "read":
            self.add_reader(b.sock, lambda: self._resume(b))
            return
        if want == "write":
            self.add_writer(b.sock, lambda: self._resume(b))
            return
        b.done = True
        step = b.step
        if step.until is not None:
            until = b.started + step.until if step.until_relative else step.until
            if abs(self.now - until) > self.scenario.tolerance + 1e-9:
                raise StepFailed(f"  {step.app} returned at t={self.now:.6f}, expected t={until:.6f}"
                                 f" ±{self.scenario.tolerance:g}", step)
        result = self._hold(step, outcome, step)
        if result is not _NOTHING:
            b.check(result)

    def _expire(self, b: _Blocked) -> None:
        if not b.done:
            self.remove_reader(b.sock)
            self.remove_writer(b.sock)
            raise StepFailed(f"  {b.step.app} was still blocked at t={self.now:.6f} (it started at t={b.started:.6f})",
                             b.step)

    def _hold(self, step: Step, outcome: tuple[bool, Any], blocked: Step | None = None) -> Any:
        """Hold a call's outcome to the step's ``error:``; the result to check, or _NOTHING."""
        ok, value = outcome
        want = step.args.get("error")
        if not ok:
            if want is not None and want in _names_of(value):
                return _NOTHING
            expected = f", expected {want}" if want else ""
            raise StepFailed(f"  {step.app} raised {type(value).__name__}: {value}{expected}", blocked)
        if want is not None:
            raise StepFailed(f"  {step.app} succeeded (returned {value!r}), expected {want}", blocked)
        return value

    def _app_wait(self, step: Step) -> None:
        """Block here, moving the clock, until the call left blocked on this socket has returned."""
        b = self.blocked.get(step.args["socket"])
        if b is None:
            raise StepFailed(f"  no call was left blocked on socket {step.args['socket']!r}")
        while not b.done:
            if not self.step():
                raise StepFailed(f"  {b.step.app} can never return: nothing is left to happen")

    # -- socket operations (packetdrill's system calls) ---------------------------
    def _sock(self, step: Step) -> AnySocket:
        sock = self.sockets.get(step.args["socket"])
        if sock is None:  # named by an accept that is still blocked (until:/within:), or that failed
            raise StepFailed(f"  socket {step.args['socket']!r} is not open: the accept that names it has not returned it")
        return sock

    def _stream(self, step: Step) -> StreamSocket:
        sock = self._sock(step)
        assert isinstance(sock, StreamSocket)  # the loader checks the type of the socket each operation takes
        return sock

    def _blocks(self, step: Step) -> bool:
        """Whether the scenario's socket blocks (the stream socket underneath never does: the runner waits)."""
        return step.args["socket"] not in self.nonblocking

    def _fail_result(self, step: Step, rows: list[tuple[str, str, str]]) -> None:
        if rows:
            table = "\n".join(f"  {k:<8}{w:<40}{h}" for k, w, h in rows)
            raise StepFailed(f"  {'result':<8}{'expected':<40}actual\n{table}",
                             step if step.until is not None or step.within is not None else None)

    def _attempt(self, step: Step, fn: Callable[[], Any]) -> Any:
        """Run one call that never blocks and hold it to the step's ``error:``, if any."""
        try:
            outcome: tuple[bool, Any] = (True, fn())
        except OSError as e:
            outcome = (False, e)
        result = self._hold(step, outcome)
        return None if result is _NOTHING else result

    def _app_socket(self, step: Step) -> None:
        name = step.args["socket"]
        if step.args.get("type") == "stream":
            sock = self.socket(AF_INET, SOCK_STREAM)
            sock.setblocking(False)  # the runner does the blocking, on the virtual clock
            self.sockets[name] = sock
        else:
            self.sockets[name] = self.socket(AF_INET, SOCK_DGRAM)
        self.nonblocking.discard(name)

    def _app_setblocking(self, step: Step) -> None:
        name = step.args["socket"]
        if step.args["blocking"]:
            self.nonblocking.discard(name)
        else:
            self.nonblocking.add(name)

    def _app_bind(self, step: Step) -> None:
        sock = self._sock(step)
        self._attempt(step, lambda: sock.bind(step.args["addr"]))

    def _app_listen(self, step: Step) -> None:
        sock = self._stream(step)
        self._attempt(step, lambda: sock.listen(step.args.get("backlog", 128)))

    def _app_accept(self, step: Step) -> None:
        sock = self._stream(step)
        blocks = self._blocks(step)

        def call() -> Call:
            while True:
                try:
                    return sock.accept()
                except BlockingIOError:
                    if not blocks:
                        raise
                    yield "read", sock

        def check(got: tuple[StreamSocket, tuple[str, int]]) -> None:
            child, addr = got
            child.setblocking(False)
            self.sockets[step.args["as"]] = child
            self.nonblocking.discard(step.args["as"])
            want = step.args.get("addr")
            self._fail_result(step, [("addr", str(want), str(addr))] if want is not None and addr != want else [])

        self._blocking(step, sock, call(), check)

    def _app_connect(self, step: Step) -> None:
        sock = self._sock(step)
        if isinstance(sock, Socket):
            self._attempt(step, lambda: sock.connect(step.args["addr"]))
            return
        stream = sock
        blocks = self._blocks(step)

        def call() -> Call:
            try:
                stream.connect(step.args["addr"])
            except BlockingIOError as e:
                if not blocks or e.errno != errno.EINPROGRESS:
                    raise
            else:
                return None
            while not stream.writable:  # writable once the handshake is over, one way or the other
                yield "write", stream
            err = stream.getsockopt(SOL_SOCKET, SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
            return None

        self._blocking(step, stream, call(), lambda _: None)

    def _app_sendto(self, step: Step) -> None:
        sock = self._sock(step)
        assert isinstance(sock, Socket)
        self._attempt(step, lambda: sock.sendto(step.args.get("data", b""), step.args["addr"]))

    def _app_send(self, step: Step) -> None:
        sock = self._sock(step)
        data = step.args.get("data", b"")
        if isinstance(sock, Socket):
            self._check_returns(step, self._attempt(step, lambda: sock.send(data)))
            return
        stream = sock
        blocks = self._blocks(step)

        def call() -> Call:
            # A blocking send returns once all of it is queued, as Linux's does; a non-blocking one what fitted.
            view = memoryview(data)
            total = 0
            while True:
                try:
                    n = stream.send(view[total:]) if total < len(data) else 0  # type: ignore[arg-type]
                except BlockingIOError:
                    if not blocks:
                        if total:
                            return total
                        raise
                    yield "write", stream
                    continue
                except OSError:
                    if total:
                        return total  # what was queued before the error
                    raise
                total += n
                if total >= len(data) or not blocks:
                    return total

        self._blocking(step, stream, call(), lambda n: self._check_returns(step, n))

    def _check_returns(self, step: Step, n: Any) -> None:
        want = step.args.get("returns")
        if want is not None and n is not None and n != want:
            self._fail_result(step, [("returns", str(want), str(n))])

    def _app_recv(self, step: Step) -> None:
        sock = self._sock(step)
        if isinstance(sock, Socket):
            self._receive(step, with_address=False)
            return
        stream = sock
        blocks = self._blocks(step)
        size = step.args.get("size", 65535)
        flags = MSG_PEEK if step.args.get("peek") else 0

        def call() -> Call:
            while True:
                try:
                    return stream.recv(size, flags)
                except BlockingIOError:
                    if not blocks:
                        raise
                    yield "read", stream

        def check(data: bytes) -> None:
            rows = []
            if "data" in step.args and data != step.args["data"]:
                rows.append(("data", BYTES.show(step.args["data"]), BYTES.show(data)))
            if "len" in step.args and len(data) != step.args["len"]:
                rows.append(("len", str(step.args["len"]), str(len(data))))
            self._fail_result(step, rows)

        self._blocking(step, stream, call(), check)

    def _app_shutdown(self, step: Step) -> None:
        sock = self._stream(step)
        self._attempt(step, lambda: sock.shutdown(step.args["how"]))

    def _app_setsockopt(self, step: Step) -> None:
        sock = self._stream(step)
        level, option = SOCKET_OPTIONS[step.args["option"]]
        self._attempt(step, lambda: sock.setsockopt(level, option, step.args["value"]))

    def _app_getsockopt(self, step: Step) -> None:
        sock = self._stream(step)
        level, option = SOCKET_OPTIONS[step.args["option"]]
        got = self._attempt(step, lambda: sock.getsockopt(level, option))
        want = step.args.get("value")
        if want is not None and got is not None and got != want:
            name = errno.errorcode.get(got, str(got)) if step.args["option"] == "error" else str(got)
            raise StepFailed(f"  getsockopt {step.args['option']} returned {name}, expected "
                             f"{errno.errorcode.get(want, str(want)) if step.args['option'] == 'error' else want}")

    def _app_getpeername(self, step: Step) -> None:
        sock = self._sock(step)
        got = self._attempt(step, sock.getpeername)
        want = step.args.get("addr")
        if want is not None and got is not None and got != want:
            raise StepFailed(f"  getpeername returned {got}, expected {want}")

    def _app_recvfrom(self, step: Step) -> None:
        self._receive(step, with_address=True)

    def _receive(self, step: Step, with_address: bool) -> None:
        sock = self._sock(step)
        assert isinstance(sock, Socket)
        size = step.args.get("size", 65535)

        def call() -> Call:
            sock.setblocking(False)
            while True:
                try:
                    return sock.recvfrom(size)
                except BlockingIOError:
                    yield "read", sock

        def check(got: tuple[bytes, tuple[str, int]]) -> None:
            data, addr = got
            rows = []
            if "data" in step.args and data != step.args["data"]:
                rows.append(("data", BYTES.show(step.args["data"]), BYTES.show(data)))
            if with_address and "addr" in step.args and addr != step.args["addr"]:
                rows.append(("addr", str(step.args["addr"]), str(addr)))
            if "len" in step.args and len(data) != step.args["len"]:
                rows.append(("len", str(step.args["len"]), str(len(data))))
            self._fail_result(step, rows)

        self._blocking(step, sock, call(), check)

    def _app_getsockname(self, step: Step) -> None:
        sock = self._sock(step)
        got = self._attempt(step, sock.getsockname)
        want = step.args.get("addr")
        if want is not None and got != want:
            raise StepFailed(f"  getsockname returned {got}, expected {want}")

    def _app_close(self, step: Step) -> None:
        self._sock(step).close()

    def _app_getblocking(self, step: Step) -> None:
        """fcntl(F_GETFL) as packetdrill asks it: is O_NONBLOCK clear?"""
        have = self._blocks(step)
        if have != step.args["blocking"]:
            raise StepFailed(f"  getblocking returned {have}, expected {step.args['blocking']}")

    def _app_sockstat(self, step: Step) -> None:
        """How many of the stack's connections are in ``state`` (on ``port``, local or remote), as sockstat counts."""
        port = step.args.get("port")
        tcp = self.stack.tcp
        # the connections, the listeners, and the sockets the scenario holds (a reset one is CLOSED)
        held = [s._endpoint for s in self.sockets.values() if isinstance(s, StreamSocket) and not s._closed]
        seen = {id(c): c for c in (*tcp.conns.values(), *(ep for eps in tcp.listeners.values() for ep in eps), *held)}
        have = sum(1 for c in seen.values() if c.state == step.args["state"]
                   and (port is None or port in (c.local_port, c.remote_port)))
        if have != step.args["count"]:
            where = f" on port {port}" if port is not None else ""
            raise StepFailed(f"  sockstat: {have} connection(s) in {step.args['state']}{where}, expected {step.args['count']}")


_NOTHING: Any = object()  # a call's outcome had no result to check (it raised the error the step expected)


def _run_call(call: Call) -> tuple[str | None, tuple[bool, Any]]:
    """Run a call until it blocks (what it waits for) or ends (None, (ok, result or exception))."""
    try:
        want, _sock = next(call)
    except StopIteration as stop:
        return None, (True, stop.value)
    except OSError as e:
        return None, (False, e)
    return want, (True, None)


def _reassemble(frames: list[bytes], mtu: int) -> bytes:
    """The datagram the stack's fragments make, joined by an oracle independent of the stack (defrag.py)."""
    try:
        return reassemble(frames, mtu)
    except DefragError as e:
        raise StepFailed(f"  {e}") from None


def options_of(flat: dict[str, Any]) -> tuple[Option, ...]:
    opts = flat.get("tcp.options")
    return opts if isinstance(opts, tuple) else ()


def _names_of(e: OSError) -> set[str]:
    names = {cls.__name__ for cls in type(e).__mro__}
    if e.errno is not None and e.errno in errno.errorcode:
        names.add(errno.errorcode[e.errno])
    return names


def _show_expected(step: Step) -> str:
    keys = step.expected
    # A layer's presence marker ("icmp.") says nothing a named field of it does not.
    shown = [k for k in keys if not (k.endswith(".") and k != "payload." and any(o.startswith(k) and o != k for o in keys))]
    return ", ".join(f"{k.rstrip('.')}={show(k, keys[k])}" for k in shown) or "any frame"


def link_shaper(scenario: Scenario) -> tuple[LinkShaper | None, DropRules]:
    """The scenario's drop rules and impairment between the wire and the stack; None when it asks for neither.

    The rules are fresh copies, so running a scenario twice counts from zero each time.
    """
    rules = DropRules([DropRule(r.text, r.fields, r.every) for r in scenario.drop])
    if not rules and not scenario.impair_in.active and not scenario.impair_out.active:
        return None, rules
    shaper = LinkShaper(scenario.impair_in, scenario.impair_out, scenario.seed, len(scenario.config.ifaces),
                        rules.admit if rules else None)
    return shaper, rules


def publish_link_counts(runner: Runner) -> None:
    """Put the wire's counts (``wire.in.dropped``, ``wire.rule.1.dropped``, ...) among the stack's counters."""
    if runner.shaper is not None:
        runner.shaper.publish(runner.stack.counters)
        runner.drop_rules.publish(runner.stack.counters)
