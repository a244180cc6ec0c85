"""The README's TCP diagram is what ``simstack graph tcp`` draws from the table today."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_tcp_diagram_is_the_programs(tmp_path: Path) -> None:
    out = tmp_path / "tcp.mmd"
    subprocess.run([sys.executable, "-m", "simstack", "graph", "tcp", "-o", str(out)], check=True, timeout=60)
    blocks = re.findall(r"```mermaid\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "README.md shows no Mermaid diagram"
    assert blocks[0] == out.read_text().rstrip("\n") + "\n", "README.md's TCP diagram is stale: redraw it with simstack graph tcp"
