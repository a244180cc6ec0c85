"""``simstack live IFNAME --lab``: client hosts in network namespaces, on a bridge with the stack's TAP.

A lab is what a person needs to try the stack against real kernels without
touching the machine's own network: N network namespaces ``NAME-1`` ...
``NAME-N``, each a host with loopback and one veth into the Linux bridge
``NAME-br``, which the stack's TAP joins too. Nothing in the lab has a way
out: the bridge, the TAP and the bridge-side veth ends carry no address, not
even an IPv6 link-local one, so the namespace simstack runs in takes no part
in the lab's traffic and no client can reach it.

The lab owns exactly what it creates. Every name is checked before anything
exists (``check``); ``create`` records each object the moment it exists, and
``destroy`` removes only what was recorded, links by ifindex and namespaces
by identity, never by name alone: a namespace or link someone else made under
one of the lab's names is never touched.

Netlink goes through pyroute2 (imported only when a lab is made or removed:
plain live mode speaks its few rtnetlink messages itself, netlink.py); named namespaces
live where ip-netns(8) keeps them, so ``ip netns exec NAME-1 ...`` works on
them from any shell that shares simstack's mount namespace.

With several segments (``--lab-segments``, one TAP of simstack's per
segment), each segment is a bridge of its own, ``NAME-br1``, ``NAME-br2``,
..., with its own clients on the subnet of simstack's interface there, and
every client's default route is simstack: the lab is two or more LANs with
simstack the router between them.
"""

import contextlib
import errno
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from simstack.protocols.addresses import ip_to_str, netmask
from simstack.protocols.interface import Interface
from simstack.protocols.stack import StackConfig

from ..wire.errors import SetupError
from ..wire.tap import IFNAMSIZ
from .netlink import _message
from .signals import defer_interrupts, interrupt_once

log = logging.getLogger("simstack.live")

BRIDGE_SUFFIX = "-br"
CLIENT_IFNAME = "eth0"  # the client's end of its veth, inside its namespace where no name can clash
MAX_NAME = IFNAMSIZ - 1 - len(BRIDGE_SUFFIX)  # NAME-br must fit an interface name (15 characters)
MAX_CLIENTS = 256  # each client is a namespace and a veth pair: setup and teardown time grow with the count
# Interface names refuse '/', ':' and whitespace (dev_valid_name), namespace names '/' and dots-only;
# a leading letter or digit keeps NAME-1 from reading as an option to ip(8).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# Where ip-netns(8) and pyroute2 keep named namespaces (pyroute2.netns.NETNS_RUN_DIR), spelled out so that
# importing this module (session.py does, to plan) does not load pyroute2: plain live mode never needs it.
NETNS_DIR = "/var/run/netns"
IN6_ADDR_GEN_MODE_NONE = 1  # include/uapi/linux/if_link.h: the kernel makes no IPv6 link-local address


@dataclass(frozen=True)
class Client:
    """One client host: its namespace, named like the bridge-side veth end that leads to it."""

    name: str
    ip: bytes
    segment: int = 0  # index into ``LabPlan.all_segments``


@dataclass(frozen=True)
class Segment:
    """One bridge with simstack's TAP on it and the clients on its subnet."""

    bridge: str
    tap: str | None
    stack_ip: bytes
    prefix_len: int
    clients: tuple[Client, ...]


@dataclass(frozen=True)
class LabPlan:
    """A lab's names and addresses, checked against each other but not yet against the system."""

    name: str
    bridge: str
    tap: str | None  # the stack's TAP, enslaved to the bridge; None for a lab without a stack (tests)
    stack_ip: bytes
    prefix_len: int
    clients: tuple[Client, ...]
    route: bool  # a default route via the stack in every client
    segments: tuple[Segment, ...] = ()  # several segments; empty: one, made of the fields above

    @property
    def all_segments(self) -> tuple[Segment, ...]:
        return self.segments or (Segment(self.bridge, self.tap, self.stack_ip, self.prefix_len, self.clients),)

    @property
    def taps(self) -> tuple[str, ...]:
        return tuple(s.tap for s in self.all_segments if s.tap is not None)

    @property
    def links(self) -> tuple[str, ...]:
        """The links the lab creates in simstack's namespace."""
        return (*(s.bridge for s in self.all_segments), *(c.name for c in self.clients))


