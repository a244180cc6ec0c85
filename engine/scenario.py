"""Scenario files: YAML in, checked steps out, every error as ``file:line: message``.

A scenario is a timeline read top to bottom, like a packetdrill script: the
stack's configuration, the hosts around it, then steps that inject frames,
expect frames, drive applications and check counters. See docs/scenarios.md.
"""

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from simstack.protocols.addresses import ip_to_bytes, mac_to_bytes, parse_interface
from simstack.protocols.arp_cache import ArpConfig
from simstack.protocols.stack import StackConfig

from .fields import IP, Context, Host, SpecError, build_frame, normalize_spec, payload_bytes


class ScenarioError(Exception):
    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message


class LineDict(dict[str, Any]):
    """A mapping that remembers where it and each of its keys stood."""

    line: int = 0
    key_lines: dict[str, int]


class LineList(list[Any]):
    line: int = 0


class RelativeTime(float):
    """``at: +0.5``: YAML reads the plus sign away, the loader keeps it."""


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            key = str(key)
        if key in out:
            raise yaml.MarkedYAMLError(problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark)
        value = loader.construct_object(value_node, deep=True)
        if isinstance(value_node, yaml.ScalarNode) and value_node.value.startswith("+") and isinstance(value, int | float):
            value = RelativeTime(value)
        out[key] = value
        out.key_lines[key] = line
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)  # type: ignore[arg-type]
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)  # type: ignore[arg-type]


# -- the checked form ------------------------------------------------------------
@dataclass
class Step:
    line: int
    kind: str  # inject | expect | nothing | app | counters
    at: float | None = None
    relative: bool = False
    frame: bytes = b""  # inject
    expected: dict[str, Any] = field(default_factory=dict)  # expect
    within: float | None = None  # expect: how long to wait for the frame
    tolerance: float | None = None  # expect with at: allowed timing error
    optional: bool = False
    span: float = 0.0  # nothing: how long the wire stays quiet
    app: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    note: str = ""


@dataclass
class Scenario:
    path: str
    description: str
    config: StackConfig
    ctx: Context
    seed: int
    steps: list[Step]
    allow_unexpected: bool = False
    expect_within: float = 5.0
    tolerance: float = 0.0

    def rng(self) -> random.Random:
        return random.Random(self.seed)


TOP_KEYS = {"description", "stack", "hosts", "options", "steps"}
STACK_KEYS = {"mac", "ip", "gateway", "mtu", "ttl", "vlan", "seed", "arp"}
OPTION_KEYS = {"allow_unexpected", "expect_within", "tolerance"}
STEP_ACTIONS = {"inject", "expect", "app", "counters"}
STEP_KEYS = {
    "inject": {"at", "note"},
    "expect": {"at", "note", "within", "tolerance", "optional", "for"},
    "app": {"at", "note"},
    "counters": {"at", "note"},
}
APP_OPS: dict[str, dict[str, str]] = {
    # op: {argument: kind}; kinds are checked in _app_args
    "ping": {"dst": "ip", "id": "int", "seq": "int", "data": "bytes", "count": "int", "interval": "float"},
}


