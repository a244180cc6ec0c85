"""``--busy-poll``: its range is checked before anything is set up, and a busy-polling loop still answers.

The driver tests use a SOCK_SEQPACKET pair for the device (no root). What
busy polling buys in latency and costs in CPU is bench/latency.py's to
measure; here the point is that the loop spins only inside its window and
then sleeps again, and that nothing it does changes what the stack answers.
"""

import itertools
import json
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from pair_device import PairDevice
from scapy.all import ARP, Ether, raw

from simstack.cli import build_parser
from simstack.engine.live.driver import MAX_BUSY_POLL, LiveDriver
from simstack.engine.live.session import MAX_BUSY_POLL_US, LiveOptions, plan
from simstack.engine.wire.errors import SetupError
from simstack.protocols.stack import Stack, StackConfig

STACK_MAC = bytes.fromhex("aabbccddeeff")
STACK_IP = bytes([10, 0, 0, 1])
PEER_MAC = "02:aa:bb:cc:dd:02"


def arp_request() -> bytes:
    frame: bytes = raw(Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=PEER_MAC, psrc="10.0.0.2",
                                                                   pdst="10.0.0.1"))
    return frame


def test_busy_poll_is_an_option_of_live_in_microseconds() -> None:
    args = build_parser().parse_args(["live", "tap0", "--busy-poll", "250"])
    assert args.busy_poll == 250
    assert build_parser().parse_args(["live", "tap0"]).busy_poll == 0  # off unless asked for


@pytest.mark.parametrize("usec", [0, 1, 50, MAX_BUSY_POLL_US])
def test_busy_poll_in_range_is_accepted(usec: int) -> None:
    # Accepted, and the driver's business alone: the stack's configuration is what it is without it.
    assert plan(LiveOptions("tap0", busy_poll=usec)).config == plan(LiveOptions("tap0")).config


@pytest.mark.parametrize("usec", [-1, MAX_BUSY_POLL_US + 1, 10**12])
def test_busy_poll_out_of_range_is_refused_with_its_range(usec: int) -> None:
    with pytest.raises(SetupError) as info:
        plan(LiveOptions("tap0", busy_poll=usec))
    assert str(info.value) == f"--busy-poll {usec}: want 0 (off) to 1,000,000 microseconds"


def test_the_microsecond_bound_is_the_drivers_second_bound() -> None:
    assert MAX_BUSY_POLL_US == 1_000_000 and MAX_BUSY_POLL == 1.0
    stack = Stack(StackConfig(mac=STACK_MAC, ip=STACK_IP), random.Random(1))
    device = PairDevice()
    try:
        for bad in (-1e-6, MAX_BUSY_POLL + 1e-6, float("nan")):
            with pytest.raises(ValueError):
                LiveDriver(stack, device, busy_poll=bad)
    finally:
        device.close()


class RecordingEpoll:
    """The driver's epoll, with every wait written down: (timeout, events); timeout 0 is a busy-poll round."""

    def __init__(self, driver: LiveDriver) -> None:
        self.epoll = driver._epoll
        self.waits: list[tuple[float, int]] = []
        driver._epoll = self  # type: ignore[assignment]

    def poll(self, timeout: float = -1.0) -> list[tuple[int, int]]:
        events = self.epoll.poll(timeout)
        self.waits.append((timeout, len(events)))
        return events

    def register(self, fd: int, mask: int) -> None:
        self.epoll.register(fd, mask)

    def close(self) -> None:
        self.epoll.close()


@dataclass
class Window:
    """The loop's waits after one frame, up to the one the next came in: how many were busy-poll rounds, and the
    last one's timeout (not 0: the loop was asleep when the next came)."""

    spins: int
    last: float


def after_two_frames(busy_poll: float, clock: Callable[[], float] | None = None,
                     threads: int = 0, linger: float = 0.2) -> list[Window]:
    """Run the loop in a child process, send it two ARP requests ``linger`` s apart, and say what it did after each.

    The loop runs in a forked child because busy polling applies only while
    the loop's is the process's only thread (the test's own would be one
    more); ``threads`` starts that many idle threads beside it, in the child.
    """
    device = PairDevice()
    results, report = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the loop, in its only thread unless asked for more
        code = 1
        try:
            os.close(results)
            device.wire.close()  # the test's end: the loop must see it cut when the test closes its copy
            stop = threading.Event()
            for _ in range(threads):
                threading.Thread(target=stop.wait, daemon=True).start()
            driver = make_driver(device, busy_poll, clock or time.monotonic)
            epoll = RecordingEpoll(driver)
            driver.run()  # until the test cuts the wire
            stop.set()
            # The waits from after one wake-up with events up to the next one's (the frame, then the cut wire).
            woke = [i for i, (_, n) in enumerate(epoll.waits) if n]
            windows = [epoll.waits[a + 1:b + 1] for a, b in itertools.pairwise(woke)]
            summary = [[sum(1 for t, _ in w if t == 0.0), w[-1][0]] for w in windows]
            with os.fdopen(report, "w") as out:
                json.dump(summary, out)
            code = 0
        finally:
            os._exit(code)
    os.close(report)
    device.inner.close()  # the loop's end, which the child has
    try:
        for _ in range(2):
            time.sleep(linger / 4)  # the loop is asleep in epoll before the frame comes
            device.wire.send(arp_request())
            reply = Ether(device.wire.recv(65536))
            assert reply[ARP].op == 2 and reply[ARP].hwsrc == "aa:bb:cc:dd:ee:ff" and reply[ARP].pdst == "10.0.0.2"
            time.sleep(linger)
    finally:
        device.wire.close()  # the loop reads the cut wire as its device failing, and ends
        with os.fdopen(results) as got:
            text = got.read()
        _, status = os.waitpid(pid, 0)
    assert status == 0 and text, (status, text)
    seen = [Window(spins, last) for spins, last in json.loads(text)]
    assert len(seen) == 2, seen  # after each frame; the cut wire's wake-up ends the loop
    return seen


def make_driver(device: PairDevice, busy_poll: float, clock: Callable[[], float]) -> LiveDriver:
    stack = Stack(StackConfig(mac=STACK_MAC, ip=STACK_IP), random.Random(7), now=clock())
    return LiveDriver(stack, device, busy_poll=busy_poll, clock=clock)


def test_without_busy_poll_the_loop_never_polls_without_sleeping() -> None:
    windows = after_two_frames(0.0)
    assert all(w.spins == 0 for w in windows), windows


def test_busy_poll_polls_after_a_frame_then_sleeps_again() -> None:
    first, second = after_two_frames(0.05, linger=0.3)
    # At least one round without sleeping after the answer (many on an idle CPU; a loaded one may cut the window
    # short, see the next test), and the last wait, 0.25 s after the window closed, sleeps.
    assert first.spins >= 1, first
    assert first.last != 0.0 and second.last != 0.0, (first, second)


def test_busy_poll_stops_when_another_task_had_the_cpu() -> None:
    """A round that took a millisecond means the loop was preempted: it sleeps at once, and the next frame
    (well within the back-off on this clock) opens no window."""
    t = [time.monotonic()]

    def clock() -> float:  # every reading is a millisecond after the last: each poll round looks preempted
        t[0] += 0.001
        return t[0]

    first, second = after_two_frames(0.5, clock)
    assert first.spins == 1, first
    assert second.spins == 0, second


def test_busy_poll_keeps_out_of_the_way_of_other_threads() -> None:
    """With another thread in the process the loop does not spin: it would keep that thread from the GIL."""
    windows = after_two_frames(0.05, threads=1)
    assert all(w.spins == 0 for w in windows), windows
