"""The live driver: one event loop between a sans-IO ``Stack`` and a frame device.

The stack never reads a clock or a descriptor; this loop is the only place
that does. It sleeps in epoll on two descriptors, the device and an eventfd,
with the stack's next deadline as the timeout, so an idle stack costs no CPU
and a timer fires within a millisecond of its deadline (epoll's resolution).

Threads. The loop thread and any number of application threads share the
stack through one ``threading.RLock`` (``lock``):

* ``call(fn)`` runs ``fn(stack, now)`` under the lock, sends what it queued
  at once, and wakes the loop so it re-reads ``next_deadline()`` (a new ARP
  retransmission timer, say). Every write to the stack from outside the loop
  goes through ``call``.
* ``condition`` (on the same lock) is notified after every loop iteration
  that received frames or ran timers, and after every ``call``. A blocking
  API waits on it for its own event, the way a socket's ``recv`` would::

      ep = driver.call(lambda stack, now: stack.open_echo())
      driver.call(lambda stack, now: ep.send(dst, 1, b"", now))
      driver.wait_for(lambda: bool(ep.events), timeout=1.0)

  Predicates run with the lock held, so they may read stack state directly.

* ``on_ready`` (a socket host's ``dispatch_ready``) runs in the loop thread,
  outside the lock, whenever the stack marked endpoints ready: after a batch
  of frames or timers, or after an application thread's ``call`` (which wakes
  the loop for it). Callbacks it runs call back into the stack through
  ``call`` and only mark more endpoints, so nothing re-enters itself.

A bug in the stack must not end a live session: an exception while one frame
is handled is counted (``stack.error``), logged with the frame in hex, and
the loop goes on. (A replay lets the same exception fail the scenario.)

Run the loop in the foreground with ``run()`` or ``run_until_signal()``, or
in a background thread with ``start()``; ``stop()`` ends it from any thread
or from a signal handler.

A stack with several interfaces has a device for each (``devices``: the
first is ``device``); frames read from device i are received on interface i,
and what interface i sends is written to device i. A device that holds frames
back (``HeldFrames``: a delay on the link, shaped.py) names the time of its
next release, which the loop sleeps no longer than, and hands over its due
frames then. Neither costs the one-device, unshaped loop anything.

With ``offload`` the one device is a TAP that puts a virtio-net header before
every frame (``tap.py``, ``wire/vnet.py``): the loop strips it on the way in,
telling the stack when the kernel vouched for the transport checksum, and
writes one on the way out, asking the kernel to complete our TCP checksums and
to cut segments longer than the MTU at the connection's MSS.
"""

import contextlib
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import Protocol, TypeVar, runtime_checkable

from simstack.protocols.errors import Malformed
from simstack.protocols.stack import Stack
from simstack.protocols.transport import Ready

from ..wire import vnet

T = TypeVar("T")
FrameHook = Callable[[str, bytes, float], None]  # ("<" into the stack or ">" out of it, frame, monotonic time)

_LOG_ERRORS = 10  # frames logged in full before the log only counts
_PACED = 0.0002  # seconds between frames past which a device is read one frame at a time (see _receive)
_PREEMPTED = 0.0005  # seconds one empty busy-poll round may take before the loop counts itself preempted
_BACKOFF_MIN, _BACKOFF_MAX = 0.01, 1.0  # seconds without busy polling after a round found the CPU contended
MAX_BUSY_POLL = 1.0  # seconds: --busy-poll's ceiling; past it, a busy loop is a spinning process, not a poll

log = logging.getLogger("simstack.live")


class FrameDevice(Protocol):
    """What the driver needs from a device: a pollable fd and whole frames (``tap.Tap``)."""

    def fileno(self) -> int: ...

    def read_batch(self, limit: int) -> list[bytes]: ...

    def write(self, frame: bytes) -> OSError | None: ...


class VnetDevice(FrameDevice, Protocol):
    """A device whose frames travel after a virtio-net header (``tap.Tap`` opened with ``offload``)."""

    def write_vnet(self, header: bytes, frame: bytes) -> OSError | None: ...


@runtime_checkable
class HeldFrames(Protocol):
    """A device that holds frames back: it says when the next is due, and releases what is due."""

    def next_release(self) -> float | None: ...

    def release(self, now: float) -> list[bytes]:
        """The frames due for the stack by ``now``; frames due for the wire it writes itself."""
        ...


