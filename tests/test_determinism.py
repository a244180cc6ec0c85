"""The test suite gives the same verdict every run: Hypothesis draws the same examples each time (tests/conftest.py)."""

import os
import subprocess
import sys

import pytest
from conftest import PROFILE_ENV, ROOT, fuzzing
from hypothesis import given, settings
from hypothesis import strategies as st


def _draws() -> list[bytes]:
    seen: list[bytes] = []

    @settings(max_examples=50)  # as the tests write it: their own count, the profile's everything else
    @given(st.binary(min_size=1, max_size=64))
    def probe(data: bytes) -> None:
        seen.append(data)

    probe()
    return seen


@pytest.mark.skipif(fuzzing(), reason="make fuzz draws at random on purpose")
def test_hypothesis_draws_the_same_examples_every_run() -> None:
    first, second = _draws(), _draws()
    assert len(first) > 10
    assert first == second


@pytest.mark.skipif(fuzzing(), reason="make fuzz draws at random on purpose")
def test_the_profile_is_derandomized_without_a_database() -> None:
    current = settings()
    assert current.derandomize and current.database is None
    assert current.deadline is None  # a slow machine must not turn a pass into a failure


def test_make_fuzz_selects_the_random_profile() -> None:
    code = "import conftest; from hypothesis import settings; s = settings(); print(s.derandomize, s.max_examples)"
    env = {**os.environ, PROFILE_ENV: "fuzz", "SIMSTACK_FUZZ_EXAMPLES": "777"}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "tests", env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "777"]
