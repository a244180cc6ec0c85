"""``simstack replay``: run scenario files, print a verdict per file and a summary."""

import sys
from pathlib import Path
from typing import TextIO

from ..wire.pcap import PcapWriter
from .loader import ScenarioError, load
from .runner import Result, Runner, describe

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def run_files(paths: list[str], pcap: str | None = None, verbose: bool = False, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    writer = PcapWriter(Path(pcap).open("wb")) if pcap else None  # noqa: SIM115 - closed in finally
    passed = failed = invalid = 0
    runner: Runner | None = None

    def trace(t: float, direction: str, frame: bytes) -> None:
        if writer:
            writer.write(t, frame)
        if verbose:
            # TCP numbers count from each side's ISN, as tcpdump's do: the ones the runner has learned
            print(f"  {t:10.6f} {direction} {describe(frame, runner.isns if runner else None)}", file=out)

    try:
        for path in paths:
            try:
                scenario = load(path)
                if verbose:
                    print(f"{path}:", file=out)
                runner = Runner(scenario, trace if (writer or verbose) else None)
                result: Result = runner.run()
            except ScenarioError as e:
                print(str(e), file=out)
                invalid += 1
                continue
            if result.passed:
                passed += 1
                print(f"PASS {path}", file=out)
            else:
                failed += 1
                print(f"FAIL {path}\n{result.report}", file=out)
    finally:
        if writer:
            writer.close()
    print(f"{passed} passed, {failed + invalid} failed", file=out)
    if invalid:
        return EXIT_INVALID
    return EXIT_FAILED if failed else EXIT_OK