def plan_lab(name: str | None, clients: int | None, route: bool, config: StackConfig,
             tap: str | None = None, segments: int | None = None, more_taps: tuple[str, ...] = ()) -> LabPlan | None:
    """Validate ``--lab``, ``--lab-clients``, ``--lab-route`` and ``--lab-segments`` without touching the system.

    Returns None without ``--lab``. Client addresses are the subnet's hosts in
    order, skipping the stack's own: 10.0.0.2, 10.0.0.3, ... for 10.0.0.1/24.
    A lab has a segment per interface of the stack, each with ``clients``
    clients (``plan_segments``).
    """
    if name is None:
        if clients is not None or route:
            raise SetupError("--lab-clients and --lab-route need --lab")
        if segments is not None:
            raise SetupError("--lab-segments needs --lab")
        return None
    if segments is not None and segments != len(config.ifaces):
        raise SetupError(f"--lab-segments {segments}: give one IFNAME per segment (simstack's TAP on it), "
                         f"{len(config.ifaces)} given")
    if len(config.ifaces) > 1:
        return plan_segments(name, clients, config, (tap, *more_taps))
    count = 1 if clients is None else clients
    if not _NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise SetupError(f"--lab {name!r}: want 1 to {MAX_NAME} letters, digits, '-' or '_', "
                         f"starting with a letter or digit")
    if count < 1:
        raise SetupError(f"--lab-clients {count}: want 1 or more")
    longest = f"{name}-{count}"
    if len(longest) >= IFNAMSIZ:
        raise SetupError(f"--lab {name} --lab-clients {count}: the veth {longest} would be longer than "
                         f"{IFNAMSIZ - 1} characters; choose a shorter NAME or fewer clients")
    hosts = _hosts(config)
    if count > len(hosts):
        network = f"{ip_to_str(config.network.to_bytes(4, 'big'))}/{config.prefix_len}"
        raise SetupError(f"--lab-clients {count}: the subnet {network} has room for {len(hosts)} "
                         f"besides the stack's {ip_to_str(config.ip)}")
    if count > MAX_CLIENTS:
        raise SetupError(f"--lab-clients {count}: want at most {MAX_CLIENTS}")
    plan = LabPlan(name, name + BRIDGE_SUFFIX, tap, config.ip, config.prefix_len,
                   tuple(Client(f"{name}-{k}", hosts[k - 1]) for k in range(1, count + 1)), route)
    if tap is not None and tap in plan.links:
        raise SetupError(f"IFNAME {tap} is the name of one of the lab's own links; choose another IFNAME")
    return plan


class _Hosts:
    """The subnet's host addresses but the stack's, indexable without listing a /8 in memory."""

    def __init__(self, first: int, last: int, skip: int) -> None:
        inside = first <= skip <= last
        self._first, self._skip = first, skip if inside else last + 1
        self._len = last - first + 1 - inside

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> bytes:
        if not 0 <= i < self._len:
            raise IndexError(i)
        n = self._first + i
        if n >= self._skip:
            n += 1
        return n.to_bytes(4, "big")


