"""``simstack live``: set up a TAP, run the stack on it until a signal, tear it all down.

Setup runs in the order that leaves the least behind when a step fails:
arguments first (no side effects), then the pcap file, then netlink's view
of the name, then the TAP itself, then link state and the kernel-side
address. Every step registers its undo at once, so a failure anywhere, or a
signal, unwinds exactly what was done.
"""

import contextlib
import errno
import gc
import logging
import math
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any, TextIO, TypeVar

from simstack.protocols.addresses import AddressError, check_stack_addresses, ip_to_bytes, mac_to_bytes, parse_interface
from simstack.protocols.stack import Stack, StackConfig
from simstack.protocols.tcp_conn import TcpConfig

from ..api.services import DEFAULT_SERVICES, service_error, start_services
from ..scenario.recorder import DEFAULT_RECORD_LIMIT, MAX_RECORD_LIMIT, Recorder
from ..wire.errors import SetupError
from ..wire.impair import ImpairError, Impairment
from ..wire.pcap import PcapWriter
from ..wire.tap import Tap, check_name
from . import router
from .driver import MAX_BUSY_POLL, FrameHook, LiveDriver
from .framelog import FrameLog
from .lab import Lab, LabPlan, plan_lab
from .livehost import LiveHost
from .netlink import Link, Netlink
from .ping import Pinger, PingError
from .signals import STOP_SIGNALS, Caught, defer_interrupts, interrupt_once, signal_name

log = logging.getLogger("simstack.live")
T = TypeVar("T")

EXIT_OK, EXIT_FAILED, EXIT_SETUP = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a tool that SIGPIPE ended: ``yes | head`` gives 141
MAX_SECONDS = 3600.0  # --interval and --linger
MAX_SEED = (1 << 64) - 1
MAX_BUSY_POLL_US = round(MAX_BUSY_POLL * 1e6)
MIN_MTU = 68  # RFC 791: every internet module must be able to forward a datagram of 68 octets
MAX_TAP_MTU = 65521  # Linux: a TAP's max_mtu, 65535 less the Ethernet header


@dataclass(frozen=True)
class LiveOptions:
    ifname: str
    ip: str = "10.0.0.1/24"
    mac: str = "aa:bb:cc:dd:ee:ff"
    gateway: str | None = None
    host_ip: str = "10.0.0.2/24"
    host_config: bool = True
    pcap: str | None = None
    verbose: bool = False
    seed: int | None = None
    ping: str | None = None
    count: int = 5
    interval: float = 1.0
    size: int = 56
    linger: float | None = None
    serve: tuple[str, ...] = DEFAULT_SERVICES
    record: str | None = None
    lab: str | None = None  # --lab NAME: client namespaces on a bridge with the TAP (engine/lab.py)
    lab_clients: int | None = None  # None: 1
    lab_route: bool = False
    tcp_msl: float | None = None  # --tcp-msl SECONDS: TIME-WAIT lasts twice this (default TcpConfig's 30 s)
    tcp_rto_min: float | None = None  # --tcp-rto-min SECONDS: the retransmission timer's floor (LIVE_RTO_MIN)
    tcp_options: str = "ws,ts,sack"  # --tcp-options LIST: the RFC 7323 and RFC 2018 options offered, or "none"
    # Several interfaces, forwarding, link shaping (engine/live/router.py):
    more_ifnames: tuple[str, ...] = ()  # IFNAMEs after the first
    addrs: tuple[str, ...] = ()  # --addr IFNAME=ADDR/PREFIX
    forward: bool = False
    routes: tuple[str, ...] = ()  # --route NETWORK/PREFIX via GATEWAY, each as one string
    impair: str | None = None
    impair_in: str | None = None
    impair_out: str | None = None
    drops: tuple[str, ...] = ()  # --drop EXPR
    lab_segments: int | None = None
    record_limit: int | None = None  # --record-limit FRAMES; None: DEFAULT_RECORD_LIMIT
    busy_poll: int = 0  # --busy-poll USEC: poll this long after the last wake-up before sleeping; 0 is off
    offload: bool = False  # --offload: a virtio-net header on the TAP, 64 KB TCP segments and partial checksums
    mtu: int | None = None  # --mtu N: set the TAP's MTU (None: keep the link's)


