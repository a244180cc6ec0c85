"""A packetdrill script as a scenario: the reader's AST (packetdrill.py) in the scenario language.

packetdrill runs a script against a kernel through a tun device: system calls
on real sockets, segments written into the tun (``<``) and read out of it
(``>``). A scenario says the same things: ``app:`` steps for the calls,
``inject`` and ``expect`` for the segments, on a virtual clock. The
translation is one YAML scenario, which ``simstack import`` writes out and
``simstack replay`` loads, so a script and its YAML replay the same.

What the harness supplies and a scenario must spell out:

- addresses: the stack is ``--local_ip`` (192.168.0.1) on a /16, the peer
  ``--remote_ip`` (192.0.2.1) behind a gateway, as Google's harness sets the
  tun up; the gateway announces itself by ARP at time 0 and ARP is set aside
  (``options.ignore``), since a tun has no link layer;
- ports: a listener binds ``--bind_port`` (8080) and the peer connects from
  port 40000; a connect goes to ``--connect_port`` (8080) from port 40001,
  bound first so that injected segments can name it (packetdrill learns the
  kernel's ephemeral port instead);
- the stack's behaviour: the profile's ``stack.tcp`` settings
  (packetdrill_profiles.py) moved by the script's sysctls;
- packetdrill's judging: times within ``--tolerance_usecs``, and frames the
  stack sends after the last expected one are not a failure
  (``allow_unexpected``), since packetdrill stops reading at the last event.

Anything else a script needs that simstack does not offer raises ``Skip``
naming it (TCP Fast Open, IPv6, TCP_INFO, a shell command other than sysctl
and defaults.sh, ...): the replay reports ``SKIP path: unsupported <what>``.
Each step's ``note`` quotes the script's line, and the loaded scenario's steps
carry the script's line numbers, so a failure points into the .pkt file.
"""

import re
import sys
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, TextIO

import yaml

from simstack.protocols.errors import Malformed
from simstack.protocols.tcp import OPT_EOL, Option, parse_options
from simstack.protocols.tcp import emit_options as tcp_emit_options

from . import packetdrill
from .loader import Scenario, ScenarioError, loads
from .packetdrill_ast import (
    ANY,
    Array,
    BitOr,
    Code,
    Command,
    Eol,
    Event,
    Expr,
    FastOpen,
    GenericOption,
    IcmpPacket,
    Int,
    Md5,
    Mss,
    Nop,
    RawOptions,
    Sack,
    SackOk,
    Script,
    Str,
    Syscall,
    TcpOption,
    TcpPacket,
    TimeKind,
    Timestamp,
    UdpPacket,
    Wildcard,
    Word,
    WScale,
)
from .packetdrill_lexer import PacketdrillError
from .packetdrill_profiles import PROFILES, Sysctl, SysctlError, apply_sysctls, detect, parse_command
from .tcp_words import option_text

STACK_MAC = "aa:bb:cc:dd:ee:ff"
PEER_MAC = "02:00:00:00:00:02"  # the remote's and the gateway's: one tun on the other side
PREFIX = 16  # Google's harness: --netmask_ip=255.255.0.0
PEER_PORT = 40000  # the remote's port when it connects to a listener (packetdrill picks an ephemeral one)
ACTIVE_PORT = 40001  # the stack's port for a connect, bound first so injected segments can name it
O_RDWR, O_ACCMODE = 0x2, 0x3
O_NONBLOCK = {"freebsd": 0x4, "linux": 0x800}
# Harness options that change nothing in a replay, and those the translation reads.
QUIET_OPTIONS = {"send_omit_free", "verbose", "dry_run", "debug", "tcp_ts_tick_usecs", "non_fatal", "wire_client",
                 "gateway_ip", "netmask_ip", "speed", "init_scripts", "tolerance_percent"}
ERRNO_ALIASES = {"EWOULDBLOCK": "EAGAIN"}
SCENARIO_ERRORS = {"EADDRINUSE", "EADDRNOTAVAIL", "ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EMSGSIZE", "EAGAIN",
                   "EINVAL", "EDESTADDRREQ", "ENOTCONN", "EBADF", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EINPROGRESS",
                   "EALREADY", "EISCONN", "ENOPROTOOPT"}
SOCKOPTS = {("SOL_SOCKET", "SO_REUSEADDR"): "reuseaddr", ("SOL_SOCKET", "SO_RCVBUF"): "rcvbuf",
            ("SOL_SOCKET", "SO_SNDBUF"): "sndbuf", ("SOL_SOCKET", "SO_KEEPALIVE"): "keepalive",
            ("IPPROTO_TCP", "TCP_NODELAY"): "nodelay", ("SOL_TCP", "TCP_NODELAY"): "nodelay",
            ("SOL_SOCKET", "SO_ERROR"): "error"}
SHUT = {"SHUT_RD": "rd", "SHUT_WR": "wr", "SHUT_RDWR": "rdwr"}
# sockstat's state names (FreeBSD's tcpstates[]) -> RFC 9293's, as the stack keeps them.
SOCKSTAT_STATES = {"CLOSED": "CLOSED", "LISTEN": "LISTEN", "SYN_SENT": "SYN-SENT", "SYN_RCVD": "SYN-RECEIVED",
                   "ESTABLISHED": "ESTABLISHED", "CLOSE_WAIT": "CLOSE-WAIT", "FIN_WAIT_1": "FIN-WAIT-1",
                   "CLOSING": "CLOSING", "LAST_ACK": "LAST-ACK", "FIN_WAIT_2": "FIN-WAIT-2", "TIME_WAIT": "TIME-WAIT"}
