"""The scenario language where a newcomer first trips (issue 19, item 12).

A file that cannot be read has no line 0; an empty file says it is empty;
payloads that differ show as text when both sides are text; and an ICMP
error's quoted datagram can be named by the step that injected it, checked
here against a quote scapy builds from the same datagram.
"""

import re
from pathlib import Path

import pytest
from conftest import SCENARIOS

from simstack.cli import main
from simstack.engine.scenario.loader import ScenarioError, load, loads
from simstack.engine.scenario.runner import Runner

UNREACHABLE = (SCENARIOS / "udp" / "closed-port-unreachable.yaml").read_text()
HEX_QUOTE = 'data: {hex: "4500 0023 1111 0000 4011 55b7 0a00 0002 0a00 0001 8235 115c 000f cff8 616e 796f 6e65 3f"}'


def test_a_missing_file_names_no_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothere.yaml"
    assert main(["replay", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == f"{missing}: cannot read: No such file or directory\n"
    assert ":0:" not in err


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_an_empty_file_says_it_is_empty(tmp_path: Path, text: str) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load(empty)
    assert str(info.value) == f"{empty}: the file is empty: a scenario needs a description and steps"


def _payload_diff(want: str) -> str:
    scenario = loads(f"""description: a datagram to the echo service
hosts:
  peer: {{mac: "02:00:00:00:00:02", ip: 10.0.0.2}}
stack: {{services: [echo]}}
steps:
  - at: 0
    inject: {{arp: {{op: request}}}}
  - expect: {{arp: {{op: reply}}}}
  - at: +0.001
    inject: {{udp: {{sport: 40000, dport: 7, data: "hello, echo"}}}}
  - expect: {{udp: {{data: {want}}}}}
""", "echo.yaml")
    result = Runner(scenario).run()
    assert not result.passed
    return next(ln for ln in result.report.splitlines() if ln.lstrip().startswith("udp.data"))


def test_text_payloads_differ_as_text() -> None:
    row = _payload_diff('"hello, world"')
    assert re.fullmatch(r'\s*udp\.data\s+"hello, world" \(12 bytes\)\s+"hello, echo" \(11 bytes\)', row), row


def test_a_payload_that_is_not_text_shows_both_sides_in_hex() -> None:
    row = _payload_diff('{hex: "00ff"}')
    assert re.fullmatch(r"\s*udp\.data\s+00ff \(2 bytes\)\s+68656c6c6f2c206563686f \(11 bytes\)", row), row


def _quoting(ref: str) -> str:
    text = UNREACHABLE.replace(HEX_QUOTE, f"data: {{quote: {{step: {ref}}}}}")
    assert text != UNREACHABLE
    return text.replace("  - at: +0.001\n    inject:\n      ipv4: {id: 0x1111}",
                        "  - at: +0.001\n    name: anyone\n    inject:\n      ipv4: {id: 0x1111}")


@pytest.mark.parametrize("ref", ["3", "anyone"])
def test_a_quote_names_the_step_that_sent_the_datagram(ref: str) -> None:
    scenario = loads(_quoting(ref), "quote.yaml")
    original = loads(UNREACHABLE, "unreachable.yaml")
    # the quote is the hex the file used to spell out: scapy's build of the same datagram
    assert scenario.steps[3].expected["icmp.data"] == original.steps[3].expected["icmp.data"]
    assert Runner(scenario).run().passed


def test_the_quote_matches_scapy_s_datagram() -> None:
    from scapy.layers.inet import IP, UDP

    datagram = IP(src="10.0.0.2", dst="10.0.0.1", id=0x1111, ttl=64) / UDP(sport=33333, dport=4444) / b"anyone?"
    assert loads(_quoting("3"), "quote.yaml").steps[3].expected["icmp.data"] == bytes(datagram)


def test_a_wrong_quote_fails_the_expectation() -> None:
    """Quoting a datagram the stack dropped unanswered (bad UDP checksum) is not the error it sent."""
    other = ("  - at: +0.001\n    name: other\n    inject:\n      udp: {sport: 1, dport: 2, data: x, checksum: 1}\n")
    text = _quoting("other").replace("  - at: +0.001\n    name: anyone", other + "  - at: +0.001\n    name: anyone", 1)
    result = Runner(loads(text, "wrong.yaml")).run()
    assert not result.passed
    assert re.search(r"^\s+icmp\.data\s+4500001d", result.report, re.MULTILINE), result.report


@pytest.mark.parametrize(("ref", "message"), [
    ("9", "quote: step 9 is not an earlier step (this is step 4)"),
    ("2", "quote: step 2 is an expect step; a quote takes the frame an inject step sent"),
    ("1", "quote: step 1 did not inject an IPv4 datagram"),
    ("nobody", "quote: no earlier step is named 'nobody'"),
])
def test_a_quote_of_no_datagram_is_refused_with_its_line(ref: str, message: str) -> None:
    text = _quoting(ref)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "quote:" in ln)
    with pytest.raises(ScenarioError) as info:
        loads(text, "bad.yaml")
    assert info.value.line == line
    assert info.value.message.startswith(message)
