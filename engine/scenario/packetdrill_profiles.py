"""The stack a packetdrill script expects: a profile of TCP settings, and the sysctls that move them.

A script asserts the behaviour of the kernel it was written against: FreeBSD's
window of 65535 over a 65536-byte buffer that becomes 65700 once the MSS is
known, its option order (``mss,nop,wscale,sackOK,TS``), its 100 ms delayed
ACK; or Linux's (``mss,sackOK,TS,nop,wscale``) under Google's ``defaults.sh``.
A profile is the ``stack.tcp`` settings (TcpConfig) that make simstack behave
so; the script's own ``sysctl -w`` lines then move individual settings, as
they would on the kernel.

The profile comes from the script: ``net.inet.*`` or ``kern.ipc.*`` sysctls
mean FreeBSD, ``defaults.sh`` or ``/proc/sys`` mean Linux; a script that says
neither gets Linux's, packetdrill's home. ``--profile`` overrides the choice.
"""

import re
from dataclasses import dataclass
from typing import Any

from .packetdrill_ast import Command, Script

PROFILES: dict[str, dict[str, Any]] = {
    # FreeBSD 13/14 defaults, as the tcp-testsuite scripts reset them.
    "freebsd": {
        "rcvbuf": 65536,  # net.inet.tcp.recvspace
        "sndbuf": 32768,  # net.inet.tcp.sendspace
        "mss_buffers": True,  # tcp_mss(): both buffers rounded up to a multiple of the MSS
        "wscale": 6,  # the smallest shift with 65535 << shift >= kern.ipc.maxsockbuf (2 MiB)
        "timestamps": True,  # net.inet.tcp.rfc1323=1
        "sack": True,  # net.inet.tcp.sack.enable=1
        "dsack": True,
        "options_layout": "freebsd",
        "window_steps": False,  # tcp_output(): the window offers all free space (sbspace), never less than before
        "delack_time": 0.1,  # net.inet.tcp.delacktime=100 ms
        "rto_initial": 1.0,  # net.inet.tcp.rexmit_initial=1000 ms
        "rto_min": 0.03,  # net.inet.tcp.rexmit_min=30 ms
        "rto_slop": 0.2,  # net.inet.tcp.rexmit_slop=200 ms
        "accept_to_buffer": True,  # tcp_input: rcv_wnd = max(sbspace, rcv_adv - rcv_nxt)
        "ack_second_segment": True,  # DELAY_ACK(): a second segment while the delayed ACK is pending goes at once
        "resend_fin": True,  # tcp_outflags[]: FIN_WAIT_1, CLOSING and LAST_ACK send FIN on every segment
        # TIME-WAIT as the suite's STANDARD expects it: RFC 1337, RFC 5961 4 for any SYN, no answer without ACK
        "rfc1337": True,
        "time_wait_reopen": False,
        "bsd_time_wait": True,
        "ack_old_segments": True,  # tcp_input trims an old duplicate and still processes its ACK
        "listen_synack_rst": False,  # tcp_input: "SYN|ACK invalid, segment rejected", without a RST
        "icmp_syn_sent": "freebsd",  # net.inet.tcp.icmp_may_rst=1
        "msl": 30.0,  # net.inet.tcp.msl=30000 ms
        "initial_window": 10,  # net.inet.tcp.initcwnd_segments
        "rfc5961": True,
        "rfc5961_rst": True,  # net.inet.tcp.insecure_rst=0
        "rfc5961_syn": True,  # net.inet.tcp.insecure_syn=0
    },
    # Linux with Google's gtests/net/common/defaults.sh.
    "linux": {
        "rcvbuf": 540000,  # tcp_rmem[1]
        "sndbuf": 262144,  # tcp_wmem[1]
        "wscale": 8,  # tcp_select_initial_window over tcp_rmem[2] = 15 MiB
        "timestamps": True,  # tcp_timestamps=1
        "sack": True,  # tcp_sack=1
        "dsack": True,  # tcp_dsack=1
        "options_layout": "linux",
        "delack_time": 0.04,  # TCP_DELACK_MIN
        "rto_initial": 1.0,  # TCP_TIMEOUT_INIT
        "rto_min": 0.2,  # TCP_RTO_MIN
        "syn_retries": 5,  # tcp_syn_retries=5
        "quickack": 16,  # TCP_MAX_QUICKACKS: the first segments of a connection are ACKed at once
        "abc_limit": 1000,  # tcp_slow_start(): cwnd grows by every segment an ACK covers
        "double_buffers": True,  # sock_setsockopt(): "the kernel doubles our value" for its bookkeeping
        "drop_future_ack": True,  # tcp_ack(): "If the ack includes data we haven't sent yet, discard this segment"
        "synack_retries": 5,  # tcp_synack_retries=5
        "initial_window": 10,
        "rfc5961": True,
        "congestion": "cubic",  # tcp_congestion_control's default
        "prr": True,  # tcp_cwnd_reduction(): Proportional Rate Reduction in recovery
    },
}

