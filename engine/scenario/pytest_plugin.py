"""Collects every ``scenarios/**/*.yaml`` as its own pytest item.

Loaded with ``-p simstack.engine.scenario.pytest_plugin`` (pyproject sets it), so a
user's own scenario folder becomes a regression suite with no test code.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .loader import ScenarioError, load
from .runner import Runner


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> "ScenarioFile | None":
    if file_path.suffix in (".yaml", ".yml") and "scenarios" in file_path.parts:
        return ScenarioFile.from_parent(parent, path=file_path)  # type: ignore[no-any-return]
    return None


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
