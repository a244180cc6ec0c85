"""``simstack replay``: run scenario files, print a verdict per file and a summary.

Verdicts (PASS, FAIL and the failure report) and the summary go to ``out``;
a file that cannot be run at all gets one ``FILE:LINE: message`` line on
``err`` and counts as failed, and the files after it still run.
"""

import contextlib
import sys
from pathlib import Path
from typing import TextIO

from ..wire.pcap import PcapWriter
from ..wire.sim import Trace
from .loader import ScenarioError, load
from .packetdrill_translate import Skip, load_pkt
from .runner import Result, Runner, describe

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


class OutputError(Exception):
    """The ``--pcap`` file cannot be written: the message is one line naming it."""


def run_files(paths: list[str], pcap: str | None = None, verbose: bool = False, out: TextIO | None = None,
              err: TextIO | None = None, profile: str | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
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
            print(f"  {t:10.6f} {direction} {describe(frame, running[0].isns if running else None)}", file=out)

    try:
        counts = _run(paths, trace if (writer or verbose) else None, verbose, out, err, running, profile)
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
    # A packetdrill script may be skipped (it needs what simstack does not offer): never a pass
    tail = f", {skipped} skipped" if skipped or any(is_packetdrill(p) for p in paths) else ""
    print(f"{passed} passed, {failed + invalid} failed{tail}", file=out)
    if invalid:
        return EXIT_INVALID
    return EXIT_FAILED if failed else EXIT_OK


def _run(paths: list[str], trace: Trace | None, verbose: bool, out: TextIO, err: TextIO,
         running: list[Runner] | None = None, profile: str | None = None) -> tuple[int, int, int, int]:
    """(passed, failed, invalid, skipped) over ``paths``, each file run on its own; ``running`` holds the runner at work."""
    passed = failed = invalid = skipped = 0
    for path in paths:
        try:
            if is_packetdrill(path):
                try:
                    scenario = load_pkt(path, profile)
                except Skip as e:
                    print(f"SKIP {path}: unsupported {e.what}", file=out)
                    skipped += 1
                    continue
            else:
                scenario = load(path)
            if verbose:
                print(f"{path}:", file=out)
            runner = Runner(scenario, trace)
            if running is not None:
                running[:] = [runner]
            result: Result = runner.run()
        except ScenarioError as e:
            print(str(e), file=err)
            invalid += 1
            continue
        except OSError as e:  # the system refused the scenario something (a port, say): this file alone fails
            print(f"{path}:0: {e.strerror or e}", file=err)
            invalid += 1
            continue
        if result.passed:
            passed += 1
            print(f"PASS {path}", file=out)
        else:
            failed += 1
            print(f"FAIL {path}\n{result.report}", file=out)
    return passed, failed, invalid, skipped


def is_packetdrill(path: str) -> bool:
    return path.endswith(".pkt")


def _open_pcap(path: str) -> PcapWriter:
    try:
        stream = Path(path).open("wb")  # noqa: SIM115 - closed by the writer
    except OSError as e:
        raise OutputError(f"cannot write pcap {path}: {e.strerror or e}") from None
    try:
        return PcapWriter(stream)
    except OSError as e:
        with contextlib.suppress(OSError):
            stream.close()
        raise OutputError(f"cannot write pcap {path}: {e.strerror or e}") from None