_FREEBSD_SYSCTL = re.compile(r"\b(net\.inet\.|kern\.ipc\.)")
_LINUX_HINT = re.compile(r"defaults\.sh|/proc/sys|\bnet\.ipv4\.")
MAX_WSCALE = 14


class SysctlError(Exception):
    """A sysctl simstack cannot honour: the script is skipped, naming it."""


@dataclass(frozen=True)
class Sysctl:
    name: str
    value: str


def commands(script: Script) -> list[Command]:
    cmds = [e.action for e in script.events if isinstance(e.action, Command)]
    return [c for c in (script.init_command, *cmds, script.cleanup_command) if c is not None]


def detect(script: Script) -> str:
    """The profile a script was written for, from what its shell lines touch."""
    for cmd in commands(script):
        if _FREEBSD_SYSCTL.search(cmd.text):
            return "freebsd"
        if _LINUX_HINT.search(cmd.text):
            return "linux"
    return "linux"


def _int(s: Sysctl, lo: int, hi: int) -> int:
    try:
        value = int(s.value, 0)
    except ValueError:
        raise SysctlError(f"sysctl {s.name}={s.value}") from None
    if not lo <= value <= hi:
        raise SysctlError(f"sysctl {s.name}={s.value}")
    return value


def _flag(s: Sysctl, on: dict[str, Any], off: dict[str, Any]) -> dict[str, Any]:
    value = _int(s, 0, 1)
    return on if value else off


def _wscale_for(maxsockbuf: int) -> int:
    """FreeBSD's tcp_connect/syncache: the smallest shift with TCP_MAXWIN << shift >= sb_max."""
    shift = 0
    while shift < MAX_WSCALE and (0xFFFF << shift) < maxsockbuf:
        shift += 1
    return shift


def _rfc1323(s: Sysctl) -> dict[str, Any]:
    # 0 off, 1 both, 2 window scaling only, 3 timestamps only (tcp_subr.c V_tcp_do_rfc1323)
    value = _int(s, 0, 3)
    return {"timestamps": value in (1, 3), "wscale_on": value in (1, 2)}


def _no_op(*allowed: str) -> Any:
    """A sysctl whose value(s) ``allowed`` change nothing simstack does; any other value is not supported."""

    def check(s: Sysctl) -> dict[str, Any]:
        if s.value not in allowed:
            raise SysctlError(f"sysctl {s.name}={s.value}")
        return {}

    return check


def _ms(key: str, lo: float, hi: float) -> Any:
    def conv(s: Sysctl) -> dict[str, Any]:
        value = _int(s, 0, 1 << 31) / 1000
        if not lo <= value <= hi:
            raise SysctlError(f"sysctl {s.name}={s.value}")
        return {key: value}

    return conv


def _rexmit_initial(s: Sysctl) -> dict[str, Any]:
    return {"rto_initial": _int(s, 1, 600_000) / 1000}


def _rexmit_slop(s: Sysctl) -> dict[str, Any]:
    # tcp_timer.h TCPT_RANGESET: every RTO computed gets the slop added
    return {"rto_slop": _int(s, 0, 600_000) / 1000}


def _rexmit_min(s: Sysctl) -> dict[str, Any]:
    return {"rto_min": _int(s, 1, 600_000) / 1000}


