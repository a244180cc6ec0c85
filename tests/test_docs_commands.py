"""Every command the README and docs/ show with its output is run, and prints what the page shows (issue 19, item 14).

A ```console block is a shell session: ``$ `` lines are commands, the lines
after one are what it prints (stdout and stderr together). The blocks of a
page run in order in one bash, so state carries over as it does for a
reader typing them (``cd``, ``source``, ``shopt``, files written by an
earlier command). What is run, and where:

* README.md: in a fresh copy of the checkout, from its set-up step on
  (``make demo``, ``source .venv/bin/activate``), with nothing of the test
  environment on PATH: the newcomer's first minutes, as typed.
* docs/testing.md: in a temporary folder outside the checkout, with
  ``/path/to/simstack`` a fresh copy of it: another project, from
  ``pip install`` to a failing report and ``--junitxml``.
* the other pages: in a temporary folder where ``scenarios`` is the
  checkout's, with this environment's ``simstack`` and ``pytest``.

``/tmp/`` in a command is a temporary folder of the test, and is written
back as ``/tmp/`` in the output before comparing; pytest's run time (``in
0.54s``) is not compared, nor this machine's pip warnings about its package
index. A block at a ``#`` prompt needs root and a network namespace (live
mode, tests/live/); a block after ``<!-- not run: REASON -->`` needs what a
test cannot make (a capture from a real kernel), and says so. Beside the
sessions: every option of every subcommand is named on its page, the
README's layout table names every page of docs/, and every failure report a
page shows with a line number is one of the reports these runs or
tests/test_docs.py check.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, require_tool

from simstack.cli import build_parser

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARK = "@@simstack-doc-command-done@@"
_FENCE = re.compile(r"((?:<!-- not run: [^>]*-->\n)?)```console\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_PIP_INDEX_WARNING = re.compile(r"^WARNING: Location 'file://.*' is ignored: .*\n", re.MULTILINE)
_PYTEST_TIME = re.compile(r" in \d+\.\d+s\b")


@dataclass(frozen=True)
class Command:
    page: Path
    line: int
    text: str
    output: str

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    not_run: str  # the reason, for a block that is not run
    root: bool  # at a # prompt
    commands: tuple[Command, ...]


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for m in _FENCE.finditer(text):
        first = text.count("\n", 0, m.start(2)) + 1
        lines = m.group(2).splitlines()
        reason = m.group(1)[len("<!-- not run: "):-len(" -->\n")] if m.group(1) else ""
        commands: list[Command] = []
        for i, line in enumerate(lines):
            if line.startswith("$ "):
                commands.append(Command(page, first + i, line[2:], ""))
            elif commands:
                last = commands[-1]
                commands[-1] = Command(page, last.line, last.text, last.output + line + "\n")
        found.append(Block(page, first - 1, reason, bool(lines) and lines[0].startswith("# "), tuple(commands)))
    return found


def session(page: Path) -> list[Command]:
    return [c for b in blocks(page) if not b.not_run and not b.root for c in b.commands]


def copy_checkout(dest: Path) -> Path:
    """The checkout's files as git sees them (tracked and new, not ignored), symlinks as symlinks: a fresh clone."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
    return dest


def run_session(commands: list[Command], cwd: Path, env: dict[str, str], subs: dict[str, str],
                timeout: float) -> list[str]:
    """Each command's output, from one bash that runs them in order; ``subs`` maps the page's paths to real ones."""
    def real(text: str) -> str:
        for shown, actual in subs.items():
            text = text.replace(shown, actual)
        return text

    script = ["exec 2>&1"]
    for c in commands:
        # the marker keeps the command's exit status for the next one's $?
        script += [real(c.text), f"__status=$?; printf '\\n{MARK}\\n'; (exit $__status)"]
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", "\n".join(script)], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=timeout)
    outputs = r.stdout.split(f"\n{MARK}\n")
    assert len(outputs) == len(commands) + 1, r.stdout
    shown = []
    for out in outputs[:-1]:
        for page_path, actual in sorted(subs.items(), key=lambda kv: -len(kv[1])):
            out = out.replace(actual, page_path)
        shown.append(_PIP_INDEX_WARNING.sub("", out))
    return shown


def _comparable(text: str) -> str:
    """Run times out; a FAILED line of pytest's summary cut after the test id (pytest cuts the rest to the width)."""
    text = _PYTEST_TIME.sub(" in 0.01s", text)
    return _FAILED_REASON.sub(r"\1", text).rstrip("\n")


_FAILED_REASON = re.compile(r"^(FAILED \S+) - .*$", re.MULTILINE)


def check(commands: list[Command], outputs: list[str]) -> None:
    for c, out in zip(commands, outputs, strict=True):
        want = _comparable(c.output)
        got = _comparable(out)
        assert got == want, f"{c.where()}: $ {c.text}\n--- the page shows:\n{want}\n--- it printed:\n{got}"


def _env(path_first: str | None) -> dict[str, str]:
    # A newcomer's shell: not inside make (MAKEFLAGS would print "Entering directory") and not in CI
    # (under CI=true pytest prints whole failure messages in its short summary).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VIRTUAL_ENV", "PYTEST", "COV", "MAKE", "MFLAGS")) and k not in ("CI", "BUILD_NUMBER")}
    env.update(COLUMNS="80", LC_ALL="C.UTF-8", PYTHONDONTWRITEBYTECODE="1")
    paths = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != Path(sys.executable).parent.resolve()]
    env["PATH"] = os.pathsep.join(([path_first] if path_first else []) + paths)
    return env


