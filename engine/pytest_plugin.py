"""The pytest plugin at its public name (the ``pytest11`` entry point); it lives in ``engine/scenario/``."""

from .scenario.pytest_plugin import ScenarioFile, ScenarioItem, pytest_addoption, pytest_collect_file

__all__ = ["ScenarioFile", "ScenarioItem", "pytest_addoption", "pytest_collect_file"]
