"""docs/scenarios.md cannot rot: its examples run, its outputs are real, its tables are complete.

Every ```yaml block of the page is checked. A block with a top-level
``description:`` and ``steps:`` is a whole scenario: it must load with
``engine.scenario.loads`` and replay green with ``engine.runner.Runner``,
unless its first line is

* ``# invalid``: loading it, or running it, raises ScenarioError, and the page
  shows that error (``FILE:LINE: message``) somewhere;
* ``# fails``: it loads, runs and fails, and the page shows every line of the
  failure report.

Any other block is a fragment and must be valid YAML (or, marked ``# invalid``,
must not be). The remaining tests hold the reference tables to the engine's own
tables (the protocol modules' field descriptions, the stack and option keys and their defaults, app operations,
error names, drop reasons in protocols/) and the quoted command outputs to
what simstack prints today.
"""

import dataclasses
import io
import re
from pathlib import Path
from typing import TypeAlias

import pytest
import yaml
from conftest import ROOT

from simstack.engine.api.services import SERVICES
from simstack.engine.scenario.fields import KINDS, LAYERS, compare, decode_frame
from simstack.engine.scenario.loader import (
    APP_OPS,
    ERROR_NAMES,
    OPTION_KEYS,
    STACK_KEYS,
    TOP_KEYS,
    Scenario,
    ScenarioError,
    loads,
)
from simstack.engine.scenario.replay import run_files
from simstack.engine.scenario.runner import Runner
from simstack.protocols import fieldspec
from simstack.protocols.addresses import ip_to_str, mac_to_str
from simstack.protocols.arp_cache import ArpConfig
from simstack.protocols.fragments import ReassemblyConfig
from simstack.protocols.tcp_conn import TcpConfig

DOC = ROOT / "docs" / "scenarios.md"
TEXT = DOC.read_text()
PING = ROOT / "scenarios" / "ping.yaml"
NAME = "example.yaml"  # the path handed to loads; stripped before comparing with the page

