"""asyncio on a live simstack host, shaped like asyncio's own socket API.

Code written for an asyncio event loop ports the way blocking code does, by
asking simstack for the socket and for the endpoint:

- ``await loop.sock_recvfrom(sock, n)`` becomes ``await aio.sock_recvfrom(sock, n)``,
  and likewise ``sock_recv``, ``sock_sendto`` and ``sock_sendall``. As with
  asyncio, the socket must be non-blocking (``sock.setblocking(False)``).
- ``await loop.create_datagram_endpoint(factory, ...)`` becomes
  ``await aio.create_datagram_endpoint(host, factory, ...)``; the protocol is an
  ordinary ``asyncio.DatagramProtocol`` and the transport an
  ``asyncio.DatagramTransport``.
- ``await asyncio.open_connection(ip, port)`` becomes
  ``await aio.open_connection(host, ip, port)``, and
  ``await asyncio.start_server(cb, ip, port)`` becomes
  ``await aio.start_server(host, cb, ip, port)``: the reader and writer have
  asyncio's methods (``read``, ``readexactly``, ``readline``, ``readuntil``,
  ``write``, ``drain``, ``close``, ``wait_closed``...), so the rest of a
  TCP program stays as it is.

The stack runs in the live driver's thread, not in the event loop. Nothing
here polls: a coroutine that finds its socket empty registers a readiness
callback, which the driver calls (under its lock) once a datagram or an error
is waiting; the callback only hands a wake-up to the event loop with
``call_soon_threadsafe``. Datagrams are taken off the socket in the event
loop's own thread, as it gets to them, so the socket's bounded receive queue
stays the only buffer: a slow protocol makes the stack count and drop
overflow, as a kernel does, rather than grow a queue without bound. A
stream reader, likewise, takes bytes off its socket only when asked, so a
slow reader closes the TCP window.

On a live host the stack runs in another thread (``simstack_host``,
``LiveHost``). On a replay host, ``run_virtual(host, coro)`` runs the
coroutine in an event loop whose clock is the simulated wire's: when every
task waits, the loop moves the virtual clock to the wire's next event (a
frame arriving, a stack timer, the loop's own ``call_later``), so asyncio code
replays deterministically and a ``wait_for(..., 30)`` takes no real time.
"""

import asyncio
import contextlib
import errno
import functools
import os
import selectors
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from .sockets import AF_INET, SOCK_STREAM, Address, AnySocket, Socket, SocketHost
from .stream import SHUT_WR, SO_ERROR, SO_REUSEADDR, SOL_SOCKET, StreamSocket

__all__ = ["DatagramTransport", "Server", "StreamReader", "StreamWriter", "VirtualClock", "create_datagram_endpoint",
           "open_connection", "run_virtual", "sock_recv", "sock_recvfrom", "sock_sendall", "sock_sendto", "start_server"]

T = TypeVar("T")

BATCH = 64  # datagrams handed to a protocol per turn of the event loop, so one busy socket cannot starve the rest


