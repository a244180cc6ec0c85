"""The ``simstack`` command: ``replay``, ``live``, ``import`` and ``graph``."""

import argparse
import contextlib
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from typing import Any

from simstack import __version__

DESCRIPTION = ("A user-space TCP/IP stack. replay runs scenario files on a simulated wire, live runs the stack on a "
               "TAP device, import turns a capture into a scenario, graph draws a protocol's state machine.")
EPILOG = "Each command has its own help: simstack COMMAND --help. Documentation: README.md and docs/ in the source."


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simstack", description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("-V", "--version", action="version", version=f"simstack {__version__}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_replay_parser(sub)
    add_live_parser(sub)
    add_import_parser(sub)
    g = sub.add_parser("graph", help="draw a protocol's state machine from its declaration",
                       description="Draw machine NAME (arp, tcp) from its table; the format follows FILE's suffix: .mmd "
                                   "(Mermaid), .dot, .svg, .png (Graphviz). Exit 0 written, 2 unknown name or suffix.")
    g.add_argument("name", metavar="NAME", help="the machine to draw: arp or tcp")
    g.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="the file to write; its suffix (.mmd, .dot, .svg, .png) picks the format")
    return p


def add_replay_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    r = sub.add_parser(
        "replay", help="run scenario files on the simulated wire",
        description="Run each scenario on a fresh stack on the virtual clock and print PASS or FAIL per file and a "
                    "summary. Exit 0 all passed, 1 a scenario failed, 2 a file was invalid or unreadable.")
    r.add_argument("files", nargs="+", metavar="FILE",
                   help="scenario files, or folders searched recursively for *.yaml, *.yml and *.pkt")
    r.add_argument("--pcap", metavar="OUT", help="write every frame of the replay to a pcap file; - is standard output "
                                                 "(verdicts then go to standard error)")
    r.add_argument("-v", "--verbose", action="count", default=0,
                   help="print one decoded line per frame; -vv adds the IP header (TTL, id, flags, length)")
    r.add_argument("-e", dest="link", action="store_true", help="print each frame's MAC addresses and EtherType (implies -v)")
    r.add_argument("-x", dest="hex", action="store_true", help="print each frame's network layer in hex (implies -v)")
    r.add_argument("-q", "--quiet", action="store_true", help="print the summary line alone, no verdict per file")
    r.add_argument("--json", action="store_true",
                   help="print one JSON object per scenario (path, verdict, step, line, message, duration) and no "
                        "summary")
    r.add_argument("--junit-xml", metavar="FILE", help="also write the verdicts as JUnit XML, for CI servers")
    r.add_argument("--seed", type=int, metavar="N", help="seed every scenario's random numbers with N, not its own")
    r.add_argument("--profile", choices=["freebsd", "linux"],
                   help="for packetdrill scripts (.pkt): the stack they expect (default: chosen from each script)")


def add_import_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    im = sub.add_parser(
        "import", help="turn a pcap or pcapng capture, or a packetdrill script, into a scenario",
        description="Make a scenario of CAPTURE in which simstack plays the host --stack IP: frames sent to it are "
                    "injected, frames it sent are expected (see docs/recording.md); or of a packetdrill script "
                    "(FILE.pkt), which replays as the script does. Exit 0 written, 2 unusable input.")
    im.add_argument("capture", metavar="CAPTURE", help="a pcap or pcapng file of Ethernet frames, or a .pkt script")
    im.add_argument("-o", "--output", required=True, metavar="OUT.yaml", help="the scenario file to write; - is "
                                                                              "standard output")
    im.add_argument("--stack", metavar="IP", help="the captured host that simstack plays (captures only)")
    im.add_argument("--profile", choices=["freebsd", "linux"],
                    help="for a .pkt script: the stack it expects (default: chosen from the script)")
    im.add_argument("--map", action="append", default=[], metavar="OLD=NEW",
                    help="move an IPv4 or MAC address everywhere (repeatable)")
    im.add_argument("--strict", action="store_true", help="also expect the host's IP ID, TTL, DF and TOS")
    im.add_argument("--ip", default="10.0.0.1/24", metavar="ADDR/PREFIX",
                    help="simstack's address, which --stack's becomes (default %(default)s)")
    im.add_argument("--mac", default="aa:bb:cc:dd:ee:ff", metavar="MAC",
                    help="simstack's MAC, which --stack's becomes (default %(default)s)")


