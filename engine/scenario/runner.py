"""The simulated wire: one scenario against one stack on a virtual clock.

The runner plays every host that is not the stack. Time moves only when a step
asks for it, and then jumps from one stack deadline to the next (the way
gVisor's fake clock fires timers in order), so a 30-second ARP timeout replays
in microseconds and every run is identical.
"""

import errno
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from simstack.protocols.addresses import ip_to_str
from simstack.protocols.stack import EchoEndpoint, Stack

from ..api.services import start_services
from ..api.sockets import AF_INET, SOCK_DGRAM, Socket, SocketHost
from .defrag import DefragError, reassemble
from .fields import BYTES, compare, decode_frame, show
from .loader import Scenario, ScenarioError, Step

T = TypeVar("T")

Trace = Callable[[float, str, bytes], None]  # (time, "<" into the stack | ">" out of it, frame)


class StepFailed(Exception):
    pass


@dataclass
class Result:
    path: str
    passed: bool
    report: str = ""


def describe(frame: bytes) -> str:
    return decode_frame(frame).summary


class Runner(SocketHost):
    """Also the socket host of the replay: blocking calls move the virtual clock."""

    def __init__(self, scenario: Scenario, trace: Trace | None = None) -> None:
        super().__init__()
        self.scenario = scenario
        self.trace = trace
        self.stack = Stack(scenario.config, scenario.rng())
        self.now = 0.0
        self.pending: deque[tuple[float, bytes]] = deque()
        self.echo: dict[int, EchoEndpoint] = {}
        self.sockets: dict[str, Socket] = {}
        self.services = start_services(self, scenario.services)

    # -- SocketHost ----------------------------------------------------------------
    def call(self, fn: Callable[[Stack, float], T]) -> T:
        try:
            return fn(self.stack, self.now)
        finally:
            self._collect()

    def wait_until(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        limit = self.now + (self.scenario.expect_within if timeout is None else timeout)
        while not ready():
            deadline = self.stack.next_deadline()
            if deadline is None or deadline > limit:
                self.advance(limit)
                return ready()
            self.advance(deadline)
        return True

    # -- clock ----------------------------------------------------------------
    def advance(self, t: float) -> None:
        """Fire every stack timer due up to ``t``, in order, then stand at ``t``."""
        stack = self.stack
        while True:
            deadline = stack.next_deadline()
            if deadline is None or deadline > t:
                break
            self.now = max(self.now, deadline)
            stack.on_timer(self.now)
            self.run_readers()
            self._collect()
        self.now = max(self.now, t)

    def _collect(self) -> None:
        ignore = self.scenario.ignore
        for frame in self.stack.transmit():
            if self.trace:
                self.trace(self.now, ">", frame)
            if ignore and self._ignored(frame, ignore):
                continue
            self.pending.append((self.now, frame))

    @staticmethod
    def _ignored(frame: bytes, ignore: list[dict[str, Any]]) -> bool:
        """``options.ignore``: frames the stack sends by its own choice, at moments a replay need not repeat."""
        decoded = decode_frame(frame)
        return any(not compare(spec, decoded) for spec in ignore)

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
        for index, step in enumerate(sc.steps, 1):
            try:
                getattr(self, f"_do_{step.kind}")(step)
            except StepFailed as e:
                head = f"{sc.path}:{step.line}: step {index} ({step.kind}) failed at t={self.now:.6f}"
                return Result(sc.path, False, f"{head}\n{e}")
        if self.pending and not sc.allow_unexpected:
            lines = "\n".join(f"  {t:.6f} > {describe(f)}" for t, f in self.pending)
            return Result(sc.path, False, f"{sc.path}: the stack sent frames no step expected:\n{lines}")
        return Result(sc.path, True)

    def _do_inject(self, step: Step) -> None:
        t = self._target(step)
        self.advance(t)
        for frame in step.frames:
            if self.trace:
                self.trace(self.now, "<", frame)
            self.stack.receive(frame, self.now)
            self.run_readers()
            self._collect()

    def _do_expect(self, step: Step) -> None:
        sc = self.scenario
        timed = step.at is not None
        target = self._target(step)
        tolerance = sc.tolerance if step.tolerance is None else step.tolerance
        deadline = target + tolerance if timed else self.now + (sc.expect_within if step.within is None else step.within)
        wanted = max(step.fragments, 1)
        while len(self.pending) < wanted:
            next_deadline = self.stack.next_deadline()
            if next_deadline is None or next_deadline > deadline:
                break
            self.advance(next_deadline)
        if len(self.pending) < wanted:
            if step.optional:
                return
            self.advance(deadline)
            sent = f"only {len(self.pending)} of {wanted} frames" if self.pending else "nothing"
            raise StepFailed(f"  expected {wanted} frame(s) by t={deadline:.6f}; the stack sent {sent}\n"
                             f"  wanted: {_show_expected(step)}")
        t, frame = self.pending[0]
        if step.fragments:
            t = self.pending[wanted - 1][0]
            frame = _reassemble([f for _, f in list(self.pending)[:wanted]], self.stack.config.mtu)
        decoded = decode_frame(frame)
        rows = compare(step.expected, decoded)
        if timed and abs(t - target) > tolerance + 1e-9:
            rows.append(("time", f"{target:.6f} ±{tolerance:g}", f"{t:.6f}"))
        if rows:
            if step.optional:
                return
            width = max(len("field"), *(len(r[0]) for r in rows)) + 2
            wcol = max(len("expected"), *(len(r[1]) for r in rows)) + 2
            table = "\n".join(f"  {k:<{width}}{w:<{wcol}}{h}" for k, w, h in rows)
            raise StepFailed(f"  {'field':<{width}}{'expected':<{wcol}}actual\n{table}\n  frame: {t:.6f} > {decoded.summary}")
        for _ in range(wanted):
            self.pending.popleft()
        # A timed expect leaves the clock at its own time, not the (earlier) send
        # time it tolerated, so a recording's relative times do not drift.
        self.now = max(self.now, target if timed else t)

    def _do_nothing(self, step: Step) -> None:
        start = self._target(step)
        self.advance(start)
        self.advance(start + step.span)
        if self.pending:
            lines = "\n".join(f"  {t:.6f} > {describe(f)}" for t, f in self.pending)
            raise StepFailed(f"  expected no frame for {step.span:g}s, the stack sent:\n{lines}")

    def _do_counters(self, step: Step) -> None:
        self.advance(self._target(step))
        rows = [(name, want, self.stack.counters[name]) for name, want in step.counters.items()
                if self.stack.counters[name] != want]
        if rows:
            table = "\n".join(f"  {name:<40}{want:<10}{have}" for name, want, have in rows)
            raise StepFailed(f"  {'counter':<40}{'expected':<10}actual\n{table}")

    def _do_app(self, step: Step) -> None:
        self.advance(self._target(step))
        getattr(self, f"_app_{step.app}")(step)

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
            self._collect()


    # -- socket operations (packetdrill's system calls) ---------------------------
    def _sock(self, step: Step) -> Socket:
        return self.sockets[step.args["socket"]]

    def _attempt(self, step: Step, fn: Callable[[], Any]) -> Any:
        """Run one socket call and hold it to the step's ``error:``, if any."""
        want = step.args.get("error")
        try:
            result = fn()
        except OSError as e:
            if want is not None and want in _names_of(e):
                return None
            expected = f", expected {want}" if want else ""
            raise StepFailed(f"  {step.app} raised {type(e).__name__}: {e}{expected}") from None
        if want is not None:
            raise StepFailed(f"  {step.app} succeeded (returned {result!r}), expected {want}")
        return result

    def _app_socket(self, step: Step) -> None:
        self.sockets[step.args["socket"]] = self.socket(AF_INET, SOCK_DGRAM)

    def _app_bind(self, step: Step) -> None:
        sock = self._sock(step)
        self._attempt(step, lambda: sock.bind(step.args["addr"]))

    def _app_connect(self, step: Step) -> None:
        sock = self._sock(step)
        self._attempt(step, lambda: sock.connect(step.args["addr"]))

    def _app_sendto(self, step: Step) -> None:
        sock = self._sock(step)
        self._attempt(step, lambda: sock.sendto(step.args.get("data", b""), step.args["addr"]))

    def _app_send(self, step: Step) -> None:
        sock = self._sock(step)
        self._attempt(step, lambda: sock.send(step.args.get("data", b"")))

    def _app_recv(self, step: Step) -> None:
        self._receive(step, with_address=False)

    def _app_recvfrom(self, step: Step) -> None:
        self._receive(step, with_address=True)

    def _receive(self, step: Step, with_address: bool) -> None:
        sock = self._sock(step)
        sock.settimeout(step.args.get("timeout", 0.0))
        got = self._attempt(step, lambda: sock.recvfrom(step.args.get("size", 65535)))
        if got is None:
            return
        data, addr = got
        rows = []
        if "data" in step.args and data != step.args["data"]:
            rows.append(("data", BYTES.show(step.args["data"]), BYTES.show(data)))
        if with_address and "addr" in step.args and addr != step.args["addr"]:
            rows.append(("addr", str(step.args["addr"]), str(addr)))
        if rows:
            table = "\n".join(f"  {k:<8}{w:<40}{h}" for k, w, h in rows)
            raise StepFailed(f"  {'result':<8}{'expected':<40}actual\n{table}")

    def _app_getsockname(self, step: Step) -> None:
        sock = self._sock(step)
        got = self._attempt(step, sock.getsockname)
        want = step.args.get("addr")
        if want is not None and got != want:
            raise StepFailed(f"  getsockname returned {got}, expected {want}")

    def _app_close(self, step: Step) -> None:
        self.sockets[step.args["socket"]].close()


def _reassemble(frames: list[bytes], mtu: int) -> bytes:
    """The datagram the stack's fragments make, joined by an oracle independent of the stack (defrag.py)."""
    try:
        return reassemble(frames, mtu)
    except DefragError as e:
        raise StepFailed(f"  {e}") from None


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
