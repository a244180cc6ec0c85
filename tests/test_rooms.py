"""engine/ is four rooms, and who may import whom is a rule, checked by walking every import.

``api`` (what applications use) and ``wire`` (what frames travel on) depend
only on ``simstack.protocols``, so either can be taken to another driver;
``scenario`` may use them; ``live`` may use all three. A scenario that
imported the live driver would drag root-only code into replays.
"""

import ast
import shutil
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "engine"
ROOMS = ("wire", "api", "scenario", "live")
ALLOWED = {
    "wire": {"wire"},
    "api": {"api"},
    "scenario": {"scenario", "api", "wire"},
    "live": {"live", "api", "wire", "scenario"},
}


def _imported_rooms(path: Path, room: str) -> list[tuple[int, str]]:
    """(line, room) for every import of an engine room in ``path``, function-level ones included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                # Relative to simstack.engine.<room>: level 1 is the room itself, level 2 is engine.
                base = ["simstack", "engine", room][: 3 - (node.level - 1)]
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        rooms: set[str] = set()
        for target in targets:
            parts = target.split(".")
            if parts[:2] == ["simstack", "engine"] and len(parts) > 2:
                # A room, or a top-level shim (engine.app) that stands for one.
                rooms.add(parts[2] if parts[2] in ROOMS else f"engine.{parts[2]}")
        found.extend((getattr(node, "lineno", 0), r) for r in sorted(rooms))
    return found


def violations(engine: Path) -> list[str]:
    out = []
    for room in ROOMS:
        for path in sorted((engine / room).glob("*.py")):
            for line, other in _imported_rooms(path, room):
                if other not in ALLOWED[room]:
                    out.append(f"{path.relative_to(engine)}:{line}: {room} imports {other}")
    return out


def test_every_room_imports_only_what_its_rule_allows() -> None:
    assert violations(ENGINE) == []


def test_the_rooms_hold_modules() -> None:
    for room in ROOMS:
        assert list((ENGINE / room).glob("*.py")), room


@pytest.mark.parametrize(("room", "module", "bad"), [
    ("wire", "tap.py", "from ..live.driver import LiveDriver\n"),
    ("api", "sockets.py", "from simstack.engine.scenario import runner\n"),
    ("wire", "pcap.py", "def f() -> None:\n    from simstack.engine.api import sockets\n"),
    ("scenario", "runner.py", "from ..live import session\n"),
    ("api", "services.py", "from simstack.engine import app\n"),
])
def test_a_wrong_import_in_a_scratch_copy_is_caught(tmp_path: Path, room: str, module: str, bad: str) -> None:
    copy = tmp_path / "engine"
    shutil.copytree(ENGINE, copy)
    target = copy / room / module
    target.write_text(target.read_text() + "\n" + bad)
    found = violations(copy)
    assert len(found) == 1 and found[0].startswith(f"{room}/{module}:"), found
