"""Collects scenario files as pytest items, one per file.

Installing simstack registers this plugin (the ``pytest11`` entry point), so
another project's scenario folder becomes a regression suite with no test code
(docs/testing.md). A YAML file is collected when it is named on the command
line, or lies under a folder named there, or matches one of the
``simstack_scenarios`` patterns of the ini file; only a file named on the
command line is collected whatever it holds: elsewhere a YAML file with
neither a top-level ``description`` nor ``steps`` is someone else's
(``docker-compose.yml``) and is passed over.
"""

import fnmatch
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .discover import YAML_SUFFIXES, looks_like_scenario
from .loader import ScenarioError, load
from .runner import Runner

INI = "simstack_scenarios"
# Today's rule as patterns: any YAML file with a folder named ``scenarios`` in its path. ``*`` crosses folders.
DEFAULT_PATTERNS = ["scenarios/*.yaml", "scenarios/*.yml", "*/scenarios/*.yaml", "*/scenarios/*.yml"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(INI, type="args", default=DEFAULT_PATTERNS,
                  help="shell patterns (in which * also matches /) of the scenario files to collect, relative to the "
                       f"rootdir (default: {' '.join(DEFAULT_PATTERNS)})")


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> "ScenarioFile | None":
    if file_path.suffix not in YAML_SUFFIXES:
        return None
    session = parent.session
    if session.isinitpath(file_path):  # named on the command line: the user says it is a scenario
        return ScenarioFile.from_parent(parent, path=file_path)  # type: ignore[no-any-return]
    if (_under_given_folder(parent.config, file_path) or _matches(parent.config, file_path)) and looks_like_scenario(file_path):
        return ScenarioFile.from_parent(parent, path=file_path)  # type: ignore[no-any-return]
    return None


def _under_given_folder(config: pytest.Config, path: Path) -> bool:
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return False
    base = config.invocation_params.dir
    for arg in config.args:
        folder = Path(base, arg.split("::", 1)[0]).resolve()
        if folder.is_dir() and path.resolve().is_relative_to(folder):
            return True
    return False


def _matches(config: pytest.Config, path: Path) -> bool:
    try:
        shown = path.resolve().relative_to(config.rootpath.resolve()).as_posix()
    except ValueError:  # outside the rootdir: its whole path
        shown = path.resolve().as_posix()
    return any(fnmatch.fnmatchcase(shown, pattern) for pattern in config.getini(INI))


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator["ScenarioItem"]:
        yield ScenarioItem.from_parent(self, name=self.path.stem)


class ScenarioFailed(Exception):
    pass


class ScenarioItem(pytest.Item):
    def runtest(self) -> None:
        try:
            scenario = load(self.path)
        except ScenarioError as e:
            raise ScenarioFailed(str(e)) from None
        try:
            result = Runner(scenario).run()
        except ScenarioError as e:  # found while running, e.g. a time in the past
            raise ScenarioFailed(str(e)) from None
        if not result.passed:
            raise ScenarioFailed(result.report)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario: {self.path.name}"
