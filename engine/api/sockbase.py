"""What every simstack socket shares, datagram or stream: timeouts, blocking, addresses, errors.

Python's sockets keep one timeout that decides how every call blocks (None:
block; 0: never; N: up to N seconds) and take AF_INET addresses as
``(host, port)`` tuples; simstack's do the same, once, here.
"""

import os
import socket as _socket
from typing import Any

from simstack.protocols.addresses import ip_to_bytes
from simstack.protocols.udp_ports import ANY


class SocketBase:
    """Timeout and blocking state, and the ``closed`` flag, with the ``socket`` module's methods."""

    def __init__(self) -> None:
        self._timeout: float | None = _socket.getdefaulttimeout()
        self._closed = False

    def settimeout(self, value: float | None) -> None:
        if value is not None and value < 0:
            raise ValueError("Timeout value out of range")
        self._timeout = None if value is None else float(value)

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    def fileno(self) -> int:
        return -1  # there is no kernel descriptor behind a simstack socket

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        raise NotImplementedError

    def __exit__(self, *exc: object) -> None:
        self.close()


_HOSTS: dict[str, bytes] = {}  # dotted quads already parsed: a socket call per datagram should not re-parse


def parse_address(address: Any, what: str) -> tuple[bytes, int]:
    if not isinstance(address, tuple) or len(address) != 2:
        raise TypeError(f"{what}(): AF_INET address must be tuple, not {type(address).__name__}")
    host, port = address
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(f"'{type(port).__name__}' object cannot be interpreted as an integer")
    if not 0 <= port <= 0xFFFF:
        raise OverflowError(f"{what}(): port must be 0-65535.")
    if not isinstance(host, str):
        raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
    if host in ("", "0.0.0.0"):
        return ANY, port
    if host == "<broadcast>":
        return b"\xff\xff\xff\xff", port
    ip = _HOSTS.get(host)
    if ip is not None:
        return ip, port
    try:
        ip = ip_to_bytes(host)
    except ValueError:
        # simstack has no resolver: names other than dotted quads do not resolve.
        raise _socket.gaierror(_socket.EAI_NONAME, "Name or service not known") from None
    if len(_HOSTS) >= 4096:
        _HOSTS.clear()
    _HOSTS[host] = ip
    return ip, port


def oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))  # OSError picks the subclass: ConnectionRefusedError, ...


