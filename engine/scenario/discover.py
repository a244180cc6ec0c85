"""Which files in a folder are scenarios: for ``simstack replay DIR`` and the pytest plugin alike.

A folder of scenarios often holds other YAML (a ``docker-compose.yml``, CI
settings); a file is taken for a scenario when it has a top-level
``description`` or ``steps`` key, so a broken scenario still fails loudly
while someone else's file is passed over. packetdrill scripts (``.pkt``)
have no such mark and are all taken.
"""

import re
from pathlib import Path

YAML_SUFFIXES = (".yaml", ".yml")
SUFFIXES = (*YAML_SUFFIXES, ".pkt")
_SCENARIO_KEY = re.compile(rb"^(?:description|steps)[ \t]*:", re.MULTILINE)
_PEEK_BYTES = 1 << 20  # a scenario names its description or steps well before this


def looks_like_scenario(path: Path) -> bool:
    if path.suffix not in YAML_SUFFIXES:
        return path.suffix in SUFFIXES
    try:
        with path.open("rb") as f:
            head = f.read(_PEEK_BYTES)
    except OSError:
        return True  # unreadable: let the loader say why
    return _SCENARIO_KEY.search(head) is not None


def scenario_files(paths: list[str]) -> list[str]:
    """``paths`` with each folder replaced by the scenarios under it (recursively, sorted); files stay as given.

    A folder with no scenario in it stays as it was given, so the replay can say so."""
    found: list[str] = []
    for given in paths:
        folder = Path(given)
        if not folder.is_dir():
            found.append(given)
            continue
        inside = sorted(str(p) for p in folder.rglob("*") if p.suffix in SUFFIXES and p.is_file() and looks_like_scenario(p))
        found += inside or [given]  # an empty folder stays, for the replay to say so
    return found