# --tcp-options: the words, and the shift "ws" offers. A live stack talks to real peers, so it offers what
# Linux does (window scale 7, timestamps, SACK); replay keeps TcpConfig's defaults, all off.
LIVE_TCP_OPTIONS = ("ws", "ts", "sack")
LIVE_WSCALE = 7
# SO_RCVBUF and SO_SNDBUF defaults. Linux starts at 128 KiB and 16 KiB and autotunes them up to 6 MiB and
# 4 MiB (tcp_rmem, tcp_wmem); simstack does not autotune, so a live stack starts where Linux's autotuning
# lands for a fast local peer: with 64 KB TSO segments, 128 KiB is two segments in flight and the
# transfer waits on every ACK (bench/tcp_bulk.py: 586 -> 756 MB/s with --offload). A buffer takes memory
# only for what it holds, so idle connections cost no more.
LIVE_TCP_BUFFER = 1 << 20
# RFC 3465's L: an ACK opens cwnd by every segment it covers, as Linux's tcp_slow_start and tcp_cong_avoid_ai
# count them. Linux peers send stretch ACKs (GRO), and with --offload one ACK answers a 64 KB segment: at
# L = 1 slow start would add one segment a round trip there, and leave a single segment in flight.
LIVE_ABC_LIMIT = 1000
# RFC 6298 2.4 asks for a 1 s floor; Linux's TCP_RTO_MIN is 0.2 s, and a live stack's peers are Linux's on one
# host or a LAN, where a lost retransmission or tail segment would otherwise stall a transfer for a whole second.
LIVE_RTO_MIN = 0.2


def _tcp_options(tcp: TcpConfig, words: str) -> TcpConfig:
    chosen = set() if words == "none" else set(words.split(","))
    if not chosen <= set(LIVE_TCP_OPTIONS) or (not chosen and words != "none"):
        raise SetupError(f"--tcp-options {words}: want none, or some of {','.join(LIVE_TCP_OPTIONS)} joined by commas")
    return replace(tcp, rcvbuf=LIVE_TCP_BUFFER, sndbuf=LIVE_TCP_BUFFER, abc_limit=LIVE_ABC_LIMIT,
                   wscale=LIVE_WSCALE if "ws" in chosen else -1, timestamps="ts" in chosen, sack="sack" in chosen)


@dataclass(frozen=True)
class Plan:
    """The options, checked and converted: everything setup needs, nothing done yet."""

    config: StackConfig
    host: tuple[bytes, int] | None
    ping: bytes | None
    seed: int
    lab: LabPlan | None = None
    link: "router.LinkPlan | None" = None  # --drop and --impair


