"""Stream sockets shaped like Python's ``socket`` module, over simstack's TCP.

``host.socket(AF_INET, SOCK_STREAM)`` gives one: ``bind``, ``listen``,
``accept``, ``connect`` (blocking, with a timeout, or non-blocking with
``EINPROGRESS``), ``send``, ``sendall``, ``recv`` (with ``MSG_PEEK``),
``shutdown``, ``close``, ``setsockopt``/``getsockopt``, ``settimeout`` and
``setblocking``, with the standard exceptions (``ConnectionRefusedError``,
``ConnectionResetError``, ``TimeoutError``, ``BrokenPipeError``,
``OSError(EADDRINUSE)``).

As with datagram sockets (``sockets.py``), the socket does not know whether
it runs live or in a replay: every call into the stack goes through the
host's ``call``, and blocking is the host's ``wait_until``. The endpoint
(``protocols.tcp_conn.TcpConn``) marks itself ready as its state changes, so
``add_reader``/``add_writer`` callbacks and waiting threads wake without
polling.
"""

import errno
import os
import socket as _socket
from typing import TYPE_CHECKING, Any, overload

from simstack.protocols import tcp_info
from simstack.protocols.addresses import ip_to_str
from simstack.protocols.stack import Stack
from simstack.protocols.tcp_conn import TcpConn
from simstack.protocols.tcp_table import DISPATCH, RECEIVE

from .sockbase import SocketBase, oserror, parse_address

if TYPE_CHECKING:
    from .sockets import SocketHost

AF_INET = _socket.AF_INET
SOCK_STREAM = _socket.SOCK_STREAM
IPPROTO_TCP = _socket.IPPROTO_TCP
SOL_SOCKET = _socket.SOL_SOCKET
SO_REUSEADDR = _socket.SO_REUSEADDR
SO_KEEPALIVE = _socket.SO_KEEPALIVE
SO_RCVBUF = _socket.SO_RCVBUF
SO_SNDBUF = _socket.SO_SNDBUF
SO_ERROR = _socket.SO_ERROR
TCP_NODELAY = _socket.TCP_NODELAY
TCP_CONGESTION = tcp_info.TCP_CONGESTION  # Linux's numbers, whatever the host's socket module says
TCP_INFO = tcp_info.TCP_INFO
MSG_PEEK = _socket.MSG_PEEK
SHUT_RD, SHUT_WR, SHUT_RDWR = _socket.SHUT_RD, _socket.SHUT_WR, _socket.SHUT_RDWR

Address = tuple[str, int]
_EAGAIN = os.strerror(errno.EAGAIN)
_PEEK = int(MSG_PEEK)
# The states whose RECEIVE row lets recv wait for data (RFC 9293 3.10.3): TcpConn.recv returns None there.
_WOULD_BLOCK = frozenset(state for state, event in DISPATCH if event == RECEIVE)


