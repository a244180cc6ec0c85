"""``simstack graph NAME -o FILE``: a protocol's state machine, drawn from its declaration.

The picture is made from the same ``STATES``, ``TRANSITIONS`` and ``INITIAL``
the protocol module builds its ``transitions`` Machine from, by ``transitions``'
own diagram support (``GraphMachine``), so it cannot drift from the code the
stack runs. Only the moves are drawn (trigger, source, dest, and a ``label``
if the table gives one); the other keys a table row may carry (actions, the
RFC section) stay out of the picture and out of the Machine built for it.

The output format follows the file's suffix: ``.mmd`` is Mermaid, plain text
that needs no program and renders on most forges; ``.dot`` is Graphviz source
(needs the ``graphviz`` Python package); ``.svg`` and ``.png`` are laid out by
Graphviz's ``dot`` program as well.

Mermaid cuts state ids at ``-`` (it reads ``-->`` as an arrow), and RFC 9293
writes SYN-SENT, so every state is drawn under an identifier made of word
characters and labelled with its real name.
"""

import importlib
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, TextIO

from transitions.extensions.diagrams import GraphMachine

# The drawable machines: NAME -> the module that declares STATES, TRANSITIONS, INITIAL.
MACHINES = {
    "arp": "simstack.protocols.arp_cache",
    "tcp": "simstack.protocols.tcp_table",
}
Engine = Literal["mermaid", "graphviz"]
# Suffix -> transitions' graph engine.
FORMATS: dict[str, Engine] = {".mmd": "mermaid", ".dot": "graphviz", ".svg": "graphviz", ".png": "graphviz"}
# The keys of a table row that describe the move itself (transitions' dict form).
_MOVE_KEYS = ("trigger", "source", "dest", "label")

EXIT_OK = 0
EXIT_USAGE = 2


class GraphError(Exception):
    """Why a diagram cannot be drawn, in one line for the command's stderr."""


def load(name: str) -> ModuleType:
    """The declaring module of machine ``name``, imported now (a table module may not exist yet)."""
    path = MACHINES.get(name)
    if path is None:
        raise GraphError(f"no state machine called {name!r}; known: {', '.join(sorted(MACHINES))}")
    try:
        module = importlib.import_module(path)
    except ModuleNotFoundError as e:
        if e.name is None or not path.startswith(e.name):
            raise  # the table exists but imports something missing: a bug, not a usage error
        raise GraphError(f"{name!r}: its table module {path} is not there") from None
    missing = [attr for attr in ("STATES", "TRANSITIONS", "INITIAL") if not hasattr(module, attr)]
    if missing:
        raise GraphError(f"{name!r}: {path} does not export {', '.join(missing)}")
    return module


def ident(state: str) -> str:
    """An identifier Mermaid and dot both take as a node name: word characters only."""
    return re.sub(r"\W", "_", state)


def build(module: ModuleType, engine: Engine, title: str) -> Any:
    """A ``GraphMachine`` over the module's declaration, under identifiers, labelled with the real names."""
    states: list[str] = list(module.STATES)
    ids = {state: ident(state) for state in states}
    if len(set(ids.values())) != len(ids):
        raise GraphError(f"{module.__name__}: state names {states} collide once made identifiers")

    def mapped(value: Any) -> Any:
        if isinstance(value, str):
            return ids.get(value, value)  # "*" and "=" are transitions' own
        if value is None:
            return None
        return [ids.get(v, v) for v in value]

    moves = []
    for row in module.TRANSITIONS:
        move = {key: row[key] for key in _MOVE_KEYS if key in row}
        move["source"] = mapped(move["source"])
        if "dest" in move:
            move["dest"] = mapped(move["dest"])
        moves.append(move)
    # model=None: a declaration, not a running machine, so no state is drawn as the current one.
    machine = GraphMachine(model=None, states=[ids[s] for s in states], transitions=moves,
                           initial=ids.get(module.INITIAL, module.INITIAL), auto_transitions=False, graph_engine=engine,
                           title=title)
    for state in states:
        drawn: Any = machine.get_state(ids[state])
        drawn.label = state  # the diagram's markup reads a state's label before its name
    return machine


def render(name: str, suffix: str) -> bytes:
    """The diagram of machine ``name`` in the format ``suffix`` names."""
    engine = FORMATS.get(suffix)
    if engine is None:
        raise GraphError(f"cannot tell the format from {suffix or 'no suffix'!r}; use one of {', '.join(FORMATS)}")
    if engine == "graphviz" and importlib.util.find_spec("graphviz") is None:
        # transitions would quietly fall back to Mermaid; a .svg of Mermaid text helps no one.
        raise GraphError(f"{suffix} needs the graphviz Python package (pip install graphviz); .mmd does not")
    if suffix in (".svg", ".png") and shutil.which("dot") is None:
        raise GraphError(f"{suffix} needs Graphviz's dot program (apt-get install graphviz); .mmd and .dot do not")
    module = load(name)
    title = f"{name} ({module.__name__})"
    if engine == "mermaid":
        # transitions writes the title bare between the front-matter fences; Mermaid reads a YAML mapping there.
        machine = build(module, engine, f"title: {title}")
        return str(machine.graph_cls(machine).get_graph().source).encode() + b"\n"
    machine = build(module, engine, title)
    graph = machine.graph_cls(machine).get_graph()
    # The initial state, marked as UML and Mermaid mark it (dot has no such mark of its own).
    graph.node("__initial", label="", shape="point", width="0.15", fillcolor="black")
    graph.edge("__initial", ident(module.INITIAL))
    if suffix == ".dot":
        return str(graph.source).encode()
    try:
        return bytes(graph.pipe(format=suffix[1:]))
    except subprocess.CalledProcessError as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else str(e.stderr or e)
        lines = err.strip().splitlines() or [f"exit status {e.returncode}"]
        raise GraphError(f"dot failed: {lines[-1]}") from None


def main(name: str, output: str, stderr: TextIO | None = None) -> int:
    """Write the diagram; 0 when written, 2 with one line on stderr when it cannot be."""
    stderr = stderr or sys.stderr
    path = Path(output)
    try:
        data = render(name, path.suffix.lower())
        path.write_bytes(data)
    except GraphError as e:
        print(f"simstack graph: {e}", file=stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"simstack graph: {output}: {e.strerror}", file=stderr)
        return EXIT_USAGE
    return EXIT_OK
