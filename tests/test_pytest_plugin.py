"""The pytest plugin in a project that is not simstack's (issue 19, items 3 and 4).

Each test lays out a small project in a temporary folder, with no conftest
and no ``-p``, and runs plain ``pytest`` there in a subprocess: installing
simstack (the ``pytest11`` entry point) is all it takes. Files named on the
command line and folders named there are collected whatever they are
called; the ``simstack_scenarios`` patterns decide for the rest; YAML that
is not a scenario is passed over, a broken scenario still fails.
"""

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import SCENARIOS

PING = SCENARIOS / "ping.yaml"
COMPOSE = "services:\n  web:\n    image: nginx\n    ports: ['8080:80']\n"
BROKEN = "description: a scenario with a typo\nsteps:\n  - injekt: {arp: {op: request}}\n"


def pytest_in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args], cwd=folder,
                          capture_output=True, text=True, timeout=120)


def project(tmp_path: Path, folder: str, ini: str = "") -> Path:
    root = tmp_path / "proj"
    (root / folder).mkdir(parents=True)
    shutil.copy(PING, root / folder / "ping.yaml")
    (root / folder / "docker-compose.yml").write_text(COMPOSE)
    if ini:
        (root / "pytest.ini").write_text(f"[pytest]\n{ini}\n")
    return root


def test_installing_simstack_registers_the_plugin(tmp_path: Path) -> None:
    root = project(tmp_path, "scenarios")
    r = pytest_in(root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASSED scenarios/ping.yaml::ping" in r.stdout
    assert "1 passed" in r.stdout
    assert "docker-compose" not in r.stdout  # beside the scenarios, and passed over


def test_a_file_named_on_the_command_line_is_collected_from_any_folder(tmp_path: Path) -> None:
    root = project(tmp_path, "netcases")
    r = pytest_in(root, "netcases/ping.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASSED netcases/ping.yaml::ping" in r.stdout


def test_a_folder_named_on_the_command_line_is_searched(tmp_path: Path) -> None:
    root = project(tmp_path, "netcases")
    (root / "netcases" / "broken.yaml").write_text(BROKEN)
    r = pytest_in(root, "netcases")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "PASSED netcases/ping.yaml::ping" in r.stdout
    assert "broken.yaml:3: unknown step key 'injekt'" in r.stdout  # a broken scenario still fails
    assert "docker-compose" not in r.stdout
    assert "1 failed, 1 passed" in r.stdout


def test_the_ini_patterns_name_the_scenario_folders(tmp_path: Path) -> None:
    root = project(tmp_path, "netcases", ini="simstack_scenarios = netcases/*.yaml")
    (root / "other").mkdir()
    shutil.copy(PING, root / "other" / "elsewhere.yaml")  # matches no pattern
    r = pytest_in(root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASSED netcases/ping.yaml::ping" in r.stdout
    assert "elsewhere" not in r.stdout and "docker-compose" not in r.stdout
    assert "1 passed" in r.stdout


def test_without_a_pattern_a_yaml_file_elsewhere_is_not_a_test(tmp_path: Path) -> None:
    root = project(tmp_path, "netcases")
    r = pytest_in(root)
    assert r.returncode == 5, r.stdout + r.stderr  # nothing collected: the default wants a scenarios folder


def test_an_explicit_p_is_still_accepted(tmp_path: Path) -> None:
    root = project(tmp_path, "scenarios")
    r = pytest_in(root, "-p", "simstack.engine.pytest_plugin")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout
