"""``--busy-poll``: its range is checked before anything is set up, and a busy-polling loop still answers.

The driver tests use a SOCK_SEQPACKET pair for the device (no root). What
busy polling buys in latency and costs in CPU is bench/latency.py's to
measure; here the point is that the loop spins only inside its window and
then sleeps again, and that nothing it does changes what the stack answers.
"""

import os
import random
import threading
import time
from collections.abc import Iterator

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


def thread_cpu(thread: threading.Thread) -> float:
    """CPU seconds of one thread of this process (its own clock, not the test's)."""
    assert thread.native_id is not None
    with open(f"/proc/self/task/{thread.native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("busy_poll", [0.0, 0.3])
def test_a_busy_polling_loop_answers_then_spins_only_for_its_window(device: PairDevice, busy_poll: float) -> None:
    driver = LiveDriver(Stack(StackConfig(mac=STACK_MAC, ip=STACK_IP), random.Random(7)), device,
                        busy_poll=busy_poll)
    driver.start()
    try:
        device.wire.send(arp_request())
        reply = Ether(device.wire.recv(65536))
        assert reply[ARP].op == 2 and reply[ARP].hwsrc == "aa:bb:cc:dd:ee:ff" and reply[ARP].pdst == "10.0.0.2"
        assert driver._thread is not None
        start = thread_cpu(driver._thread)
        time.sleep(0.6)  # the window (0.3 s) and as long again asleep
        spent = thread_cpu(driver._thread) - start
        # Busy polling spins for most of its window after the frame; without it the loop sleeps at once.
        # The bounds leave room for a loaded machine: the loop may not get the CPU the whole window.
        if busy_poll:
            assert 0.05 <= spent <= 0.45, spent
        else:
            assert spent <= 0.03, spent
        # A second frame after the window still gets its answer: the loop went back to sleeping in epoll.
        device.wire.send(arp_request())
        assert Ether(device.wire.recv(65536))[ARP].op == 2
    finally:
        driver.close()
    assert not driver.running