# FreeBSD's sysctls that the tcp-testsuite sets, mapped onto TcpConfig settings.
FREEBSD_SYSCTLS: dict[str, Any] = {
    "net.inet.tcp.insecure_rst": lambda s: _flag(s, {"rfc5961_rst": False}, {"rfc5961_rst": True}),
    "net.inet.tcp.insecure_syn": lambda s: _flag(s, {"rfc5961_syn": False}, {"rfc5961_syn": True}),
    "net.inet.tcp.recvspace": lambda s: {"rcvbuf": _int(s, 256, 1 << 30)},
    "net.inet.tcp.sendspace": lambda s: {"sndbuf": _int(s, 256, 1 << 30)},
    "net.inet.tcp.sack.enable": lambda s: {"sack": bool(_int(s, 0, 1))},
    "net.inet.tcp.rfc1323": _rfc1323,
    "kern.ipc.maxsockbuf": lambda s: {"maxsockbuf": _int(s, 1, (1 << 32) - 1)},
    "net.inet.tcp.delacktime": _ms("delack_time", 0.001, 0.2),
    "net.inet.tcp.rexmit_initial": _rexmit_initial,
    "net.inet.tcp.rexmit_slop": _rexmit_slop,
    "net.inet.tcp.rexmit_min": _rexmit_min,
    "net.inet.tcp.drop_synfin": lambda s: {"drop_synfin": bool(_int(s, 0, 1))},
    # What simstack never did, so turning it off (or leaving it at its default) changes nothing:
    "net.inet.tcp.blackhole": _no_op("0"),  # answer closed ports with RST (0 is FreeBSD's default)
    "net.inet.tcp.hostcache.purgenow": _no_op("1"),  # simstack keeps no host cache
    "net.inet.tcp.ecn.enable": _no_op("0", "2"),  # 2: ECN only when the peer asks; simstack's peers never do
    "net.inet.tcp.rexmit_drop_options": _no_op("0"),  # simstack keeps the SYN's options on a retry
    "net.inet.tcp.icmp_may_rst": lambda s: {"icmp_syn_sent": "freebsd" if _int(s, 0, 1) else "rfc1122"},
    "net.inet.tcp.keepinit": _no_op("75000"),  # FreeBSD's default, 75 s
}


def apply_sysctls(settings: dict[str, Any], sysctls: list[Sysctl]) -> dict[str, Any]:
    """``settings`` (a profile) moved by ``sysctls`` in order; SysctlError for one simstack cannot honour."""
    out = dict(settings)
    maxsockbuf = None
    wscale_on = out.get("wscale", -1) >= 0
    for s in sysctls:
        conv = SYSCTLS.get(s.name)
        if conv is None:
            raise SysctlError(f"sysctl {s.name}")
        changes = conv(s)
        maxsockbuf = changes.pop("maxsockbuf", maxsockbuf)
        wscale_on = changes.pop("wscale_on", wscale_on)
        out.update(changes)
    if maxsockbuf is not None or "wscale" in out:
        shift = _wscale_for(maxsockbuf) if maxsockbuf is not None else max(out.get("wscale", -1), 0)
        out["wscale"] = shift if wscale_on else -1
    if out.get("rto_min", 0) > out.get("rto_initial", 1.0):
        out["rto_min"] = out["rto_initial"]
    return out


def _linux_buffer(key: str) -> Any:
    """tcp_rmem / tcp_wmem: "min default max"; the default is the socket's size."""

    def conv(s: Sysctl) -> dict[str, Any]:
        words = s.value.split()
        if len(words) != 3 or not all(w.isdigit() for w in words) or not 256 <= int(words[1]) <= 1 << 30:
            raise SysctlError(f"sysctl {s.name}={s.value}")
        return {key: int(words[1])}

    return conv


def _count(key: str, lo: int, hi: int) -> Any:
    return lambda s: {key: _int(s, lo, hi)}


def _seconds(key: str, lo: int, hi: int) -> Any:
    return lambda s: {key: float(_int(s, lo, hi))}