# `sockstat -4 -P tcp [-p PORT] -s [| grep NAME] | grep -c STATE | grep N`: how many connections are in STATE.
_SOCKSTAT = re.compile(r"sockstat\s+-4\s+-P\s+tcp(?P<flags>(?:\s+-[ps](?:\s+\d+)?)+)\s*"
                       r"(?:\|\s*grep\s+packetdril\s*)?\|\s*grep\s+-c\s+(?P<state>[A-Z_0-9]+)\s*\|\s*grep\s+(?P<n>\d+)")


class Skip(Exception):
    """The script needs something simstack does not offer: ``SKIP path: unsupported <what>``."""

    def __init__(self, path: str, line: int, what: str) -> None:
        super().__init__(f"{path}: unsupported {what}")
        self.path = path
        self.line = line
        self.what = what


@dataclass
class Translation:
    path: str
    profile: str
    text: str  # the YAML scenario
    step_lines: list[int] = field(default_factory=list)  # per step, its line in the script (0: the harness's own)
    yaml_lines: list[int] = field(default_factory=list)  # per step, the line of its "- " in ``text``


# -- entry points ----------------------------------------------------------------------------------------
def load_pkt(path: str | Path, profile: str | None = None) -> Scenario:
    """The script as a checked scenario, its steps at the script's lines; ScenarioError or Skip."""
    path = str(path)
    try:
        script = packetdrill.load(path)
    except PacketdrillError as e:
        raise ScenarioError(e.path, e.line, e.message) from None
    return scenario_of(translate(script, profile))


