"""Links and addresses of the current network namespace, over rtnetlink (pyroute2).

Live mode needs four things from the kernel: what a name already is, links up
or down, an address on the kernel side of a TAP, and whether a device is gone.
Asking netlink (not parsing ``ip`` output) gives typed answers and errno codes.
"""

import errno
import os
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from pyroute2 import IPRoute, NetlinkError

from simstack.protocols.addresses import ip_to_str

from ..wire.errors import SetupError

IFF_UP = 0x1
TUN_TYPE_TUN = 1


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

    def __init__(self) -> None:
        try:
            self._ipr = IPRoute()
        except OSError as e:
            raise SetupError(f"cannot open a netlink socket: {e.strerror}") from None

    def __enter__(self) -> "Netlink":
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._ipr.close()

    def link(self, name: str) -> Link | None:
        """The link called ``name`` in this namespace, or None."""
        try:
            found = self._ipr.link_lookup(ifname=name)
            if not found:
                return None
            msg = self._ipr.get_links(found[0])[0]
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return None
            raise SetupError(_message(f"cannot look up {name}", e)) from None
        info = msg.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        tun_type: int | None = None
        multi_queue = False
        if kind == "tun":
            data = info.get_attr("IFLA_INFO_DATA")
            if data is not None:
                tun_type = data.get_attr("IFLA_TUN_TYPE")
                multi_queue = bool(data.get_attr("IFLA_TUN_MULTI_QUEUE"))
        return Link(name, int(msg["index"]), kind, tun_type, multi_queue, bool(msg["flags"] & IFF_UP),
                    int(msg.get_attr("IFLA_MTU") or 1500))

    def set_up(self, link: Link, up: bool = True) -> None:
        self._do(f"cannot set {link.name} {'up' if up else 'down'}", "link", "set", index=link.index,
                 state="up" if up else "down")

    def set_mtu(self, link: Link, mtu: int) -> None:
        self._do(f"cannot set the MTU of {link.name} to {mtu}", "link", "set", index=link.index, mtu=mtu)

    def add_address(self, link: Link, ip: bytes, prefix_len: int) -> None:
        """Give the kernel's side of the link an address, so the host can reach the stack at once."""
        text = f"{ip_to_str(ip)}/{prefix_len}"
        self._do(f"cannot add {text} to {link.name}", "addr", "add", index=link.index, address=ip_to_str(ip),
                 prefixlen=prefix_len)

    def delete(self, link: Link) -> None:
        self._do(f"cannot delete {link.name}", "link", "del", index=link.index)

    def _do(self, what: str, method: str, *argv: Any, **kwarg: Any) -> None:
        try:
            getattr(self._ipr, method)(*argv, **kwarg)
        except NetlinkError as e:
            raise SetupError(_message(what, e)) from None


def _message(what: str, e: NetlinkError) -> str:
    if e.code == errno.EPERM:
        return f"{what}: operation not permitted: live mode needs root or CAP_NET_ADMIN"
    return f"{what}: {os.strerror(e.code)}"