def plan_segments(name: str, clients: int | None, config: StackConfig, taps: tuple[str | None, ...]) -> LabPlan:
    """Several segments: bridge NAME-brK and clients on the subnet of the stack's interface K, routed via it.

    Clients are numbered across segments: with two each, NAME-1 and NAME-2
    are on segment 1, NAME-3 and NAME-4 on segment 2.
    """
    count = 1 if clients is None else clients
    n = len(config.ifaces)
    if not _NAME.fullmatch(name) or len(f"{name}-br{n}") >= IFNAMSIZ:
        longest = IFNAMSIZ - 1 - len(f"-br{n}")
        raise SetupError(f"--lab {name!r}: with {n} segments want 1 to {longest} letters, digits, '-' or '_', "
                         f"starting with a letter or digit")
    if count < 1:
        raise SetupError(f"--lab-clients {count}: want 1 or more")
    if count * n > MAX_CLIENTS:
        raise SetupError(f"--lab-clients {count}: {count * n} clients over {n} segments; want at most {MAX_CLIENTS}")
    longest_veth = f"{name}-{count * n}"
    if len(longest_veth) >= IFNAMSIZ:
        raise SetupError(f"--lab {name} --lab-clients {count}: the veth {longest_veth} would be longer than "
                         f"{IFNAMSIZ - 1} characters; choose a shorter NAME or fewer clients")
    segments = []
    number = 1
    for k, iface in enumerate(config.ifaces):
        hosts = _hosts(iface)
        if count > len(hosts):
            network = f"{ip_to_str(iface.network_address)}/{iface.prefix_len}"
            raise SetupError(f"--lab-clients {count}: the subnet {network} has room for {len(hosts)} "
                             f"besides the stack's {ip_to_str(iface.ip)}")
        members = tuple(Client(f"{name}-{number + i}", hosts[i], k) for i in range(count))
        number += count
        segments.append(Segment(f"{name}{BRIDGE_SUFFIX}{k + 1}", taps[k], iface.ip, iface.prefix_len, members))
    first = segments[0]
    plan = LabPlan(name, first.bridge, first.tap, first.stack_ip, first.prefix_len,
                   tuple(c for s in segments for c in s.clients), True, tuple(segments))
    clash = next((t for t in plan.taps if t in plan.links), None)
    if clash is not None:
        raise SetupError(f"IFNAME {clash} is the name of one of the lab's own links; choose another IFNAME")
    return plan


def _hosts(config: StackConfig | Interface) -> _Hosts:
    network, size = config.network, 1 << (32 - config.prefix_len)
    ip = int.from_bytes(config.ip, "big")
    if size <= 2:  # /31 has no network or broadcast address (RFC 3021); /32 has no room at all
        return _Hosts(network, network + size - 1, ip)
    return _Hosts(network + 1, network + size - 2, ip)


@dataclass
class _Made:
    """One object the lab created, and how to recognise it when removing it."""

    kind: str  # "link" or "netns"
    name: str
    ident: tuple[int, int] = (0, 0)  # link: (ifindex, 0); netns: (st_dev, st_ino) of its nsfs file


