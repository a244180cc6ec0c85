"""Sockets shaped like Python's ``socket`` module, for applications on simstack.

Code written for ``socket.socket(AF_INET, SOCK_DGRAM)`` ports by asking a
simstack host instead: ``host.socket(AF_INET, SOCK_DGRAM)``. Same methods, same
exceptions (``OSError`` with ``EADDRINUSE``, ``ConnectionRefusedError``,
``TimeoutError``, ``BlockingIOError``).

A socket does not know whether it runs live or in a replay. It talks to a
``SocketHost``: ``call`` runs a function on the stack (under the live driver's
lock, or at the replay's current virtual time), and ``wait_until`` blocks until
a condition holds (on a condition variable live; by advancing the virtual clock
in a replay). The stack itself stays sans-IO.
"""

import errno
import socket as _socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Final, Literal, TypeVar, Union, overload

from simstack.protocols.addresses import ip_to_str
from simstack.protocols.stack import Stack
from simstack.protocols.transport import Ready
from simstack.protocols.udp_ports import UdpEndpoint

from .sockbase import SocketBase, oserror, parse_address
from .stream import StreamSocket

AF_INET = _socket.AF_INET
SOCK_DGRAM: Final = _socket.SocketKind.SOCK_DGRAM
SOCK_STREAM: Final = _socket.SocketKind.SOCK_STREAM
IPPROTO_UDP = _socket.IPPROTO_UDP
timeout = TimeoutError  # socket.timeout is TimeoutError since Python 3.10
error = OSError

T = TypeVar("T")
Address = tuple[str, int]


