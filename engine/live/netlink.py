"""Links and addresses of the current network namespace, over rtnetlink.

Live mode needs four things from the kernel: what a name already is, links up
or down, an address on the kernel side of a TAP, and whether a device is gone.
Asking netlink (not parsing ``ip`` output) gives typed answers and errno codes.

A few fixed-layout messages are all that takes, so this speaks rtnetlink
itself (rtnetlink(7), netlink(7)) rather than load pyroute2, which costs a
live process some 22 MB of resident memory; pyroute2 stays for ``--lab``
(lab.py), imported only there. Every length in a reply is checked against
the datagram before it is used: a malformed reply is a SetupError.
"""

import errno
import os
import socket
import struct
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from simstack.protocols.addresses import ip_to_str

from ..wire.errors import SetupError

# include/uapi/linux/netlink.h
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLA_TYPE_MASK = ~(0x8000 | 0x4000) & 0xFFFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
NETLINK_ROUTE = 0
# include/uapi/linux/rtnetlink.h
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWADDR = 20
RT_SCOPE_UNIVERSE = 0
# include/uapi/linux/if_link.h
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
# include/uapi/linux/if_addr.h
IFA_ADDRESS = 1
IFA_LOCAL = 2
# include/uapi/linux/if_tun.h (IFLA_TUN_* of enum ifla_tun in if_link.h)
IFLA_TUN_TYPE = 3
IFLA_TUN_MULTI_QUEUE = 7
TUN_TYPE_TUN = 1
# include/uapi/linux/if.h
IFF_UP = 0x1

# struct nlmsghdr: len u32, type u16, flags u16, seq u32, pid u32 (host byte order)
NLMSGHDR = struct.Struct("=IHHII")
# struct ifinfomsg: family u8, pad u8, type u16, index s32, flags u32, change u32
IFINFOMSG = struct.Struct("=BxHiII")
# struct ifaddrmsg: family u8, prefixlen u8, flags u8, scope u8, index u32
IFADDRMSG = struct.Struct("=BBBBI")
# struct rtattr (struct nlattr): len u16, type u16
RTATTR = struct.Struct("=HH")
NLMSGERR = struct.Struct("=i")  # struct nlmsgerr starts with the negative errno; 0 is an ACK

RECV_SIZE = 65536  # a datagram larger than this is truncated by the kernel: refused, never half-read
REPLY_TIMEOUT = 10.0  # seconds; the kernel answers every request with NLM_F_ACK at once


class NetlinkError(Exception):
    """An NLMSG_ERROR from the kernel; ``code`` is the positive errno, as in pyroute2's."""

    def __init__(self, code: int) -> None:
        super().__init__(code, os.strerror(code))
        self.code = code


class Malformed(Exception):
    """A reply whose lengths or fields do not fit the datagram it came in."""


class _Errno(Protocol):
    @property
    def code(self) -> int: ...


class _Socket(Protocol):
    def send(self, data: bytes, /) -> int: ...
    def recv(self, size: int, /) -> bytes: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Link:
    name: str
    index: int
    kind: str | None  # rtnetlink IFLA_INFO_KIND: "tun", "veth", "bridge"; None for physical and loopback
    tun_type: int | None  # IFLA_TUN_TYPE for kind "tun": 1 TUN, 2 TAP
    multi_queue: bool
    up: bool
    mtu: int

    def why_not_single_queue_tap(self) -> str | None:
        """Why attaching with IFF_TAP|IFF_NO_PI would fail, before trying it."""
        if self.kind != "tun":
            what = f"a {self.kind} device" if self.kind else "a physical or loopback device"
            return f"{self.name} exists and is not a TAP (it is {what}): choose another name or delete it"
        if self.tun_type == TUN_TYPE_TUN:
            return f"{self.name} exists and is a TUN (IP-level) device, not a TAP: recreate it with mode tap"
        if self.multi_queue:
            return f"{self.name} is a multi-queue TAP; simstack attaches to single-queue TAPs only"
        return None