def import_main(path: str, out: str, profile: str | None = None, stdout: TextIO | None = None,
                stderr: TextIO | None = None) -> int:
    """``simstack import FILE.pkt -o OUT.yaml``: 0 written, 2 when the script cannot be read or needs
    what simstack does not offer (the reason on stderr, as replay's SKIP gives it)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        t = translate(packetdrill.load(path), profile)
        scenario_of(t)  # the YAML must load: any error points at the script
    except PacketdrillError as e:
        print(f"simstack import: {e}", file=stderr)
        return 2
    except ScenarioError as e:
        print(f"simstack import: {e}", file=stderr)
        return 2
    except Skip as e:
        print(f"simstack import: {e}", file=stderr)
        return 2
    try:
        Path(out).write_text(t.text)
    except OSError as e:
        print(f"simstack import: cannot write {out}: {e.strerror}", file=stderr)
        return 2
    print(f"imported {path} into {out} (profile {t.profile}, {len(t.step_lines)} steps)", file=stdout)
    return 0


def scenario_of(t: Translation) -> Scenario:
    try:
        scenario = loads(t.text, t.path)
    except ScenarioError as e:
        raise ScenarioError(t.path, _script_line(t, e.line), e.message) from None
    for step, line in zip(scenario.steps, t.step_lines, strict=True):
        step.line = line
    return scenario


def _script_line(t: Translation, yaml_line: int) -> int:
    """The script line of the step that YAML line ``yaml_line`` belongs to."""
    line = 0
    for start, pkt in zip(t.yaml_lines, t.step_lines, strict=True):
        if start > yaml_line:
            break
        line = pkt
    return line


def translate(script: Script, profile: str | None = None) -> Translation:
    return _Translator(script, profile).run()


# -- the translator ----------------------------------------------------------------------------------------
class _Translator:
    def __init__(self, script: Script, profile: str | None) -> None:
        self.script = script
        self.path = script.path
        self.profile = profile or detect(script)
        if self.profile not in PROFILES:
            raise ScenarioError(self.path, 0, f"unknown profile {self.profile!r}; profiles are {', '.join(PROFILES)}")
        self.steps: list[tuple[dict[str, Any], int]] = []
        self.lines = _source_lines(script.path)
        self.sysctls: list[Sysctl] = []
        self.fds: dict[int, bool] = {}  # open sockets, fd -> blocking
        self.bound: dict[int, int] = {}  # fd -> local port
        self.stack_port = script.config.bind_port
        self.peer_port = PEER_PORT
        self.peer_isn = 0  # the remote's ISN as the runner will have learned it (from its last SYN)
        self.peer_mss = 536  # what the remote's SYN announced (RFC 9293 3.7.1 default), and whether it timestamps
        self.peer_ts = False
        self.pending = 0  # microseconds of relative time from events that made no step
        self.base: int | None = None  # the absolute time of the last of them, when one was absolute
        self.started = False  # a socket or a packet has happened: the stack is configured by now

    def skip(self, line: int, what: str) -> Skip:
        return Skip(self.path, line, what)

    def run(self) -> Translation:
        cfg = self.script.config
        if cfg.ip_version != "ipv4":
            raise self.skip(0, f"IP version {cfg.ip_version} (simstack speaks IPv4)")
        for opt in self.script.options:
            if opt.name in ("ip_version", "local_ip", "remote_ip", "tolerance_usecs", "bind_port", "connect_port",
                            "mtu") or opt.name in QUIET_OPTIONS:
                continue
            raise self.skip(opt.line, f"option --{opt.name}")
        if self.script.init_command is not None:
            self.command(self.script.init_command, self.script.init_command.line, None)
        events = self.script.events
        last_activity = max((i for i, e in enumerate(events) if not isinstance(e.action, Command)), default=-1)
        for i, event in enumerate(events):
            self.event(event, after_last=i > last_activity)
        if self.script.cleanup_command is not None:  # after the run: it restores the host
            self.command(self.script.cleanup_command, self.script.cleanup_command.line, None, after_last=True)
        return self.document()

    # -- timing -------------------------------------------------------------------------------------------
    def at(self, event: Event) -> str | None:
        """The step's ``at:`` for ``event``, counting the time of the events before it that made no step."""
        t = event.time
        base, pending = self.base, self.pending
        self.base, self.pending = None, 0
        if t.kind == TimeKind.ANY:
            return None
        if t.kind in (TimeKind.ABSOLUTE, TimeKind.ABSOLUTE_RANGE):
            base, pending = 0, 0
        start = (t.start or 0) + pending
        end = (t.end or 0) + pending
        if base is not None:
            start += base
            end += base
        sign = "" if base is not None else "+"
        if t.kind in (TimeKind.ABSOLUTE, TimeKind.RELATIVE):
            return sign + _seconds(start)
        return f"{sign}{_seconds(start)}~{sign}{_seconds(end)}"

    def add(self, step: dict[str, Any], event: Event | None) -> None:
        line = event.line if event is not None else 0
        if event is not None and "note" not in step:
            text = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
            step["note"] = f"line {line}: {text}" if text else f"line {line}"
        self.steps.append((step, line))

    def timed(self, event: Event, **step: Any) -> dict[str, Any]:
        at = self.at(event)
        out: dict[str, Any] = {} if at is None else {"at": at}
        out.update(step)
        return out

    # -- events -------------------------------------------------------------------------------------------
    def event(self, event: Event, after_last: bool) -> None:
        action = event.action
        if isinstance(action, Command):
            self.command(action, event.line, event, after_last=after_last)
        elif isinstance(action, Code):
            raise self.skip(event.line, "%{ python }% block (TCP_INFO)")
        elif isinstance(action, Syscall):
            self.started = True
            self.syscall(action, event)
        elif isinstance(action, TcpPacket):
            self.started = True
            self.tcp_packet(action, event)
        elif isinstance(action, IcmpPacket):
            self.started = True
            self.icmp_packet(action, event)
        elif isinstance(action, UdpPacket):
            raise self.skip(event.line, "UDP packet")

    def command(self, cmd: Command, line: int, event: Event | None, after_last: bool = False) -> None:
        text = cmd.text.strip()
        sysctls, bad = parse_command(text)
        if bad is None and self.started and after_last:
            self._no_step(event)  # sysctls that restore the host after the run
            return
        if bad is None:
            for sysctl in sysctls:
                try:
                    apply_sysctls({}, [sysctl])
                except SysctlError as e:
                    raise self.skip(line, str(e)) from None
            if not self.started:
                self.sysctls.extend(sysctls)
            else:
                # the stack's settings are fixed when it starts: a sysctl that would move one is not a replay
                before = apply_sysctls(PROFILES[self.profile], self.sysctls)
                if apply_sysctls(PROFILES[self.profile], [*self.sysctls, *sysctls]) != before:
                    raise self.skip(line, f"sysctl changed while the script runs ({text.splitlines()[0]})")
            self._no_step(event)
            return
        m = _SOCKSTAT.fullmatch(bad)
        if m is not None and event is not None and not sysctls:
            port = re.search(r"-p\s+(\d+)", m.group("flags"))
            state = SOCKSTAT_STATES.get(m.group("state"))
            if state is None:
                raise self.skip(line, f"shell command `{bad}`")
            step = self.timed(event, app="sockstat", state=state, count=int(m.group("n")))
            if port is not None:
                step["port"] = int(port.group(1))
            self.add(step, event)
            return
        raise self.skip(line, f"shell command `{bad}`")

    def _no_step(self, event: Event | None) -> None:
        """An event that makes no step still takes its time: the next step's time includes it."""
        if event is None:
            return
        t = event.time
        if t.kind == TimeKind.RELATIVE:
            self.pending += t.start or 0
        elif t.kind == TimeKind.ABSOLUTE:
            self.base, self.pending = t.start or 0, 0

    # -- system calls ---------------------------------------------------------------------------------------
    def syscall(self, call: Syscall, event: Event) -> None:
        handler = getattr(self, f"_sys_{call.name}", None)
        if handler is None:
            raise self.skip(event.line, f"system call {call.name}()")
        handler(call, event)

    def _fd(self, call: Syscall, event: Event, index: int = 0) -> int:
        arg = call.args[index] if len(call.args) > index else None
        if not isinstance(arg, Int):
            raise self.skip(event.line, f"{call.name}() on a file descriptor given as {_expr_text(arg)}")
        return arg.value

    def _result(self, call: Syscall, event: Event) -> tuple[int | None, str | None]:
        """(value, errno name): what the call must return, or the error it must fail with."""
        r = call.result
        if isinstance(r, Wildcard):
            return None, None
        if not isinstance(r, Int):
            raise self.skip(event.line, f"{call.name}() returning {_expr_text(r)}")
        if r.value == -1 and call.errno is not None:
            name = ERRNO_ALIASES.get(call.errno, call.errno)
            if name not in SCENARIO_ERRORS:
                raise self.skip(event.line, f"errno {call.errno}")
            return None, name
        if r.value < 0:
            raise self.skip(event.line, f"{call.name}() returning {r.value} without an errno")
        return r.value, None

    def _call(self, event: Event, app: str, fd: int, call: Syscall, blocking_op: bool = False, **args: Any) -> dict[str, Any]:
        step = self.timed(event, app=app, socket=_name(fd))
        _, err = self._result(call, event)
        if err is not None:
            step["error"] = err
        step.update(args)
        if blocking_op and self.fds.get(fd, True):
            # A blocking call returns when packetdrill says it does: at its start, or at the end of
            # "start...end"; meanwhile the later steps run.
            span = 0 if call.end is None or event.time.start is None else call.end - event.time.start
            step["until"] = "+" + _seconds(span)
        return step

    def _open(self, fd: int, event: Event) -> None:
        if fd in self.fds:
            raise ScenarioError(self.path, event.line, f"file descriptor {fd} is already open")
        self.fds[fd] = True

    def _sys_socket(self, call: Syscall, event: Event) -> None:
        args = call.args
        kind = args[1] if len(args) > 1 else None
        if not (isinstance(kind, Word) and kind.name == "SOCK_STREAM"):
            raise self.skip(event.line, f"socket of type {_expr_text(kind)}")
        if len(args) > 0 and not (isinstance(args[0], Wildcard) or _word(args[0]) in ("AF_INET", "PF_INET")):
            raise self.skip(event.line, f"socket of family {_expr_text(args[0])}")
        if len(args) > 2 and not (isinstance(args[2], Wildcard) or _word(args[2]) == "IPPROTO_TCP"
                                  or (isinstance(args[2], Int) and args[2].value in (0, 6))):
            raise self.skip(event.line, f"socket of protocol {_expr_text(args[2])}")
        value, err = self._result(call, event)
        if err is not None or value is None:
            raise self.skip(event.line, "a socket() that fails")
        self._open(value, event)
        self.add(self.timed(event, app="socket", socket=_name(value), type="stream"), event)

    def _sys_bind(self, call: Syscall, event: Event) -> None:
        fd = self._fd(call, event)
        if any(not isinstance(a, Wildcard) for a in call.args[1:]):
            raise self.skip(event.line, "bind() to an address given in the script")
        port = self.script.config.bind_port
        self.add(self._call(event, "bind", fd, call, addr=["any", port]), event)
        self.bound[fd] = port

    def _sys_listen(self, call: Syscall, event: Event) -> None:
        fd = self._fd(call, event)
        backlog = call.args[1] if len(call.args) > 1 else None
        args: dict[str, Any] = {}
        if isinstance(backlog, Int):
            args["backlog"] = max(backlog.value, 0)
        if fd not in self.bound:
            # listen() binds an ephemeral port; packetdrill's segments go to --bind_port, so bind it first
            self.add({"app": "bind", "socket": _name(fd), "addr": ["any", self.script.config.bind_port],
                      "note": "packetdrill's port for the listener"}, event)
            self.bound[fd] = self.script.config.bind_port
        self.add(self._call(event, "listen", fd, call, **args), event)
        self.stack_port, self.peer_port = self.bound[fd], PEER_PORT

    def _sys_accept(self, call: Syscall, event: Event) -> None:
        fd = self._fd(call, event)
        value, err = self._result(call, event)
        new = value if value is not None and err is None else None
        name = _name(new) if new is not None else f"failed_accept_{event.line}"
        self.add(self._call(event, "accept", fd, call, blocking_op=True, **{"as": name}), event)
        if new is not None:
            self._open(new, event)
            if self.profile == "freebsd" and not self.fds.get(fd, True):
                # FreeBSD's accept() gives the new socket the listener's O_NONBLOCK (Linux's does not)
                self.fds[new] = False
                self.add({"app": "setblocking", "socket": _name(new), "blocking": False,
                          "note": "FreeBSD: the accepted socket inherits O_NONBLOCK"}, event)

    def _sys_connect(self, call: Syscall, event: Event) -> None:
        fd = self._fd(call, event)
        if any(not isinstance(a, Wildcard) for a in call.args[1:]):
            raise self.skip(event.line, "connect() to an address given in the script")
        if fd not in self.bound:
            self.add({"app": "bind", "socket": _name(fd), "addr": ["any", ACTIVE_PORT],
                      "note": "a known port, so that injected segments can name it"}, event)
            self.bound[fd] = ACTIVE_PORT
        port = self.script.config.connect_port
        self.add(self._call(event, "connect", fd, call, blocking_op=True, addr=["remote", port]), event)
        self.stack_port, self.peer_port = self.bound[fd], port

    def _size(self, call: Syscall, event: Event, index: int) -> int:
        arg = call.args[index] if len(call.args) > index else None
        if not isinstance(arg, Int) or arg.value < 0:
            raise self.skip(event.line, f"{call.name}() of size {_expr_text(arg)}")
        return arg.value

    def _receive(self, call: Syscall, event: Event, flags: Expr | None) -> None:
        fd = self._fd(call, event)
        size = self._size(call, event, 2)
        args: dict[str, Any] = {"size": size}
        if flags is not None and not isinstance(flags, Wildcard):
            names = _flag_names(flags)
            if names is None or not set(names) <= {"MSG_PEEK", "0"}:
                raise self.skip(event.line, f"{call.name}() flags {_expr_text(flags)}")
            if "MSG_PEEK" in names:
                args["peek"] = True
        value, _ = self._result(call, event)
        if value is not None:
            args["len"] = value
        if not isinstance(call.args[1] if len(call.args) > 1 else ANY, Wildcard):
            raise self.skip(event.line, f"{call.name}() into a buffer given in the script")
        self.add(self._call(event, "recv", fd, call, blocking_op=True, **args), event)

    def _sys_read(self, call: Syscall, event: Event) -> None:
        self._receive(call, event, None)

    def _sys_recv(self, call: Syscall, event: Event) -> None:
        self._receive(call, event, call.args[3] if len(call.args) > 3 else None)

    def _send(self, call: Syscall, event: Event, flags: Expr | None) -> None:
        fd = self._fd(call, event)
        size = self._size(call, event, 2)
        if flags is not None and not isinstance(flags, Wildcard) and _flag_names(flags) != ["0"]:
            raise self.skip(event.line, f"{call.name}() flags {_expr_text(flags)}")
        args: dict[str, Any] = {"data": {"size": size}}
        value, _ = self._result(call, event)
        if value is not None:
            args["returns"] = value
        self.add(self._call(event, "send", fd, call, blocking_op=True, **args), event)

    def _sys_write(self, call: Syscall, event: Event) -> None:
        self._send(call, event, None)

    def _sys_send(self, call: Syscall, event: Event) -> None:
        self._send(call, event, call.args[3] if len(call.args) > 3 else None)

    def _sys_close(self, call: Syscall, event: Event) -> None:
        fd = self._fd(call, event)
        _, err = self._result(call, event)
        if err is not None:
            raise self.skip(event.line, f"close() failing with {err}")
        if fd not in self.fds:
            raise ScenarioError(self.path, event.line, f"close({fd}): no such socket is open")
        self.add(self.timed(event, app="close", socket=_name(fd)), event)
        del self.fds[fd]
        self.bound.pop(fd, None)

    def _sys_shutdown(self, call: Syscall, event: Event) -> None:
        fd = self._fd(call, event)
        how = _word(call.args[1]) if len(call.args) > 1 else None
        if how not in SHUT:
            raise self.skip(event.line, f"shutdown() how {_expr_text(call.args[1] if len(call.args) > 1 else None)}")
        self.add(self._call(event, "shutdown", fd, call, how=SHUT[how]), event)

    def _sockopt(self, call: Syscall, event: Event) -> tuple[int, str, Expr | None]:
        fd = self._fd(call, event)
        level, name = (_word(call.args[1]), _word(call.args[2])) if len(call.args) > 2 else (None, None)
        option = SOCKOPTS.get((level or "", name or ""))
        if option is None or (option == "error" and call.name == "setsockopt"):
            raise self.skip(event.line, f"{call.name} {name or _expr_text(call.args[2] if len(call.args) > 2 else None)}")
        value = call.args[3] if len(call.args) > 3 else None
        if isinstance(value, Array) and len(value.items) == 1:
            value = value.items[0]
        return fd, option, value

    def _sys_setsockopt(self, call: Syscall, event: Event) -> None:
        fd, option, value = self._sockopt(call, event)
        if not isinstance(value, Int):
            raise self.skip(event.line, f"setsockopt {option} to {_expr_text(value)}")
        self.add(self._call(event, "setsockopt", fd, call, option=option, value=value.value), event)

    def _sys_getsockopt(self, call: Syscall, event: Event) -> None:
        fd, option, value = self._sockopt(call, event)
        args: dict[str, Any] = {"option": option}
        if isinstance(value, Int):
            args["value"] = value.value
        elif isinstance(value, Word) and option == "error" and value.name.startswith("E"):
            name = ERRNO_ALIASES.get(value.name, value.name)
            if name not in SCENARIO_ERRORS:
                raise self.skip(event.line, f"errno {value.name}")
            args["value"] = name
        elif not isinstance(value, Wildcard):
            raise self.skip(event.line, f"getsockopt {option} giving {_expr_text(value)}")
        self.add(self._call(event, "getsockopt", fd, call, **args), event)

    def _sys_fcntl(self, call: Syscall, event: Event) -> None:
        fd = self._fd(call, event)
        cmd = _word(call.args[1]) if len(call.args) > 1 else None
        nonblock = O_NONBLOCK[self.profile]
        if cmd == "F_GETFL":
            value, err = self._result(call, event)
            if err is not None or value is None:
                raise self.skip(event.line, "fcntl(F_GETFL) failing")
            if value & O_ACCMODE != O_RDWR or value & ~(O_ACCMODE | nonblock):
                raise self.skip(event.line, f"fcntl(F_GETFL) flags {value:#x}")
            self.add(self.timed(event, app="getblocking", socket=_name(fd), blocking=not value & nonblock), event)
            return
        if cmd == "F_SETFL":
            names = _flag_names(call.args[2]) if len(call.args) > 2 else None
            if names is None or not set(names) <= {"O_RDWR", "O_NONBLOCK", "0"}:
                raise self.skip(event.line, f"fcntl(F_SETFL) flags {_expr_text(call.args[2] if len(call.args) > 2 else None)}")
            value, err = self._result(call, event)
            if err is not None:
                raise self.skip(event.line, "fcntl(F_SETFL) failing")
            blocking = "O_NONBLOCK" not in names
            self.fds[fd] = blocking
            self.add(self.timed(event, app="setblocking", socket=_name(fd), blocking=blocking), event)
            return
        raise self.skip(event.line, f"fcntl({cmd or '?'})")

    # -- segments -------------------------------------------------------------------------------------------
    def tcp_packet(self, p: TcpPacket, event: Event) -> None:
        if p.encap is not None:
            raise self.skip(event.line, "TCP over UDP encapsulation")
        inbound = p.direction.value == "<"
        tcp: dict[str, Any] = {}
        if inbound:
            tcp["sport"], tcp["dport"] = p.src_port or self.peer_port, p.dst_port or self.stack_port
        else:
            tcp["sport"], tcp["dport"] = p.src_port or self.stack_port, p.dst_port or self.peer_port
        tcp["flags"] = _flags(p.flags, self, event)
        # packetdrill's remote writes its own numbers as they go on the wire (its ISN is the one in its
        # script), and the stack's relative to the stack's ISN: so the remote's seq and the stack's ack
        # are absolute here, the stack's seq and the remote's ack relative.
        seq = p.seq
        if seq.start is not None:
            if inbound or seq.absolute:
                tcp["seq"] = {"abs": seq.start & 0xFFFFFFFF}
            else:
                tcp["seq"] = _signed32(seq.start)
            if inbound and "S" in p.flags:
                self.peer_isn = seq.start & 0xFFFFFFFF  # the runner learns it from this SYN, written absolute
        if p.ack is not None:
            tcp["ack"] = _signed32(p.ack) if inbound else {"abs": p.ack & 0xFFFFFFFF}
        elif inbound and "." in p.flags:
            tcp["ack"] = 0
        if p.win is not None:
            tcp["win"] = p.win
        if p.urg is not None:
            tcp["urg"] = p.urg
        if isinstance(p.options, Wildcard):
            if inbound:
                raise ScenarioError(self.path, event.line, "<...> options are for outbound packets")
            tcp["options"] = "any"
        else:
            tcp["options"] = self.options(p.options, inbound, event)
        tcp["len"] = seq.length
        frame: dict[str, Any] = {}
        ip = self.ip_info(p, event)
        if ip:
            frame["ipv4"] = ip
        frame["tcp"] = tcp
        if inbound:
            if event.time.kind not in (TimeKind.ABSOLUTE, TimeKind.RELATIVE):
                raise ScenarioError(self.path, event.line, "an inbound packet needs a time, not a range or *")
            if "S" in p.flags and not isinstance(p.options, Wildcard):
                self.learn_syn(p.options)
            self.add(self.timed(event, inject=frame), event)
            return
        mss = self.send_mss()
        if seq.length <= mss or seq.start is None or isinstance(tcp["options"], str):
            self.add(self.timed(event, expect=frame), event)
            return
        # A segment longer than the MSS is one the kernel handed a TSO/GSO device (Google's harness
        # runs the tun with TSO): on a wire it is MSS-sized segments, back to back, PSH and FIN on
        # the last, as the device cuts it (RFC 9293 3.7.1 sizes every segment to the MSS).
        done = 0
        while done < seq.length:
            n = min(mss, seq.length - done)
            last = done + n == seq.length
            piece = dict(tcp)
            piece["seq"] = _signed32(seq.start + done)
            piece["len"] = n
            if not last:
                piece["flags"] = piece["flags"].replace("P", "").replace("F", "") or "none"
            step = self.timed(event, expect={**frame, "tcp": piece}) if done == 0 else {"at": "+0", "expect": {
                **frame, "tcp": piece}}
            if done:
                step["note"] = f"line {event.line}: the TSO segment's bytes {seq.start + done}:{seq.start + done + n}"
            self.add(step, event)
            done += n

    def icmp_packet(self, p: IcmpPacket, event: Event) -> None:
        """An ICMP error about a segment the stack sent: the quote is built when the step runs, from the stack's ISN."""
        q = p.quote
        if p.direction.value != "<" or q is None or q.protocol != "tcp" or q.seq is None or p.ip is not None:
            raise self.skip(event.line, f"ICMP packet ({p.type}) other than an error about a TCP segment")
        icmp: dict[str, Any] = {"type": p.type_value, "code": p.code_value}
        if p.mtu is not None:
            icmp["mtu"] = p.mtu
        seq = q.seq.start or 0
        quote = {"ipv4": {"src": "stack", "dst": "remote"},
                 "tcp": {"sport": self.stack_port, "dport": self.peer_port,
                         "seq": {"abs": seq & 0xFFFFFFFF} if q.seq.absolute else _signed32(seq)}}
        if event.time.kind not in (TimeKind.ABSOLUTE, TimeKind.RELATIVE):
            raise ScenarioError(self.path, event.line, "an inbound packet needs a time, not a range or *")
        self.add(self.timed(event, inject={"icmp": icmp}, quote=quote), event)

    def learn_syn(self, options: tuple[TcpOption, ...]) -> None:
        """What the remote's SYN says about the segments the stack will send it."""
        self.peer_mss = next((o.value for o in options if isinstance(o, Mss)), 536)  # RFC 9293 3.7.1 default
        self.peer_ts = any(isinstance(o, Timestamp) for o in options)

    def send_mss(self) -> int:
        """The stack's segment size toward the remote: its MSS, our MTU's, less the timestamps it carries."""
        settings = apply_sysctls(PROFILES[self.profile], self.sysctls)
        mss = min(self.peer_mss, (self.script.config.mtu or 1500) - 40)
        return max(mss - (12 if self.peer_ts and settings.get("timestamps") else 0), 1)

    def ip_info(self, p: TcpPacket, event: Event) -> dict[str, Any]:
        info = p.ip
        if info is None:
            return {}
        out: dict[str, Any] = {}
        if info.ttl is not None:
            out["ttl"] = info.ttl
        tos = info.tos
        if info.ecn is not None:
            ecn = {"noecn": 0, "ect1": 1, "ect0": 2, "ce": 3}.get(info.ecn)
            if ecn is None:
                raise self.skip(event.line, f"ECN codepoint [{info.ecn}]")
            tos = ((tos or 0) & ~3) | ecn
        if tos is not None:
            out["tos"] = tos
        if info.flow_label is not None or info.hop_limit is not None or info.traffic_class is not None or info.dscp:
            raise self.skip(event.line, "IP details other than TTL, TOS and ECN")
        return out

    def options(self, options: tuple[TcpOption, ...], inbound: bool, event: Event) -> list[str]:
        """The option words, as the scenario compares them: an outbound list through its wire bytes."""
        words: list[Option] = []
        for o in options:
            if isinstance(o, Nop):
                words.append(Option(1))
            elif isinstance(o, Eol):
                words.append(Option(OPT_EOL))
            elif isinstance(o, Mss):
                words.append(Option(2, o.value))
            elif isinstance(o, WScale):
                words.append(Option(3, o.shift))
            elif isinstance(o, SackOk):
                words.append(Option(4))
            elif isinstance(o, Sack):
                # blocks count from the ISN of the side whose data they cover: the stack's data in an
                # inbound SACK (relative, as packetdrill writes it), the remote's in an outbound one
                # (absolute in the script; the scenario counts from the remote's ISN the runner learned)
                base = 0 if inbound else self.peer_isn
                words.append(Option(5, tuple(((a - base) & 0xFFFFFFFF, (b - base) & 0xFFFFFFFF)
                                             for a, b in o.blocks)))
            elif isinstance(o, Timestamp):
                if o.ecr_absolute:
                    raise self.skip(event.line, "an absolute TS ecr (ecr N!)")
                if inbound and isinstance(o.val, Wildcard):
                    raise ScenarioError(self.path, event.line, "TS val ... is for outbound packets")
                words.append(Option(8, (o.val, o.ecr)))
            elif isinstance(o, FastOpen):
                raise self.skip(event.line, "TCP Fast Open")
            elif isinstance(o, Md5):
                raise self.skip(event.line, "TCP MD5 signatures")
            elif isinstance(o, GenericOption):
                words.append(Option(o.kind, bytes.fromhex(o.data)))
            elif isinstance(o, RawOptions):
                raise self.skip(event.line, "raw option bytes")
        if inbound:
            return [_word_text(o, inbound=True) for o in words]
        return [_word_text(o, inbound=False) for o in _as_decoded(words)]

    # -- the document ---------------------------------------------------------------------------------------------
    def document(self) -> Translation:
        cfg = self.script.config
        settings = apply_sysctls(PROFILES[self.profile], self.sysctls)
        local = IPv4Address(cfg.local_ip)
        remote = IPv4Address(cfg.remote_ip)
        net = IPv4Network(f"{local}/{PREFIX}", strict=False)
        stack: dict[str, Any] = {"mac": STACK_MAC, "ip": f"{local}/{PREFIX}"}
        hosts: dict[str, Any] = {"remote": {"mac": PEER_MAC, "ip": str(remote)}}
        arp_from = "remote"
        if remote not in net:
            gateway = next(a for a in (net.broadcast_address - 1, net.broadcast_address - 2) if a != local)
            stack["gateway"] = str(gateway)
            hosts["gateway"] = {"mac": PEER_MAC, "ip": str(gateway)}
            arp_from = "gateway"
        if cfg.mtu is not None:
            stack["mtu"] = cfg.mtu
        stack["tcp"] = settings
        doc: dict[str, Any] = {
            "description": _description(self.script, self.lines, self.profile),
            "stack": stack,
            "hosts": hosts,
            "options": {
                "tolerance": cfg.tolerance_usecs / 1e6,
                "allow_unexpected": True,
                "ignore": [{"arp": {}}],
            },
        }
        prelude = {"at": "0", "inject": {"arp": {"op": "request", "spa": arp_from}},
                   "note": "the tun device packetdrill writes to has no link layer: the peer's MAC comes by ARP"}
        steps = [(prelude, 0), *self.steps]
        return _render(self.path, self.profile, doc, steps)