class SocketHost(ABC):
    """What sockets need from whoever drives the stack.

    Readiness is pushed, not polled: the stack marks endpoints in
    ``stack.ready`` as they change, and the driver calls ``dispatch_ready``
    after each batch of frames, timers and calls. Callbacks run there, outside
    any locked section; a callback that calls into the stack only marks more
    endpoints, which the same dispatch picks up in its next round, so the
    stack depth stays flat however many datagrams a batch held.
    """

    def __init__(self) -> None:
        self._readers: dict[AnySocket, tuple[Callable[[], None], bool]] = {}  # callback, and whether close calls it
        self._writers: dict[AnySocket, Callable[[], None]] = {}
        self._watched: dict[object, AnySocket] = {}  # endpoint -> socket, for sockets with a callback
        self._dispatching = False

    @abstractmethod
    def call(self, fn: Callable[[Stack, float], T]) -> T:
        """Run ``fn(stack, now)`` where the stack lives, and send what it queued."""

    @abstractmethod
    def wait_until(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Block until ``ready()`` (checked where the stack lives) or ``timeout`` seconds pass."""

    def take_ready(self) -> list[tuple[object, Ready]]:
        """The endpoints marked since the last time, taken where the stack lives."""
        return self.call(lambda st, _now: st.ready.drain())

    @overload
    def socket(self, family: int = ..., type: Literal[_socket.SocketKind.SOCK_DGRAM] = ...,
               proto: int = ...) -> "Socket": ...

    @overload
    def socket(self, family: int, type: Literal[_socket.SocketKind.SOCK_STREAM], proto: int = ...) -> StreamSocket: ...

    @overload
    def socket(self, family: int, type: int, proto: int = ...) -> "Socket | StreamSocket": ...

    def socket(self, family: int = AF_INET, type: int = SOCK_DGRAM, proto: int = 0) -> "Socket | StreamSocket":
        """A datagram socket (``SOCK_DGRAM``, the default) or a stream socket (``SOCK_STREAM``, TCP)."""
        if type == SOCK_STREAM:
            return StreamSocket(self, family, type, proto)
        return Socket(self, family, type, proto)

    # -- readiness callbacks, like asyncio's loop.add_reader / add_writer ----------------
    def add_reader(self, sock: "AnySocket", callback: Callable[[], None], *, on_close: bool = False) -> None:
        """Call ``callback`` whenever ``sock`` has data or an error (level-triggered, as asyncio's).

        With ``on_close``, closing the socket calls it once more, so that a
        coroutine waiting on it wakes and sees EBADF rather than wait forever.
        """
        self._readers[sock] = (callback, on_close)
        self._watch(sock)
        if sock.readable:
            self._remark(sock, Ready.READABLE)

    def remove_reader(self, sock: "AnySocket") -> None:
        self._readers.pop(sock, None)
        self._unwatch(sock)

    def add_writer(self, sock: "AnySocket", callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a send on ``sock`` would not block (level-triggered)."""
        self._writers[sock] = callback
        self._watch(sock)
        if sock.writable:
            self._remark(sock, Ready.WRITABLE)

    def remove_writer(self, sock: "AnySocket") -> None:
        self._writers.pop(sock, None)
        self._unwatch(sock)

    def _watch(self, sock: "AnySocket") -> None:
        self._watched[sock._endpoint] = sock

    def _unwatch(self, sock: "AnySocket") -> None:
        if sock not in self._readers and sock not in self._writers:
            self._watched.pop(sock._endpoint, None)

    def _remark(self, sock: "AnySocket", what: Ready) -> None:
        ep = sock._endpoint
        self.call(lambda st, _now: st.ready.mark(ep, what))

    def _closed(self, sock: "AnySocket") -> None:
        callback, on_close = self._readers.pop(sock, (None, False))
        self._writers.pop(sock, None)
        self._watched.pop(sock._endpoint, None)
        if callback is not None and on_close:
            callback()

    def dispatch_ready(self, rounds: int = 64) -> bool:
        """Run the callbacks of every endpoint marked ready; True if marks are left for another turn.

        Called by the driver where the stack lives, never from inside a
        callback: a nested call returns at once, and what the callback marked
        is taken by the next round of the outer one.
        """
        if self._dispatching:
            return False
        self._dispatching = True
        try:
            for _ in range(rounds):
                marks = self.take_ready()
                if not marks:
                    return False
                for ep, what in marks:
                    sock = self._watched.get(ep)
                    if sock is None:
                        continue
                    bits = int(what)  # plain int: an IntFlag's & is an enum lookup, twice per mark
                    if bits & _READ_BITS:
                        reader = self._readers.get(sock)
                        if reader is not None:
                            reader[0]()
                            if sock in self._readers and not sock.closed and sock.readable:
                                self._remark(sock, Ready.READABLE)  # level-triggered: again next round
                    if bits & _WRITE_BITS:
                        writer = self._writers.get(sock)
                        if writer is not None:
                            writer()
                            if sock in self._writers and not sock.closed and sock.writable:
                                self._remark(sock, Ready.WRITABLE)
            return True
        finally:
            self._dispatching = False


_READ_EVENTS = Ready.READABLE | Ready.ACCEPTABLE | Ready.HUP | Ready.ERROR
_WRITE_EVENTS = Ready.WRITABLE | Ready.CONNECTED | Ready.HUP | Ready.ERROR
_READ_BITS, _WRITE_BITS = int(_READ_EVENTS), int(_WRITE_EVENTS)


AnySocket = Union["Socket", StreamSocket]

class Socket(SocketBase):
    """A UDP socket on a simstack host (SOCK_DGRAM only, for now)."""

    def __init__(self, host: SocketHost, family: int = AF_INET, type: int = SOCK_DGRAM, proto: int = 0) -> None:
        if family != AF_INET:
            raise oserror(errno.EAFNOSUPPORT)
        if type != SOCK_DGRAM:
            raise oserror(errno.ESOCKTNOSUPPORT)
        if proto not in (0, IPPROTO_UDP):
            raise oserror(errno.EPROTONOSUPPORT)
        self.host = host
        self.family = family
        self.type = type
        self.proto = proto or IPPROTO_UDP
        super().__init__()
        self._endpoint: UdpEndpoint = host.call(lambda st, now: st.udp.open())

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"laddr={self._local()}"
        return f"<simstack.Socket family=AF_INET type=SOCK_DGRAM {state}>"

    def __enter__(self) -> "Socket":
        return self

    def _check(self) -> UdpEndpoint:
        if self._closed:
            raise oserror(errno.EBADF)
        return self._endpoint

    def _local(self) -> Address:
        ep = self._endpoint
        return ip_to_str(ep.local_ip), ep.local_port

    # -- configuration ---------------------------------------------------------
    # -- readiness, for event loops (engine/aio.py); read where the stack lives ---------
    @property
    def readable(self) -> bool:
        """A datagram or an error is waiting: a receive now would not block."""
        return self._closed or self._endpoint.readable

    @property
    def writable(self) -> bool:
        """A send now would not block: always, for a datagram socket (the stack queues or drops)."""
        return True

    # -- addresses --------------------------------------------------------------
    def bind(self, address: Address) -> None:
        ep = self._check()
        ip, port = parse_address(address, "bind")
        self.host.call(lambda st, now: st.udp.bind(ep, ip, port))

    def connect(self, address: Address) -> None:
        ep = self._check()
        ip, port = parse_address(address, "connect")
        self.host.call(lambda st, now: st.udp.connect(ep, ip, port, now))

    def getsockname(self) -> Address:
        self._check()
        return self._local()

    def getpeername(self) -> Address:
        ep = self._check()
        if ep.remote is None:
            raise oserror(errno.ENOTCONN)
        return ip_to_str(ep.remote[0]), ep.remote[1]

    # -- data -------------------------------------------------------------------
    def sendto(self, data: bytes, *args: Any) -> int:
        """``sendto(data, address)`` or ``sendto(data, flags, address)``."""
        if len(args) not in (1, 2):
            raise TypeError(f"sendto() takes 2 or 3 arguments ({len(args) + 1} given)")
        ep = self._check()
        dst = parse_address(args[-1], "sendto")
        payload = bytes(data)
        return self.host.call(lambda st, now: st.udp.send(ep, payload, dst, now))

    def send(self, data: bytes, flags: int = 0) -> int:
        ep = self._check()
        payload = bytes(data)
        return self.host.call(lambda st, now: st.udp.send(ep, payload, None, now))

    def sendall(self, data: bytes, flags: int = 0) -> None:
        self.send(data, flags)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Address]:
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        ep = self._check()

        def take(st: Stack, now: float) -> tuple[bytes, tuple[bytes, int]] | None:
            err = ep.take_error()
            if err is not None:
                raise oserror(err)
            return ep.pop() if ep.queue else None

        got = self.host.call(take)
        if got is None:
            if self._timeout == 0.0:
                raise oserror(errno.EAGAIN)
            if not self.host.wait_until(lambda: ep.readable or ep.closed, self._timeout):
                raise TimeoutError("timed out")
            self._check()
            got = self.host.call(take)
            if got is None:
                raise oserror(errno.EAGAIN)
        data, (ip, port) = got
        # Datagram semantics: what does not fit the buffer is discarded.
        return data[:bufsize], (ip_to_str(ip), port)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return self.recvfrom(bufsize, flags)[0]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        ep = self._endpoint

        def close(st: Stack, now: float) -> None:
            st.udp.close(ep, now)
            self.host._closed(self)

        self.host.call(close)