def plan(opts: LiveOptions) -> Plan:
    """Validate every argument before touching the system (raises SetupError)."""
    check_name(opts.ifname)
    ip, prefix = _checked("--ip", _interface, opts.ip)
    mac = _checked("--mac", mac_to_bytes, opts.mac)
    gateway = _checked("--gateway", ip_to_bytes, opts.gateway) if opts.gateway is not None else None
    # In a lab the TAP is a bridge port: its kernel side gets no address, whatever --host-ip says.
    host = _checked("--host-ip", _interface, opts.host_ip) if opts.host_config and opts.lab is None \
        and not opts.more_ifnames else None
    ping = _checked("--ping", ip_to_bytes, opts.ping) if opts.ping is not None else None
    try:
        check_stack_addresses(ip, prefix, mac, None if opts.more_ifnames else gateway)
    except AddressError as e:
        raise SetupError(f"--{e.what}: {e}") from None
    config = StackConfig(mac=mac, ip=ip, prefix_len=prefix, gateway=gateway)
    config = router.plan_config(opts, config)
    if host is not None and host[0] == ip:
        raise SetupError(f"--host-ip {opts.host_ip} is the stack's own address: give the kernel side another one")
    if not 1 <= opts.count <= 0xFFFF:
        raise SetupError(f"--count {opts.count}: want 1 to 65535")
    _seconds("--interval", opts.interval)
    if opts.linger is not None:
        _seconds("--linger", opts.linger)
    if not 0 <= opts.size <= config.mtu - 28:
        raise SetupError(f"--size {opts.size}: want 0 to {config.mtu - 28} (no fragmentation)")
    if opts.seed is not None and not 0 <= opts.seed <= MAX_SEED:
        raise SetupError(f"--seed {opts.seed}: want 0 to 2**64 - 1")
    for name in opts.serve:
        why = service_error(name)
        if why is not None:
            raise SetupError(f"--serve {why}")
    kinds = [name.partition(":")[0] for name in opts.serve]
    twice = next((name for i, name in enumerate(kinds) if name in kinds[:i]), None)
    if twice is not None:
        raise SetupError(f"--serve {twice} is given twice: each service runs once, on its own port")
    if opts.tcp_msl is not None:
        _seconds("--tcp-msl", opts.tcp_msl)
        if not opts.tcp_msl > 0:
            raise SetupError(f"--tcp-msl {opts.tcp_msl:g}: want a time in seconds, more than 0")
        config = replace(config, tcp=replace(config.tcp, msl=opts.tcp_msl))
    rto_min = LIVE_RTO_MIN if opts.tcp_rto_min is None else opts.tcp_rto_min
    if not 0 < rto_min <= config.tcp.rto_max:
        raise SetupError(f"--tcp-rto-min {rto_min:g}: want a time in seconds, more than 0 and at most "
                         f"{config.tcp.rto_max:g}")
    config = replace(config, tcp=replace(config.tcp, rto_min=rto_min, rto_initial=max(config.tcp.rto_initial, rto_min)))
    config = replace(config, tcp=_tcp_options(config.tcp, opts.tcp_options))
    if opts.record is not None:
        _check_record(opts.record)
    if opts.record_limit is not None:
        if opts.record is None:
            raise SetupError(f"--record-limit {opts.record_limit}: goes with --record, which this session does not ask for")
        if not 1 <= opts.record_limit <= MAX_RECORD_LIMIT:
            raise SetupError(f"--record-limit {opts.record_limit}: want 1 to {MAX_RECORD_LIMIT} frames")
    if not 0 <= opts.busy_poll <= MAX_BUSY_POLL_US:
        raise SetupError(f"--busy-poll {opts.busy_poll}: want 0 (off) to {MAX_BUSY_POLL_US:,} microseconds")
    _check_offload(opts)
    if opts.mtu is not None and not MIN_MTU <= opts.mtu <= MAX_TAP_MTU:
        raise SetupError(f"--mtu {opts.mtu}: want {MIN_MTU} (RFC 791) to {MAX_TAP_MTU} (a TAP's largest)")
    lab = plan_lab(opts.lab, opts.lab_clients, opts.lab_route, config, opts.ifname, opts.lab_segments,
                   opts.more_ifnames)
    seed = opts.seed if opts.seed is not None else int.from_bytes(os.urandom(8), "big")
    return Plan(config, host, ping, seed, lab, router.plan_link(opts, config))


def _check_offload(opts: LiveOptions) -> None:
    """--offload is for the one TAP the driver reads itself, and its frames are not all replayable."""
    if not opts.offload:
        return
    if opts.more_ifnames or opts.forward:
        raise SetupError("--offload takes one IFNAME and no --forward: a router's frames are not offloaded")
    if opts.drops:
        raise SetupError("--offload does not go with --drop: its rules read frames, and these start with a "
                         "virtio-net header")
    for spec in (opts.impair, opts.impair_in, opts.impair_out):
        with contextlib.suppress(ImpairError):  # a bad SPEC is reported with the other --impair checks
            if spec and Impairment.parse(spec).corrupt:
                # A flipped bit in a frame whose checksum the header vouches for would be taken as good data.
                raise SetupError("--offload does not go with an --impair corrupt=: the kernel vouches for the "
                                 "checksums of what it hands over")
    if opts.record is not None:
        # A recording is replayed with checksums checked; offloaded frames carry partial ones, and are longer
        # than the MTU.
        raise SetupError("--offload does not go with --record: offloaded frames are not what a wire carries")