# -- rendering -------------------------------------------------------------------------------------------------
_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's when there: ten times faster

def _render(path: str, profile: str, doc: dict[str, Any], steps: list[tuple[dict[str, Any], int]]) -> Translation:
    head = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100, default_flow_style=None, allow_unicode=False)
    lines = [f"# {Path(path).name}, translated from packetdrill by simstack (profile {profile})", *head.splitlines(),
             "steps:"]
    t = Translation(path, profile, "")
    for step, line in steps:
        t.yaml_lines.append(len(lines) + 1)
        t.step_lines.append(line)
        first = True
        for key, value in step.items():
            prefix = "  - " if first else "    "
            first = False
            lines.append(f"{prefix}{key}: {_flow(key, value)}")
    t.text = "\n".join(lines) + "\n"
    return t


def _flow(key: str, value: Any) -> str:
    if key in ("at", "until") and isinstance(value, str):
        return f'"{value}"' if "~" in value else value  # +0.1 unquoted: the loader reads the sign
    text = yaml.dump(value, Dumper=_Dumper, default_flow_style=True, width=1 << 20, sort_keys=False).strip()
    if text.endswith("\n..."):
        text = text[:-4].strip()
    return text.removesuffix("...").strip()


# -- small helpers --------------------------------------------------------------------------------------------
def _name(fd: int) -> str:
    return f"fd{fd}"