@dataclass
class Lab:
    """A lab on the system: ``check``, ``create``, ``destroy``.

    ``create`` unwinds what it made when any step fails, or when SIGINT or
    SIGTERM arrives part-way, and then raises; ``destroy`` is idempotent and
    best effort (it logs what it could not remove and goes on).
    """

    plan: LabPlan
    _made: list[_Made] = field(default_factory=list, init=False, repr=False)

    def check(self) -> None:
        """Refuse, before anything exists, when a name the lab would create is taken."""
        p = self.plan
        with _root() as ipr:
            for tap in p.taps:
                if _lookup(ipr, tap) is not None:
                    raise SetupError(f"{tap} exists: with --lab simstack creates the TAP itself and never takes "
                                     f"one over; choose another IFNAME")
            taken = [f"link {name}" for name in p.links if _lookup(ipr, name) is not None]
        taken += [f"namespace {c.name}" for c in p.clients if os.path.lexists(os.path.join(NETNS_DIR, c.name))]
        if taken:
            raise SetupError(f"--lab {p.name}: {', '.join(taken)} already exist{'s' if len(taken) == 1 else ''}; "
                             f"the lab uses only what it creates: choose another NAME or remove them")
        _warn_if_private_mounts()

    def create(self, tap_index: int | None = None, more_taps: tuple[int, ...] = ()) -> None:
        """Make the bridge, enslave the TAP (by ifindex), then every client; all of it or nothing.

        With several segments, ``more_taps`` are the TAPs of segments 2, 3, ...
        """
        with interrupt_once():
            try:
                with _root() as ipr:
                    if self.plan.segments:
                        self._create_segments(ipr, (tap_index, *more_taps))
                    else:
                        self._create(ipr, tap_index)
            except BaseException:
                self.destroy()
                raise

    def destroy(self) -> None:
        """Remove what ``create`` made, newest first; safe to call twice, or after a failed ``create``.

        A stop signal cannot cut it short (``defer_interrupts``): whatever ends
        the process, short of SIGKILL, the lab goes first.
        """
        if not self._made:
            return
        with defer_interrupts():
            self._destroy()

    def _destroy(self) -> None:
        from pyroute2 import IPRoute

        ipr = None
        try:
            ipr = IPRoute()
        except OSError as e:
            log.warning("cannot open a netlink socket to remove the lab's links: %s", e.strerror)
        try:
            while self._made:
                made = self._made.pop()
                if made.kind == "netns":
                    _remove_netns(made)
                elif ipr is not None:
                    _remove_link(ipr, made)
        finally:
            if ipr is not None:
                ipr.close()

    def hints(self) -> list[str]:
        """One command per client for the person at the terminal to try."""
        if self.plan.segments:
            return self._segment_hints()
        stack = ip_to_str(self.plan.stack_ip)
        return [f"  ip netns exec {c.name} ping {stack}    # from {ip_to_str(c.ip)}" for c in self.plan.clients]

    def describe(self) -> str:
        p = self.plan
        if p.segments:
            return self._describe_segments()
        n = len(p.clients)
        route = f", default route via {ip_to_str(p.stack_ip)}" if p.route else ""
        return f"bridge {p.bridge}, lab {p.name} with {n} client{'s' if n != 1 else ''}{route}"

    # -- creation ------------------------------------------------------------------------
    def _create(self, ipr: Any, tap_index: int | None) -> None:
        p = self.plan
        self._segment(ipr, p.bridge, p.tap, tap_index, p.clients)
        log.info("lab %s: %s", p.name, self.describe())

    def _segment(self, ipr: Any, name: str, tap: str | None, tap_index: int | None, clients: tuple[Client, ...]) -> None:
        """A bridge, the TAP enslaved to it (if any), and its clients."""
        # STP off and no forwarding delay: ports forward as soon as they are up (ip-link(8), bridge options).
        bridge = self._add_link(ipr, name, kind="bridge", br_stp_state=0, br_forward_delay=0)
        _no_link_local(ipr, bridge, name)
        if tap_index is not None and tap is not None:
            _no_link_local(ipr, tap_index, tap)
            _do(ipr, f"cannot add {tap} to {name}", "link", "set", index=tap_index, master=bridge)
        _do(ipr, f"cannot set {name} up", "link", "set", index=bridge, state="up")
        for client in clients:
            self._add_client(ipr, client, bridge)

    def _create_segments(self, ipr: Any, taps: tuple[int | None, ...]) -> None:
        """Each segment as ``_create`` makes the one: its bridge, its TAP enslaved, its clients."""
        p = self.plan
        for segment, tap_index in zip(p.all_segments, taps, strict=True):
            self._segment(ipr, segment.bridge, segment.tap, tap_index, segment.clients)
        log.info("lab %s: %s", p.name, self.describe())

    def _describe_segments(self) -> str:
        p = self.plan
        segs = p.all_segments
        each = len(segs[0].clients)
        subnets = ", ".join(f"{s.bridge} {ip_to_str(_network(s.stack_ip, s.prefix_len))}/{s.prefix_len}" for s in segs)
        return (f"lab {p.name}: {len(segs)} segments ({subnets}), {each} client{'s' if each != 1 else ''} each, "
                f"default route via simstack")

    def _segment_hints(self) -> list[str]:
        """From each client, a ping to the first client of the next segment: through simstack."""
        segs = self.plan.all_segments
        out = []
        for k, segment in enumerate(segs):
            far = segs[(k + 1) % len(segs)].clients[0]
            out += [f"  ip netns exec {c.name} ping {ip_to_str(far.ip)}    # from {ip_to_str(c.ip)} to {far.name}, "
                    f"through simstack" for c in segment.clients]
        return out

    def _add_link(self, ipr: Any, name: str, **spec: Any) -> int:
        with defer_interrupts():  # made and recorded, or neither: a signal between would leave it behind
            _do(ipr, f"cannot create {name}", "link", "add", ifname=name, **spec)  # NLM_F_EXCL: never an existing one
            index = _lookup(ipr, name)
            if index is None:
                raise SetupError(f"{name} vanished right after it was created")
            self._made.append(_Made("link", name, (index, 0)))
        return index

    def _add_client(self, ipr: Any, client: Client, bridge: int) -> None:
        from pyroute2 import netns

        path = os.path.join(NETNS_DIR, client.name)
        with defer_interrupts():  # made and recorded, or neither
            try:
                netns.create(client.name)  # the mount point is opened O_EXCL: an existing namespace fails here
            except FileExistsError:
                raise SetupError(f"cannot create namespace {client.name}: it appeared while the lab was set up") from None
            except Exception as e:  # pyroute2 creates it in a child process and re-raises what failed there
                raise SetupError(f"cannot create namespace {client.name}: {_why(e)}") from None
            self._made.append(_Made("netns", client.name, _identity(path)))
        # The peer is created straight inside the client's namespace (IFLA_NET_NS_FD on the peer),
        # so its name cannot clash with a link in simstack's namespace.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            veth = self._add_link(ipr, client.name, kind="veth", peer={"ifname": CLIENT_IFNAME, "net_ns_fd": fd})
        finally:
            os.close(fd)
        _no_link_local(ipr, veth, client.name)
        _do(ipr, f"cannot add {client.name} to {self.plan.bridge}", "link", "set", index=veth, master=bridge)
        _do(ipr, f"cannot set {client.name} up", "link", "set", index=veth, state="up")
        self._configure_client(client)

    def _configure_client(self, client: Client) -> None:
        """Loopback up, the address (which brings the subnet route), the link up, the default route if asked."""
        from pyroute2 import IPRoute

        p = self.plan
        segment = p.all_segments[client.segment]
        where = f"in namespace {client.name}"
        try:
            ns = IPRoute(netns=client.name, flags=0)  # flags=0: never create a namespace here
        except Exception as e:
            raise SetupError(f"cannot open a netlink socket {where}: {_why(e)}") from None
        with ns:
            lo, eth = _lookup(ns, "lo"), _lookup(ns, CLIENT_IFNAME)
            if lo is None or eth is None:
                raise SetupError(f"{CLIENT_IFNAME} or lo is missing {where}")
            _do(ns, f"cannot set lo up {where}", "link", "set", index=lo, state="up")
            ip = ip_to_str(client.ip)
            _do(ns, f"cannot add {ip}/{segment.prefix_len} {where}", "addr", "add", index=eth, address=ip,
                prefixlen=segment.prefix_len)
            _do(ns, f"cannot set {CLIENT_IFNAME} up {where}", "link", "set", index=eth, state="up")
            if p.route:
                # Unless it forwards (--forward), the stack is a host, not a router: this only makes clients
                # send off-subnet datagrams to it, which discards them as not addressed to it (RFC 1122 3.2.1.3).
                gateway = ip_to_str(segment.stack_ip)
                _do(ns, f"cannot add a default route via {gateway} {where}", "route", "add", dst="0.0.0.0/0",
                    gateway=gateway)


