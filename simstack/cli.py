"""The ``simstack`` command: ``replay`` scenarios, or run ``live`` on a TAP device."""

import argparse
import sys

from simstack import __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simstack", description=__doc__)
    p.add_argument("--version", action="version", version=f"simstack {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("replay", help="run scenario files on the simulated wire")
    r.add_argument("files", nargs="+", metavar="FILE")
    r.add_argument("--pcap", metavar="OUT", help="write every frame of the replay to a pcap file")
    r.add_argument("-v", "--verbose", action="store_true", help="print one decoded line per frame")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "replay":
        from simstack.engine.replay import run_files

        try:
            return run_files(args.files, args.pcap, args.verbose)
        except OSError as e:
            print(f"simstack: {e.filename or ''}: {e.strerror}", file=sys.stderr)
            return 2
    return 2
