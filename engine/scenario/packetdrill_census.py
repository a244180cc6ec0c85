"""What a collection of packetdrill scripts uses, counted: the translator's to-do list.

The suites are measured on hundreds of scripts; the census says which system
calls, socket options, constants, TCP options, flags, sysctls and shell
commands they need and how often, so support can be added where it counts.
"""

import shlex
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .packetdrill_ast import (
    ANY,
    Array,
    BitOr,
    Call,
    Code,
    Command,
    Expr,
    FastOpen,
    Field,
    IcmpPacket,
    Script,
    Struct,
    Syscall,
    TcpOption,
    TcpPacket,
    UdpPacket,
    Word,
)

_SEPARATORS = ("|", "||", "&&", ";")
_OPTION_NAMES = {
    "Nop": "nop",
    "Eol": "eol",
    "Mss": "mss",
    "WScale": "wscale",
    "SackOk": "sackOK",
    "Sack": "sack",
    "Timestamp": "TS",
    "Md5": "md5",
    "GenericOption": "gen",
    "RawOptions": "raw",
}


def shell_pipelines(command: Command) -> list[list[str]]:
    """The simple commands in a backtick line: one word list each, split at ``|``, ``;``, ``&&``, ``||``.

    Multi-line commands (Google's ``defaults.sh`` followed by more sysctls) give
    one or more per line; ``#`` lines in them are shell comments.
    """
    out: list[list[str]] = []
    for line in command.text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words = list(lexer)
        except ValueError:  # unbalanced quotes: a rough split still names the program
            words = line.split()
        current: list[str] = []
        for word in words:
            if word in _SEPARATORS:
                if current:
                    out.append(current)
                current = []
            else:
                current.append(word)
        if current:
            out.append(current)
    return out


def sysctl_assignments(command: Command) -> list[tuple[str, str]]:
    """``sysctl -w net.inet.tcp.insecure_rst=1`` -> [("net.inet.tcp.insecure_rst", "1")]."""
    found: list[tuple[str, str]] = []
    for words in shell_pipelines(command):
        if words and words[0].rsplit("/", 1)[-1] == "sysctl":
            for word in words[1:]:
                if "=" in word and not word.startswith("-"):
                    name, value = word.split("=", 1)
                    found.append((name, value))
    return found


def _option_name(option: TcpOption) -> str:
    if isinstance(option, FastOpen):
        return "FOEXP" if option.experimental else "FO"
    name = type(option).__name__
    return _OPTION_NAMES.get(name, name)


def _words(expr: Expr) -> Iterable[str]:
    """Every constant named in an expression, struct members and function names left out."""
    if isinstance(expr, Word):
        yield expr.name
    elif isinstance(expr, BitOr):
        yield from _words(expr.left)
        yield from _words(expr.right)
    elif isinstance(expr, Array | Struct):
        for item in expr.items:
            yield from _words(item)
    elif isinstance(expr, Field):
        yield from _words(expr.value)
    elif isinstance(expr, Call):
        for arg in expr.args:
            yield from _words(arg)


def _show(expr: Expr) -> str:
    if expr is ANY:
        return "..."
    if isinstance(expr, Word):
        return expr.name
    if isinstance(expr, BitOr):
        return f"{_show(expr.left)}|{_show(expr.right)}"
    return "<value>"


