"""The public suites' sample (../shared/packetdrill) against the verdicts this project expects of it.

Every script in the sample folder is replayed as ``simstack replay`` runs it, and each
verdict must be the one tests/packetdrill_verdicts.txt records: a script that starts
passing shows as plainly as one that stops. The folder is test data beside the clone
(its README says where the scripts come from); without it the test is skipped.
"""

import io
import random
import re
from pathlib import Path

import pytest

from simstack.engine.scenario.packetdrill_translate import import_main
from simstack.engine.scenario.replay import run_files

ROOT = Path(__file__).resolve().parents[1]
SUITES = ROOT.parent / "shared" / "packetdrill"
VERDICTS = Path(__file__).with_name("packetdrill_verdicts.txt")

pytestmark = pytest.mark.skipif(not SUITES.is_dir(), reason=f"no packetdrill sample at {SUITES}")


def _scripts() -> list[Path]:
    return sorted(SUITES.rglob("*.pkt"))


def _expected() -> dict[str, str]:
    out = {}
    for line in VERDICTS.read_text().splitlines():
        if line and not line.startswith("#"):
            _verdict, _, rest = line.partition(" ")
            path = rest.split(": ", 1)[0]
            out[path] = line
    return out


def _replay(paths: list[Path]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_files([str(p) for p in paths], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def replayed() -> tuple[int, str, str]:
    return _replay(_scripts())


def _verdicts(text: str) -> dict[str, str]:
    """path relative to the sample -> its verdict line, relative too."""
    prefix = f"{SUITES}/"
    out = {}
    for line in text.splitlines():
        m = re.match(r"(PASS|FAIL|SKIP) (\S+\.pkt)(: .*)?$", line)
        if m:
            rel = m.group(2).removeprefix(prefix)
            out[rel] = f"{m.group(1)} {rel}{m.group(3) or ''}"
    return out


def test_every_script_has_its_expected_verdict(replayed: tuple[int, str, str]) -> None:
    code, out, err = replayed
    assert err == "", f"scripts that could not be read:\n{err}"
    got = _verdicts(out)
    want = _expected()
    assert set(got) == {str(p.relative_to(SUITES)) for p in _scripts()}, "a script gave no verdict"
    assert set(want) == set(got), f"the verdict list and the folder differ: {sorted(set(want) ^ set(got))}"
    changed = [f"  expected {want[p]}\n  got      {got[p]}" for p in sorted(got) if got[p] != want[p]]
    assert not changed, "verdicts changed (update tests/packetdrill_verdicts.txt on purpose):\n" + "\n".join(changed)
    assert code == (1 if any(v.startswith("FAIL") for v in got.values()) else 0)


def test_the_acceptance_bar(replayed: tuple[int, str, str]) -> None:
    """At least 80% pass; every failure shows what differed, and the last line counts all three."""
    _, out, _ = replayed
    got = _verdicts(out).values()
    passed = sum(v.startswith("PASS") for v in got)
    failed = sum(v.startswith("FAIL") for v in got)
    skipped = sum(v.startswith("SKIP") for v in got)
    assert passed >= 0.8 * len(got), f"{passed} of {len(got)} pass"
    assert out.splitlines()[-1] == f"{passed} passed, {failed} failed, {skipped} skipped"
    assert "Traceback" not in out  # a crash of the stack or the runner is a failure of another kind
    for report in re.split(r"^(?=PASS |FAIL |SKIP )", out, flags=re.MULTILINE):
        if report.startswith("FAIL"):
            assert re.search(r"expected|sockstat|returned|raised", report), report
        if report.startswith("SKIP"):
            assert ": unsupported " in report.splitlines()[0], report


def test_an_imported_script_replays_as_the_script(replayed: tuple[int, str, str], tmp_path: Path) -> None:
    """simstack import writes each passing script as a YAML scenario that passes too."""
    _, out, _ = replayed
    passing = [SUITES / p for p, v in _verdicts(out).items() if v.startswith("PASS")]
    written = []
    for i, script in enumerate(passing):
        target = tmp_path / f"{i:03}-{script.stem}.yaml"
        assert import_main(str(script), str(target), stdout=io.StringIO()) == 0
        written.append(target)
    code, yaml_out, err = _replay(written)
    assert err == "" and code == 0, yaml_out[-3000:] + err
    assert yaml_out.splitlines()[-1] == f"{len(written)} passed, 0 failed"


OVERLAP = "freebsd-tcp-testsuite/rcv-data-segments/overlapping-050-200.pkt"
RST = "freebsd-tcp-testsuite/state-event-engine/rcv-rst-established/rcv-rst-established-left-edge-secure-ipv4.pkt"
# (script, its line as written, the line with one expected value changed, the field the report names)
MUTATIONS = [
    (OVERLAP, "ack 300 win 65401", "ack 301 win 65401", "tcp.ack"),
    (OVERLAP, "ack 800 win 64901", "ack 800 win 64900", "tcp.win"),
    (OVERLAP, "> F.   1:1(0)     ack 801", "> .   1:1(0)     ack 801", "tcp.flags"),
    (OVERLAP, "recv(4, ..., 1024, 0) = 799", "recv(4, ..., 1024, 0) = 798", "len"),
    (RST, "SO_ERROR, [ECONNRESET]", "SO_ERROR, [0]", "getsockopt error"),
]


@pytest.mark.parametrize(("script", "old", "new", "field"), MUTATIONS, ids=[m[3] for m in MUTATIONS])
def test_one_changed_value_in_a_passing_script_fails(tmp_path: Path, script: str, old: str, new: str, field: str) -> None:
    text = (SUITES / script).read_text()
    assert text.count(old) == 1
    copy = tmp_path / Path(script).name  # a changed copy, outside the project
    copy.write_text(text.replace(old, new))
    line = text[:text.index(old)].count("\n") + 1
    code, out, err = _replay([copy])
    assert (code, err) == (1, ""), out + err
    assert out.startswith(f"FAIL {copy}\n{copy}:{line}: step "), out
    assert field in out, out


def test_scripts_with_a_number_or_a_flag_changed_never_crash(tmp_path: Path) -> None:
    """Each script once more with one number or one packet's flags changed at random (seeded): whatever the
    verdict, or an error naming the line, neither the translation nor the runner nor the stack raises."""
    rng = random.Random(14)
    copies = []
    for i, script in enumerate(_scripts()):
        text = script.read_text()
        if i % 2:
            spots = list(re.finditer(r"(?<=[<>] )\s*[FSRP.]+", text))
            new = rng.choice([".", "S", "S.", "F.", "R", "R.", "P.", "SF", "FP."])
        else:
            spots = list(re.finditer(r"\b\d+\b", text))
            new = str(rng.choice([0, 1, 65535, 65536, 4294967295, rng.randint(0, 10**6)]))
        spot = rng.choice(spots)
        copy = tmp_path / f"{i:03}-{script.name}"
        copy.write_text(text[:spot.start()] + new + text[spot.end():])
        copies.append(copy)
    code, out, err = _replay(copies)
    assert "Traceback" not in out + err
    assert code in (0, 1, 2)
    for line in err.splitlines():
        assert re.match(rf"{re.escape(str(tmp_path))}/\S+\.pkt:\d+: \S", line), line