def _seconds(usecs: int) -> str:
    text = f"{usecs / 1e6:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def _signed32(n: int) -> int:
    """A relative number as the scenario takes it: -2^31 .. 2^32-1 (it is read modulo 2^32)."""
    return n if -(1 << 31) <= n < (1 << 32) else n & 0xFFFFFFFF


def _word(e: Expr | None) -> str | None:
    return e.name if isinstance(e, Word) else None


def _flag_names(e: Expr | None) -> list[str] | None:
    """``O_RDWR | O_NONBLOCK`` -> its names; ``0`` -> ["0"]; None for anything else."""
    if isinstance(e, Word):
        return [e.name]
    if isinstance(e, Int) and e.value == 0:
        return ["0"]
    if isinstance(e, BitOr):
        left, right = _flag_names(e.left), _flag_names(e.right)
        return None if left is None or right is None else left + right
    return None


def _expr_text(e: Expr | None) -> str:
    if e is None:
        return "nothing"
    if isinstance(e, Wildcard):
        return "..."
    if isinstance(e, Int):
        return str(e.value)
    if isinstance(e, Word):
        return e.name
    if isinstance(e, Str):
        return repr(e.value)
    return type(e).__name__.lower()


_FLAG_LETTERS = {"F": "F", "S": "S", "R": "R", "P": "P", ".": ".", "U": "U", "E": "E", "W": "W"}


