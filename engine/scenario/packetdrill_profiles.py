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
        "time_wait_drop_no_ack": True,
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
        "synack_retries": 5,  # tcp_synack_retries=5
        "initial_window": 10,
        "rfc5961": True,
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
    "net.inet.tcp.icmp_may_rst": _no_op("1"),  # a hard ICMP error ends a connection attempt, as simstack does
    "net.inet.tcp.keepinit": _no_op("75000"),  # FreeBSD's default, 75 s
}


def apply_sysctls(settings: dict[str, Any], sysctls: list[Sysctl]) -> dict[str, Any]:
    """``settings`` (a profile) moved by ``sysctls`` in order; SysctlError for one simstack cannot honour."""
    out = dict(settings)
    maxsockbuf = None
    wscale_on = out.get("wscale", -1) >= 0
    for s in sysctls:
        conv = FREEBSD_SYSCTLS.get(s.name)
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


_SYSCTL_W = re.compile(r"^\s*sysctl\s+-w\s+(.+?)\s*$")
_ASSIGN = re.compile(r"^([A-Za-z0-9_.]+)=(\S+)$")


def parse_sysctl(text: str) -> list[Sysctl] | None:
    """``sysctl -w a=1 b=2`` -> its assignments; None when the line is not a plain sysctl -w."""
    m = _SYSCTL_W.match(text)
    if m is None:
        return None
    out = []
    for word in m.group(1).split():
        a = _ASSIGN.match(word)
        if a is None:
            return None
        out.append(Sysctl(a.group(1), a.group(2)))
    return out or None


def is_defaults_sh(text: str) -> bool:
    """Google's harness file of Linux defaults, run by its relative path."""
    return re.fullmatch(r"\s*(\S*/)?defaults\.sh\s*", text) is not None
