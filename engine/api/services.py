"""Built-in services, written against the public socket API only.

Echo (RFC 862) and discard (RFC 863) over UDP and TCP, and HTTP/1.1
(``httpd.py``), run as readiness callbacks (``host.add_reader``) rather than
threads, so the same code serves a live TAP and a deterministic replay, and
serves many connections at once. A name starts a service on both transports
where it has both: ``echo`` is UDP and TCP port 7.

Names: ``echo``, ``discard``, ``http`` (a status page with the stack's
counters and connections) and ``http:DIR`` (the files under DIR).
"""

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from .httpd import HttpService
from .sockets import AF_INET, SOCK_DGRAM, Socket, SocketHost
from .tcp_service import Connection, TcpService


class Service(Protocol):
    name: str

    def start(self, host: SocketHost) -> None: ...

    def stop(self) -> None: ...

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


class TcpEchoConnection(Connection):
    """RFC 862 over TCP: what arrives goes back; reading stops while the send buffer is full."""

    def data_received(self, data: bytes) -> None:
        if not self.write(data):
            self.pause_reading()  # back-pressure: our receive window closes until the peer reads

    def drained(self) -> None:
        self.resume_reading()


class TcpEcho(TcpService):
    name = "echo"
    port = 7
    handler = TcpEchoConnection


class TcpDiscardConnection(Connection):
    """RFC 863 over TCP: read and forget, until the peer closes."""

    def data_received(self, data: bytes) -> None:
        return


class TcpDiscard(TcpService):
    name = "discard"
    port = 9
    handler = TcpDiscardConnection


class Both:
    """One name, one service on each transport."""

    def __init__(self, name: str, *parts: Service) -> None:
        self.name = name
        self.parts = parts

    def start(self, host: SocketHost) -> None:
        for i, part in enumerate(self.parts):
            try:
                part.start(host)
            except BaseException:
                for started in self.parts[:i]:
                    started.stop()
                raise

    def stop(self) -> None:
        for part in self.parts:
            part.stop()


SERVICES: dict[str, Callable[[], Service]] = {
    "echo": lambda: Both("echo", UdpEcho(), TcpEcho()),
    "discard": lambda: Both("discard", UdpDiscard(), TcpDiscard()),
    "http": HttpService,
}
DEFAULT_SERVICES = ("echo", "discard", "http")


def service_error(spec: str) -> str | None:
    """Why ``spec`` names no service (a line for the user), or None when it does."""
    name, colon, arg = spec.partition(":")
    if name not in SERVICES or (colon and name != "http"):
        return f"{spec}: unknown service; known: {', '.join(SERVICES)}, http:DIR"
    if colon and not Path(arg).is_dir():
        return f"{spec}: {arg or 'the empty path'} is not a directory"
    return None


def make_service(spec: str) -> Service:
    """``echo``, ``discard``, ``http`` or ``http:DIR``; ValueError for anything else."""
    why = service_error(spec)
    if why is not None:
        raise ValueError(why)
    name, colon, arg = spec.partition(":")
    if colon:
        return HttpService(Path(arg))
    return SERVICES[name]()


def start_services(host: SocketHost, names: Sequence[str]) -> list[Service]:
    started: list[Service] = []
    try:
        for name in names:
            service = make_service(name)
            service.start(host)
            started.append(service)
    except BaseException:
        for service in started:
            with contextlib.suppress(Exception):
                service.stop()
        raise
    return started