def add_live_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    lv = sub.add_parser(
        "live", help="run the stack on a TAP device until Ctrl-C",
        description="Attach the stack to the TAP IFNAME (created, and removed on exit, when it does not exist) "
                    "and answer ARP, ping and the built-in services (echo and discard on UDP and TCP, http on port 80) "
                    "on it until SIGINT or SIGTERM; or, with --ping, ping from the stack.")
    lv.add_argument("ifname", metavar="IFNAME", nargs="+",
                    help="TAP device name, e.g. tap0; several make one interface each (a router with --forward)")
    lv.add_argument("--ip", default="10.0.0.1/24", metavar="ADDR/PREFIX", help="the stack's address (default %(default)s)")
    lv.add_argument("--mac", default="aa:bb:cc:dd:ee:ff", metavar="MAC", help="the stack's MAC address (default %(default)s)")
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
    lv.add_argument("--serve", action="append", metavar="SERVICE",
                    help="run a built-in service: echo (UDP and TCP port 7), discard (UDP and TCP port 9), http "
                         "(port 80, a status page) or http:DIR (port 80, the files under DIR); repeatable "
                         "(default: echo, discard, http)")
    lv.add_argument("--no-serve", action="store_true", help="run no built-in service")
    lv.add_argument("--tcp-msl", type=float, metavar="SECONDS",
                    help="TCP's maximum segment lifetime: TIME-WAIT lasts twice this (default 30)")
    lv.add_argument("--tcp-rto-min", type=float, metavar="SECONDS",
                    help="the floor of TCP's retransmission timeout (default 0.2, as Linux; RFC 6298 2.4 asks for 1)")
    lv.add_argument("--tcp-options", metavar="LIST", default="ws,ts,sack",
                    help="the TCP options offered on a SYN: some of ws (window scale 7, RFC 7323 2), ts "
                         "(timestamps, RFC 7323 3) and sack (RFC 2018) joined by commas, or none (default: ws,ts,sack)")
    lv.add_argument("--mtu", type=int, metavar="BYTES",
                    help="set the TAP's MTU first (default: keep the link's, 1500 for a new TAP); TCP's MSS is 40 less")
    lv.add_argument("--offload", action="store_true",
                    help="open the TAP with a virtio-net header, as QEMU does for virtio-net: the kernel and the stack "
                         "pass TCP segments of up to 64 KB and leave their checksums partial (docs/live.md)")
    lv.add_argument("--record", metavar="OUT.yaml", help="on exit, write the session as a replayable scenario")
    lv.add_argument("--record-limit", type=int, metavar="FRAMES",
                    help="record at most FRAMES frames, and say so when the session goes past them (default 5000)")
    lv.add_argument("--busy-poll", type=int, default=0, metavar="USEC",
                    help="after the last frame, poll for USEC microseconds (0 to 1000000) before sleeping, as "
                         "SO_BUSY_POLL: lower latency for a CPU kept busy that long (default 0: off)")
    pg = lv.add_argument_group("ping from the stack")
    pg.add_argument("--ping", metavar="IP", help="send echo requests to IP, print replies like ping(8), then exit")
    pg.add_argument("-c", "--count", type=int, default=5, metavar="N", help="requests to send (default %(default)s)")
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
    add_router_arguments(lv)


def add_router_arguments(lv: argparse.ArgumentParser) -> None:
    """Several interfaces, forwarding, lab segments, impairment and drop rules (docs/live.md, "Router")."""
    rt = lv.add_argument_group("router: several IFNAMEs, forwarding, a lab of several segments (docs/live.md)")
    rt.add_argument("--addr", action="append", default=[], metavar="IFNAME=ADDR/PREFIX",
                    help="the address of one of several IFNAMEs (default 10.0.K.1/24 for the Kth); repeatable")
    rt.add_argument("--forward", action="store_true", help="route datagrams between the interfaces (RFC 1812)")
    rt.add_argument("--route", action="append", default=[], nargs=3, metavar=("NETWORK/PREFIX", "via", "GATEWAY"),
                    help="a static route, as ip-route(8) writes it: --route 192.168.0.0/16 via 10.0.2.254; repeatable")
    rt.add_argument("--lab-segments", type=int, metavar="N",
                    help="with --lab: N bridges, one per IFNAME, each with --lab-clients clients on its subnet and "
                         "simstack their default route (default: one per IFNAME)")
    sh = lv.add_argument_group("the link: impairment and drop rules, drawn from --seed (docs/live.md)")
    sh.add_argument("--impair", metavar="SPEC",
                    help="impair both directions: 'loss=5%%,delay=20ms,jitter=5ms,reorder=10%%,duplicate=1%%,"
                         "corrupt=0.1%%,rate=10mbit'")
    sh.add_argument("--impair-in", metavar="SPEC", help="impair the frames coming in, before the stack sees them")
    sh.add_argument("--impair-out", metavar="SPEC", help="impair the frames the stack sends")
    sh.add_argument("--drop", action="append", default=[], metavar="EXPR",
                    help="drop incoming frames that match, in the scenario language's field names: "
                         "'icmp.type=echo-request,ipv4.src=10.0.1.2', 'udp.dport=9', add ',every=N' to drop every "
                         "Nth match; repeatable, counted per rule")


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


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Arguments; an option the command does not know gets that command's usage, not the top level's."""
    _complete(parser)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        subparsers.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _complete(parser: argparse.ArgumentParser) -> None:
    """Tab completion when argcomplete is installed (the ``completion`` extra) and the shell asks for it."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def _main(argv: list[str] | None) -> int:
    typed = sys.argv[1:] if argv is None else argv
    args = parse(build_parser(), argv)
    if args.command == "replay":
        return replay(args)
    if args.command == "live":
        code = live(args)
        if code == EXIT_BROKEN_PIPE:
            _quiet_stdout()
        return code
    if args.command == "graph":
        from simstack import graph

        return graph.main(args.name, args.output)
    if args.command == "import":
        if args.capture.endswith(".pkt"):
            from simstack.engine.scenario import packetdrill_translate

            return packetdrill_translate.import_main(args.capture, args.output, args.profile)
        if args.stack is None:
            print("simstack import: --stack IP is needed for a capture: the host simstack plays", file=sys.stderr)
            return 2
        from simstack.engine.scenario import importer

        return importer.main(importer.ImportOptions(args.capture, args.output, args.stack, tuple(args.map), args.strict,
                                                    args.ip, args.mac, command=_as_typed(typed)))
    return 2