@dataclass
class Census:
    scripts: int = 0
    events: int = 0
    syscalls: Counter[str] = field(default_factory=Counter)
    socket_options: Counter[str] = field(default_factory=Counter)  # "getsockopt SOL_SOCKET SO_RCVBUF"
    fcntl: Counter[str] = field(default_factory=Counter)  # "F_SETFL O_RDWR|O_NONBLOCK"
    errnos: Counter[str] = field(default_factory=Counter)
    constants: Counter[str] = field(default_factory=Counter)
    times: Counter[str] = field(default_factory=Counter)
    packets: Counter[str] = field(default_factory=Counter)  # "< tcp", "< icmp unreachable port_unreachable"
    tcp_flags: Counter[str] = field(default_factory=Counter)  # "< S.", "> F."
    tcp_options: Counter[str] = field(default_factory=Counter)
    harness_options: Counter[str] = field(default_factory=Counter)  # "--tolerance_usecs=50000"
    sysctls: Counter[str] = field(default_factory=Counter)  # "net.inet.tcp.insecure_rst=1"
    programs: Counter[str] = field(default_factory=Counter)  # every program in a backtick line
    commands: Counter[str] = field(default_factory=Counter)  # backtick lines that are not only sysctls, as written
    code_blocks: int = 0

    def add(self, script: Script) -> None:
        self.scripts += 1
        self.events += len(script.events)
        for opt in script.options:
            self.harness_options[f"--{opt.name}" + (f"={opt.value}" if opt.value is not None else "")] += 1
        commands = [c for c in (script.init_command, script.cleanup_command) if c is not None]
        for event in script.events:
            self.times[event.time.kind.value] += 1
            action = event.action
            if isinstance(action, Syscall):
                self._syscall(action)
                if action.end is not None:
                    self.times["blocking span"] += 1
            elif isinstance(action, TcpPacket):
                d = action.direction.value
                self.packets[f"{d} tcp"] += 1
                self.tcp_flags[f"{d} {action.flags or '-'}"] += 1
                if action.options is ANY:
                    self.tcp_options["... (any)"] += 1
                else:
                    for option in action.options:
                        self.tcp_options[_option_name(option)] += 1
            elif isinstance(action, UdpPacket):
                self.packets[f"{action.direction.value} udp"] += 1
            elif isinstance(action, IcmpPacket):
                words = ["icmp", action.type, *([action.code] if action.code else [])]
                self.packets[f"{action.direction.value} {' '.join(words)}"] += 1
            elif isinstance(action, Command):
                commands.append(action)
            elif isinstance(action, Code):
                self.code_blocks += 1
        for command in commands:
            assignments = sysctl_assignments(command)
            for name, value in assignments:
                self.sysctls[f"{name}={value}"] += 1
            pipelines = shell_pipelines(command)
            for words in pipelines:
                self.programs[words[0]] += 1
            if len(assignments) != len(pipelines) or not assignments:
                self.commands[" ".join(command.text.split())] += 1

    def _syscall(self, call: Syscall) -> None:
        self.syscalls[call.name] += 1
        if call.errno:
            self.errnos[call.errno] += 1
        for arg in call.args:
            self.constants.update(_words(arg))
        if call.name in ("setsockopt", "getsockopt") and len(call.args) >= 3:
            self.socket_options[f"{call.name} {_show(call.args[1])} {_show(call.args[2])}"] += 1
        if call.name == "fcntl" and len(call.args) >= 2:
            self.fcntl[" ".join(_show(a) for a in call.args[1:])] += 1

    def report(self) -> str:
        lines = [f"{self.scripts} scripts, {self.events} events, {self.code_blocks} %{{ code }}% blocks"]
        sections: list[tuple[str, Counter[str]]] = [
            ("time specs", self.times),
            ("system calls", self.syscalls),
            ("socket options", self.socket_options),
            ("fcntl", self.fcntl),
            ("errno results", self.errnos),
            ("constants in arguments", self.constants),
            ("packets", self.packets),
            ("TCP flags", self.tcp_flags),
            ("TCP options", self.tcp_options),
            ("harness options", self.harness_options),
            ("sysctls", self.sysctls),
            ("programs in shell lines", self.programs),
            ("shell lines other than sysctl", self.commands),
        ]
        for title, counter in sections:
            lines.append("")
            lines.append(f"{title} ({sum(counter.values())}):")
            width = max((len(str(n)) for n in counter.values()), default=1)
            for name, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"  {n:>{width}}  {name}")
        return "\n".join(lines)


def census(scripts: Iterable[Script]) -> Census:
    c = Census()
    for script in scripts:
        c.add(script)
    return c
