"""The ``simstack`` command: ``replay`` scenarios, or run ``live`` on a TAP device."""

import argparse
import os
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

    add_live_parser(sub)
    add_import_parser(sub)
    g = sub.add_parser("graph", help="draw a protocol's state machine from its declaration",
                       description="Draw machine NAME (arp, tcp) from its table; the format follows FILE's suffix: .mmd "
                                   "(Mermaid), .dot, .svg, .png (Graphviz). Exit 0 written, 2 unknown name or suffix.")
    g.add_argument("name", metavar="NAME")
    g.add_argument("-o", "--output", required=True, metavar="FILE")
    return p


def add_import_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    im = sub.add_parser(
        "import", help="turn a pcap or pcapng capture into a scenario",
        description="Make a scenario of CAPTURE in which simstack plays the host --stack IP: frames sent to it are "
                    "injected, frames it sent are expected (see docs/recording.md). Exit 0 written, 2 unusable input.")
    im.add_argument("capture", metavar="CAPTURE", help="a pcap or pcapng file of Ethernet frames")
    im.add_argument("-o", "--output", required=True, metavar="OUT.yaml", help="the scenario file to write")
    im.add_argument("--stack", required=True, metavar="IP", help="the captured host that simstack plays")
    im.add_argument("--map", action="append", default=[], metavar="OLD=NEW",
                    help="move an IPv4 or MAC address everywhere (repeatable)")
    im.add_argument("--strict", action="store_true", help="also expect the host's IP ID, TTL, DF and TOS")
    im.add_argument("--ip", default="10.0.0.1/24", metavar="ADDR/PREFIX",
                    help="simstack's address, which --stack's becomes (default %(default)s)")
    im.add_argument("--mac", default="aa:bb:cc:dd:ee:ff", help="simstack's MAC, which --stack's becomes (default %(default)s)")


def add_live_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    lv = sub.add_parser(
        "live", help="run the stack on a TAP device until Ctrl-C",
        description="Attach the stack to the TAP IFNAME (created, and removed on exit, when it does not exist) "
                    "and answer ARP and ping on it until SIGINT or SIGTERM; or, with --ping, ping from the stack.")
    lv.add_argument("ifname", metavar="IFNAME", help="TAP device name, e.g. tap0")
    lv.add_argument("--ip", default="10.0.0.1/24", metavar="ADDR/PREFIX", help="the stack's address (default %(default)s)")
    lv.add_argument("--mac", default="aa:bb:cc:dd:ee:ff", help="the stack's MAC address (default %(default)s)")
    lv.add_argument("--gateway", metavar="IP", help="next hop for destinations off the subnet")
    lv.add_argument("--host-ip", default="10.0.0.2/24", metavar="ADDR/PREFIX",
                    help="address for the kernel's side of a TAP simstack creates (default %(default)s)")
    lv.add_argument("--no-host-config", dest="host_config", action="store_false",
                    help="leave the kernel's side of a created TAP without an address")
    lv.add_argument("--pcap", metavar="FILE", help="write every frame in and out to FILE, flushed per frame")
    lv.add_argument("-v", "--verbose", action="store_true", help="print one decoded line per frame")
    lv.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                    help="diagnostics on stderr (default %(default)s)")
    lv.add_argument("--seed", type=int, metavar="N", help="seed for the stack's random numbers (default: random)")
    lv.add_argument("--serve", action="append", choices=["echo", "discard"], metavar="SERVICE",
                    help="run a built-in UDP service: echo (port 7) or discard (port 9); repeatable "
                         "(default: both)")
    lv.add_argument("--no-serve", action="store_true", help="run no built-in service")
    lv.add_argument("--record", metavar="OUT.yaml", help="on exit, write the session as a replayable scenario")
    lv.add_argument("--record-limit", type=int, metavar="FRAMES",
                    help="record at most FRAMES frames, and say so when the session goes past them (default 5000)")
    pg = lv.add_argument_group("ping from the stack")
    pg.add_argument("--ping", metavar="IP", help="send echo requests to IP, print replies like ping(8), then exit")
    pg.add_argument("-c", "--count", type=int, default=5, help="requests to send (default %(default)s)")
    pg.add_argument("-i", "--interval", type=float, default=1.0, metavar="SECONDS",
                    help="time between requests (default %(default)s)")
    pg.add_argument("-s", "--size", type=int, default=56, metavar="BYTES", help="echo payload size (default %(default)s)")
    pg.add_argument("-W", "--linger", type=float, metavar="SECONDS",
                    help="how long to wait for answers after the last request (default: until ARP gives up, 4 s)")
    lb = lv.add_argument_group("lab: client hosts in network namespaces, on a bridge with the stack (docs/live.md)")
    lb.add_argument("--lab", nargs="?", const="simstack", metavar="NAME",
                    help="create bridge NAME-br with the TAP and client namespaces NAME-1..NAME-N on it, removed on "
                         "exit; the TAP's kernel side gets no address (NAME default: simstack)")
    lb.add_argument("--lab-clients", type=int, metavar="N", help="number of client namespaces (default 1)")
    lb.add_argument("--lab-route", action="store_true",
                    help="give clients a default route via the stack (a host, not a router: it forwards nothing)")


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C ended
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of stdout went away (``| head``), as for any filter


def main(argv: list[str] | None = None) -> int:
    """Every command; whatever ends it early ends it with an exit status, not a traceback."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C before a command took the signal over, while modules load, say
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "replay":
        from simstack.engine.scenario.replay import OutputError, run_files

        try:
            return run_files(args.files, args.pcap, args.verbose)
        except OutputError as e:
            print(f"simstack: {e}", file=sys.stderr)
            return 2
    if args.command == "live":
        code = live(args)
        if code == EXIT_BROKEN_PIPE:
            _quiet_stdout()
        return code
    if args.command == "graph":
        from simstack import graph

        return graph.main(args.name, args.output)
    if args.command == "import":
        from simstack.engine.scenario import importer

        return importer.main(importer.ImportOptions(args.capture, args.output, args.stack, tuple(args.map), args.strict,
                                                    args.ip, args.mac))
    return 2


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit cannot fail again and print a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no stdout to speak of: nothing will be flushed to it either
        pass


def live(args: argparse.Namespace) -> int:
    import logging

    from simstack.engine.live.session import EXIT_SETUP, LiveOptions, run
    from simstack.engine.wire.errors import SetupError

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("simstack: %(levelname)s: %(message)s"))
    logger = logging.getLogger("simstack")
    logger.addHandler(handler)
    logger.setLevel(args.log_level.upper())
    opts = LiveOptions(args.ifname, args.ip, args.mac, args.gateway, args.host_ip, args.host_config, args.pcap,
                       args.verbose, args.seed, args.ping, args.count, args.interval, args.size, args.linger,
                       () if args.no_serve else tuple(args.serve or ("echo", "discard")), args.record,
                       lab=args.lab, lab_clients=args.lab_clients, lab_route=args.lab_route, record_limit=args.record_limit)
    try:
        return run(opts, sys.stdout, sys.stderr)
    except SetupError as e:
        print(f"simstack: {e}", file=sys.stderr)
        return EXIT_SETUP
    except KeyboardInterrupt:  # Ctrl-C before the loop took over the signal
        return EXIT_INTERRUPTED