def _seconds(option: str, value: float) -> None:
    """A time flag: finite (NaN would wait forever, infinity overflows the clock) and at most MAX_SECONDS."""
    if not math.isfinite(value):
        raise SetupError(f"{option} {value}: must be a finite number of seconds, from 0 to {MAX_SECONDS:g}")
    if not 0 <= value <= MAX_SECONDS:
        raise SetupError(f"{option} {value:g}: want a time in seconds from 0 to {MAX_SECONDS:g}")


def _check_record(path: str) -> None:
    """Make sure ``--record`` can be written before the session, not after it: the recording is written on exit.

    The file is opened for appending and closed again (and removed if this made it), so nothing is truncated.
    """
    target = Path(path)
    if target.is_dir():
        raise SetupError(f"--record {path}: is a directory; give the file to write")
    if not target.parent.is_dir():
        raise SetupError(f"--record {path}: no such directory")
    existed = os.path.lexists(target)
    try:
        with target.open("a"):
            pass
    except OSError as e:
        raise SetupError(f"--record {path}: cannot write: {e.strerror or e}") from None
    if not existed:
        with contextlib.suppress(OSError):
            target.unlink()


@dataclass
class Session:
    """A stack running on a TAP: what ``open_session`` hands to its caller."""

    opts: LiveOptions
    plan: Plan
    stack: Stack
    driver: LiveDriver
    host: LiveHost
    link: Link
    created: bool
    started: float
    recorder: Recorder | None
    lab: Lab | None = None
    frame_log: "FrameLogGuard | None" = None
    ports: "router.Ports | None" = None  # the TAPs of interfaces 2, 3, ..., and the link shaping


class FrameLogGuard:
    """The driver's frame hook: the frame log, except that a closed stdout stops the session quietly.

    ``simstack live -v | head`` closes the pipe the ``-v`` lines go to. The
    driver reads any OSError from its hook as the device failing, and would
    blame the TAP; the reader going away is instead an ordinary end, as it is
    for any filter in a pipeline.
    """

    def __init__(self, frames: FrameLog) -> None:
        self.frames = frames
        self.driver: LiveDriver | None = None
        self.broken = False

    def __call__(self, direction: str, frame: bytes, now: float) -> None:
        try:
            self.frames(direction, frame, now)
        except BrokenPipeError:
            self.broken = True
            self.frames.verbose = None
            if self.frames.recorder is not None:  # the line came before the recording of this frame
                self.frames.recorder.record(now, direction, frame)
            if self.driver is not None:
                self.driver.stop(timeout=0)  # from the loop itself, or with the lock held: never wait here


@contextlib.contextmanager
def open_session(opts: LiveOptions, out: TextIO) -> Iterator[Session]:
    """Set up the TAP, the stack, its driver and services; undo all of it on exit.

    The loop does not run yet: call ``session.driver.start()`` (background
    thread, for applications) or ``run_until_signal()`` (foreground).
    Raises SetupError with the one line the user should see.
    """
    p = plan(opts)
    name = opts.ifname
    started = time.monotonic()
    with _Undo() as undo:
        frames = FrameLog(_open_pcap(opts.pcap), out if opts.verbose else None, started)
        undo.callback(frames.close)
        nl = undo.enter_context(Netlink())
        lab = Lab(p.lab) if p.lab is not None else None
        if lab is not None:
            lab.check()  # every name the lab needs, the TAP's included, before anything exists
        before, tap, link = router.attach_tap(name, nl, undo, _release, offload=opts.offload)
        created = before is None
        if opts.mtu is not None and opts.mtu != link.mtu:
            nl.set_mtu(link, opts.mtu)
            if not created:
                undo.callback(nl.set_mtu, link, link.mtu)
            link = nl.link(name) or link
        ports = router.attach_more(opts, nl, undo, _release)  # the TAPs of interfaces 2, 3, ...: as this one
        if lab is not None:
            undo.callback(lab.destroy)
            lab.create(link.index, ports.indexes)  # the bridge, this TAP enslaved to it, the clients
        ports.set_up(nl, undo)
        nl.set_up(link)
        if before is not None and not before.up:
            undo.callback(nl.set_up, link, False)
        if created and p.host is not None:
            nl.add_address(link, *p.host)
            log.info("gave the kernel side of %s %s", name, opts.host_ip)
        log.info("stack seed %d (repeat with --seed %d)", p.seed, p.seed)
        config = router.with_mtus(p.config, link.mtu, ports) if ports.taps else replace(p.config, mtu=link.mtu)
        if opts.offload:
            config = replace(config, interfaces=(replace(config.ifaces[0], offload=True),))
        stack_start = time.monotonic()
        stack = Stack(config, random.Random(p.seed), now=stack_start)
        recorder = None
        if opts.record is not None:
            recorder = Recorder(config, p.seed, tuple(opts.serve), start=stack_start, source=f"simstack live {name}",
                                when=time.strftime("%Y-%m-%d %H:%M:%S"), digits=6,
                                limit=opts.record_limit or DEFAULT_RECORD_LIMIT, on_full=_recording_full)
            frames.recorder = recorder
        guard = FrameLogGuard(frames) if frames.active else None
        hook: FrameHook | None = guard
        devices = ports.devices(tap, p.link, p.seed, len(config.ifaces), time.monotonic)
        driver = LiveDriver(stack, devices[0], hook=hook, devices=devices[1:], offload=opts.offload,
                            busy_poll=opts.busy_poll / 1e6)
        if guard is not None:
            guard.driver = driver
        undo.callback(driver.close)
        host = LiveHost(driver)
        services = start_services(host, list(opts.serve))
        for service in services:
            undo.callback(service.stop)
        yield Session(opts, p, stack, driver, host, link, created, started, recorder, lab, guard, ports)