class Netlink:
    """One rtnetlink socket for the setup and teardown of a live session."""

    def __init__(self, sock: _Socket | None = None) -> None:
        """``sock`` stands in for the kernel in tests; by default a NETLINK_ROUTE socket."""
        if sock is None:
            try:
                s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
            except OSError as e:
                raise SetupError(f"cannot open a netlink socket: {e.strerror}") from None
            try:
                s.bind((0, 0))  # the kernel picks the port id
                s.settimeout(REPLY_TIMEOUT)
            except OSError as e:
                s.close()
                raise SetupError(f"cannot open a netlink socket: {e.strerror}") from None
            sock = s
        self._sock = sock
        self._seq = 0

    def __enter__(self) -> "Netlink":
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def link(self, name: str) -> Link | None:
        """The link called ``name`` in this namespace, or None."""
        what = f"cannot look up {name}"
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + rtattr(IFLA_IFNAME, name.encode() + b"\0")
        try:
            replies = self._request(what, RTM_GETLINK, 0, body)
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return None
            raise SetupError(_message(what, e)) from None
        links = [payload for kind, payload in replies if kind == RTM_NEWLINK]
        if not links:
            raise SetupError(f"{what}: malformed netlink reply: no RTM_NEWLINK")
        try:
            return decode_link(name, links[0])
        except Malformed as e:
            raise SetupError(f"{what}: malformed netlink reply: {e}") from None

    def set_up(self, link: Link, up: bool = True) -> None:
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, link.index, IFF_UP if up else 0, IFF_UP)  # ifi_change: only IFF_UP
        self._do(f"cannot set {link.name} {'up' if up else 'down'}", RTM_SETLINK, 0, body)

    def set_mtu(self, link: Link, mtu: int) -> None:
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, link.index, 0, 0) + rtattr(IFLA_MTU, struct.pack("=I", mtu))
        self._do(f"cannot set the MTU of {link.name} to {mtu}", RTM_SETLINK, 0, body)

    def add_address(self, link: Link, ip: bytes, prefix_len: int) -> None:
        """Give the kernel's side of the link an address, so the host can reach the stack at once."""
        body = (IFADDRMSG.pack(socket.AF_INET, prefix_len, 0, RT_SCOPE_UNIVERSE, link.index)
                + rtattr(IFA_LOCAL, ip) + rtattr(IFA_ADDRESS, ip))
        self._do(f"cannot add {ip_to_str(ip)}/{prefix_len} to {link.name}", RTM_NEWADDR,
                 NLM_F_CREATE | NLM_F_EXCL, body)

    def delete(self, link: Link) -> None:
        self._do(f"cannot delete {link.name}", RTM_DELLINK, 0, IFINFOMSG.pack(socket.AF_UNSPEC, 0, link.index, 0, 0))

    def _do(self, what: str, kind: int, flags: int, body: bytes) -> None:
        try:
            self._request(what, kind, flags, body)
        except NetlinkError as e:
            raise SetupError(_message(what, e)) from None

    def _request(self, what: str, kind: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send one request with NLM_F_ACK; the messages answering it, up to its ACK or NLMSG_DONE.

        Raises NetlinkError for an NLMSG_ERROR with an errno, SetupError for a
        socket error or a malformed reply.
        """
        self._seq = self._seq % 0xFFFFFFFF + 1
        seq = self._seq
        try:
            self._sock.send(nlmsg(kind, NLM_F_REQUEST | NLM_F_ACK | flags, seq, body))
            replies: list[tuple[int, bytes]] = []
            while True:
                data = self._sock.recv(RECV_SIZE)
                for mtype, _flags, mseq, payload in parse_messages(data):
                    if mseq != seq:
                        continue  # the answer to an earlier request that was given up on
                    if mtype in (NLMSG_ERROR, NLMSG_DONE):
                        code = _error_code(payload, mtype)
                        if code:
                            raise NetlinkError(code)
                        return replies
                    if mtype != NLMSG_NOOP:
                        replies.append((mtype, payload))
        except Malformed as e:
            raise SetupError(f"{what}: malformed netlink reply: {e}") from None
        except TimeoutError:
            raise SetupError(f"{what}: no netlink reply in {REPLY_TIMEOUT:g} s") from None
        except OSError as e:
            raise SetupError(f"{what}: {e.strerror or e}") from None


# -- encoding ----------------------------------------------------------------------------
def align(n: int) -> int:
    """NLMSG_ALIGN and RTA_ALIGN: messages and attributes start on 4-byte boundaries."""
    return (n + 3) & ~3


def nlmsg(kind: int, flags: int, seq: int, body: bytes, pid: int = 0) -> bytes:
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, seq, pid) + body


def rtattr(kind: int, value: bytes) -> bytes:
    """One attribute, padded to RTA_ALIGNTO; rta_len counts the header and value, not the padding."""
    n = RTATTR.size + len(value)
    return RTATTR.pack(n, kind) + value + b"\0" * (align(n) - n)


# -- decoding ----------------------------------------------------------------------------
def parse_messages(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) of each netlink message in a datagram."""
    out = []
    at = 0
    while at < len(data):
        if len(data) - at < NLMSGHDR.size:
            raise Malformed(f"{len(data) - at} bytes left, less than a message header")
        length, kind, flags, seq, _pid = NLMSGHDR.unpack_from(data, at)
        if length < NLMSGHDR.size or length > len(data) - at:
            raise Malformed(f"message length {length} with {len(data) - at} bytes left")
        out.append((kind, flags, seq, data[at + NLMSGHDR.size:at + length]))
        at += align(length)
    if not out:
        raise Malformed("an empty datagram")
    return out


def parse_attrs(data: bytes) -> dict[int, bytes]:
    """Attribute type to value; a repeated type keeps its first value, as the kernel sends each once."""
    out: dict[int, bytes] = {}
    at = 0
    while len(data) - at >= RTATTR.size:
        length, kind = RTATTR.unpack_from(data, at)
        if length < RTATTR.size or length > len(data) - at:
            raise Malformed(f"attribute {kind & NLA_TYPE_MASK} length {length} with {len(data) - at} bytes left")
        out.setdefault(kind & NLA_TYPE_MASK, data[at + RTATTR.size:at + length])
        at += align(length)
    return out  # fewer than 4 bytes left over: padding (RTA_OK stops there too)


def decode_link(name: str, payload: bytes) -> Link:
    """A Link from the payload of an RTM_NEWLINK: struct ifinfomsg, then its attributes."""
    if len(payload) < IFINFOMSG.size:
        raise Malformed(f"RTM_NEWLINK of {len(payload)} bytes, shorter than struct ifinfomsg")
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(payload)
    attrs = parse_attrs(payload[IFINFOMSG.size:])
    mtu = _u32(attrs[IFLA_MTU], "IFLA_MTU") if IFLA_MTU in attrs else 1500
    kind: str | None = None
    tun_type: int | None = None
    multi_queue = False
    if IFLA_LINKINFO in attrs:
        info = parse_attrs(attrs[IFLA_LINKINFO])
        if IFLA_INFO_KIND in info:
            kind = info[IFLA_INFO_KIND].split(b"\0", 1)[0].decode("ascii", "replace")
        if kind == "tun" and IFLA_INFO_DATA in info:
            data = parse_attrs(info[IFLA_INFO_DATA])
            if IFLA_TUN_TYPE in data:
                tun_type = _u8(data[IFLA_TUN_TYPE], "IFLA_TUN_TYPE")
            if IFLA_TUN_MULTI_QUEUE in data:
                multi_queue = bool(_u8(data[IFLA_TUN_MULTI_QUEUE], "IFLA_TUN_MULTI_QUEUE"))
    return Link(name, index, kind, tun_type, multi_queue, bool(flags & IFF_UP), mtu)


def _u32(value: bytes, what: str) -> int:
    if len(value) < 4:
        raise Malformed(f"{what} of {len(value)} bytes")
    n: int = struct.unpack_from("=I", value)[0]
    return n


def _u8(value: bytes, what: str) -> int:
    if not value:
        raise Malformed(f"{what} of 0 bytes")
    return value[0]


def _error_code(payload: bytes, kind: int) -> int:
    """The positive errno of an NLMSG_ERROR (0 for an ACK), or of an NLMSG_DONE that ends a failed dump."""
    if len(payload) < NLMSGERR.size:
        if kind == NLMSG_DONE:
            return 0  # a dump's NLMSG_DONE may carry no error at all
        raise Malformed(f"NLMSG_ERROR of {len(payload)} bytes")
    (error,) = NLMSGERR.unpack_from(payload)
    if error > 0:
        raise Malformed(f"NLMSG_ERROR with a positive error {error}")
    return -int(error)


def _message(what: str, e: _Errno) -> str:
    """The SetupError text for an errno from netlink (ours or pyroute2's NetlinkError, both with ``code``)."""
    if e.code == errno.EPERM:
        return f"{what}: operation not permitted: live mode needs root or CAP_NET_ADMIN"
    return f"{what}: {os.strerror(e.code)}"
