"""The frame of a TCP service: a listener that accepts without blocking, and one handler per connection.

Everything here runs as readiness callbacks (``host.add_reader`` /
``host.add_writer``) on non-blocking sockets, so one thread (the live
driver's, or the replay's) serves any number of connections and nothing ever
waits inside a callback. A handler reads only while what it has to send
fits: once the socket's send buffer is full, it stops reading and waits to
be writable, so a slow peer closes our receive window instead of growing a
buffer here. What a handler holds is at most one chunk of output.
"""

import contextlib
import errno
from collections.abc import Callable

from .sockets import AF_INET, SOCK_STREAM, SocketHost
from .stream import SO_REUSEADDR, SOL_SOCKET, StreamSocket

CHUNK = 65536  # bytes read or produced per step; also the most a handler buffers
BATCH = 16  # reads per callback, so one busy connection cannot starve the rest (readiness is level-triggered)
BACKLOG = 128


class Connection:
    """One accepted connection. Subclasses implement ``data_received``, ``eof_received`` and ``drained``."""

    def __init__(self, service: "TcpService", sock: StreamSocket) -> None:
        self.service = service
        self.host = service.host
        self.sock = sock
        self.out = b""  # what send() did not take yet
        self.reading = False
        self.writing = False
        self.closed = False
        self.finishing = False  # close once ``out`` is sent

    # -- flow ----------------------------------------------------------------------
    def start(self) -> None:
        self.resume_reading()

    def pause_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.host.remove_reader(self.sock)

    def resume_reading(self) -> None:
        if not self.reading and not self.closed:
            self.reading = True
            self.host.add_reader(self.sock, self._readable)

    def _readable(self) -> None:
        for _ in range(BATCH):
            if not self.reading or self.closed:
                return
            try:
                data = self.sock.recv(CHUNK)
            except BlockingIOError:
                return
            except OSError:
                self.abort()  # reset or timed out: nobody is left to answer
                return
            if not data:
                self.pause_reading()
                self.eof_received()
                return
            self.data_received(data)

    def write(self, data: bytes) -> bool:
        """Send ``data`` or keep the rest until writable; True if all of it went now."""
        if self.closed:
            return False
        if self.out:
            self.out += data
            return False
        sent = self._send(data)
        if sent < 0:
            return False
        if sent < len(data):
            self.out = data[sent:]
            if not self.writing:
                self.writing = True
                self.host.add_writer(self.sock, self._writable)
            return False
        return True

    def _send(self, data: bytes) -> int:
        """Bytes taken by the socket; -1 when the connection is gone (and then aborted)."""
        try:
            return self.sock.send(data)
        except BlockingIOError:
            return 0
        except OSError:
            self.abort()
            return -1

    def _writable(self) -> None:
        if self.closed:
            return
        out = self.out
        sent = self._send(out) if out else 0
        if sent < 0:
            return
        self.out = out[sent:]
        if self.out:
            return
        self.writing = False
        self.host.remove_writer(self.sock)
        if self.finishing:
            self.close()
        else:
            self.drained()

    def finish(self) -> None:
        """Close (FIN after what is queued) once our output is all in the socket."""
        self.finishing = True
        self.pause_reading()
        if not self.out:
            self.close()

    # -- hooks ------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        raise NotImplementedError

    def eof_received(self) -> None:
        self.finish()

    def drained(self) -> None:
        """Everything written went into the socket (after a write that did not all fit)."""

    # -- ending -----------------------------------------------------------------
    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.out = b""
        self.service.conns.discard(self)
        with contextlib.suppress(OSError):
            self.sock.close()  # unread data makes this a reset (RFC 9293 3.10.4), as the kernel's close

    def abort(self) -> None:
        self.close()


class TcpService:
    """A listener on ``port`` that gives each accepted connection a ``handler``."""

    name = ""
    port = 0
    handler: Callable[["TcpService", StreamSocket], Connection] = Connection

    def __init__(self) -> None:
        self.listener: StreamSocket | None = None
        self.conns: set[Connection] = set()
        self._host: SocketHost | None = None

    @property
    def host(self) -> SocketHost:
        if self._host is None:
            raise RuntimeError(f"the {self.name} service has not been started")
        return self._host

    def start(self, host: SocketHost) -> None:
        self._host = host
        sock = host.socket(AF_INET, SOCK_STREAM)
        sock.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
        sock.bind(("", self.port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
        self.listener = sock
        host.add_reader(sock, self._acceptable)

    def stop(self) -> None:
        for conn in list(self.conns):
            conn.close()
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def _acceptable(self) -> None:
        listener = self.listener
        if listener is None:
            return
        for _ in range(BACKLOG):
            try:
                sock, _addr = listener.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.EBADF:
                    return
                continue
            sock.setblocking(False)
            conn = type(self).handler(self, sock)
            self.conns.add(conn)
            conn.start()
