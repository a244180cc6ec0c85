"""Shared test helpers. Scenario files are collected by simstack.engine.pytest_plugin."""

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, why: str) -> None:
    """Skip when a prerequisite is missing, but fail under CI=true: CI must run everything."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"prerequisite missing under CI=true: {why}")
    pytest.skip(why)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed")
    assert path is not None
    return path
