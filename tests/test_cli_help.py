"""Help as a newcomer reads it (issue 19, item 10): every command and argument explained, -V, completion, a man page."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from simstack.cli import build_parser
from simstack.manpage import PAGE, render


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "simstack", *args], capture_output=True, text=True, timeout=60, env=env)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_top_level_help_lists_every_command_in_plain_text() -> None:
    r = run("--help")
    assert r.returncode == 0
    commands = _subparsers(build_parser())
    assert set(commands) == {"replay", "live", "import", "graph"}
    description = r.stdout.split("\n\n")[1]
    for name in commands:
        assert name in description, f"the description does not name {name}"
        assert f"    {name} " in r.stdout
    assert "``" not in r.stdout and "`" not in r.stdout


@pytest.mark.parametrize("name", ["replay", "live", "import", "graph"])
def test_every_argument_has_help(name: str) -> None:
    sub = _subparsers(build_parser())[name]
    assert sub.description, f"simstack {name} has no description"
    missing = [a.dest for a in sub._actions if not a.help]
    assert not missing, f"simstack {name}: arguments without help: {missing}"
    r = run(name, "--help")
    assert r.returncode == 0 and "`" not in r.stdout


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(flag: str) -> None:
    from simstack import __version__

    r = run(flag)
    assert (r.returncode, r.stdout) == (0, f"simstack {__version__}\n")


def test_the_man_page_is_the_parser_s() -> None:
    assert (ROOT / PAGE).read_text() == render(), "simstack/simstack.1 is stale: make man"
    page = render()
    parser = build_parser()
    for name, sub in _subparsers(parser).items():
        assert f"'simstack {name}'" in page
        for action in sub._actions:
            for opt in action.option_strings:
                assert opt.replace("-", "\\-") in page, f"simstack {name} {opt} is not in the man page"


def test_man_renders_the_page(tmp_path: Path) -> None:
    man = subprocess.run(["man", "-l", str(ROOT / PAGE)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "MANWIDTH": "100", "MANPAGER": "cat", "PAGER": "cat"})
    if man.returncode != 0 and "not found" in man.stderr:
        pytest.skip("man is not installed")
    assert man.returncode == 0, man.stderr
    assert "simstack replay" in man.stdout and "--junit-xml" in man.stdout


def _complete(line: str, tmp_path: Path) -> list[str]:
    out = tmp_path / "completions"
    env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n", "COMP_LINE": line, "COMP_POINT": str(len(line)),
           "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}
    r = subprocess.run([sys.executable, "-m", "simstack"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    return out.read_text().split("\n")


def test_shell_completion_offers_commands_and_options(tmp_path: Path) -> None:
    pytest.importorskip("argcomplete")
    assert set(_complete("simstack ", tmp_path)) >= {"replay", "live", "import", "graph"}
    options = _complete("simstack replay --j", tmp_path)
    assert "--json" in options and "--junit-xml" in options


def test_live_help_and_page_name_the_services_that_run_by_default() -> None:
    from simstack.engine.api.services import DEFAULT_SERVICES

    live = _subparsers(build_parser())["live"]
    page = (ROOT / "docs" / "live.md").read_text().split("\n## ", 1)[0]  # the introduction
    assert DEFAULT_SERVICES
    for service in DEFAULT_SERVICES:
        assert service in (live.description or ""), f"simstack live --help does not say that {service} runs"
        assert service in page, f"docs/live.md's introduction does not say that {service} runs"
