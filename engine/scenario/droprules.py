"""Drop rules: frames to throw away before the stack sees them, written in the scenario language's field names.

``icmp.type=echo-request,ipv4.src=10.0.1.2`` drops every echo request from
10.0.1.2; ``udp.dport=9,every=3`` drops every third datagram to port 9.
The fields are the ones ``expect`` names (fields.py), checked and normalized
by the same code, and a frame matches a rule exactly when it would match an
``expect`` of those fields: every named field has that value (and, as for
``expect``, a frame with a bad checksum matches only a rule naming that
checksum). ``simstack live --drop`` and a scenario's ``options.drop`` both
come here; each rule counts what it matched and what it dropped.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from simstack.protocols.counters import Counters

from .fields import Context, Host, SpecError, compare, decode_frame, normalize_spec

MAX_EVERY = 1_000_000


class DropRuleError(ValueError):
    """A rule that cannot be read; the message names the part that is wrong."""


@dataclass
class DropRule:
    text: str
    fields: dict[str, Any]  # flat, normalized: {"icmp.type": 8, "icmp.": True, ...}
    every: int = 1  # drop the Nth, 2Nth, ... match
    matched: int = 0
    dropped: int = 0

    def offer(self, decoded: Any) -> bool:
        """Count a match and say whether this one is dropped; False when the frame does not match."""
        if compare(self.fields, decoded):
            return False
        self.matched += 1
        if self.matched % self.every:
            return False
        self.dropped += 1
        return True


def _value(text: str) -> Any:
    """A field value as YAML would read it: true/false, an integer (decimal or 0x hex), or the text itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text, 0)
    except ValueError:
        return text


def parse_rule(text: str, ctx: Context | None = None) -> DropRule:
    """``LAYER.FIELD=VALUE,...[,every=N]``; raises DropRuleError naming the bad part."""
    ctx = ctx or Context(Host("stack"))
    layers: dict[str, dict[str, Any]] = {}
    every = 1
    parts = [p.strip() for p in text.split(",")]
    if not any(parts):
        raise DropRuleError(f"{text!r}: want LAYER.FIELD=VALUE,... (the scenario language's field names)")
    for part in parts:
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise DropRuleError(f"{part!r} in {text!r}: want LAYER.FIELD=VALUE")
        if name == "every":
            try:
                every = int(value)
            except ValueError:
                every = 0
            if not 1 <= every <= MAX_EVERY:
                raise DropRuleError(f"every={value} in {text!r}: want a whole number from 1 to {MAX_EVERY}")
            continue
        layer, dot, field = name.partition(".")
        if not dot or not field:
            raise DropRuleError(f"{name!r} in {text!r}: want LAYER.FIELD, e.g. icmp.type or udp.dport")
        fields = layers.setdefault(layer, {})
        if field in fields:
            raise DropRuleError(f"{name} is given twice in {text!r}")
        fields[field] = _value(value)
    if not layers:
        raise DropRuleError(f"{text!r}: name at least one field besides every=")
    try:
        flat = normalize_spec(layers, ctx)
    except SpecError as e:
        raise DropRuleError(f"{text!r}: {e}") from None
    return DropRule(text, flat, every)


class DropRules:
    """Rules in order: each one a frame matches counts it, until one drops it; later rules never see it."""

    def __init__(self, rules: Sequence[DropRule]) -> None:
        self.rules = list(rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def admit(self, frame: bytes) -> bool:
        """False: drop ``frame``."""
        decoded = decode_frame(frame)
        return not any(rule.offer(decoded) for rule in self.rules)

    def counts(self) -> dict[str, int]:
        """``wire.rule.N.matched`` and ``wire.rule.N.dropped``, N counting from 1 in the order given."""
        out: dict[str, int] = {}
        for i, rule in enumerate(self.rules, 1):
            out[f"wire.rule.{i}.matched"] = rule.matched
            out[f"wire.rule.{i}.dropped"] = rule.dropped
        return out

    def publish(self, counters: Counters) -> None:
        for name, n in self.counts().items():
            counters.values[name] = n

    def report(self) -> list[str]:
        return [f"drop rule {i} {rule.text!r}: matched {rule.matched}, dropped {rule.dropped}"
                for i, rule in enumerate(self.rules, 1)]