# -- helpers -----------------------------------------------------------------------------
def _network(ip: bytes, prefix_len: int) -> bytes:
    mask = netmask(prefix_len)
    return (int.from_bytes(ip, "big") & mask).to_bytes(4, "big")


@contextlib.contextmanager
def _root() -> Iterator[Any]:
    """A netlink socket in simstack's own namespace."""
    from pyroute2 import IPRoute

    try:
        ipr = IPRoute()
    except OSError as e:
        raise SetupError(f"cannot open a netlink socket: {e.strerror}") from None
    with ipr:
        yield ipr


def _do(ipr: Any, what: str, method: str, *argv: Any, **kwarg: Any) -> None:
    from pyroute2 import NetlinkError

    try:
        getattr(ipr, method)(*argv, **kwarg)
    except NetlinkError as e:
        raise SetupError(_message(what, e)) from None


def _lookup(ipr: Any, name: str) -> int | None:
    from pyroute2 import NetlinkError

    try:
        found = ipr.link_lookup(ifname=name)
    except NetlinkError as e:
        if e.code == errno.ENODEV:
            return None
        raise SetupError(_message(f"cannot look up {name}", e)) from None
    return int(found[0]) if found else None


def _no_link_local(ipr: Any, index: int, name: str) -> None:
    """``ip link set NAME addrgenmode none``, before the link is up: no IPv6 address, no IPv6 chatter.

    A kernel without IPv6 makes no link-local address anyway, so its refusal is fine.
    """
    from pyroute2 import NetlinkError

    spec = {"attrs": [["AF_INET6", {"attrs": [["IFLA_INET6_ADDR_GEN_MODE", IN6_ADDR_GEN_MODE_NONE]]}]]}
    try:
        ipr.link("set", index=index, af_spec=spec)
    except NetlinkError as e:
        if e.code not in (errno.EAFNOSUPPORT, errno.EOPNOTSUPP):
            raise SetupError(_message(f"cannot turn off IPv6 addresses on {name}", e)) from None