_FENCE = re.compile(r"^```yaml[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclasses.dataclass(frozen=True)
class Block:
    line: int  # line of the page where the block's first line stands
    text: str

    @property
    def marker(self) -> str:
        first = self.text.split("\n", 1)[0].strip()
        for marker in ("# invalid", "# fails"):
            if first.startswith(marker):
                return marker
        return ""

    @property
    def is_scenario(self) -> bool:
        return bool(re.search(r"^description:", self.text, re.MULTILINE) and re.search(r"^steps:", self.text, re.MULTILINE))

    def where(self, line: int = 1) -> str:
        """The page's file:line for a line of this block."""
        return f"{DOC.relative_to(ROOT)}:{self.line + line - 1}"


def yaml_blocks(text: str) -> list[Block]:
    return [Block(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in _FENCE.finditer(text)]


BLOCKS = yaml_blocks(TEXT)
SCENARIOS = [b for b in BLOCKS if b.is_scenario]
FRAGMENTS = [b for b in BLOCKS if not b.is_scenario]


def _ids(blocks: list[Block]) -> list[str]:
    return [f"line{b.line}" for b in blocks]


def _load(block: Block) -> Scenario:
    try:
        return loads(block.text, NAME)
    except ScenarioError as e:
        raise AssertionError(f"{block.where(e.line)}: the example does not load: {e.message}") from None


def test_the_page_has_examples_of_every_sort() -> None:
    """A broken extractor must not pass by finding nothing."""
    markers = [b.marker for b in SCENARIOS]
    assert markers.count("") >= 10, "green scenarios"
    assert markers.count("# invalid") >= 2
    assert markers.count("# fails") >= 1
    assert len(FRAGMENTS) >= 5


@pytest.mark.parametrize("block", SCENARIOS, ids=_ids(SCENARIOS))
def test_scenario_example(block: Block) -> None:
    if block.marker == "# invalid":
        with pytest.raises(ScenarioError) as info:
            Runner(loads(block.text, NAME)).run()
        e = info.value
        shown = f":{e.line}: {e.message}"
        assert shown in TEXT, f"{block.where()}: the page does not show this example's real error: {NAME}{shown}"
        return
    scenario = _load(block)
    result = Runner(scenario).run()
    if block.marker == "# fails":
        assert not result.passed, f"{block.where()}: the example is marked '# fails' but passes"
        missing = [ln for ln in result.report.replace(NAME, "").splitlines() if ln not in TEXT]
        assert not missing, f"{block.where()}: the page does not show these lines of the real report: {missing}"
        return
    assert result.passed, f"{block.where()}: the example fails ({NAME} line 1 is that line):\n{result.report}"


# The scenario loader uses libyaml when PyYAML has it; the two parsers disagree on a few
# plain scalars (``anyone?``, ``{icmp:}``), so a fragment must be YAML to both.
_Loader: TypeAlias = "type[yaml.SafeLoader] | type[yaml.CSafeLoader]"  # a string: CSafeLoader may be missing
_YAML_LOADERS: list[_Loader] = [yaml.SafeLoader, *([yaml.CSafeLoader] if hasattr(yaml, "CSafeLoader") else [])]


@pytest.mark.parametrize("block", FRAGMENTS, ids=_ids(FRAGMENTS))
@pytest.mark.parametrize("loader", _YAML_LOADERS, ids=[cls.__name__ for cls in _YAML_LOADERS])
def test_fragment_is_yaml(block: Block, loader: _Loader) -> None:
    if block.marker == "# invalid":
        with pytest.raises(yaml.YAMLError):
            yaml.load(block.text, Loader=loader)
        return
    try:
        yaml.load(block.text, Loader=loader)
    except yaml.YAMLError as e:
        raise AssertionError(f"{block.where()}: not valid YAML to {loader.__name__}: {e}") from None


# -- the tables ----------------------------------------------------------------------
def _section(heading: str) -> str:
    """The text under ``## heading`` up to the next ``## ``."""
    start = TEXT.index(f"\n## {heading}\n")
    end = TEXT.find("\n## ", start + 1)
    return TEXT[start : end if end != -1 else len(TEXT)]


def _row(key: str, text: str = TEXT) -> list[str]:
    """The cells of the table row whose first cell is ``key`` in backquotes."""
    for line in text.splitlines():
        if line.startswith(f"| `{key}` |"):
            return [cell.strip() for cell in line.strip().strip("|").split("|")]
    raise AssertionError(f"{DOC.relative_to(ROOT)} has no table row for `{key}`")


def _kind_words(t: fieldspec.FieldType) -> str:
    if isinstance(t, fieldspec.Int):
        return f"integer, {t.bits} bits"
    if isinstance(t, fieldspec.SeqNum):
        return "sequence number"
    return {fieldspec.MAC: "MAC", fieldspec.IPV4_ADDRESS: "IPv4", fieldspec.BOOL: "boolean", fieldspec.BYTES: "bytes",
            fieldspec.TCP_FLAGS: "TCP flags", fieldspec.TCP_OPTIONS: "TCP options"}[t]


def test_field_table_is_fields() -> None:
    """Every field the protocol modules describe has a row with its kind and named values; no row names one that is gone."""
    section = _section("Fields")
    expected = {"payload"}
    assert _row("payload", section)[1] == "bytes"
    for header in LAYERS.values():
        for f in header.fields:
            expected.add(f.key)
            cells = _row(f.key, section)
            assert cells[1] == _kind_words(f.type), f"`{f.key}` is {_kind_words(f.type)}, the page says {cells[1]}"
            if isinstance(f.type, fieldspec.Int):
                shown = {word: int(n, 0) for word, n in re.findall(r"`([\w-]+)` = (0x[0-9a-f]+|\d+)", cells[2])}
                assert shown == dict(f.type.names), f"`{f.key}` names {dict(f.type.names)}, the page says {shown}"
            if isinstance(f.type, fieldspec.Int) and f.type.names_by is not None:  # words by another field's value
                other = header.by_attr[f.type.names_by[0]].type
                assert isinstance(other, fieldspec.Int)
                for value, words in f.type.names_by[1].items():
                    under = next(w for w, v in other.names.items() if v == value)
                    part = next((p for p in cells[2].split(";") if f"(for `{under}`)" in p), "")
                    assert set(re.findall(r"`([\w-]+)` =", part)) == set(words), f"`{f.key}` under `{under}`: {part!r}"
    listed = set(re.findall(r"^\| `([a-z0-9]+(?:\.[a-z0-9]+)?)` \| (?:integer|MAC|IPv4|boolean|bytes|TCP|sequence)",
                            section, re.MULTILINE))
    assert listed == expected, f"rows for fields no protocol module describes: {listed - expected}"


def _show(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def test_stack_keys_and_defaults() -> None:
    default = loads("description: defaults\nsteps:\n  - expect: nothing\n    for: 1\n")
    config = default.config
    shown = {
        "mac": f"`{mac_to_str(config.mac)}`",
        "ip": f"`{ip_to_str(config.ip)}/{config.prefix_len}`",
        "gateway": "none" if config.gateway is None else ip_to_str(config.gateway),
        "mtu": str(config.mtu),
        "ttl": str(config.ttl),
        "min_pmtu": str(config.min_pmtu),
        "vlan": "none" if config.vlan is None else str(config.vlan),
        "seed": str(default.seed),
        "services": "none" if not default.services else ", ".join(default.services),
        "interfaces": "none" if not config.interfaces else str(config.interfaces),
        "forward": _show(config.forward),
        "routes": "none" if not config.routes else str(config.routes),
    }
    section = _section("The file")
    for key in STACK_KEYS:
        cells = _row(key, section)
        if key in shown:
            assert cells[1] == shown[key], f"stack.{key} defaults to {shown[key]}, the page says {cells[1]}"
    for service in SERVICES:
        assert f"`{service}`" in _row("services", section)[2]
    for prefix, config_class in (("arp", ArpConfig), ("reassembly", ReassemblyConfig), ("tcp", TcpConfig)):
        for f in dataclasses.fields(config_class):
            cells = _row(f"{prefix}.{f.name}", section)
            assert cells[1] == _show(f.default), f"{prefix}.{f.name} defaults to {f.default}, the page says {cells[1]}"
    options = {
        "allow_unexpected": _show(default.allow_unexpected),
        "ignore": "none" if not default.ignore else str(default.ignore),
        "expect_within": _show(default.expect_within),
        "tolerance": _show(default.tolerance),
        **{key: "none" for key in ("impair", "impair_in", "impair_out", "drop")},
    }
    assert not default.impair_in.active and not default.impair_out.active and not default.drop
    assert set(options) == OPTION_KEYS
    for key, value in options.items():
        assert _row(key, section)[1] == value, f"options.{key} defaults to {value}"
    for key in TOP_KEYS:
        _row(key, section)


def test_app_operations_and_error_names() -> None:
    section = _section("Applications")
    for op, args in APP_OPS.items():
        if op == "ping":
            for arg in args:
                _row(arg, section)
            continue
        cells = _row(op, section)
        documented = set(re.findall(r"`(\w+)`", cells[1]))
        assert documented == set(args), f"app: {op} takes {sorted(args)}, the page lists {sorted(documented)}"
    for name in ERROR_NAMES:
        assert f"`{name}`" in section, f"error name {name} is not on the page"


_DROP = re.compile(r"""\bdrop\(\s*"(\w+)",\s*"(\w+)"\s*\)""")
_MALFORMED = re.compile(r"""Malformed\(\s*"(\w+)\"""")
_INC = re.compile(r"""\binc\(\s*"([\w.]+)"\s*\)""")
_LAYER_OF_MODULE = {"ethernet": "eth", "arp": "arp", "ipv4": "ipv4", "icmp": "icmp", "udp": "udp"}


def test_every_counter_in_protocols_is_listed() -> None:
    section = _section("Counters")
    missing = []
    for path in sorted((ROOT / "protocols").glob("*.py")):
        source = path.read_text()
        names = {f"{layer}.drop.{reason}" for layer, reason in _DROP.findall(source)}
        names |= set(_INC.findall(source))
        layer = _LAYER_OF_MODULE.get(path.stem)
        for reason in _MALFORMED.findall(source):
            if layer is not None:
                names.add(f"{layer}.drop.{reason}")
            elif f".drop.{reason}" not in section and f"`{reason}`" not in section:
                missing.append(f"{path.name}: Malformed reason {reason}")
        missing += [f"{path.name}: {name}" for name in sorted(names) if f"`{name}`" not in section]
    assert not missing, f"counters missing from the Counters section of {DOC.relative_to(ROOT)}: {missing}"


# -- the quoted outputs ---------------------------------------------------------------
def test_first_example_is_scenarios_ping() -> None:
    assert f"```yaml\n{PING.read_text()}```" in TEXT, "the walk-through must quote scenarios/ping.yaml as it is"


def test_verbose_output_is_real(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    assert run_files(["scenarios/ping.yaml"], verbose=True, out=out) == 0
    assert f"$ simstack replay -v scenarios/ping.yaml\n{out.getvalue()}" in TEXT


def test_failure_output_is_real(tmp_path: Path) -> None:
    """The page's ``sed '/echo-reply/s/seq: 1/seq: 2/'`` copy of ping.yaml, and what replay says about it."""
    lines = [ln.replace("seq: 1", "seq: 2") if "echo-reply" in ln else ln for ln in PING.read_text().splitlines(True)]
    bad = tmp_path / "ping-wrong-seq.yaml"
    bad.write_text("".join(lines))
    out = io.StringIO()
    assert run_files([str(bad)], out=out) == 1
    shown = out.getvalue().replace(str(bad), "/tmp/ping-wrong-seq.yaml")
    assert f"$ simstack replay /tmp/ping-wrong-seq.yaml\n{shown}" in TEXT


def test_tcp_verbose_output_is_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The TCP section's ``-v`` output: relative numbers as tcpdump prints them, from a real replay."""
    block = next(b for b in SCENARIOS if "A server on port 8080 accepts a connection" in b.text)
    (tmp_path / "tcp-server.yaml").write_text(block.text)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    assert run_files(["tcp-server.yaml"], verbose=True, out=out) == 0
    assert f"$ simstack replay -v tcp-server.yaml\n{out.getvalue()}" in TEXT


# -- statements in the prose ------------------------------------------------------------
# A few sentences of the page make claims about the program that no example shows; the
# tests below read the claim out of the sentence and hold it to the loader and the matcher.
_PEER = 'hosts:\n  peer: {mac: "02:00:00:00:00:02", ip: 10.0.0.2}\n'


def _paragraph(start: str) -> str:
    """The paragraph of the page that begins with ``start``, its lines joined by spaces."""
    at = TEXT.index(f"\n{start}") + 1
    end = TEXT.find("\n\n", at)
    return " ".join(TEXT[at:end].split())


def _injected(inject: str) -> bytes:
    scenario = loads(f"description: one frame\n{_PEER}steps:\n  - inject: {inject}\n", NAME)
    return scenario.steps[0].frames[0]


def _layer_of(name: str) -> str:
    return next(layer for layer, table in KINDS.items() if name in table)


def test_plus_is_relative_only_under_at() -> None:
    text = _paragraph("**`+` is a relative time only under `at`.**")
    at = loads(f"description: relative\n{_PEER}steps:\n  - at: +0.5\n    inject: {{arp: {{op: request}}}}\n", NAME)
    assert "`at: +0.5` is half a second after the step before" in text
    assert at.steps[0].relative and at.steps[0].at == 0.5
    claims = re.findall(r"`(\w+): \+(\d+)` is `(\w+): (\d+)`", text)
    assert len(claims) >= 2, text
    for name, plus, same, plain in claims:
        assert (name, plus) == (same, plain), f"the page pairs {name}: +{plus} with {same}: {plain}"
        layer = _layer_of(name)
        frame = _injected(f"{{{layer}: {{{name}: +{plus}}}}}")
        assert frame == _injected(f"{{{layer}: {{{name}: {plain}}}}}"), f"{name}: +{plus} is not {name}: {plain}"
        assert decode_frame(frame).fields[f"{layer}.{name}"] == int(plain)


def test_an_empty_layer_is_still_a_layer() -> None:
    text = _paragraph("**An empty layer is still a layer.**")
    same = re.findall(r"`inject: (\{.*?\})` injects the same frame as `inject: (\{.*?\})`", text)
    assert same, text
    for short, long in same:
        frame = _injected(short)
        assert frame == _injected(long), f"inject: {short} and inject: {long} build different frames"
        assert decode_frame(frame).fields["icmp.type"] == 8  # "an echo request"
    claim = re.search(r"`expect: (\{icmp: \{\}\})` matches (.*?), any frame that carries an ICMP message, "
                      r"but not (.*?)\.", text)
    assert claim, text
    # The frames the sentence names, built by scapy rather than by the fields under test.
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.l2 import ARP, Ether

    eth = Ether(dst="aa:bb:cc:dd:ee:ff", src="02:00:00:00:00:02")
    frames = {
        "an echo reply": eth / IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=0, id=1, seq=1),
        "a port unreachable": eth / IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=3, code=3)
        / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1024, dport=9),
        "an ARP reply": eth / ARP(op=2, hwsrc="02:00:00:00:00:02", psrc="10.0.0.2", hwdst="aa:bb:cc:dd:ee:ff",
                                  pdst="10.0.0.1"),
        "a UDP datagram": eth / IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=1024, dport=7) / b"x",
    }
    scenario = loads(f"description: match\n{_PEER}steps:\n  - expect: {claim.group(1)}\n", NAME)
    wanted = scenario.steps[0].expected
    matches, misses = (re.split(r", | or ", words) for words in (claim.group(2), claim.group(3)))
    assert set(matches) | set(misses) == set(frames), (matches, misses)
    for what in matches:
        assert compare(wanted, decode_frame(bytes(frames[what]))) == [], f"expect: {{icmp: {{}}}} does not match {what}"
    for what in misses:
        assert compare(wanted, decode_frame(bytes(frames[what]))) != [], f"expect: {{icmp: {{}}}} matches {what}"


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def test_the_bounds_on_the_page_are_the_loaders() -> None:
    """Each stack.arp and stack.reassembly row gives its range, and the limits the page states are the loader's."""
    from simstack.engine.scenario.loader import (
        ARP_RANGES,
        MAX_FILE_BYTES,
        MAX_INT_DIGITS,
        MAX_NODES,
        MAX_SECONDS,
        REASSEMBLY_RANGES,
        TCP_RANGES,
    )

    section = _section("The file")
    # switches (rfc5961) and words (options_layout) have no range
    tcp_settings = {f.name for f in dataclasses.fields(TcpConfig) if f.type not in (bool, "bool", str, "str")}
    for prefix, config_class, ranges in (("arp", ArpConfig, ARP_RANGES), ("reassembly", ReassemblyConfig,
                                                                          REASSEMBLY_RANGES), ("tcp", TcpConfig, TCP_RANGES)):
        names = tcp_settings if prefix == "tcp" else {f.name for f in dataclasses.fields(config_class)}
        assert set(ranges) == names, f"{prefix}: a setting without a range"
        for name, (lo, hi) in ranges.items():
            meaning = _row(f"{prefix}.{name}", section)[2]
            assert meaning.endswith(f"; from {_plain(lo)} to {_plain(hi)}"), f"{prefix}.{name}: {lo}..{hi}: {meaning}"
    text = " ".join(section.split())
    assert f"{MAX_SECONDS:,.0f} s for a time" in text
    assert f"at most {MAX_INT_DIGITS} characters" in text
    assert f"regular file of at most {MAX_FILE_BYTES >> 20} MiB" in text
    assert MAX_NODES == 10_000_000 and "past ten million values" in text
