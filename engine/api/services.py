"""Built-in UDP services, written against the public socket API only.

Echo (RFC 862) and discard (RFC 863) run as readiness callbacks
(``host.add_reader``) rather than threads, so the same code serves a live TAP
and a deterministic replay.
"""

import contextlib
from collections.abc import Callable

from .sockets import AF_INET, SOCK_DGRAM, Socket, SocketHost

# Never answer these source ports: echo to echo (or chargen) loops forever
# between two hosts (CERT CA-1996-01).
_LOOP_PORTS = frozenset({7, 9, 13, 19, 37})


class UdpService:
    name = ""
    port = 0

    def __init__(self) -> None:
        self.sock: Socket | None = None

    def start(self, host: SocketHost) -> None:
        sock = host.socket(AF_INET, SOCK_DGRAM)
        sock.bind(("", self.port))
        sock.setblocking(False)
        self.sock = sock
        host.add_reader(sock, self._readable)

    def stop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _readable(self) -> None:
        sock = self.sock
        assert sock is not None
        while True:
            try:
                data, addr = sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError:
                continue  # an error reported by ICMP; nothing to do for a service
            self.handle(sock, data, addr)

    def handle(self, sock: Socket, data: bytes, addr: tuple[str, int]) -> None:
        raise NotImplementedError


class UdpEcho(UdpService):
    """RFC 862: send back each datagram to where it came from."""

    name = "echo"
    port = 7

    def handle(self, sock: Socket, data: bytes, addr: tuple[str, int]) -> None:
        if addr[1] in _LOOP_PORTS:
            return
        # No route or a full queue: a datagram service drops, it does not stop.
        with contextlib.suppress(OSError):
            sock.sendto(data, addr)


class UdpDiscard(UdpService):
    """RFC 863: throw away every datagram."""

    name = "discard"
    port = 9

    def handle(self, sock: Socket, data: bytes, addr: tuple[str, int]) -> None:
        return


SERVICES: dict[str, Callable[[], UdpService]] = {"echo": UdpEcho, "discard": UdpDiscard}
DEFAULT_SERVICES = ("echo", "discard")


def start_services(host: SocketHost, names: tuple[str, ...] | list[str]) -> list[UdpService]:
    started = []
    for name in names:
        service = SERVICES[name]()
        service.start(host)
        started.append(service)
    return started
