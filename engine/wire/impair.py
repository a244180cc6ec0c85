"""Link impairment, drawn from a seeded rng: one implementation for the simulated wire and for live mode.

What netem does to a link, per frame and in this order: lose it, corrupt
one bit of it, hold it back to reorder it, delay it (with jitter), pace it to
a rate, and duplicate it. Every choice comes from the ``random.Random`` the
caller gives, so a seed repeats a session's pattern of drops exactly, in a
replay and live alike.
"""

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from simstack.protocols.counters import Counters

_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_RATES = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}


class ImpairError(ValueError):
    """A bad impairment spec; the message names the part that is wrong."""


@dataclass(frozen=True)
class Impairment:
    loss: float = 0.0  # probability a frame is lost
    duplicate: float = 0.0  # probability a frame is sent twice
    reorder: float = 0.0  # probability a frame is held back behind later ones
    corrupt: float = 0.0  # probability one bit of a frame is flipped
    delay: float = 0.0  # seconds added to every frame
    jitter: float = 0.0  # seconds, uniform in [-jitter, +jitter] around the delay
    rate: float = 0.0  # bits per second; 0 is unlimited
    reorder_gap: float = 0.001  # how far behind a held-back frame falls (seconds), beyond the delay

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder", "corrupt"):
            p = getattr(self, name)
            if not (math.isfinite(p) and 0.0 <= p <= 1.0):
                raise ImpairError(f"{name} must be a probability from 0% to 100%, got {p!r}")
        for name in ("delay", "jitter", "rate", "reorder_gap"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0.0):
                raise ImpairError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.delay > 60 or self.jitter > 60:
            raise ImpairError("delay and jitter must be at most 60 s")

    @property
    def active(self) -> bool:
        return any((self.loss, self.duplicate, self.reorder, self.corrupt, self.delay, self.jitter, self.rate))

    @classmethod
    def parse(cls, text: str) -> "Impairment":
        """``loss=5%,delay=20ms,jitter=5ms,reorder=10%,duplicate=1%,corrupt=0.1%,rate=10mbit``."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            name = name.strip()
            value = value.strip()
            if not sep or not value:
                raise ImpairError(f"{part!r}: want NAME=VALUE")
            if name in values:
                raise ImpairError(f"{name} is given twice")
            if name in ("loss", "duplicate", "reorder", "corrupt"):
                values[name] = _percent(name, value)
            elif name in ("delay", "jitter", "reorder_gap"):
                values[name] = _seconds(name, value)
            elif name == "rate":
                values[name] = _rate(value)
            else:
                raise ImpairError(f"unknown impairment {name!r}; known: loss, duplicate, reorder, corrupt, delay, "
                                  "jitter, rate, reorder_gap")
        return cls(**values)


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ImpairError(f"{name}={text}: not a number") from None
    if not math.isfinite(value):
        raise ImpairError(f"{name}={text}: must be a finite number")
    return value


def _percent(name: str, text: str) -> float:
    if text.endswith("%"):
        return _number(name, text[:-1]) / 100.0
    return _number(name, text)


def _seconds(name: str, text: str) -> float:
    for unit in ("ms", "us", "s"):
        if text.endswith(unit):
            return _number(name, text[: -len(unit)]) * _UNITS[unit]
    return _number(name, text)  # plain seconds


def _rate(text: str) -> float:
    for unit in ("gbit", "mbit", "kbit", "bit"):
        if text.endswith(unit):
            return _number("rate", text[: -len(unit)]) * _RATES[unit]
    return _number("rate", text)


@dataclass
class Impairer:
    """One direction of a link: each frame in, its deliveries (time, frame) out."""

    spec: Impairment
    rng: random.Random
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("passed", "dropped", "duplicated", "reordered", "corrupted", "delayed"), 0))
    _free_at: float = 0.0  # when the (rate-limited) link is free again

    def apply(self, frame: bytes, now: float) -> list[tuple[float, bytes]]:
        spec = self.spec
        if not spec.active:
            self.counts["passed"] += 1
            return [(now, frame)]
        rng = self.rng
        if spec.loss and rng.random() < spec.loss:
            self.counts["dropped"] += 1
            return []
        if spec.corrupt and frame and rng.random() < spec.corrupt:
            bit = rng.randrange(len(frame) * 8)
            data = bytearray(frame)
            data[bit >> 3] ^= 1 << (bit & 7)
            frame = bytes(data)
            self.counts["corrupted"] += 1
        when = now
        if spec.rate:
            start = max(now, self._free_at)
            self._free_at = start + len(frame) * 8 / spec.rate
            when = self._free_at
        if spec.delay or spec.jitter:
            when += max(0.0, spec.delay + (rng.uniform(-spec.jitter, spec.jitter) if spec.jitter else 0.0))
            self.counts["delayed"] += 1
        if spec.reorder and rng.random() < spec.reorder:
            when += spec.reorder_gap
            self.counts["reordered"] += 1
        out = [(when, frame)]
        if spec.duplicate and rng.random() < spec.duplicate:
            out.append((when, frame))
            self.counts["duplicated"] += 1
        self.counts["passed"] += 1
        return out


def link_rng(seed: int, direction: str, iface: int = 0) -> random.Random:
    """The rng of one direction of one interface's link, a function of the session's seed alone.

    Live mode and a replay draw from the same one for the same seed, so the
    same frames arriving in the same order meet the same fates in both.
    (A string seed is hashed with SHA-512, the same on every run and machine.)
    """
    return random.Random(f"simstack-impair:{seed}:{direction}:{iface}")


class LinkShaper:
    """What happens to frames between the wire and a stack, per interface and direction.

    Inbound, a frame first meets ``admit`` (the drop rules: False drops it),
    then the inbound impairment; outbound, only the outbound impairment. Each
    returns the frame's deliveries, (time, frame), none if it was lost. The
    counts, summed over interfaces, go into a stack's counters under ``wire.``
    when ``publish`` is called.
    """

    def __init__(self, inbound: Impairment, outbound: Impairment, seed: int, interfaces: int = 1,
                 admit: Callable[[bytes], bool] | None = None) -> None:
        self.inbound_spec = inbound
        self.outbound_spec = outbound
        self.ins = [Impairer(inbound, link_rng(seed, "in", i)) for i in range(interfaces)]
        self.outs = [Impairer(outbound, link_rng(seed, "out", i)) for i in range(interfaces)]
        self.admit = admit
        self.refused = 0  # frames ``admit`` dropped

    @property
    def shapes_outbound(self) -> bool:
        return self.outbound_spec.active

    def inbound(self, frame: bytes, now: float, iface: int = 0) -> list[tuple[float, bytes]]:
        if self.admit is not None and not self.admit(frame):
            self.refused += 1
            return []
        return self.ins[iface].apply(frame, now)

    def outbound(self, frame: bytes, now: float, iface: int = 0) -> list[tuple[float, bytes]]:
        return self.outs[iface].apply(frame, now)

    def counts(self) -> dict[str, int]:
        """``wire.in.dropped``, ``wire.out.delayed``, ...: what the impairment did, over every interface."""
        out: dict[str, int] = {}
        for direction, impairers in (("in", self.ins), ("out", self.outs)):
            for impairer in impairers:
                for name, n in impairer.counts.items():
                    key = f"wire.{direction}.{name}"
                    out[key] = out.get(key, 0) + n
        return out

    def publish(self, counters: Counters) -> None:
        """Write the counts into ``counters`` (absolute values: calling it again is harmless)."""
        for name, n in self.counts().items():
            if n or name in counters.values:
                counters.values[name] = n