class LiveDriver:
    """Moves frames and time between ``device`` and ``stack`` until stopped.

    ``hook`` sees every frame in both directions, under the lock, before the
    stack (inbound) or the device (outbound) does: the pcap writer and the
    ``-v`` printer hang there. With several interfaces its direction is the
    interface's name and the arrow, ``tap1 <``. ``batch`` bounds how many queued frames one
    wake-up reads, so a flood cannot starve timers or application calls.
    ``on_ready`` runs in the loop thread, outside the lock, when endpoints
    were marked ready; it returns True when it left marks for another turn.
    ``error`` is set when the device failed (it was deleted, say) and the
    loop ended because of it. ``busy_poll`` (seconds, default 0: off) keeps
    the loop polling without sleeping for that long after the last wake-up,
    as Linux's SO_BUSY_POLL does for a socket: a frame that comes in that
    window is read without the scheduler waking the process, at the price
    of a CPU kept busy for the window. It applies while the loop's is the
    process's only thread (``simstack live`` serving), since a spinning
    thread keeps the others from the GIL.
    """

    def __init__(self, stack: Stack, device: FrameDevice, *, hook: FrameHook | None = None, batch: int = 64,
                 clock: Callable[[], float] = time.monotonic, on_ready: Callable[[], bool] | None = None,
                 devices: Sequence[FrameDevice] = (), offload: bool = False, busy_poll: float = 0.0) -> None:
        if not 0.0 <= busy_poll <= MAX_BUSY_POLL:
            raise ValueError(f"busy_poll {busy_poll!r}: want 0 to {MAX_BUSY_POLL:g} seconds")
        self.stack = stack
        self.busy_poll = busy_poll
        self.device = device
        self.devices = [device, *devices]  # interface i's device; ``devices`` are interfaces 1, 2, ...
        if len(self.devices) != len(stack.ports):
            raise ValueError(f"{len(self.devices)} devices for a stack with {len(stack.ports)} interfaces")
        self._last_rx = [-1e9] * len(self.devices)  # when each device last gave a frame (clock time)
        self._held = [(i, d) for i, d in enumerate(self.devices) if isinstance(d, HeldFrames)]
        if offload and (len(self.devices) > 1 or not hasattr(device, "write_vnet")):
            raise ValueError("offload takes one TAP opened with it, not beside other devices")
        self._vnet: VnetDevice | None = device if offload else None  # type: ignore[assignment]
        # With several interfaces, the hook's direction names the interface too ("tap1 <").
        self._arrows = [(f"{p.name} <", f"{p.name} >") for p in stack.ports] if len(stack.ports) > 1 else [("<", ">")]
        self.hook = hook
        self.on_ready = on_ready
        self._errors_logged = 0
        self.batch = batch
        self.clock = clock
        self.lock = threading.RLock()
        self.condition = threading.Condition(self.lock)
        self.error: OSError | None = None
        self._stopping = False
        self._running = False
        self._loop_thread: int | None = None
        self._thread: threading.Thread | None = None
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll = select.epoll()
        for dev in self.devices:
            self._epoll.register(dev.fileno(), select.EPOLLIN)
        self._epoll.register(self._wake_fd, select.EPOLLIN)

    # -- for application threads -------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running

    def now(self) -> float:
        """The clock the stack runs on, for applications that schedule their own work."""
        return self.clock()

    def call(self, fn: Callable[[Stack, float], T]) -> T:
        """Run ``fn(stack, now)`` under the lock and act on what it changed.

        Frames it queued leave before ``call`` returns (no loop round-trip on
        the send path); the loop is woken to pick up a changed deadline, and
        waiters are notified in case ``fn`` changed what they wait for. If
        ``fn`` raises, the same happens and the exception propagates.
        """
        with self.lock:
            now = self.clock()
            try:
                return fn(self.stack, now)
            finally:
                self._flush(now)
                self._notify()
                if threading.get_ident() != self._loop_thread:
                    self.wake()

    def _notify(self) -> None:
        """Wake the waiters, held lock and all; with none waiting (a service's call per datagram), skip the work."""
        if self.condition._waiters:  # type: ignore[attr-defined]
            self.condition.notify_all()

    def take_ready(self) -> list[tuple[object, Ready]]:
        """The endpoints marked ready since the last time (for the host's ``dispatch_ready``)."""
        with self.lock:
            return self.stack.ready.drain()

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Block until ``predicate()`` holds, the loop is not running, or ``timeout`` passes.

        Returns the predicate's last value. It is evaluated with the lock held.
        """
        with self.condition:
            self.condition.wait_for(lambda: predicate() or not self._running or self._stopping, timeout)
            return predicate()

    def notify(self) -> None:
        """Wake every waiter, e.g. from a signal handler that set a flag they check."""
        with self.condition:
            self.condition.notify_all()

    def wake(self) -> None:
        """Make the loop run one iteration now. Safe from any thread and from signal handlers."""
        with contextlib.suppress(OSError):  # closed, or the counter is saturated: a wake-up is pending either way
            os.eventfd_write(self._wake_fd, 1)

    # -- running the loop -------------------------------------------------------
    def run(self) -> None:
        """Run the loop in this thread until ``stop()`` or a device error."""
        self._running = True
        self._loop_thread = threading.get_ident()
        try:
            self._loop()
        finally:
            self._running = False
            self._loop_thread = None
            self.notify()

    def run_until_signal(self, signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
                         ready: Callable[[], None] | None = None) -> int | None:
        """Run in the main thread until one of ``signals``; return its number (None if stopped otherwise).

        ``ready`` runs once the handlers are in place: announce readiness there,
        so a signal sent in answer to the announcement cannot find the default
        handler still installed.
        """
        caught: list[int] = []

        def handler(signum: int, _frame: FrameType | None) -> None:
            caught.append(signum)
            self.stop()

        previous = {s: signal.signal(s, handler) for s in signals}
        try:
            if ready is not None:
                ready()
            self.run()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        return caught[0] if caught else None

    def start(self) -> None:
        """Run the loop in a daemon thread; ``stop()`` ends it."""
        if self._thread is not None:
            raise RuntimeError("the live driver runs once")
        self._running = True  # before the thread exists, so call() and wait_for() see a live driver
        self._thread = threading.Thread(target=self.run, name="simstack-live", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """End the loop after its current iteration; joins the loop thread unless called from it."""
        self._stopping = True
        self.wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            thread.join(timeout)

    def close(self) -> None:
        """Stop, and release the selector and the eventfd (the device is the caller's)."""
        self.stop()
        self._epoll.close()
        if self._wake_fd >= 0:
            os.close(self._wake_fd)
            self._wake_fd = -1

    # -- the loop -----------------------------------------------------------------
    def _loop(self) -> None:
        stack = self.stack
        clock = self.clock
        poll = self._epoll.poll
        device_fd = self.device.fileno()
        others = {dev.fileno(): i for i, dev in enumerate(self.devices) if i}  # interfaces 1, 2, ... by descriptor
        held = self._held
        ready_set = stack.ready
        with self.lock:
            deadline = stack.next_deadline()
            self._flush(clock())
        more = False
        busy_poll = self.busy_poll
        spin_until = 0.0  # with busy_poll: poll without sleeping until then
        spin_after = 0.0  # after a preempted round: no busy polling before then
        backoff = 0.0
        before = 0.0
        while not self._stopping:
            # Marks left by a dispatch that ran out of rounds: look again at once.
            wake_at = self._wake_at(deadline) if held else deadline
            if more:
                timeout = 0.0
            else:
                before = clock()
                timeout = 0.0 if before < spin_until else -1.0 if wake_at is None else max(0.0, wake_at - before)
            events = poll(timeout)
            if not events and not more and not held:
                # A busy-poll round that found nothing, or epoll woke a little before the deadline (it rounds
                # the timeout up to a millisecond, so rarely): no lock, no bookkeeping.
                now = clock()
                if timeout == 0.0 and now - before > _PREEMPTED:
                    # Another task had the CPU. A process that spins under contention spends more than its share,
                    # and the scheduler makes it wait its turn when a frame comes, where one asleep in epoll is
                    # woken ahead of the others. So sleep, as the kernel's busy poll stops when the scheduler wants
                    # the CPU back (need_resched), and spin again only after a back-off: short after a lone
                    # preemption, doubled (up to a second) while they keep coming.
                    backoff = min(2 * backoff, _BACKOFF_MAX) if now - spin_after < backoff else _BACKOFF_MIN
                    spin_until = 0.0
                    spin_after = now + backoff
                if deadline is None or now < deadline:
                    continue
            with self.lock:
                now = clock()
                # Busy polling wants the GIL to itself: another thread (an application's, --ping's) would wait
                # for it up to the interpreter's switch interval (5 ms) each time it woke while the loop spun.
                if busy_poll and events and now >= spin_after and threading.active_count() == 1:
                    spin_until = now + busy_poll
                busy = False
                for fd, _mask in events:
                    if fd == device_fd or fd in others:
                        try:
                            busy = self._receive(now, others.get(fd, 0)) or busy
                        except OSError as e:
                            self.error = e
                            self._stopping = True
                            break
                    else:
                        self._drain_wake()
                if held:
                    busy = self._release(now) or busy
                deadline = stack.next_deadline()
                if deadline is not None and deadline <= now:
                    try:
                        stack.on_timer(now)
                    except Exception as e:
                        self._bug(e, b"")
                    busy = True
                    deadline = stack.next_deadline()
                try:
                    self._flush(now)
                except OSError as e:
                    self.error = e
                    self._stopping = True
                if busy:
                    self._notify()
                more = bool(ready_set)
            if more and self.on_ready is not None:
                try:
                    self.on_ready()
                except Exception as e:  # a service's callback: counted like a frame's bug
                    self._bug(e, b"")
                with self.lock:
                    deadline = stack.next_deadline()
                    more = bool(ready_set)
            else:
                more = False

    def _receive(self, now: float, iface: int = 0) -> bool:
        """Read and deliver the frames queued on interface ``iface``'s device: one, or up to ``batch``.

        Frames that come paced (a ping every millisecond) come one to a
        wake-up. For them one read, and epoll (level-triggered: it reports a
        device again while frames are queued) says whether another waits,
        instead of a second read that finds the queue empty before the reply
        leaves. Frames that come close together are read ``batch`` at a time.
        """
        last = self._last_rx
        frames = self.devices[iface].read_batch(1 if now - last[iface] > _PACED else self.batch)
        if not frames:
            return False
        last[iface] = now
        if self._vnet is not None:
            self._deliver_vnet(frames, now)
        else:
            self._deliver(frames, now, iface)
        return True

    def _deliver_vnet(self, reads: list[bytes], now: float) -> None:
        """Each read is a virtio-net header and a frame: the frame goes in, with what the header vouches for."""
        hook = self.hook
        receive = self.stack.receive
        skip = vnet.HEADER_LEN
        for raw in reads:
            try:
                csum_ok = vnet.parse(raw).csum_ok
            except Malformed as e:
                self.stack.counters.drop("vnet", e.reason)
                continue
            frame = raw[skip:]
            if hook is not None:
                hook("<", frame, now)
            try:
                receive(frame, now, 0, csum_ok)
            except Exception as e:
                self._bug(e, frame)

    def _gso_size(self, src: bytes, sport: int, dst: bytes, dport: int) -> int:
        """The MSS the connection of one of our segments sends with: the kernel cuts the segment at it."""
        conn = self.stack.tcp.conns.get((src, sport, dst, dport))
        return conn.snd_mss if conn is not None else 0

    def _deliver(self, frames: list[bytes], now: float, iface: int) -> None:
        hook = self.hook
        receive = self.stack.receive
        arrow = self._arrows[iface][0]
        for frame in frames:
            if hook is not None:
                hook(arrow, frame, now)
            try:
                receive(frame, now, iface)
            except Exception as e:
                self._bug(e, frame)

    def _wake_at(self, deadline: float | None) -> float | None:
        """The earlier of the stack's deadline and the next frame a device holds."""
        for _, dev in self._held:
            due = dev.next_release()
            if due is not None and (deadline is None or due < deadline):
                deadline = due
        return deadline

    def _release(self, now: float) -> bool:
        """Frames the devices held back that are due: into the stack, or (the device does it) onto the wire."""
        busy = False
        for iface, dev in self._held:
            due = dev.next_release()
            if due is not None and due <= now:
                if self._vnet is not None:
                    self._deliver_vnet(dev.release(now), now)
                else:
                    self._deliver(dev.release(now), now, iface)
                busy = True
        return busy

    def _bug(self, e: Exception, frame: bytes) -> None:
        """An exception the stack should never raise: count it, log it, and keep the session."""
        self.stack.counters.inc("stack.error")
        self._errors_logged += 1
        if self._errors_logged <= _LOG_ERRORS:
            what = f"frame {frame.hex()}" if frame else "a timer or a readiness callback"
            log.error("a bug in the stack while handling %s; the session goes on", what, exc_info=e)
        elif self._errors_logged == _LOG_ERRORS + 1:
            log.error("more bugs in the stack; counting them in stack.error from now on")

    def _flush(self, now: float) -> None:
        if len(self.devices) > 1:
            self._flush_all(now)
            return
        out = self.stack.transmit()
        if not out:
            return
        hook = self.hook
        if self._vnet is not None:
            self._write_vnet(out, now)
            return
        write = self.device.write
        for frame in out:
            if hook is not None:
                hook(">", frame, now)
            if write(frame) is not None:
                self.stack.counters.inc("tap.tx_error")

    def _write_vnet(self, out: list[bytes], now: float) -> None:
        hook = self.hook
        write = self._vnet.write_vnet  # type: ignore[union-attr]
        mtu = self.stack.ports[0].mtu
        header_for = vnet.header_for
        gso_size = self._gso_size
        for frame in out:
            if hook is not None:
                hook(">", frame, now)
            if write(header_for(frame, mtu, gso_size), frame) is not None:
                self.stack.counters.inc("tap.tx_error")

    def _flush_all(self, now: float) -> None:
        hook = self.hook
        devices = self.devices
        arrows = self._arrows
        for iface, frame in self.stack.transmit_all():
            if hook is not None:
                hook(arrows[iface][1], frame, now)
            if devices[iface].write(frame) is not None:
                self.stack.counters.inc("tap.tx_error")

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wake_fd)
