"""``simstack graph``: every state and every move of the declaration is in the picture, in each format.

The expected edges are expanded here from the table itself (a ``source`` list
is one edge per state), and the drawings are read back with their own syntax:
Mermaid's ``A --> B: label`` lines, dot's ``A -> B [label=...]`` statements,
and the SVG that Graphviz lays out, whose ``<title>`` elements name each node
and edge. So a drawing that drops, invents or misdirects an edge fails.
"""

import importlib.util
import re
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool

from simstack import cli, graph
from simstack.protocols import arp_cache

SVG = "{http://www.w3.org/2000/svg}"
RFC9293_STATES = {"CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT",
                  "CLOSING", "LAST-ACK", "TIME-WAIT"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["graph", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def edges_of(states: list[str], transitions: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(source, dest, label) for every move the table declares, as transitions documents them.

    ``source`` "*" is every state, a list one edge each; ``dest`` "=" is the
    source, None an internal transition (a loop, its label marked).
    """
    out = set()
    for row in transitions:
        sources = states if row["source"] == "*" else [row["source"]] if isinstance(row["source"], str) else row["source"]
        label = row.get("label", row["trigger"])
        for src in sources:
            dest = row.get("dest", src)
            if dest is None:
                out.add((src, src, f"{label} [internal]"))
            else:
                out.add((src, src if dest == "=" else dest, label))
    return out


def triggers_of(transitions: list[dict[str, Any]]) -> set[str]:
    return {row.get("label", row["trigger"]) for row in transitions}


def split_labels(texts: list[str]) -> set[str]:
    """Edge labels as drawn: several moves between two states share one, joined by " | "."""
    return {label.removesuffix(" [internal]") for text in texts for label in text.split(" | ")}


ARP_EDGES = edges_of(arp_cache.STATES, arp_cache.TRANSITIONS)
ARP_TRIGGERS = triggers_of(arp_cache.TRANSITIONS)


def mermaid_edges(text: str) -> set[tuple[str, str, str]]:
    out = set()
    for src, dst, labels in re.findall(r"^\s*(\w+) --> (\w+): (.+)$", text, re.MULTILINE):
        for label in labels.split(" | "):
            out.add((src, dst, label))
    return out


def mermaid_labels(text: str) -> dict[str, str]:
    """State id -> label, from Mermaid's ``state "LABEL" as ID`` lines."""
    return {ident: label for label, ident in re.findall(r'^\s*state "([^"]+)" as (\S+)$', text, re.MULTILINE)}


def svg_titles(path: Path) -> list[str]:
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    return [t.text or "" for t in root.iter(f"{SVG}title")]


def svg_texts(path: Path) -> list[str]:
    return [t.text or "" for t in ET.parse(path).getroot().iter(f"{SVG}text")]


# -- ARP -------------------------------------------------------------------------
def test_arp_mermaid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "arp.mmd"
    assert run(capsys, "arp", "-o", str(out)) == (0, "", "")
    text = out.read_text()
    assert text.startswith("---\ntitle: arp")
    assert "stateDiagram-v2" in text
    assert mermaid_labels(text) == {s: s for s in arp_cache.STATES}
    assert mermaid_edges(text) == ARP_EDGES
    assert f"[*] --> {arp_cache.INITIAL}" in text
    assert not re.search(r"^\s*Class \w+ s_active$", text, re.MULTILINE)  # a declaration: no state is current


def test_arp_dot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "arp.dot"
    assert run(capsys, "arp", "-o", str(out)) == (0, "", "")
    text = out.read_text()
    assert text.startswith("digraph ")
    nodes = dict(re.findall(r'^\s*(\w+) \[label="(\w+)\\l"\]$', text, re.MULTILINE))
    assert nodes == {s: s for s in arp_cache.STATES}
    edges = set()
    for src, dst, labels in re.findall(r'^\s*(\w+) -> (\w+) \[label="?([^"\]]+)"?\]$', text, re.MULTILINE):
        edges |= {(src, dst, label) for label in labels.split(" | ")}
    assert edges == ARP_EDGES
    assert re.search(rf"^\s*__initial -> {arp_cache.INITIAL}$", text, re.MULTILINE)


def test_arp_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_tool("dot")
    out = tmp_path / "arp.svg"
    assert run(capsys, "arp", "-o", str(out)) == (0, "", "")
    titles = svg_titles(out)
    texts = svg_texts(out)
    for state in arp_cache.STATES:
        assert state in titles  # a node
        assert state in texts  # and its label
    edge_titles = {tuple(t.split("->")) for t in titles if "->" in t}
    assert edge_titles == {(s, d) for s, d, _ in ARP_EDGES} | {("__initial", arp_cache.INITIAL)}
    assert split_labels(texts) >= ARP_TRIGGERS


def test_arp_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_tool("dot")
    out = tmp_path / "arp.png"
    assert run(capsys, "arp", "-o", str(out)) == (0, "", "")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- refusals: one line, exit 2, nothing written ----------------------------------
@pytest.mark.parametrize(("argv", "says"), [
    (["nosuch", "-o", "x.mmd"], "no state machine called 'nosuch'"),
    (["arp", "-o", "x.pdf"], ".pdf"),
    (["arp", "-o", "x"], "no suffix"),
    (["ghost", "-o", "x.mmd"], "simstack.protocols.no_such_table"),
    (["arp", "-o", "no/such/dir/x.mmd"], "No such file or directory"),
])
def test_refused_in_one_line(argv: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(graph.MACHINES, "ghost", "simstack.protocols.no_such_table")
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert says in err
    assert list(tmp_path.iterdir()) == []


def test_svg_without_dot_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot on it
    code, _, err = run(capsys, "arp", "-o", str(tmp_path / "arp.svg"))
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "dot" in err
    # Mermaid needs no program
    assert run(capsys, "arp", "-o", str(tmp_path / "arp.mmd"))[0] == 0


# -- names that Mermaid cannot take as identifiers ----------------------------------
HYPHENATED = ["CLOSED", "SYN-SENT", "FIN-WAIT-1", "TIME-WAIT"]


@pytest.fixture
def hyphenated(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("simstack_test_hyphenated")
    module.STATES = HYPHENATED  # type: ignore[attr-defined]
    module.INITIAL = "CLOSED"  # type: ignore[attr-defined]
    module.TRANSITIONS = [  # type: ignore[attr-defined]
        {"trigger": "OPEN", "source": "CLOSED", "dest": "SYN-SENT", "rfc": "3.10.1"},  # extra keys stay out
        {"trigger": "CLOSE", "source": ["SYN-SENT", "CLOSED"], "dest": "FIN-WAIT-1"},
        {"trigger": "timeout", "source": "FIN-WAIT-1", "dest": "TIME-WAIT", "action": "arm_2msl"},
        {"trigger": "ABORT", "source": "*", "dest": "CLOSED"},
    ]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(graph.MACHINES, "hyph", module.__name__)
    return module


def test_hyphenated_states_keep_their_names(hyphenated: types.ModuleType, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "h.mmd"
    assert run(capsys, "hyph", "-o", str(out)) == (0, "", "")
    text = out.read_text()
    labels = mermaid_labels(text)
    assert sorted(labels.values()) == sorted(HYPHENATED)
    assert all(re.fullmatch(r"\w+", ident) for ident in labels)
    named = {(labels[s], labels[d], t) for s, d, t in mermaid_edges(text)}
    assert named == edges_of(HYPHENATED, hyphenated.TRANSITIONS)


# -- TCP ---------------------------------------------------------------------------
TCP_TABLE = "simstack.protocols.tcp_table"


def test_tcp_svg_and_mermaid_show_all_eleven_states(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_tool("dot")
    table = importlib.import_module(TCP_TABLE)
    assert {s.upper().replace("_", "-") for s in table.STATES} == RFC9293_STATES
    triggers = triggers_of(table.TRANSITIONS)
    svg, mmd = tmp_path / "tcp.svg", tmp_path / "tcp.mmd"
    assert run(capsys, "tcp", "-o", str(svg)) == (0, "", "")
    assert run(capsys, "tcp", "-o", str(mmd)) == (0, "", "")
    texts = svg_texts(svg)
    assert set(table.STATES) <= set(texts)
    assert triggers <= split_labels(texts)
    text = mmd.read_text()
    assert set(mermaid_labels(text).values()) == set(table.STATES)
    labels = mermaid_labels(text)
    assert {(labels[s], labels[d], t) for s, d, t in mermaid_edges(text)} == edges_of(table.STATES, table.TRANSITIONS)