# Linux's, as Google's scripts set them (set_sysctls.py /proc/sys/net/ipv4/NAME=VALUE or sysctl -q).
LINUX_SYSCTLS: dict[str, Any] = {
    "net.ipv4.tcp_timestamps": lambda s: {"timestamps": bool(_int(s, 0, 2))},
    "net.ipv4.tcp_sack": lambda s: {"sack": bool(_int(s, 0, 1))},
    "net.ipv4.tcp_dsack": lambda s: {"dsack": bool(_int(s, 0, 1))},
    "net.ipv4.tcp_window_scaling": lambda s: {"wscale_on": bool(_int(s, 0, 1))},
    "net.ipv4.tcp_rmem": _linux_buffer("rcvbuf"),
    "net.ipv4.tcp_wmem": _linux_buffer("sndbuf"),
    "net.ipv4.tcp_syn_retries": _count("syn_retries", 1, 127),
    "net.ipv4.tcp_synack_retries": _count("synack_retries", 0, 255),
    "net.ipv4.tcp_retries2": _count("retries", 0, 255),
    "net.ipv4.tcp_rfc1337": lambda s: {"rfc1337": bool(_int(s, 0, 1))},
    "net.ipv4.tcp_fin_timeout": _seconds("fin_timeout", 1, 3600),
    "net.ipv4.tcp_keepalive_time": _seconds("keepalive_time", 1, 604800),
    "net.ipv4.tcp_keepalive_intvl": _seconds("keepalive_intvl", 1, 86400),
    "net.ipv4.tcp_keepalive_probes": _count("keepalive_probes", 1, 255),
    # what simstack never does, so the value defaults.sh or a script gives changes nothing:
    "net.ipv4.tcp_slow_start_after_idle": _no_op("0"),  # simstack keeps cwnd over idle periods
    "net.ipv4.tcp_tso_win_divisor": lambda s: {},  # TSO deferral: simstack never defers a send
    "net.ipv4.tcp_min_tso_segs": lambda s: {},  # TSO sizing: the wire carries MSS-sized segments either way
    "net.ipv4.tcp_congestion_control": _no_op("cubic"),  # defaults.sh's own value
    "net.ipv4.tcp_ecn": _no_op("0", "2"),  # no ECN unless the peer asks; simstack's peers never do
}
SYSCTLS = {**FREEBSD_SYSCTLS, **LINUX_SYSCTLS}


_ASSIGN = re.compile(r"^([A-Za-z0-9_./]+)=(\S+|\"[^\"]*\")$")
_WORDS = re.compile(r'(?:[^\s"]|"[^"]*")+')


def parse_command(text: str) -> tuple[list[Sysctl], str | None]:
    """A backtick line as sysctl assignments, and the first of its lines that is not one (None: all are).

    Understood, one per line: ``sysctl -w a=1`` (FreeBSD), ``sysctl -q net.ipv4.x=1`` and
    ``set_sysctls.py /proc/sys/net/ipv4/x=1`` (Google's), ``defaults.sh``, and the undo file
    set_sysctls.py leaves (``/tmp/sysctl_restore_${PPID}.sh``), which restores the host after a run.
    """
    out: list[Sysctl] = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or is_defaults_sh(line) or re.fullmatch(r"/tmp/sysctl_restore_\S*\.sh", line):
            continue
        words = _WORDS.findall(line)
        program = words[0].rsplit("/", 1)[-1]
        if program == "sysctl":
            args = [w for w in words[1:] if w not in ("-w", "-q", "-e")]
        elif program == "set_sysctls.py":
            args = words[1:]
        else:
            return out, line
        if not args:
            return out, line
        for word in args:
            a = _ASSIGN.match(word)
            if a is None:
                return out, line
            name = a.group(1)
            if name.startswith("/proc/sys/"):
                name = name[len("/proc/sys/"):]
            out.append(Sysctl(name.replace("/", "."), a.group(2).strip('"')))
    return out, None


def is_defaults_sh(text: str) -> bool:
    """Google's harness file of Linux defaults, run by its relative path."""
    return re.fullmatch(r"\s*(\S*/)?defaults\.sh\s*", text) is not None