class _Checker:
    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, line: int, message: str) -> ScenarioError:
        return ScenarioError(self.path, line, message)

    def mapping(self, value: Any, line: int, what: str) -> LineDict:
        if not isinstance(value, LineDict):
            raise self.fail(getattr(value, "line", line), f"{what} must be a mapping")
        return value

    def keys(self, m: LineDict, allowed: set[str], what: str) -> None:
        for key in m:
            if key not in allowed:
                raise self.fail(m.key_lines[key], f"unknown key {key!r} in {what}; allowed: {', '.join(sorted(allowed))}")

    def number(self, m: LineDict, key: str, *, minimum: float = 0.0) -> float:
        value = m[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise self.fail(m.key_lines[key], f"{key} must be a number >= {minimum:g}, got {value!r}")
        return float(value)


def load(path: str | Path) -> Scenario:
    path = str(path)
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ScenarioError(path, 0, f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError(path, 0, "not a text file") from None
    return loads(text, path)


def loads(text: str, path: str = "<scenario>") -> Scenario:
    chk = _Checker(path)
    try:
        doc = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        raise ScenarioError(path, line, f"YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ScenarioError(path, 0, f"YAML: {e}") from None
    top = chk.mapping(doc, 1, "a scenario")
    chk.keys(top, TOP_KEYS, "the scenario")
    for required in ("description", "steps"):
        if required not in top:
            raise chk.fail(top.line, f"missing {required!r}")
    description = top["description"]
    if not isinstance(description, str) or not description.strip():
        raise chk.fail(top.key_lines["description"], "description must be a paragraph of text")

    config, seed = _stack(chk, top)
    stack_host = Host("stack", config.mac, config.ip)
    hosts = _hosts(chk, top)
    ctx = Context(stack_host, hosts, next(iter(hosts.values()), None))
    scenario = Scenario(path, description.strip(), config, ctx, seed, [])
    if "options" in top:
        opts = chk.mapping(top["options"], top.key_lines["options"], "options")
        chk.keys(opts, OPTION_KEYS, "options")
        if "allow_unexpected" in opts:
            if not isinstance(opts["allow_unexpected"], bool):
                raise chk.fail(opts.key_lines["allow_unexpected"], "allow_unexpected must be true or false")
            scenario.allow_unexpected = opts["allow_unexpected"]
        if "expect_within" in opts:
            scenario.expect_within = chk.number(opts, "expect_within")
        if "tolerance" in opts:
            scenario.tolerance = chk.number(opts, "tolerance")

    steps = top["steps"]
    if not isinstance(steps, LineList) or not steps:
        raise chk.fail(top.key_lines["steps"], "steps must be a non-empty list")
    for raw in steps:
        scenario.steps.append(_step(chk, raw, steps.line, ctx))
    return scenario


def _stack(chk: _Checker, top: LineDict) -> tuple[StackConfig, int]:
    mac, ip, prefix = mac_to_bytes("aa:bb:cc:dd:ee:ff"), ip_to_bytes("10.0.0.1"), 24
    kwargs: dict[str, Any] = {}
    seed = 1
    if "stack" in top:
        s = chk.mapping(top["stack"], top.key_lines["stack"], "stack")
        chk.keys(s, STACK_KEYS, "stack")
        try:
            if "mac" in s:
                mac = mac_to_bytes(str(s["mac"]))
            if "ip" in s:
                text = str(s["ip"])
                ip, prefix = parse_interface(text if "/" in text else text + "/24")
            if "gateway" in s:
                kwargs["gateway"] = ip_to_bytes(str(s["gateway"]))
        except ValueError as e:
            key = next(k for k in ("mac", "ip", "gateway") if k in s and str(s[k]) in str(e))
            raise chk.fail(s.key_lines[key], str(e)) from None
        for key, lo, hi in (("mtu", 68, 65535), ("ttl", 1, 255), ("vlan", 1, 4094), ("seed", 0, 2**63)):
            if key in s:
                v = s[key]
                if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                    raise chk.fail(s.key_lines[key], f"{key} must be an integer from {lo} to {hi}, got {v!r}")
                if key == "seed":
                    seed = v
                else:
                    kwargs[key] = v
        if "arp" in s:
            a = chk.mapping(s["arp"], s.key_lines["arp"], "stack.arp")
            names = set(ArpConfig.__dataclass_fields__)
            chk.keys(a, names, "stack.arp")
            arp_kw: dict[str, Any] = {}
            for key in a:
                value = chk.number(a, key, minimum=0 if key not in ("max_probes", "queue_len", "max_entries") else 1)
                arp_kw[key] = int(value) if key in ("max_probes", "queue_len", "max_entries") else value
            kwargs["arp"] = ArpConfig(**arp_kw)
    return StackConfig(mac, ip, prefix, **kwargs), seed


def _hosts(chk: _Checker, top: LineDict) -> dict[str, Host]:
    hosts: dict[str, Host] = {}
    if "hosts" not in top:
        return hosts
    h = chk.mapping(top["hosts"], top.key_lines["hosts"], "hosts")
    for name, spec in h.items():
        line = h.key_lines[name]
        if name in ("stack", "broadcast", "any", "zero"):
            raise chk.fail(line, f"host name {name!r} is reserved")
        m = chk.mapping(spec, line, f"host {name!r}")
        chk.keys(m, {"mac", "ip"}, f"host {name!r}")
        try:
            mac = mac_to_bytes(str(m["mac"])) if "mac" in m else None
            ip = ip_to_bytes(str(m["ip"])) if "ip" in m else None
        except ValueError as e:
            raise chk.fail(line, str(e)) from None
        hosts[name] = Host(name, mac, ip)
    return hosts


def _step(chk: _Checker, raw: Any, line: int, ctx: Context) -> Step:
    m = chk.mapping(raw, line, "a step")
    actions = [k for k in m if k in STEP_ACTIONS]
    if len(actions) != 1:
        unknown = [k for k in m if k not in STEP_ACTIONS and k not in STEP_KEYS["expect"]]
        if unknown:
            raise chk.fail(m.key_lines[unknown[0]], f"unknown step key {unknown[0]!r}; a step is one of "
                                                    f"{', '.join(sorted(STEP_ACTIONS))}")
        raise chk.fail(m.line, f"a step needs exactly one of {', '.join(sorted(STEP_ACTIONS))}")
    action = actions[0]
    allowed = STEP_KEYS[action] | {action}
    if action == "app":
        allowed |= set(APP_OPS.get(str(m["app"]), {}))
    chk.keys(m, allowed, f"an {action} step")
    step = Step(m.line, action)
    if "at" in m:
        step.at = chk.number(m, "at")
        step.relative = isinstance(m["at"], RelativeTime)
    if "note" in m:
        step.note = str(m["note"])
    aline = m.key_lines[action]
    try:
        if action == "inject":
            spec = m["inject"]
            if isinstance(spec, Mapping) and set(spec) == {"raw"}:
                step.frame = payload_bytes({"hex": spec["raw"]}, "raw")
            else:
                step.frame = build_frame(normalize_spec(spec, ctx), ctx)
        elif action == "expect":
            if m["expect"] == "nothing":
                step.kind = "nothing"
                if "for" not in m:
                    raise chk.fail(aline, "expect: nothing needs 'for: SECONDS'")
                step.span = chk.number(m, "for")
            else:
                if "for" in m:
                    raise chk.fail(m.key_lines["for"], "'for' goes with 'expect: nothing'")
                step.expected = normalize_spec(m["expect"], ctx)
                if "within" in m:
                    step.within = chk.number(m, "within")
                if "tolerance" in m:
                    step.tolerance = chk.number(m, "tolerance")
                if "optional" in m:
                    step.optional = bool(m["optional"])
        elif action == "app":
            _app(chk, m, step, ctx)
        else:
            c = chk.mapping(m["counters"], aline, "counters")
            for name, value in c.items():
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise chk.fail(c.key_lines[name], f"counter {name} must be a count, got {value!r}")
                step.counters[name] = value
    except SpecError as e:
        raise chk.fail(_line_of(m[action], e.path, aline), str(e)) from None
    return step


def _line_of(spec: Any, path: str, default: int) -> int:
    """The line of the deepest key named in ``path`` (``icmp.seq``)."""
    line = default
    node = spec
    for part in path.split("."):
        if isinstance(node, LineDict) and part in node:
            line = node.key_lines[part]
            node = node[part]
        else:
            break
    return line


def _app(chk: _Checker, m: LineDict, step: Step, ctx: Context) -> None:
    op = m["app"]
    if op not in APP_OPS:
        raise chk.fail(m.key_lines["app"], f"unknown app operation {op!r}; known: {', '.join(APP_OPS)}")
    step.app = op
    kinds = APP_OPS[op]
    for name, kind in kinds.items():
        if name not in m:
            continue
        value = m[name]
        line = m.key_lines[name]
        if kind == "ip":
            try:
                step.args[name] = IP.normalize(value, ctx, name)
            except SpecError as e:
                raise chk.fail(line, str(e)) from None
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
                raise chk.fail(line, f"{name} must be an integer from 0 to 65535, got {value!r}")
            step.args[name] = value
        elif kind == "float":
            step.args[name] = chk.number(m, name)
        else:
            try:
                step.args[name] = payload_bytes(value, name)
            except SpecError as e:
                raise chk.fail(line, str(e)) from None
    if op == "ping" and "dst" not in step.args:
        raise chk.fail(m.line, "app: ping needs dst")