def test_every_page_with_commands_has_sessions_that_run() -> None:
    """A broken extractor must not pass by finding nothing."""
    runnable = {p.name: len(session(p)) for p in PAGES}
    assert runnable["README.md"] >= 8 and runnable["testing.md"] >= 8 and runnable["scenarios.md"] >= 8, runnable
    for page in PAGES:
        for b in blocks(page):
            assert b.commands or b.root, f"{page.name}:{b.line}: a console block without a $ command"


@pytest.mark.parametrize("page", [p for p in PAGES if p.name not in ("README.md", "testing.md") and session(p)],
                         ids=lambda p: p.name)
def test_page_commands_print_what_the_page_shows(page: Path, tmp_path: Path) -> None:
    if any("tcpdump" in c.text for c in session(page)):
        require_tool("tcpdump")
    work = tmp_path / "work"
    work.mkdir()
    (work / "scenarios").symlink_to(ROOT / "scenarios")
    (tmp_path / "tmp").mkdir()
    commands = session(page)
    env = _env(str(Path(sys.executable).parent))
    check(commands, run_session(commands, work, env, {"/tmp/": f"{tmp_path}/tmp/"}, timeout=300))


def test_readme_commands_work_as_typed_after_make_demo(tmp_path: Path) -> None:
    require_tool("make")
    clone = copy_checkout(tmp_path / "simstack")
    (tmp_path / "tmp").mkdir()
    commands = session(ROOT / "README.md")
    assert [c.text.split("#")[0].strip() for c in commands[:2]] == ["make demo", "source .venv/bin/activate"]
    outputs = run_session(commands, clone, _env(None), {"/tmp/": f"{tmp_path}/tmp/"}, timeout=300)
    check(commands, outputs)
    demo = outputs[0]
    assert "deprecat" not in demo.lower() and len(demo.splitlines()) <= 10, demo
    installed = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                               capture_output=True, text=True, timeout=60).stdout.lower()
    assert "simstack==" in installed
    for extra in ("scapy", "mypy", "ruff", "hypothesis", "pytest"):
        assert f"{extra}==" not in installed, f"make demo installed {extra}, which the demo does not need"


def test_testing_md_runs_in_a_project_outside_the_checkout(tmp_path: Path) -> None:
    clone = copy_checkout(tmp_path / "simstack")
    (tmp_path / "home").mkdir()
    commands = session(ROOT / "docs" / "testing.md")
    subs = {"/path/to/simstack": str(clone), "/tmp/netcheck": str(tmp_path / "netcheck")}
    outputs = run_session(commands, tmp_path / "home", _env(None), subs, timeout=300)
    check(commands, outputs)
    venv = tmp_path / "netcheck" / ".venv"
    assert list(venv.glob("share/man/man1/simstack.1")), "the man page is not installed with the package"


# -- what the pages must name ---------------------------------------------------------------
OPTION_PAGES = {"replay": "docs/scenarios.md", "live": "docs/live.md", "import": "docs/recording.md",
                "graph": "README.md"}


def _options() -> dict[str, list[list[str]]]:
    """Each subcommand's options, each as its spellings (``-v``, ``--verbose``)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found: dict[str, list[list[str]]] = {}
    for name, p in sub.choices.items():
        found[name] = [list(a.option_strings) for a in p._actions if a.option_strings and a.dest != "help"]
    return found


def test_every_option_of_every_subcommand_is_on_its_page() -> None:
    options = _options()
    assert set(options) == set(OPTION_PAGES)
    missing = []
    for command, opts in options.items():
        text = (ROOT / OPTION_PAGES[command]).read_text()
        for spellings in opts:  # -v or --verbose: either names it
            if not any(re.search(rf"`[^`\n]*(?<![\w-]){re.escape(opt)}(?![\w-])[^`\n]*`", text) for opt in spellings):
                missing.append(f"{command} {'/'.join(spellings)} ({OPTION_PAGES[command]})")
    assert not missing, f"options no page names: {missing}"


def test_the_readme_layout_names_every_page_of_docs() -> None:
    row = next(ln for ln in (ROOT / "README.md").read_text().splitlines() if ln.startswith("| `docs/` |"))
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"`{page.name}`" in row, f"README.md's layout table does not name docs/{page.name}"


_REPORT = re.compile(r"^(\S+?):(\d+): step \d+ \(\w+\) failed", re.MULTILINE)


def test_every_report_with_a_line_number_is_checked() -> None:
    """Shown in a session that runs, or in docs/scenarios.md, whose reports tests/test_docs.py checks line by line."""
    unchecked = []
    for page in PAGES:
        text = page.read_text()
        run = "".join(c.output for c in session(page))
        for m in _REPORT.finditer(text):
            if m.group(0) in run or page.name == "scenarios.md":
                continue
            where = f"{page.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}"
            block = next((b for b in blocks(page) if any(m.group(0) in c.output for c in b.commands)), None)
            if block is not None and block.not_run:
                continue  # says why it cannot run
            unchecked.append(where)
    assert not unchecked, f"failure reports no test checks: {unchecked}"
