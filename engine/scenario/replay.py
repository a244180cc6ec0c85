"""``simstack replay``: run scenario files, print a verdict per file and a summary.

Verdicts (PASS, FAIL and the failure report) and the summary go to ``out``;
a file that cannot be run at all gets one ``FILE:LINE: message`` line on
``err`` and counts as failed, and the files after it still run.
"""

import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ..wire.pcap import PcapWriter
from ..wire.sim import Trace
from .discover import scenario_files
from .framelines import Style, frame_text
from .loader import ScenarioError, load
from .packetdrill_translate import Skip, load_pkt
from .results import Outcome, write_junit
from .runner import Result, Runner

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


class OutputError(Exception):
    """The ``--pcap`` file cannot be written: the message is one line naming it."""


def run_files(paths: list[str], pcap: str | None = None, verbose: bool = False, out: TextIO | None = None,
              err: TextIO | None = None, *, style: Style | None = None, seed: int | None = None, quiet: bool = False,
              json: bool = False, junit: str | None = None, profile: str | None = None) -> int:
    """``pcap`` ``-`` is standard output; ``style`` prints frames as -vv, -e, -x do; ``quiet`` leaves the summary
    line alone; ``json`` prints one object a scenario instead of verdicts and summary; ``junit`` names a JUnit XML file;
    ``profile`` is the stack packetdrill scripts run against (freebsd, linux; default: chosen from each script)."""
    out = out or sys.stdout
    err = err or sys.stderr
    paths = scenario_files(paths)
    if style is not None:
        verbose = True
    style = style or Style()
    outcomes: list[Outcome] = []

    def record(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if json:
            print(outcome.as_json(), file=out)

    writer = _open_pcap(pcap) if pcap else None
    running: list[Runner] = []  # the runner of the file being replayed: -v counts TCP numbers from its ISNs

    def trace(t: float, direction: str, frame: bytes) -> None:
        if writer:
            try:
                writer.write(t, frame)
            except OSError as e:
                raise OutputError(f"cannot write pcap {pcap}: {e.strerror or e}") from None
        if verbose:
            # TCP numbers count from each side's ISN, as tcpdump's do: the ones the runner has learned
            prefix = f"  {t:10.6f} {direction} "
            text = frame_text(frame, running[0].isns if running else None, style)
            print(prefix + text.replace("\n\t", "\n    ").replace("\n", "\n" + " " * len(prefix)), file=out)

    try:
        counts = _run(paths, trace if (writer or verbose) else None, verbose, out, err, running, seed=seed,
                      quiet=quiet or json, record=record, profile=profile)
    except BaseException:
        if writer:
            with contextlib.suppress(OSError):  # the first error is the one to report
                writer.close()
        raise
    if writer:
        try:
            writer.close()
        except OSError as e:
            raise OutputError(f"cannot write pcap {pcap}: {e.strerror or e}") from None
    passed, failed, invalid, skipped = counts
    if junit is not None:
        try:
            write_junit(outcomes, junit)
        except OSError as e:
            raise OutputError(f"cannot write {junit}: {e.strerror or e}") from None
    if not json:
        # A packetdrill script may be skipped (it needs what simstack does not offer): never a pass
        tail = f", {skipped} skipped" if skipped or any(is_packetdrill(p) for p in paths) else ""
        print(f"{passed} passed, {failed + invalid} failed{tail}", file=out)
    if invalid:
        return EXIT_INVALID
    return EXIT_FAILED if failed else EXIT_OK


def _run(paths: list[str], trace: Trace | None, verbose: bool, out: TextIO, err: TextIO,
         running: list[Runner] | None = None, *, seed: int | None = None, quiet: bool = False,
         record: Callable[[Outcome], None] | None = None, profile: str | None = None) -> tuple[int, int, int, int]:
    """(passed, failed, invalid, skipped) over ``paths``, each file run on its own; ``running`` holds the runner at work.

    ``seed`` replaces every scenario's own; ``record`` gets each file's outcome; ``quiet`` prints no verdicts."""
    passed = failed = invalid = skipped = 0
    record = record or (lambda outcome: None)
    for path in paths:
        started = time.perf_counter()
        try:
            if Path(path).is_dir():  # scenario_files left it: nothing in it to run
                raise ScenarioError(path, 0, "no scenario in this folder (*.yaml or *.yml with a description or steps, *.pkt)")
            if is_packetdrill(path):
                try:
                    scenario = load_pkt(path, profile)
                except Skip as e:
                    skipped += 1
                    if not quiet:
                        print(f"SKIP {path}: unsupported {e.what}", file=out)
                    record(Outcome(path, "skip", time.perf_counter() - started, f"unsupported {e.what}"))
                    continue
            else:
                scenario = load(path)
            if seed is not None:
                scenario.seed = seed
            if verbose:
                print(f"{path}:", file=out)
            runner = Runner(scenario, trace)
            if running is not None:
                running[:] = [runner]
            result: Result = runner.run()
        except ScenarioError as e:
            print(str(e), file=err)
            invalid += 1
            record(Outcome(path, "invalid", time.perf_counter() - started, str(e)))
            continue
        except OSError as e:  # the system refused the scenario something (a port, say): this file alone fails
            print(f"{path}: {e.strerror or e}", file=err)
            invalid += 1
            record(Outcome(path, "invalid", time.perf_counter() - started, f"{path}: {e.strerror or e}"))
            continue
        if result.passed:
            passed += 1
            if not quiet:
                print(f"PASS {path}", file=out)
            record(Outcome(path, "pass", time.perf_counter() - started))
        else:
            failed += 1
            if not quiet:
                print(f"FAIL {path}\n{result.report}", file=out)
            record(Outcome(path, "fail", time.perf_counter() - started, result.report))
    return passed, failed, invalid, skipped


def is_packetdrill(path: str) -> bool:
    return path.endswith(".pkt")


def _open_pcap(path: str) -> PcapWriter:
    try:
        # "-": standard output, as tcpdump -w - writes; closing the writer leaves fd 1 open
        stream = (open(sys.stdout.fileno(), "wb", closefd=False) if path == "-"  # noqa: SIM115 - closed by the writer
                  else Path(path).open("wb"))  # noqa: SIM115
    except OSError as e:
        raise OutputError(f"cannot write pcap {path}: {e.strerror or e}") from None
    try:
        return PcapWriter(stream)
    except OSError as e:
        with contextlib.suppress(OSError):
            stream.close()
        raise OutputError(f"cannot write pcap {path}: {e.strerror or e}") from None