class _Readiness:
    """One readiness callback per socket and direction, waking every coroutine that waits on it.

    It holds its socket weakly: a strong reference from this value to its key
    in ``_readiness`` would keep every socket ever awaited alive.
    """

    def __init__(self, sock: AnySocket, write: bool = False) -> None:
        self._sock = weakref.ref(sock)
        self.host = sock.host
        self.write = write
        self.waiters: list[tuple[asyncio.AbstractEventLoop, Callable[[], None]]] = []

    def arm(self, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None:
        """Call ``wake`` in ``loop`` once the socket is ready (data or an error; send space); at once if it is now."""

        def register(_st: Any, _now: float) -> None:  # under the driver's lock: no wake-up falls in between
            sock = self._sock()
            self.waiters.append((loop, wake))
            if sock is None or sock.closed or (sock.writable if self.write else sock.readable):
                self.fire()
            elif self.write:
                self.host.add_writer(sock, self.fire)
            else:
                self.host.add_reader(sock, self.fire, on_close=True)

        self.host.call(register)

    def disarm(self, wake: Callable[[], None]) -> None:
        def unregister(_st: Any, _now: float) -> None:
            self.waiters = [(lp, w) for lp, w in self.waiters if w is not wake]
            sock = self._sock()
            if not self.waiters and sock is not None:
                self._remove(sock)

        self.host.call(unregister)

    def _remove(self, sock: AnySocket) -> None:
        if self.write:
            self.host.remove_writer(sock)
        else:
            self.host.remove_reader(sock)

    def fire(self) -> None:
        """Where the stack lives: hand every waiter its wake-up, once."""
        waiters, self.waiters = self.waiters, []
        sock = self._sock()
        if sock is not None:
            self._remove(sock)
        for loop, wake in waiters:
            with contextlib.suppress(RuntimeError):  # that event loop is closed: nobody is left to wake
                loop.call_soon_threadsafe(wake)


_readiness: "weakref.WeakKeyDictionary[AnySocket, _Readiness]" = weakref.WeakKeyDictionary()
_writability: "weakref.WeakKeyDictionary[AnySocket, _Readiness]" = weakref.WeakKeyDictionary()


def _of(sock: AnySocket, write: bool = False) -> _Readiness:
    table = _writability if write else _readiness
    r = table.get(sock)
    if r is None:
        r = table[sock] = _Readiness(sock, write)
    return r


async def _ready(sock: AnySocket, write: bool = False) -> None:
    """Wait until ``sock`` is readable (or writable), in the running loop, without polling."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    readiness = _of(sock, write)
    readiness.arm(loop, wake)
    try:
        await ready
    finally:
        readiness.disarm(wake)


async def _readable(sock: AnySocket) -> None:
    await _ready(sock)


def _check_nonblocking(sock: Socket) -> None:
    if sock.gettimeout() != 0.0:
        raise ValueError("the socket must be non-blocking")  # as asyncio's own sock_* methods require


# -- coroutines shaped like the event loop's sock_* methods ----------------------------
async def sock_recvfrom(sock: Socket, bufsize: int) -> tuple[bytes, Address]:
    """Wait for one datagram; errors the stack reported (``ConnectionRefusedError``) are raised."""
    _check_nonblocking(sock)
    while True:
        try:
            return sock.recvfrom(bufsize)
        except BlockingIOError:
            await _readable(sock)


async def sock_recv(sock: Socket, bufsize: int) -> bytes:
    return (await sock_recvfrom(sock, bufsize))[0]


async def sock_sendto(sock: Socket, data: bytes, address: Address) -> int:
    """Sending never waits: the datagram leaves now, or waits for ARP inside the stack's bounded queue."""
    _check_nonblocking(sock)
    return sock.sendto(data, address)


async def sock_sendall(sock: Socket, data: bytes) -> None:
    _check_nonblocking(sock)
    sock.sendall(data)


# -- datagram endpoints -----------------------------------------------------------------
class DatagramTransport(asyncio.DatagramTransport):
    """A simstack UDP socket behind asyncio's transport interface."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: Socket, protocol: asyncio.DatagramProtocol,
                 peer: Address | None) -> None:
        super().__init__(extra={"socket": sock, "sockname": sock.getsockname(), "peername": peer})
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._peer = peer
        self._closing = False
        self._readiness = _of(sock)

    # -- reading: one batch per turn of the event loop, then re-arm ----------------------
    def _start(self) -> None:
        self._protocol.connection_made(self)
        self._arm()

    def _arm(self) -> None:
        if not self._closing:
            self._readiness.arm(self._loop, self._deliver)

    def _deliver(self) -> None:
        for _ in range(BATCH):
            if self._closing:
                return
            try:
                data, addr = self._sock.recvfrom(65535)
            except BlockingIOError:
                break
            except OSError as e:  # ConnectionRefusedError after a port unreachable on a connected endpoint
                self._protocol.error_received(e)
            else:
                self._protocol.datagram_received(data, addr)
        self._arm()

    # -- asyncio.DatagramTransport ----------------------------------------------------------
    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing:
            raise RuntimeError("the transport is closing")
        try:
            if addr is None:
                if self._peer is None:
                    raise ValueError("no address given and the endpoint has no remote_addr")
                self._sock.send(bytes(data))
            else:
                if self._peer is not None and tuple(addr) != self._peer:
                    raise ValueError(f"invalid address: must be None or {self._peer}")
                self._sock.sendto(bytes(data), tuple(addr))
        except OSError as e:
            self._protocol.error_received(e)

    def get_write_buffer_size(self) -> int:
        return 0  # a datagram leaves in sendto, or waits for ARP in the stack

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._readiness.disarm(self._deliver)
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()


async def create_datagram_endpoint(host: SocketHost, protocol_factory: Callable[[], asyncio.DatagramProtocol], *,
                                   local_addr: Address | None = None,
                                   remote_addr: Address | None = None) -> tuple[DatagramTransport,
                                                                                 asyncio.DatagramProtocol]:
    """A UDP endpoint on ``host``, as ``loop.create_datagram_endpoint`` makes one on the kernel."""
    loop = asyncio.get_running_loop()
    sock = host.socket()
    try:
        sock.setblocking(False)
        if local_addr is not None:
            sock.bind(local_addr)
        if remote_addr is not None:
            sock.connect(remote_addr)
    except OSError:
        sock.close()
        raise
    protocol = protocol_factory()
    transport = DatagramTransport(loop, sock, protocol, sock.getpeername() if remote_addr is not None else None)
    transport._start()
    return transport, protocol



# -- streams, shaped like asyncio's open_connection / start_server ------------------------------
_DEFAULT_LIMIT = 2**16  # asyncio's: what readline()/readuntil() hold at most before LimitOverrunError
CHUNK = 65536  # bytes handed to a stream socket per send
HIGH_WATER = 64 * 1024  # asyncio's default write-buffer limits: drain() waits above the high mark ...
LOW_WATER = HIGH_WATER // 4  # ... until the buffer falls to the low one


class StreamReader:
    """asyncio.StreamReader's reading methods over a non-blocking simstack stream socket.

    It reads from the socket only when asked and holds at most about ``limit``
    bytes beyond what was asked for, so the socket's receive buffer (and so
    the TCP window) is what pushes back on a fast sender, as in the kernel.
    """

    def __init__(self, sock: StreamSocket, limit: int = _DEFAULT_LIMIT) -> None:
        if limit <= 0:
            raise ValueError("Limit cannot be <= 0")
        self._sock = sock
        self._limit = limit
        self._buffer = bytearray()
        self._eof = False

    def __repr__(self) -> str:
        return f"<simstack StreamReader {len(self._buffer)} bytes{' eof' if self._eof else ''}>"

    async def _fill(self) -> bool:
        """Read what the socket has (waiting for some); False at end of stream. Errors (a reset) are raised.

        Like asyncio's transport, it takes whatever is there in one go, up to twice the limit
        (where asyncio pauses reading), so the two readers see the same buffer.
        """
        if self._eof:
            return False
        sock = self._sock
        got = False
        while len(self._buffer) < 2 * self._limit or not got:
            try:
                data = sock.recv(CHUNK)
            except BlockingIOError:
                if got:
                    return True
                await _ready(sock)
                continue
            if not data:
                self._eof = True
                return got
            self._buffer += data
            got = True
        return True

    def _take(self, n: int) -> bytes:
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def at_eof(self) -> bool:
        """True when the buffer is empty and the peer's FIN has been read."""
        return self._eof and not self._buffer

    def exception(self) -> BaseException | None:
        return None

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (at least one unless at EOF); with ``n`` < 0, everything until EOF."""
        if n == 0:
            return b""
        if n < 0:
            while await self._fill():
                pass
            return self._take(len(self._buffer))
        if not self._buffer:
            await self._fill()
        return self._take(n)

    async def readexactly(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        while len(self._buffer) < n:
            if not await self._fill():
                partial = self._take(len(self._buffer))
                raise asyncio.IncompleteReadError(partial, n)
        return self._take(n)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """Through the first ``separator``; IncompleteReadError at EOF, LimitOverrunError past ``limit``."""
        seplen = len(separator)
        if seplen == 0:
            raise ValueError("Separator should be at least one-byte string")
        offset = 0
        while True:
            i = self._buffer.find(separator, offset)
            if i != -1:
                break
            offset = max(0, len(self._buffer) + 1 - seplen)
            if offset > self._limit:
                raise asyncio.LimitOverrunError("Separator is not found, and chunk exceed the limit", offset)
            if not await self._fill():
                partial = self._take(len(self._buffer))
                raise asyncio.IncompleteReadError(partial, None)
        if i > self._limit:
            raise asyncio.LimitOverrunError("Separator is found, but chunk is longer than limit", i)
        return self._take(i + seplen)

    async def readline(self) -> bytes:
        """A line with its b"\\n"; at EOF what is left (maybe b""); ValueError for a line past the limit."""
        try:
            return await self.readuntil(b"\n")
        except asyncio.IncompleteReadError as e:
            return e.partial
        except asyncio.LimitOverrunError as e:
            if self._buffer.startswith(b"\n", e.consumed):
                del self._buffer[:e.consumed + 1]
            else:
                self._buffer.clear()
            raise ValueError(e.args[0]) from None

    def __aiter__(self) -> "StreamReader":
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if line == b"":
            raise StopAsyncIteration
        return line


class StreamWriter:
    """asyncio.StreamWriter's methods over a non-blocking simstack stream socket.

    ``write`` hands the bytes to the socket at once; what its send buffer
    cannot take waits here and goes out as send space opens (a writability
    callback). ``drain`` waits while more than 64 KiB wait (asyncio's high
    mark) until 16 KiB are left, and raises the connection's error if it
    broke. ``close`` sends what waits, then closes the socket.
    """

    def __init__(self, sock: StreamSocket, reader: StreamReader | None, loop: asyncio.AbstractEventLoop) -> None:
        self._sock = sock
        self._reader = reader
        self._loop = loop
        self._pending = bytearray()
        self._armed = False
        self._closing = False
        self._eof = False
        self._error: OSError | None = None
        self._drainers: list[asyncio.Future[None]] = []
        self._closed: asyncio.Future[None] = loop.create_future()
        self._extra = {"socket": sock, "sockname": sock.getsockname(), "peername": _peer(sock)}

    def __repr__(self) -> str:
        return f"<simstack StreamWriter {self._sock!r}{' closing' if self._closing else ''}>"

    @property
    def transport(self) -> "StreamWriter":
        return self  # code that asks the transport for is_closing() or get_extra_info() gets the same answers

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def get_write_buffer_size(self) -> int:
        return len(self._pending)

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self._closing

    # -- writing --------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data or self._error is not None or self._sock.closed:
            return  # as asyncio: writes to a lost connection go nowhere; drain() reports the loss
        if not self._pending:
            try:
                n = self._sock.send(data)  # type: ignore[arg-type]
            except BlockingIOError:
                n = 0
            except OSError as e:
                self._fail(e)
                return
            if n == len(data):
                return
            data = memoryview(data)[n:]
        self._pending += data
        self._arm()

    def writelines(self, data: Any) -> None:
        self.write(b"".join(data))

    def write_eof(self) -> None:
        """Half-close (FIN) once what waits is sent."""
        if self._eof:
            return
        self._eof = True
        if not self._pending:
            self._shutdown()

    def _arm(self) -> None:
        if not self._armed and self._error is None:
            self._armed = True
            _of(self._sock, write=True).arm(self._loop, self._writable)

    def _writable(self) -> None:
        """In the loop: send what waits, as far as the socket takes it."""
        self._armed = False
        sock = self._sock
        while self._pending and self._error is None and not sock.closed:
            try:
                n = sock.send(bytes(self._pending[:CHUNK]))
            except BlockingIOError:
                break
            except OSError as e:
                self._fail(e)
                return
            del self._pending[:n]
        if len(self._pending) <= LOW_WATER:
            self._wake_drainers(None)
        if self._pending and self._error is None and not sock.closed:
            self._arm()
            return
        if self._eof and not self._pending:
            self._shutdown()
        if self._closing:
            self._finish_close()

    def _shutdown(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(SHUT_WR)

    def _fail(self, e: OSError) -> None:
        self._error = e
        self._pending.clear()
        self._wake_drainers(e)
        if self._closing:
            self._finish_close()

    def _wake_drainers(self, e: OSError | None) -> None:
        drainers, self._drainers = self._drainers, []
        for fut in drainers:
            if not fut.done():
                if e is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(e)

    async def drain(self) -> None:
        """Wait while the buffer is above the high mark; raise the connection's error if it broke."""
        if self._error is not None:
            raise self._error
        if self._closing and self._sock.closed:
            await asyncio.sleep(0)  # as asyncio: a closed writer's drain yields once and returns
            return
        if len(self._pending) <= HIGH_WATER:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = self._loop.create_future()
        self._drainers.append(fut)
        await fut

    # -- closing --------------------------------------------------------------------
    def close(self) -> None:
        """Close once what waits is sent (its FIN follows the data); ``wait_closed`` waits for that."""
        if self._closing:
            return
        self._closing = True
        if not self._pending or self._error is not None:
            self._finish_close()

    def abort(self) -> None:
        self._pending.clear()
        self._closing = True
        self._finish_close()

    def _finish_close(self) -> None:
        self._sock.close()
        self._wake_drainers(ConnectionResetError(errno.ECONNRESET, "Connection lost"))
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    async def start_tls(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("simstack has no TLS")


def _peer(sock: StreamSocket) -> Address | None:
    try:
        return sock.getpeername()
    except OSError:
        return None


def _streams(sock: StreamSocket, limit: int, loop: asyncio.AbstractEventLoop) -> tuple[StreamReader, StreamWriter]:
    reader = StreamReader(sock, limit)
    return reader, StreamWriter(sock, reader, loop)


async def open_connection(host: SocketHost, ip: str, port: int, *, limit: int = _DEFAULT_LIMIT,
                          local_addr: Address | None = None) -> tuple[StreamReader, StreamWriter]:
    """A TCP connection from ``host`` to ``ip``:``port``, as ``asyncio.open_connection(ip, port)`` makes one.

    Raises what the connection attempt ended with: ``ConnectionRefusedError``,
    ``TimeoutError`` (after the SYN retries), ``OSError(ENETUNREACH)``.
    """
    loop = asyncio.get_running_loop()
    sock = host.socket(AF_INET, SOCK_STREAM)
    try:
        sock.setblocking(False)
        if local_addr is not None:
            sock.bind(local_addr)
        err = sock.connect_ex((ip, port))
        while err == errno.EINPROGRESS or err == errno.EALREADY:
            await _ready(sock, write=True)
            err = sock.getsockopt(SOL_SOCKET, SO_ERROR)
            if not err and sock.writable:
                break
            err = err or errno.EALREADY
        if err:
            raise OSError(err, os.strerror(err))
    except BaseException:
        sock.close()
        raise
    return _streams(sock, limit, loop)


ClientConnected = Callable[[StreamReader, StreamWriter], Any]


class Server:
    """What ``start_server`` returns, with the methods of ``asyncio.Server``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: StreamSocket, callback: ClientConnected,
                 limit: int) -> None:
        self._loop = loop
        self._sock = sock
        self._callback = callback
        self._limit = limit
        self._serving = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[StreamWriter] = set()
        self._forever: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<simstack Server sockets={self.sockets!r}>"

    @property
    def sockets(self) -> tuple[StreamSocket, ...]:
        return () if self._sock.closed else (self._sock,)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if not self._serving and not self._sock.closed:
            self._serving = True
            _of(self._sock).arm(self._loop, self._accept)

    async def serve_forever(self) -> None:
        await self.start_serving()
        self._forever = self._loop.create_future()
        try:
            await self._forever
        finally:
            self.close()

    def _accept(self) -> None:
        if not self._serving:
            return
        for _ in range(128):
            try:
                sock, _addr = self._sock.accept()
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EBADF or self._sock.closed:
                    return
                continue  # reset before it was accepted
            sock.setblocking(False)
            reader, writer = _streams(sock, self._limit, self._loop)
            self._writers.add(writer)
            writer._closed.add_done_callback(functools.partial(self._forget, writer))
            result = self._callback(reader, writer)
            if asyncio.iscoroutine(result):
                task = self._loop.create_task(result)
                self._tasks.add(task)
                task.add_done_callback(functools.partial(self._done, writer))
        _of(self._sock).arm(self._loop, self._accept)

    def _forget(self, writer: StreamWriter, _closed: "asyncio.Future[None]") -> None:
        self._writers.discard(writer)

    def _done(self, writer: StreamWriter, task: "asyncio.Task[Any]") -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._loop.call_exception_handler({"message": "Unhandled exception in client_connected_cb",
                                               "exception": task.exception(), "transport": writer})
            writer.close()

    def close(self) -> None:
        """Stop listening; connections already accepted go on (as asyncio's)."""
        self._serving = False
        if self._forever is not None and not self._forever.done():
            self._forever.cancel()
        self._sock.close()

    def close_clients(self) -> None:
        for writer in list(self._writers):
            writer.close()

    def abort_clients(self) -> None:
        for writer in list(self._writers):
            writer.abort()

    async def wait_closed(self) -> None:
        """Once closed, wait for the connections' handlers to finish (as asyncio does since 3.12)."""
        if self._serving or not self._sock.closed:
            return
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


async def start_server(host: SocketHost, client_connected_cb: ClientConnected, ip: str | None = None,
                       port: int | None = None, *, limit: int = _DEFAULT_LIMIT, backlog: int = 100,
                       reuse_address: bool = True, start_serving: bool = True) -> Server:
    """A TCP server on ``host``, as ``asyncio.start_server(cb, ip, port)`` starts one on the kernel.

    ``client_connected_cb(reader, writer)`` is called for each connection; a
    coroutine is run as a task.
    """
    loop = asyncio.get_running_loop()
    sock = host.socket(AF_INET, SOCK_STREAM)
    try:
        if reuse_address:
            sock.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
        sock.bind((ip or "", port or 0))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    server = Server(loop, sock, client_connected_cb, limit)
    if start_serving:
        await server.start_serving()
    return server


# -- asyncio on a virtual clock (a replay host) ----------------------------------------------
class VirtualClock(Protocol):
    """What ``run_virtual`` needs from a replay host (``engine/scenario/simhost.SimHost``)."""

    @property
    def now(self) -> float: ...

    def next_deadline(self) -> float | None: ...

    def step(self) -> bool: ...

    def advance(self, t: float) -> None: ...


class _VirtualSelector(selectors.BaseSelector):
    """A real selector for the loop's own self-pipe; where it would sleep, the virtual clock moves instead."""

    def __init__(self, clock: VirtualClock) -> None:
        self._real = selectors.DefaultSelector()
        self._clock = clock

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        clock = self._clock
        target = None if timeout is None else clock.now + timeout
        deadline = clock.next_deadline()
        if deadline is None and target is None:
            raise RuntimeError("every task waits and nothing on the simulated wire can wake one")
        if deadline is not None and (target is None or deadline <= target):
            clock.step()
        else:
            assert target is not None
            clock.advance(target)
        return self._real.select(0)


class _VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(_VirtualSelector(clock))
        self._virtual = clock

    def time(self) -> float:
        return self._virtual.now


def run_virtual(host: VirtualClock, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on ``host``'s virtual clock (``asyncio.run`` for a replay)."""
    loop = _VirtualLoop(host)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
