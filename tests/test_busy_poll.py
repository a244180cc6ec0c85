"""``--busy-poll``: its range is checked before anything is set up, and a busy-polling loop still answers.

The driver tests use a SOCK_SEQPACKET pair for the device (no root). What
busy polling buys in latency and costs in CPU is bench/latency.py's to
measure; here the point is that the loop spins only inside its window and
then sleeps again, and that nothing it does changes what the stack answers.
"""

import random
import threading
import time
from collections.abc import Callable, Iterator

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
    plan(LiveOptions("tap0", busy_poll=usec))


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


@pytest.fixture
def device() -> Iterator[PairDevice]:
    d = PairDevice()
    yield d
    d.close()


class RecordingEpoll:
    """The driver's epoll, with the timeout of every wait written down: 0 is a busy-poll round, else it sleeps."""

    def __init__(self, driver: LiveDriver) -> None:
        self.epoll = driver._epoll
        self.timeouts: list[float] = []
        driver._epoll = self  # type: ignore[assignment]

    def poll(self, timeout: float = -1.0) -> list[tuple[int, int]]:
        self.timeouts.append(timeout)
        return self.epoll.poll(timeout)

    def register(self, fd: int, mask: int) -> None:
        self.epoll.register(fd, mask)

    def close(self) -> None:
        self.epoll.close()


def answer_two_arps(device: PairDevice, driver: LiveDriver, linger: float) -> tuple[list[float], list[float]]:
    """Start the loop, have it answer an ARP request, wait ``linger`` s, and another; the epoll timeouts after each."""
    epoll = RecordingEpoll(driver)
    driver.start()
    try:
        time.sleep(0.05)  # the loop is asleep in epoll before the frame comes
        before = len(epoll.timeouts)
        device.wire.send(arp_request())
        reply = Ether(device.wire.recv(65536))
        assert reply[ARP].op == 2 and reply[ARP].hwsrc == "aa:bb:cc:dd:ee:ff" and reply[ARP].pdst == "10.0.0.2"
        time.sleep(linger)
        middle = len(epoll.timeouts)
        # Whatever the window did, the loop sleeps again and the next frame still gets its answer.
        device.wire.send(arp_request())
        assert Ether(device.wire.recv(65536))[ARP].op == 2
        time.sleep(linger)
    finally:
        driver.close()
    assert not driver.running
    return epoll.timeouts[before:middle], epoll.timeouts[middle:]


def make_driver(device: PairDevice, busy_poll: float, clock: Callable[[], float] = time.monotonic) -> LiveDriver:
    stack = Stack(StackConfig(mac=STACK_MAC, ip=STACK_IP), random.Random(7), now=clock())
    return LiveDriver(stack, device, busy_poll=busy_poll, clock=clock)


def test_without_busy_poll_the_loop_never_polls_without_sleeping(device: PairDevice) -> None:
    first, second = answer_two_arps(device, make_driver(device, 0.0), linger=0.2)
    assert first and second and 0.0 not in first + second, (first, second)


def test_busy_poll_polls_after_a_frame_then_sleeps_again(device: PairDevice) -> None:
    timeouts, again = answer_two_arps(device, make_driver(device, 0.05), linger=0.3)
    spins = timeouts.count(0.0)
    # At least one round without sleeping after the answer (many on an idle CPU; a loaded one may cut the window
    # short, see the next test), and the last wait, 0.25 s after the window closed, sleeps.
    assert spins >= 1, timeouts[:20]
    assert timeouts[-1] != 0.0, timeouts[-5:]
    assert again and again[-1] != 0.0, again[-5:]


def test_busy_poll_stops_when_another_task_had_the_cpu(device: PairDevice) -> None:
    """A round that took a millisecond means the loop was preempted: it sleeps at once, and the next frame
    (well within the back-off on this clock) opens no window."""
    lock = threading.Lock()
    t = [time.monotonic()]

    def clock() -> float:  # every reading is a millisecond after the last: each poll round looks preempted
        with lock:
            t[0] += 0.001
            return t[0]

    first, second = answer_two_arps(device, make_driver(device, 0.5, clock), linger=0.2)
    assert first.count(0.0) == 1, first[:20]
    assert second and 0.0 not in second, second[:20]