def _identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _remove_link(ipr: Any, made: _Made) -> None:
    from pyroute2 import NetlinkError

    try:
        ipr.link("del", index=made.ident[0])
    except NetlinkError as e:
        if e.code != errno.ENODEV:  # already gone (a veth goes with its peer's namespace)
            log.warning("could not remove %s: %s", made.name, os.strerror(e.code))


def _remove_netns(made: _Made) -> None:
    """``ip netns del``, only if the name still holds the namespace the lab made.

    Processes still inside keep the namespace alive, unnamed, until they exit, as with ip-netns(8).
    """
    path = os.path.join(NETNS_DIR, made.name)
    try:
        if _identity(path) != made.ident:
            log.warning("namespace %s is no longer the one the lab created; left alone", made.name)
            return
        from pyroute2 import netns

        netns.remove(made.name)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("could not remove namespace %s: %s", made.name, e.strerror)


def _why(e: Exception) -> str:
    return (e.strerror if isinstance(e, OSError) else None) or str(e) or type(e).__name__


def _warn_if_private_mounts() -> None:
    """Say so when the lab's namespaces will be invisible to the shell that started simstack.

    A named namespace is a bind mount under /run/netns. ``ip netns exec`` runs
    its command in a mount namespace of its own whose mounts are slaves of the
    caller's (ip-netns(8)): mounts made inside do not propagate back, so
    namespaces created there cannot be entered from outside.
    ("master:N" in /proc/self/mountinfo marks a slave mount, proc(5).)
    """
    path = os.path.realpath(NETNS_DIR)
    best, tags = "", []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                point = fields[4]
                if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                    best, tags = point, fields[6:fields.index("-")]
    except (OSError, ValueError, IndexError):
        return
    if any(tag.startswith("master:") for tag in tags):
        log.warning("%s is a slave mount here (under ip netns exec?): the lab's namespaces can be entered only "
                    "from this mount namespace; to run simstack in a namespace use nsenter --net=%s/NS",
                    path, path)
