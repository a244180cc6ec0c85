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

The stack runs in the live driver's thread, not in the event loop. Nothing
here polls: a coroutine that finds its socket empty registers a readiness
callback, which the driver calls (under its lock) once a datagram or an error
is waiting; the callback only hands a wake-up to the event loop with
``call_soon_threadsafe``. Datagrams are taken off the socket in the event
loop's own thread, as it gets to them, so the socket's bounded receive queue
stays the only buffer: a slow protocol makes the stack count and drop
overflow, as a kernel does, rather than grow a queue without bound.

On a live host the stack runs in another thread (``simstack_host``,
``LiveHost``). On a replay host, ``run_virtual(host, coro)`` runs the
coroutine in an event loop whose clock is the simulated wire's: when every
task waits, the loop moves the virtual clock to the wire's next event (a
frame arriving, a stack timer, the loop's own ``call_later``), so asyncio code
replays deterministically and a ``wait_for(..., 30)`` takes no real time.
"""

import asyncio
import contextlib
import selectors
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from .sockets import Address, Socket, SocketHost

__all__ = ["DatagramTransport", "VirtualClock", "create_datagram_endpoint", "run_virtual", "sock_recv",
           "sock_recvfrom", "sock_sendall", "sock_sendto"]

T = TypeVar("T")

BATCH = 64  # datagrams handed to a protocol per turn of the event loop, so one busy socket cannot starve the rest


class _Readiness:
    """One readiness callback per socket, waking every coroutine that waits on it.

    It holds its socket weakly: a strong reference from this value to its key
    in ``_readiness`` would keep every socket ever awaited alive.
    """

    def __init__(self, sock: Socket) -> None:
        self._sock = weakref.ref(sock)
        self.host = sock.host
        self.waiters: list[tuple[asyncio.AbstractEventLoop, Callable[[], None]]] = []

    def arm(self, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None:
        """Call ``wake`` in ``loop`` once the socket has a datagram or an error; at once if it has one now."""

        def register(_st: Any, _now: float) -> None:  # under the driver's lock: no wake-up falls in between
            sock = self._sock()
            self.waiters.append((loop, wake))
            if sock is None or sock.readable:
                self.fire()
            else:
                self.host.add_reader(sock, self.fire, on_close=True)

        self.host.call(register)

    def disarm(self, wake: Callable[[], None]) -> None:
        def unregister(_st: Any, _now: float) -> None:
            self.waiters = [(lp, w) for lp, w in self.waiters if w is not wake]
            sock = self._sock()
            if not self.waiters and sock is not None:
                self.host.remove_reader(sock)

        self.host.call(unregister)

    def fire(self) -> None:
        """Where the stack lives: hand every waiter its wake-up, once."""
        waiters, self.waiters = self.waiters, []
        sock = self._sock()
        if sock is not None:
            self.host.remove_reader(sock)
        for loop, wake in waiters:
            with contextlib.suppress(RuntimeError):  # that event loop is closed: nobody is left to wake
                loop.call_soon_threadsafe(wake)


_readiness: "weakref.WeakKeyDictionary[Socket, _Readiness]" = weakref.WeakKeyDictionary()


def _of(sock: Socket) -> _Readiness:
    r = _readiness.get(sock)
    if r is None:
        r = _readiness[sock] = _Readiness(sock)
    return r


async def _readable(sock: Socket) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    readiness = _of(sock)
    readiness.arm(loop, wake)
    try:
        await ready
    finally:
        readiness.disarm(wake)


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