def replay(args: argparse.Namespace) -> int:
    from simstack.engine.scenario.framelines import Style
    from simstack.engine.scenario.replay import OutputError, run_files

    style = Style(max(args.verbose, 1), args.link, args.hex) if (args.verbose > 1 or args.link or args.hex) else None
    out = sys.stderr if args.pcap == "-" else sys.stdout  # stdout carries the capture
    try:
        return run_files(args.files, args.pcap, args.verbose > 0, out, style=style, seed=args.seed, quiet=args.quiet,
                         json=args.json, junit=args.junit_xml, profile=args.profile)
    except OutputError as e:
        print(f"simstack: {e}", file=sys.stderr)
        return 2


def _as_typed(argv: list[str]) -> str:
    """The command line as a shell would take it back: ``simstack import ...`` with its own quoting."""
    return "simstack " + shlex.join(argv)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit cannot fail again and print a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no stdout to speak of: nothing will be flushed to it either
        pass


def router_options(args: argparse.Namespace) -> dict[str, Any]:
    """LiveOptions' fields for several interfaces, forwarding and the link, from the arguments."""
    return {"more_ifnames": tuple(args.ifname[1:]), "addrs": tuple(args.addr), "forward": args.forward,
            "routes": tuple(" ".join(r) for r in args.route), "impair": args.impair, "impair_in": args.impair_in,
            "impair_out": args.impair_out, "drops": tuple(args.drop), "lab_segments": args.lab_segments}


@contextlib.contextmanager
def _interrupts_held() -> Iterator[list[int]]:
    """Hold SIGINT while the live modules load; the list says whether it came.

    A library's import may catch every exception, KeyboardInterrupt included:
    a Ctrl-C there was swallowed, and the session went on to run as if none
    had come. Held here, it is acted on once the imports are done.
    """
    caught: list[int] = []
    held = (signal.SIGINT,)
    previous = {s: signal.signal(s, lambda signum, _frame: caught.append(signum)) for s in held}
    try:
        yield caught
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _unraisable_to_log(info: "sys.UnraisableHookArgs") -> None:
    """A destructor's error after a signal cut a library's object short (pyroute2's event loop, say): a debug
    line, not a traceback on the user's terminal; the session has already been undone by then."""
    import logging

    logging.getLogger("simstack").debug("ignored in %r: %s", info.object, info.exc_value)


def live(args: argparse.Namespace) -> int:
    import logging

    sys.unraisablehook = _unraisable_to_log
    with _interrupts_held() as caught:
        from simstack.engine.api.services import DEFAULT_SERVICES
        from simstack.engine.live.session import EXIT_SETUP, LiveOptions, run
        from simstack.engine.wire.errors import SetupError
    if caught:
        return EXIT_INTERRUPTED

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("simstack: %(levelname)s: %(message)s"))
    logger = logging.getLogger("simstack")
    logger.addHandler(handler)
    logger.setLevel(args.log_level.upper())
    opts = LiveOptions(args.ifname[0], args.ip, args.mac, args.gateway, args.host_ip, args.host_config, args.pcap,
                       args.verbose, args.seed, args.ping, args.count, args.interval, args.size, args.linger,
                       () if args.no_serve else tuple(args.serve or DEFAULT_SERVICES), args.record,
                       lab=args.lab, lab_clients=args.lab_clients, lab_route=args.lab_route, tcp_msl=args.tcp_msl,
                       tcp_rto_min=args.tcp_rto_min, tcp_options=args.tcp_options, record_limit=args.record_limit,
                       offload=args.offload, mtu=args.mtu, busy_poll=args.busy_poll,
                       **router_options(args))
    try:
        return run(opts, sys.stdout, sys.stderr)
    except SetupError as e:
        print(f"simstack: {e}", file=sys.stderr)
        return EXIT_SETUP
    except KeyboardInterrupt:  # Ctrl-C before the loop took over the signal
        return EXIT_INTERRUPTED
