"""The simulated wire: one scenario against one stack on a virtual clock.

The runner plays every host that is not the stack. Time moves only when a step
asks for it, and then jumps from one stack deadline to the next (the way
gVisor's fake clock fires timers in order), so a 30-second ARP timeout replays
in microseconds and every run is identical.
"""

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from simstack.protocols.addresses import ip_to_str
from simstack.protocols.stack import EchoEndpoint, Stack

from .fields import compare, decode_frame, show
from .scenario import Scenario, ScenarioError, Step

Trace = Callable[[float, str, bytes], None]  # (time, "<" into the stack | ">" out of it, frame)


class StepFailed(Exception):
    pass


@dataclass
class Result:
    path: str
    passed: bool
    report: str = ""
    steps_run: int = 0


def describe(frame: bytes) -> str:
    return decode_frame(frame).summary


class Runner:
    def __init__(self, scenario: Scenario, trace: Trace | None = None) -> None:
        self.scenario = scenario
        self.trace = trace
        self.stack = Stack(scenario.config, scenario.rng())
        self.now = 0.0
        self.pending: deque[tuple[float, bytes]] = deque()
        self.echo: dict[int, EchoEndpoint] = {}

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
            self._collect()
        self.now = max(self.now, t)

    def _collect(self) -> None:
        for frame in self.stack.transmit():
            if self.trace:
                self.trace(self.now, ">", frame)
            self.pending.append((self.now, frame))

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
        done = 0
        for index, step in enumerate(sc.steps, 1):
            try:
                getattr(self, f"_do_{step.kind}")(step)
            except StepFailed as e:
                head = f"{sc.path}:{step.line}: step {index} ({step.kind}) failed at t={self.now:.6f}"
                return Result(sc.path, False, f"{head}\n{e}", done)
            done += 1
        if self.pending and not sc.allow_unexpected:
            lines = "\n".join(f"  {t:.6f} > {describe(f)}" for t, f in self.pending)
            return Result(sc.path, False, f"{sc.path}: the stack sent frames no step expected:\n{lines}", done)
        return Result(sc.path, True, "", done)

    def _do_inject(self, step: Step) -> None:
        t = self._target(step)
        self.advance(t)
        if self.trace:
            self.trace(self.now, "<", step.frame)
        self.stack.receive(step.frame, self.now)
        self._collect()

    def _do_expect(self, step: Step) -> None:
        sc = self.scenario
        timed = step.at is not None
        target = self._target(step)
        tolerance = sc.tolerance if step.tolerance is None else step.tolerance
        deadline = target + tolerance if timed else self.now + (sc.expect_within if step.within is None else step.within)
        while not self.pending:
            next_deadline = self.stack.next_deadline()
            if next_deadline is None or next_deadline > deadline:
                break
            self.advance(next_deadline)
        if not self.pending:
            if step.optional:
                return
            self.advance(deadline)
            raise StepFailed(f"  expected a frame by t={deadline:.6f}; the stack sent nothing\n"
                             f"  wanted: {_show_expected(step)}")
        t, frame = self.pending[0]
        decoded = decode_frame(frame)
        rows = compare(step.expected, decoded)
        if timed and abs(t - target) > tolerance + 1e-9:
            rows.append(("time", f"{target:.6f} ±{tolerance:g}", f"{t:.6f}"))
        if rows:
            if step.optional:
                return
            width = max(len(r[0]) for r in rows) + 2
            wcol = max(len(r[1]) for r in rows) + 2
            table = "\n".join(f"  {k:<{width}}{w:<{wcol}}{h}" for k, w, h in rows)
            raise StepFailed(f"  {'field':<{width}}{'expected':<{wcol}}actual\n{table}\n  frame: {t:.6f} > {decoded.summary}")
        self.pending.popleft()
        self.now = max(self.now, t)

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


def _show_expected(step: Step) -> str:
    return ", ".join(f"{k.rstrip('.')}={show(k, v)}" for k, v in step.expected.items()) or "any frame"