class StreamSocket(SocketBase):
    """A TCP socket on a simstack host."""

    def __init__(self, host: "SocketHost", family: int = AF_INET, type: int = SOCK_STREAM, proto: int = 0,
                 _endpoint: TcpConn | None = None) -> None:
        if family != AF_INET:
            raise oserror(errno.EAFNOSUPPORT)
        if type != SOCK_STREAM:
            raise oserror(errno.ESOCKTNOSUPPORT)
        if proto not in (0, IPPROTO_TCP):
            raise oserror(errno.EPROTONOSUPPORT)
        self.host = host
        self.family = family
        self.type = type
        self.proto = IPPROTO_TCP
        super().__init__()
        self._endpoint: TcpConn = _endpoint if _endpoint is not None else host.call(lambda st, now: st.tcp.open())
        self._reuseaddr = False

    def __repr__(self) -> str:
        if self._closed:
            return "<simstack.StreamSocket family=AF_INET type=SOCK_STREAM closed>"
        ep = self._endpoint
        peer = f" raddr={self._peer()}" if ep.remote_address is not None else ""
        return f"<simstack.StreamSocket family=AF_INET type=SOCK_STREAM {ep.state} laddr={self._local()}{peer}>"

    def __enter__(self) -> "StreamSocket":
        return self

    def _check(self) -> TcpConn:
        if self._closed:
            raise oserror(errno.EBADF)
        return self._endpoint

    def _local(self) -> Address:
        ip, port = self._endpoint.local_address
        return ip_to_str(ip), port

    def _peer(self) -> Address:
        remote = self._endpoint.remote_address
        if remote is None:
            raise oserror(errno.ENOTCONN)
        return ip_to_str(remote[0]), remote[1]

    def _wait(self, ready: Any) -> None:
        """Block until ``ready()`` or the socket's timeout; TimeoutError, or BlockingIOError when non-blocking."""
        if self._timeout == 0.0:
            # what oserror(EAGAIN) builds, without os.strerror each time: a non-blocking reader ends every
            # wakeup here, once per segment when it keeps up
            raise BlockingIOError(errno.EAGAIN, _EAGAIN)
        if not self.host.wait_until(ready, self._timeout):
            raise TimeoutError("timed out")
        self._check()

    # -- configuration -----------------------------------------------------------
    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        ep = self._check()
        if level == IPPROTO_TCP and option == TCP_CONGESTION:
            name = (value if isinstance(value, bytes) else str(value).encode()).split(b"\0", 1)[0]
            self.host.call(lambda st, now: ep.set_congestion(name.decode("ascii", "replace")))
            return
        on = bool(int.from_bytes(value, "little") if isinstance(value, bytes) else value)
        size = int.from_bytes(value, "little") if isinstance(value, bytes) else int(value)
        if level == IPPROTO_TCP and option == TCP_NODELAY:
            self.host.call(lambda st, now: ep.set_nodelay(on, now))
        elif level == SOL_SOCKET and option == SO_KEEPALIVE:
            self.host.call(lambda st, now: ep.set_keepalive(on, now))
        elif level == SOL_SOCKET and option == SO_RCVBUF:
            self.host.call(lambda st, now: ep.set_rcvbuf(size, now))
        elif level == SOL_SOCKET and option == SO_SNDBUF:
            self.host.call(lambda st, now: ep.set_sndbuf(size))
        elif level == SOL_SOCKET and option == SO_REUSEADDR:
            self._reuseaddr = on
            self.host.call(lambda st, now: setattr(ep, "reuseaddr", on))
        else:
            raise oserror(errno.ENOPROTOOPT)

    @overload
    def getsockopt(self, level: int, option: int) -> int: ...
    @overload
    def getsockopt(self, level: int, option: int, buflen: int) -> int | bytes: ...

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> int | bytes:
        """As Python's: an int, or with ``buflen`` the option's bytes (TCP_CONGESTION, TCP_INFO need one)."""
        ep = self._check()
        if level == IPPROTO_TCP and option in (TCP_CONGESTION, TCP_INFO):
            if not buflen:
                raise oserror(errno.EINVAL)
            if option == TCP_CONGESTION:
                return ep.cc.name.encode().ljust(tcp_info.CA_NAME_MAX, b"\0")[:buflen]
            return bytes(self.host.call(lambda st, now: tcp_info.tcp_info(ep, now))[:buflen])
        if level == SOL_SOCKET and option == SO_ERROR:
            err = self.host.call(lambda st, now: ep.take_error())
            return err or 0
        if level == IPPROTO_TCP and option == TCP_NODELAY:
            return int(ep.nodelay)
        if level == SOL_SOCKET and option == SO_KEEPALIVE:
            return int(ep.keepalive)
        if level == SOL_SOCKET and option == SO_RCVBUF:
            return int(ep.rcvbuf_size)
        if level == SOL_SOCKET and option == SO_SNDBUF:
            return int(ep.sndbuf_size)
        if level == SOL_SOCKET and option == SO_REUSEADDR:
            return int(self._reuseaddr)
        raise oserror(errno.ENOPROTOOPT)

    # -- readiness, for event loops; read where the stack lives -----------------------
    @property
    def readable(self) -> bool:
        """A recv (or, listening, an accept) would not block."""
        if self._closed:
            return True
        ep = self._endpoint
        return bool(ep.accept_queue) if ep.state == "LISTEN" else ep.readable

    @property
    def writable(self) -> bool:
        """A send would not block, or a connect has finished one way or the other."""
        return self._closed or self._endpoint.writable

    # -- addresses and connections ---------------------------------------------------
    def bind(self, address: Address) -> None:
        ep = self._check()
        ip, port = parse_address(address, "bind")
        self.host.call(lambda st, now: ep.bind(ip, port))

    def listen(self, backlog: int = 128) -> None:
        ep = self._check()
        self.host.call(lambda st, now: ep.listen(backlog))

    def accept(self) -> tuple["StreamSocket", Address]:
        ep = self._check()
        while True:
            child = self.host.call(lambda st, now: ep.accept())
            if child is not None:
                break
            self._wait(lambda: bool(ep.accept_queue) or self._closed or ep.state != "LISTEN")
        sock = StreamSocket(self.host, self.family, self.type, self.proto, _endpoint=child)
        sock._timeout = _socket.getdefaulttimeout() if self._timeout != 0.0 else None
        return sock, sock._peer()

    def connect(self, address: Address) -> None:
        err = self._connect(address)
        if err:
            raise oserror(err)

    def connect_ex(self, address: Address) -> int:
        try:
            return self._connect(address)
        except OSError as e:
            return e.errno or errno.EIO

    def _connect(self, address: Address) -> int:
        ep = self._check()
        ip, port = parse_address(address, "connect")
        if ep.state in ("SYN-SENT", "SYN-RECEIVED") and self._timeout == 0.0:
            return errno.EALREADY
        if ep.state not in ("SYN-SENT", "SYN-RECEIVED"):
            if ep.was_connected and ep.state != "CLOSED":
                return errno.EISCONN
            self.host.call(lambda st, now: ep.connect(ip, port, now))
        if self._timeout == 0.0:
            return errno.EINPROGRESS
        done = self.host.wait_until(lambda: ep.state not in ("SYN-SENT", "SYN-RECEIVED") or self._closed,
                                    self._timeout)
        self._check()
        if not done:
            raise TimeoutError("timed out")
        err = self.host.call(lambda st, now: ep.take_error())
        return err or 0

    def getsockname(self) -> Address:
        self._check()
        return self._local()

    def getpeername(self) -> Address:
        self._check()
        return self._peer()

    # -- data ---------------------------------------------------------------------
    def send(self, data: bytes, flags: int = 0) -> int:
        ep = self._check()
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        if not len(view):
            return 0
        while True:
            n: int = self.host.call(lambda st, now: ep.send(view, now))
            if n:
                return n
            self._wait(lambda: ep.writable or self._closed)

    def sendall(self, data: bytes, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            n = self.send(view, flags)  # type: ignore[arg-type]
            view = view[n:]

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        ep = self._check()
        if self._timeout == 0.0 and bufsize and not ep.readable and ep.state in _WOULD_BLOCK:
            # Nothing to read, in a state where recv would say so (None): a reader that keeps up ends every
            # wakeup here, so it skips the trip through the host (its lock, its flush). Data landing just
            # after this look marks the socket readable, so the reader is called again, as after any EAGAIN.
            raise BlockingIOError(errno.EAGAIN, _EAGAIN)
        peek = bool(flags) and bool(int(flags) & _PEEK)  # MSG_PEEK is an IntFlag: its & is an enum lookup
        while True:
            data: bytes | None = self.host.call(lambda st, now: ep.recv(bufsize, now, peek))
            if data is not None:
                return data
            self._wait(lambda: ep.readable or self._closed)

    def recv_into(self, buffer: bytearray | memoryview, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        data = self.recv(nbytes or len(view), flags)
        view[: len(data)] = data
        return len(data)

    def shutdown(self, how: int) -> None:
        ep = self._check()
        self.host.call(lambda st, now: ep.shutdown(how, now))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        ep = self._endpoint

        def close(st: Stack, now: float) -> None:
            ep.close(now)
            self.host._closed(self)  # type: ignore[arg-type]

        self.host.call(close)

    def detach(self) -> int:
        raise oserror(errno.EOPNOTSUPP)
