"""simstack(1), written from the command's own parser so that the page cannot say what the parser does not.

``make man`` writes ``simstack/simstack.1``, which the package installs in
``share/man/man1`` (``man simstack`` in an activated venv); tests/test_cli_help.py
fails when the committed page differs from what the parser gives today.
argparse-manpage comes with the test extra, not at run time.
"""

import os
import sys

from simstack import __version__
from simstack.cli import build_parser

PAGE = "simstack/simstack.1"


def render() -> str:
    from argparse_manpage.manpage import Manpage

    data = {"project_name": "simstack", "version": __version__, "date": f"simstack {__version__}",
            "manual_title": "simstack manual", "manual_section": "1",
            "description": "a user-space TCP/IP stack over a TAP device or a simulated, replayable wire",
            "url": "README.md and docs/ in the source"}
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"  # argparse wraps usage lines to the terminal: the page must not depend on it
    try:
        return str(Manpage(build_parser(), _data=data)).rstrip("\n") + "\n"
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns


if __name__ == "__main__":
    sys.stdout.write(render())
