"""``simstack live tap0 tap1 --addr ... --forward``: several TAPs, routing, and what the link does to frames.

session.py runs a live session on one TAP; this module adds what a router
needs, in the same order and with the same guarantees: every flag is checked
before anything is touched (``plan_config``, ``plan_link``), each further TAP
is attached exactly as the first one is, its undo registered the moment it
exists (``attach_more``), and ``--drop``/``--impair`` wrap the TAPs in
``ShapedDevice`` only when given, so a plain session's loop is unchanged.

Interface k (from 0) is the k-th IFNAME. Its address is ``--addr IFNAME=...``,
else 10.0.(k+1).1/24, the subnet a lab's segment k+1 has; its MAC is
``--mac`` for the first, and the first's with k added to the last octet for
the others.
"""

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from simstack.protocols.addresses import AddressError, check_stack_addresses, ip_to_str, mac_to_str, parse_interface
from simstack.protocols.interface import Interface, check_interfaces, check_next_hop
from simstack.protocols.routes import parse_route
from simstack.protocols.stack import StackConfig

from ..scenario.droprules import DropRuleError, DropRules, parse_rule
from ..scenario.fields import Context, Host
from ..wire.errors import SetupError
from ..wire.impair import ImpairError, Impairment, LinkShaper
from ..wire.tap import Tap, check_name
from .driver import FrameDevice
from .lab import Lab
from .netlink import Link, Netlink
from .shaped import ShapedDevice
from .signals import defer_interrupts

if TYPE_CHECKING:
    from .session import LiveOptions, Plan, Session

log = logging.getLogger("simstack.live")

DEFAULT_IP = "10.0.0.1/24"  # LiveOptions.ip's default: the single-interface form's
MAX_INTERFACES = 16


def plan_config(opts: "LiveOptions", config: StackConfig) -> StackConfig:
    """The stack's config with every interface, ``--forward`` and ``--route``; raises SetupError."""
    names = (opts.ifname, *opts.more_ifnames)
    for name in opts.more_ifnames:
        check_name(name)
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:
        raise SetupError(f"IFNAME {twice} is given twice: each interface is a TAP of its own")
    if len(names) > MAX_INTERFACES:
        raise SetupError(f"{len(names)} IFNAMEs: want at most {MAX_INTERFACES}")
    if opts.addrs and len(names) == 1:
        raise SetupError("--addr gives the address of one of several IFNAMEs; with one, use --ip")
    if len(names) > 1:
        if opts.ip != DEFAULT_IP:
            raise SetupError("--ip is the address of a single interface; with several IFNAMEs give each one's "
                             "with --addr IFNAME=ADDR/PREFIX")
        if opts.record is not None:
            raise SetupError("--record writes a single-interface scenario; it cannot record several IFNAMEs")
        config = StackConfig.of(_interfaces(opts, names, config.mac), gateway=config.gateway)
        if config.gateway is not None:
            _check_hop(config.ifaces, config.gateway, "--gateway")
    routes = []
    for text in opts.routes:
        try:
            network, length, via = parse_route(text)
        except ValueError as e:
            raise SetupError(f"--route: {e}") from None
        _check_hop(config.ifaces, via, f"--route {text}")
        routes.append((network, length, via))
    return replace(config, routes=tuple(routes), forward=opts.forward)


def _interfaces(opts: "LiveOptions", names: tuple[str, ...], mac: bytes) -> list[Interface]:
    given: dict[str, str] = {}
    for item in opts.addrs:
        name, sep, text = item.partition("=")
        if not sep or "/" not in text:
            raise SetupError(f"--addr {item}: want IFNAME=ADDR/PREFIX, e.g. tap1=10.0.2.1/24")
        if name not in names:
            raise SetupError(f"--addr {item}: {name} is not one of the IFNAMEs ({', '.join(names)})")
        if name in given:
            raise SetupError(f"--addr {name} is given twice")
        given[name] = text
    out = []
    for k, name in enumerate(names):
        text = given.get(name, f"10.0.{k + 1}.1/24")
        try:
            ip, prefix = parse_interface(text)
        except ValueError as e:
            raise SetupError(f"--addr {name}: {e}") from None
        own_mac = mac[:5] + bytes([(mac[5] + k) & 0xFF])
        try:
            check_stack_addresses(ip, prefix, own_mac)
        except AddressError as e:
            raise SetupError(f"--addr {name}={text}: {e}" if e.what == "ip" else f"--mac: {e}") from None
        out.append(Interface(own_mac, ip, prefix, name=name))
    try:
        check_interfaces(out)
    except AddressError as e:
        raise SetupError(f"--addr: {e}") from None
    return out


def _check_hop(ifaces: tuple[Interface, ...], gateway: bytes, option: str) -> None:
    try:
        check_next_hop(ifaces, gateway)
    except AddressError as e:
        raise SetupError(f"{option}: {e}") from None


@dataclass(frozen=True)
class LinkPlan:
    """``--drop`` and ``--impair*``, checked; None in ``Plan.link`` when neither is given."""

    inbound: Impairment
    outbound: Impairment
    rules: tuple[str, ...]
    ctx: Context

    def shaper(self, seed: int, interfaces: int) -> tuple[LinkShaper, DropRules]:
        rules = DropRules([parse_rule(text, self.ctx) for text in self.rules])
        return LinkShaper(self.inbound, self.outbound, seed, interfaces, rules.admit if rules else None), rules


