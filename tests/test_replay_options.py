"""replay and import as CI jobs and shell pipelines use them (issue 19, items 6, 7, 9 and 11).

Folders as arguments, ``--pcap -`` into tshark, ``-q``, ``--json``,
``--junit-xml`` read back by a JUnit parser, ``--seed``, a subcommand's own
usage for an option it does not know, ``import -o -`` and the header that
records the command as it was typed.
"""

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SCENARIOS, require_tool

PING = SCENARIOS / "ping.yaml"
COMPOSE = "services:\n  web:\n    image: nginx\n    ports: ['8080:80']\n"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "simstack", *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def failing_copy(folder: Path) -> Path:
    """ping.yaml expecting seq 2 in the reply: fails at its step 4."""
    text = PING.read_text()
    bad = folder / "ping-wrong-seq.yaml"
    bad.write_text("".join(ln.replace("seq: 1", "seq: 2") if "echo-reply" in ln else ln for ln in text.splitlines(True)))
    return bad


def test_a_folder_replays_the_scenarios_under_it(tmp_path: Path) -> None:
    (tmp_path / "net" / "deep").mkdir(parents=True)
    shutil.copy(PING, tmp_path / "net" / "ping.yaml")
    shutil.copy(SCENARIOS / "udp" / "echo.yaml", tmp_path / "net" / "deep" / "echo.yml")
    (tmp_path / "net" / "docker-compose.yml").write_text(COMPOSE)  # not a scenario: passed over
    (tmp_path / "net" / "notes.txt").write_text("not yaml")
    r = run("replay", "net", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == ["PASS net/deep/echo.yml", "PASS net/ping.yaml", "2 passed, 0 failed"], r.stdout
    assert r.stderr == ""


def test_the_repository_s_scenarios_folder_replays_whole() -> None:
    r = run("replay", "-q", str(SCENARIOS))
    count = sum(1 for p in SCENARIOS.rglob("*.y*ml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == f"{count} passed, 0 failed\n"


def test_pcap_dash_writes_the_capture_to_stdout_for_tshark() -> None:
    tshark = require_tool("tshark")
    cmd = f"{shlex.quote(sys.executable)} -m simstack replay --pcap - {shlex.quote(str(PING))} | {tshark} -r -"
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 4, r.stdout
    assert "Who has 10.0.0.1? Tell 10.0.0.2" in lines[0] and "10.0.0.1 is at aa:bb:cc:dd:ee:ff" in lines[1]
    assert "Echo (ping) request" in lines[2] and "Echo (ping) reply" in lines[3]
    # the verdicts go to stderr, out of the capture's way
    assert f"PASS {PING}" in r.stderr and "1 passed, 0 failed" in r.stderr
    assert not (Path.cwd() / "-").exists()


def test_quiet_prints_the_summary_alone(tmp_path: Path) -> None:
    bad = failing_copy(tmp_path)
    r = run("replay", "-q", str(PING), str(bad))
    assert r.returncode == 1
    assert r.stdout == "1 passed, 1 failed\n"


def test_json_is_one_object_per_scenario(tmp_path: Path) -> None:
    bad = failing_copy(tmp_path)
    broken = tmp_path / "broken.yaml"
    broken.write_text("description: x\nsteps:\n  - injekt: {}\n")
    r = run("replay", "--json", str(PING), str(bad), str(broken))
    assert r.returncode == 2
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(row["path"], row["verdict"]) for row in rows] == [(str(PING), "pass"), (str(bad), "fail"),
                                                                (str(broken), "invalid")]
    assert all(isinstance(row["duration"], float) and row["duration"] >= 0 for row in rows)
    assert rows[0]["step"] is None and rows[0]["message"] == ""
    line = next(i for i, ln in enumerate(bad.read_text().splitlines(), 1) if "seq: 2," in ln) - 3
    assert (rows[1]["step"], rows[1]["line"]) == (4, line)
    assert rows[1]["message"].startswith(f"{bad}:{line}: step 4 (expect) failed")
    assert (rows[2]["step"], rows[2]["line"]) == (None, 3)


def test_junit_xml_reads_back_with_a_junit_parser(tmp_path: Path) -> None:
    from junitparser import Error, Failure, JUnitXml

    bad = failing_copy(tmp_path)
    missing = tmp_path / "nothere.yaml"
    report = tmp_path / "report.xml"
    r = run("replay", "--junit-xml", str(report), str(PING), str(bad), str(missing))
    assert r.returncode == 2
    assert r.stdout.splitlines()[-1] == "1 passed, 2 failed"  # the usual output stays
    xml = JUnitXml.fromfile(str(report))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    assert (suite.tests, suite.failures, suite.errors) == (3, 1, 1)
    cases = {case.name: case for case in suite}
    assert set(cases) == {str(PING), str(bad), str(missing)}
    assert cases[str(PING)].is_passed
    (failure,) = cases[str(bad)].result
    assert isinstance(failure, Failure) and "step 4 (expect) failed" in failure.message
    assert "icmp.seq" in (failure.text or "")
    (error,) = cases[str(missing)].result
    assert isinstance(error, Error) and error.message == f"{missing}: cannot read: No such file or directory"


def _ids(out: str) -> list[str]:
    return re.findall(r"id (\d+), offset", out)


def test_seed_overrides_the_scenario_s_own() -> None:
    plain = run("replay", "-vv", str(PING)).stdout
    same = run("replay", "-vv", "--seed", "1", str(PING)).stdout  # ping.yaml keeps the default seed, 1
    other = run("replay", "-vv", "--seed", "7", str(PING)).stdout
    assert _ids(plain) == _ids(same) and len(_ids(plain)) == 2
    assert _ids(other)[0] == _ids(plain)[0]  # the injected request's id is the file's
    assert _ids(other)[1] != _ids(plain)[1]  # the stack's reply draws its id from the seed


@pytest.mark.parametrize(("command", "usage"), [(["replay", str(PING), "--bogus"], "usage: simstack replay"),
                                                (["import", "x.pcap", "-o", "y.yaml", "--stack", "10.0.0.1", "-Z"],
                                                 "usage: simstack import"),
                                                (["graph", "tcp", "-o", "t.mmd", "--wat"], "usage: simstack graph")])
def test_an_unknown_option_gets_the_subcommand_s_usage(command: list[str], usage: str) -> None:
    r = run(*command)
    assert r.returncode == 2
    assert r.stderr.startswith(usage), r.stderr
    assert f"simstack {command[0]}: error: unrecognized arguments: {command[-1]}" in r.stderr


def test_import_to_stdout_records_the_command_as_typed(tmp_path: Path) -> None:
    capture = tmp_path / "a capture.pcap"
    assert run("replay", "--pcap", str(capture), str(PING)).returncode == 0
    r = run("import", "a capture.pcap", "-o", "-", "--stack", "10.0.0.1", "--map", "10.0.0.2=10.0.0.9", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0]
    assert first == ("# Imported by simstack from a capture.pcap: simstack import 'a capture.pcap' -o - --stack 10.0.0.1 "
                     "--map 10.0.0.2=10.0.0.9")
    assert r.stderr.startswith("imported 4 frames from a capture.pcap into -")  # the summary stays off the YAML
    assert not (tmp_path / "-").exists()
    scenario = tmp_path / "imported.yaml"
    scenario.write_text(r.stdout)
    assert run("replay", str(scenario)).returncode == 0
