"""Shared test helpers, and the Hypothesis profiles. Scenario files are collected by simstack.engine.pytest_plugin.

Hypothesis runs derandomized by default (profile ``ci``): the examples
depend only on the test's code, so ``make test`` and CI give the same verdict
every run and a red build means a changed test or a changed stack, never a new
draw. ``make fuzz`` sets ``SIMSTACK_HYPOTHESIS=fuzz``: random draws, many more
examples, and only the Hypothesis tests; what it finds belongs in a test as an
``@example``.
"""

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"

PROFILE_ENV = "SIMSTACK_HYPOTHESIS"
FUZZ_EXAMPLES_ENV = "SIMSTACK_FUZZ_EXAMPLES"  # the least number of examples a test gets under fuzz
FUZZ_FACTOR = 20  # ... and at least this many times what the test asks for itself

# database=None: an example saved by an earlier run would make the next run differ from a clean clone's.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("fuzz", derandomize=False, deadline=None, print_blob=True,
                          max_examples=int(os.environ.get(FUZZ_EXAMPLES_ENV, "5000")),
                          suppress_health_check=[HealthCheck.too_slow])
# Loaded here, before any test module builds its own settings(...): those inherit from the profile.
settings.load_profile(os.environ.get(PROFILE_ENV, "ci"))


def fuzzing() -> bool:
    return settings.get_current_profile_name() == "fuzz"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under fuzz: keep only Hypothesis tests, and raise each one's own ``max_examples``.

    A test's ``@settings(max_examples=N)`` overrides the profile, so the
    profile alone cannot make a fuzz run longer; the settings Hypothesis reads
    at run time (``_hypothesis_internal_use_settings``) are replaced instead.
    """
    if not fuzzing():
        return
    keep, drop, seen = [], [], set()
    floor = settings().max_examples
    for item in items:
        test = getattr(item, "obj", None)
        if test is None or not hasattr(test, "hypothesis"):
            drop.append(item)
            continue
        keep.append(item)
        if id(test) not in seen:
            seen.add(id(test))
            own = getattr(test, "_hypothesis_internal_use_settings", settings())
            test._hypothesis_internal_use_settings = settings(  # type: ignore[attr-defined]
                own, max_examples=max(floor, own.max_examples * FUZZ_FACTOR), derandomize=False)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


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