def plan_link(opts: "LiveOptions", config: StackConfig) -> LinkPlan | None:
    specs: dict[str, Impairment] = {}
    for option, text in (("--impair", opts.impair), ("--impair-in", opts.impair_in), ("--impair-out", opts.impair_out)):
        if text is None:
            continue
        try:
            specs[option] = Impairment.parse(text)
        except ImpairError as e:
            raise SetupError(f"{option} {text}: {e}") from None
    if "--impair" in specs and len(specs) > 1:
        raise SetupError("--impair applies to both directions: give it, or --impair-in and --impair-out")
    ctx = Context(Host("stack", config.mac, config.ip))
    for text in opts.drops:
        try:
            parse_rule(text, ctx)
        except DropRuleError as e:
            raise SetupError(f"--drop {e}") from None
    if not specs and not opts.drops:
        return None
    both = specs.get("--impair")
    return LinkPlan(both or specs.get("--impair-in", Impairment()), both or specs.get("--impair-out", Impairment()),
                    tuple(opts.drops), ctx)


# -- the TAPs of interfaces 2, 3, ... ----------------------------------------------------
@dataclass
class Ports:
    """What ``attach_more`` attached, and the devices the driver gets."""

    taps: list[Tap] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    created: list[bool] = field(default_factory=list)
    was_up: list[bool] = field(default_factory=list)
    shaped: list[ShapedDevice] = field(default_factory=list)
    shaper: LinkShaper | None = None
    rules: DropRules | None = None

    @property
    def indexes(self) -> tuple[int, ...]:
        return tuple(link.index for link in self.links)

    def set_up(self, nl: Netlink, undo: contextlib.ExitStack) -> None:
        for link, was_up in zip(self.links, self.was_up, strict=True):
            nl.set_up(link)
            if not was_up:
                undo.callback(nl.set_up, link, False)

    def devices(self, first: Tap, link: LinkPlan | None, seed: int, interfaces: int,
                clock: Callable[[], float]) -> list[FrameDevice]:
        """The driver's devices, one per interface; shaped when ``--drop`` or ``--impair`` asked for it."""
        devices: list[FrameDevice] = [first, *self.taps]
        if link is None:
            return devices
        self.shaper, self.rules = link.shaper(seed, interfaces)
        self.shaped = [ShapedDevice(device, self.shaper, k, clock) for k, device in enumerate(devices)]
        return list(self.shaped)


def attach_more(opts: "LiveOptions", nl: Netlink, undo: contextlib.ExitStack,
                release: Callable[[Netlink, Tap, bool], None]) -> Ports:
    """Attach (or create) each further IFNAME as the session attaches the first, each undo registered at once."""
    ports = Ports()
    for name in opts.more_ifnames:
        before, tap, link = attach_tap(name, nl, undo, release)
        created = before is None
        ports.taps.append(tap)
        ports.links.append(link)
        ports.created.append(created)
        ports.was_up.append(before is not None and before.up)
    return ports


def attach_tap(name: str, nl: Netlink, undo: contextlib.ExitStack, release: Callable[[Netlink, Tap, bool], None],
               offload: bool = False) -> tuple[Link | None, Tap, Link]:
    """Attach to TAP ``name`` (created if there is none), its undo registered at once: (the link before, if
    it existed; the TAP; the link now). A name that is something else than a single-queue TAP is refused."""
    before = nl.link(name)
    if before is not None:
        why = before.why_not_single_queue_tap()
        if why:
            raise SetupError(why)
    created = before is None
    with defer_interrupts():  # attached and its undo registered, or neither
        tap = Tap.attach(name, offload=offload)
        undo.callback(release, nl, tap, created)
    log.info("%s %s", "created" if created else "attached to", name)
    link = nl.link(name)
    if link is None:
        raise SetupError(f"{name} vanished right after it was attached")
    return before, tap, link


def with_mtus(config: StackConfig, first_mtu: int, ports: Ports) -> StackConfig:
    """Each interface with its TAP's MTU, as the single-interface session takes the one TAP's."""
    mtus = (first_mtu, *(link.mtu for link in ports.links))
    ifaces = tuple(replace(iface, mtu=mtu) for iface, mtu in zip(config.ifaces, mtus, strict=True))
    return replace(config, mtu=first_mtu, interfaces=ifaces)


# -- reporting ---------------------------------------------------------------------------
def publish(session: "Session") -> None:
    """Put what the drop rules and impairment did among the stack's counters, before they are printed."""
    ports = session.ports
    if ports is None or ports.shaper is None:
        return
    counters = session.stack.counters
    ports.shaper.publish(counters)
    if ports.rules is not None:
        ports.rules.publish(counters)
    errors = sum(device.write_errors for device in ports.shaped)
    if errors:
        counters.values["tap.tx_error"] = counters["tap.tx_error"] + errors


def rule_lines(session: "Session") -> list[str]:
    ports = session.ports
    return ports.rules.report() if ports is not None and ports.rules is not None else []


def describe(p: "Plan", lab: Lab | None) -> str:
    """The ready line's description of several interfaces: each TAP, its address and MAC, and forwarding."""
    parts = [f"{iface.name} as {ip_to_str(iface.ip)}/{iface.prefix_len} ({mac_to_str(iface.mac)})"
             for iface in p.config.ifaces]
    what = "forwarding" if p.config.forward else "not forwarding"
    where = f"on {lab.describe()}" if lab is not None else "kernel sides not configured"
    return f"{', '.join(parts)}; {what}; {where}"


def names(first: str, session: "Session") -> str:
    """The TAPs simstack created, for "removed ..." on exit."""
    ports = session.ports
    more: list[Any] = [] if ports is None else [t.name for t, made in zip(ports.taps, ports.created, strict=True) if made]
    return ", ".join([first, *more])