def _flags(text: str, tr: _Translator, event: Event) -> str:
    if text in ("", "-"):
        return "none"
    out = ""
    for letter in text:
        if letter not in _FLAG_LETTERS:
            raise tr.skip(event.line, f"TCP flag {letter!r}")
        out += _FLAG_LETTERS[letter]
    return out


def _as_decoded(options: list[Option]) -> list[Option]:
    """The list as the runner decodes the stack's bytes: a script's padding (``eol,eol``) is the padding emit adds."""
    if any(isinstance(o.value, Wildcard) or (isinstance(o.value, tuple) and any(isinstance(v, Wildcard) for v in o.value))
           for o in options):
        # TS val ...: decode a copy with a number in its place, then put the wildcard back
        stand_in = [Option(o.kind, tuple(0 if isinstance(v, Wildcard) else v for v in o.value))
                    if isinstance(o.value, tuple) else o for o in options]
        decoded = _as_decoded(stand_in)
        originals = iter(o for o in options if o.kind == 8)
        return [next(originals) if o.kind == 8 else o for o in decoded]
    try:
        raw = tcp_emit_options(tuple(options))
        parsed = parse_options(raw, 0, len(raw))
    except (ValueError, TypeError, Malformed):  # a list the codec refuses is compared as written
        return options
    if parsed and parsed[-1].kind == OPT_EOL and tcp_emit_options(parsed[:-1]) == raw:
        parsed = parsed[:-1]
    return list(parsed)