def _recording_full(limit: int) -> None:
    log.warning("--record: %d frames recorded, the limit (--record-limit); the session goes on, and the frames "
                "after them are not recorded", limit)


class _Undo(contextlib.ExitStack):
    """The session's undo callbacks, run to the end even when a stop signal comes while they run."""

    def __exit__(self, *exc: Any) -> bool:
        with defer_interrupts(unwinding=exc[0] is not None):
            return bool(super().__exit__(*exc))


def run(opts: LiveOptions, out: TextIO, err: TextIO) -> int:
    """The whole live session; SetupError escapes for the caller to print (exit 2).

    Returns 0, or 1 when ``--ping`` got no reply or the device failed under the running stack.
    A stop signal during setup undoes what was set up, and also returns 0.
    """
    caught = Caught()
    try:
        with interrupt_once() as caught:  # which also puts back, on the way out, the handlers found on the way in
            return _run(opts, out, err, caught)
    except KeyboardInterrupt:
        if caught.signum is None:
            raise  # a KeyboardInterrupt of someone else's making
        print(f"simstack: stopped by {caught.name} before the stack ran; undid its setup", file=out, flush=True)
        return EXIT_OK


def _run(opts: LiveOptions, out: TextIO, err: TextIO, caught: Caught | None = None) -> int:
    name = opts.ifname
    with open_session(opts, out) as session:
        driver, p, created = session.driver, session.plan, session.created
        if caught is not None and caught.signum is not None:
            # The signal came during setup, but a library swallowed the KeyboardInterrupt it raised
            # (an import that catches everything, inside pyroute2, say): act on it now, before the stack runs.
            raise KeyboardInterrupt

        def ready() -> None:
            _print_ready(out, opts, p, created, session.link, session.lab)

        _freeze_setup()

        if p.ping is not None:
            code = _ping(driver, p.ping, opts, out, ready)
            stopped = None
        else:
            code = EXIT_OK
            stopped = driver.run_until_signal(STOP_SIGNALS, ready)
        # A second Ctrl-C must not cut the teardown short and leave a persistent TAP up.
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
    # Everything is undone here: loop stopped, pcap closed, TAP released.
    stack = session.stack
    broken = session.frame_log is not None and session.frame_log.broken
    if session.recorder is not None and opts.record is not None:
        try:
            session.recorder.write(opts.record)
        except OSError as failure:
            print(f"simstack: cannot write the recording {opts.record}: {failure.strerror or failure}", file=err,
                  flush=True)
            code = EXIT_FAILED
        else:
            if not broken:
                dropped = session.recorder.dropped
                print(f"simstack: recorded {opts.record}" + (f" (its first {session.recorder.limit} frames; "
                                                              f"{dropped} more were not recorded)" if dropped else ""),
                      file=out)
    if broken:  # stdout's reader is gone: nothing more to say there
        return EXIT_BROKEN_PIPE if code == EXIT_OK else code
    if driver.error is not None:
        e = driver.error
        what = "was deleted under the running stack" if e.errno == errno.EBADFD else f"failed: {e.strerror or e}"
        print(f"simstack: {name} {what}", file=err, flush=True)
        code = EXIT_FAILED
    if stopped is not None or opts.verbose or driver.error is not None:
        if stopped == signal.SIGINT:
            print(file=out)  # end the line the terminal's "^C" echo started
        why = f" by {signal_name(stopped)}" if stopped is not None else ""
        gone = f"; removed {router.names(name, session)}" if created and driver.error is None else ""
        if session.lab is not None:
            gone += f"{' and' if gone else '; removed'} lab {session.lab.plan.name}"
        print(f"simstack: stopped{why} after {time.monotonic() - session.started:.1f} s{gone}", file=out)
        router.publish(session)
        print("\n".join([stack.counters.report(), *router.rule_lines(session)]), file=out, flush=True)
    return code