def _word_text(o: Option, inbound: bool) -> str:
    if o.kind == 8 and isinstance(o.value, tuple):
        val, ecr = o.value
        val_text = "*" if isinstance(val, Wildcard) else str(val)
        # packetdrill never checks an outbound TS ecr (run_packet.c verify_outbound_tcp_option)
        return f"TS val {val_text} ecr {ecr if inbound else '*'}"
    return option_text(o)


def _source_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []


_LICENCE = re.compile(r"copyright|redistribution|warrant|licen[cs]e|all rights reserved|liability|notice", re.I)


def _description(script: Script, lines: list[str], profile: str) -> str:
    """The script's own comment about what it tests, else its name."""
    blocks: list[list[str]] = [[]]
    first_event = min((e.line for e in script.events), default=len(lines) + 1)
    for text in lines[: first_event - 1]:
        s = text.strip()
        if s.startswith("//"):
            body = s.lstrip("/").strip()
            if body:
                blocks[-1].append(body)
            elif blocks[-1]:
                blocks.append([])
        elif blocks[-1]:
            blocks.append([])
    about = next((" ".join(b) for b in blocks if b and not any(_LICENCE.search(x) for x in b)), "")
    name = Path(script.path).name
    head = f"packetdrill script {name}, run against the {profile} profile."
    return f"{head} {about}" if about else head