def _freeze_setup() -> None:
    """Keep the garbage collector off what setup left, for as long as the session runs.

    Imports and setup leave some 45,000 objects that live as long as the
    process; each full collection walked them all, 8 ms of CPU on a 2-core VM,
    and a frame that came meanwhile waited those 8 ms. Frozen, they are out of
    every generation, and a collection walks only what the session made.
    """
    gc.collect()
    gc.freeze()


def _ping(driver: LiveDriver, dst: bytes, opts: LiveOptions, out: TextIO, ready: Callable[[], None]) -> int:
    pinger = Pinger(driver, dst, count=opts.count, interval=opts.interval, size=opts.size, linger=opts.linger,
                    out=out)

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        pinger.interrupt()

    for s in STOP_SIGNALS:
        signal.signal(s, interrupt)
    ready()
    driver.start()
    try:
        return pinger.run()
    except PingError as e:
        raise SetupError(str(e)) from None
    finally:
        driver.stop()


def _release(nl: Netlink, tap: Tap, created: bool) -> None:
    """Close the TAP; make sure one simstack created is gone, as promised."""
    name = tap.name
    tap.close()
    if not created:
        return
    link = nl.link(name)
    if link is not None:  # a descriptor survived somewhere (a forked child): remove it outright
        log.info("%s still exists after close; deleting it", name)
        nl.delete(link)


def _open_pcap(path: str | None) -> PcapWriter | None:
    if path is None:
        return None
    try:
        return PcapWriter(Path(path).open("wb"))  # FrameLog closes it
    except OSError as e:
        raise SetupError(f"cannot write pcap {path}: {e.strerror}") from None


def _checked(option: str, parse: Callable[[str], T], text: str) -> T:
    """``parse(text)``, its ValueError turned into the one line the user sees."""
    try:
        return parse(text)
    except ValueError as e:
        raise SetupError(f"{option}: {e}") from None


def _interface(text: str) -> tuple[bytes, int]:
    if "/" not in text:
        raise ValueError(f"bad address/prefix {text!r}: want A.B.C.D/N with N from 0 to 32")
    return parse_interface(text)


def _print_ready(out: TextIO, opts: LiveOptions, p: Plan, created: bool, link: Link, lab: Lab | None = None) -> None:
    if lab is not None:
        origin = f"created {link.name} on {lab.describe()}"
    elif created:
        host = f"kernel side {opts.host_ip}" if p.host is not None else "kernel side not configured"
        origin = f"created {link.name}, {host}"
    else:
        origin = f"attached to existing {link.name}"
    stop = "" if opts.ping else "; Ctrl-C to stop"
    if p.config.interfaces:
        origin = router.describe(p, lab)
    print(f"simstack: live on {link.name} as {opts.ip} ({opts.mac.lower()}), mtu {link.mtu}; {origin}{stop}"
          if not p.config.interfaces else f"simstack: live on {origin}{stop}", file=out, flush=True)
    if lab is not None:
        print("\n".join(lab.hints()), file=out, flush=True)
