"""LiveDriver without a TAP: a SOCK_SEQPACKET pair stands in for the device, so no root is needed.

These pin the threading contract the socket APIs will build on: ``call``
sends at once and re-arms the loop's timeout, ``condition`` wakes blocked
callers, an idle loop sleeps, and a failing device ends the loop.
"""

import errno
import os
import random
import signal
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from pair_device import PairDevice

from simstack.engine.live.driver import LiveDriver
from simstack.protocols.arp_cache import ArpConfig
from simstack.protocols.stack import EchoReply, Stack, StackConfig

STACK_MAC = bytes.fromhex("aabbccddeeff")
STACK_IP = bytes([10, 0, 0, 1])
PEER_MAC = bytes.fromhex("02aabbccdd02")
PEER_IP = bytes([10, 0, 0, 2])




def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def arp(op: int, tha: bytes, tpa: bytes, dst: bytes) -> bytes:
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, PEER_MAC, PEER_IP, tha, tpa)
    return dst + PEER_MAC + b"\x08\x06" + body + bytes(18)


def echo_reply(identifier: int, sequence: int) -> bytes:
    icmp = struct.pack("!BBHHH", 0, 0, 0, identifier, sequence) + b"payload"
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0, PEER_IP, STACK_IP)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return STACK_MAC + PEER_MAC + b"\x08\x00" + header + icmp


@pytest.fixture
def device() -> Iterator[PairDevice]:
    d = PairDevice()
    yield d
    d.close()


def make_driver(device: PairDevice, **arp: float) -> LiveDriver:
    config = StackConfig(mac=STACK_MAC, ip=STACK_IP, arp=ArpConfig(**arp))  # type: ignore[arg-type]
    return LiveDriver(Stack(config, random.Random(7)), device)


def test_background_loop_answers_arp_and_stops(device: PairDevice) -> None:
    driver = make_driver(device)
    seen: list[str] = []
    driver.hook = lambda direction, frame, now: seen.append(direction)
    driver.start()
    try:
        device.wire.send(arp(1, bytes(6), STACK_IP, b"\xff" * 6))
        reply = device.wire.recv(65536)
        assert reply[:6] == PEER_MAC and reply[12:14] == b"\x08\x06"
        assert struct.unpack("!H", reply[20:22])[0] == 2 and reply[22:28] == STACK_MAC
        assert seen == ["<", ">"]
    finally:
        driver.close()
    assert not driver.running
    assert driver._thread is not None and not driver._thread.is_alive()


def test_call_sends_at_once_and_rearms_the_loop_timeout(device: PairDevice) -> None:
    """The loop sleeps with no deadline; a call that starts ARP must make it wake for the retransmission."""
    driver = make_driver(device, retrans_time=0.05)
    driver.start()
    try:
        time.sleep(0.05)  # let the loop block in epoll with no timeout
        ep = driver.call(lambda stack, now: stack.open_echo(0x1234))
        driver.call(lambda stack, now: ep.send(PEER_IP, 1, b"x", now))
        first = device.wire.recv(65536)  # sent by call() itself
        t0 = time.monotonic()
        second = device.wire.recv(65536)  # the retransmission: only if the loop re-read next_deadline()
        assert first[12:14] == second[12:14] == b"\x08\x06"
        assert 0.02 < time.monotonic() - t0 < 1.0
    finally:
        driver.close()


def test_condition_wakes_a_blocked_caller_on_reply(device: PairDevice) -> None:
    driver = make_driver(device)
    driver.start()
    try:
        ep = driver.call(lambda stack, now: stack.open_echo(0x4321))
        got: list[bool] = []
        waiter = threading.Thread(target=lambda: got.append(driver.wait_for(lambda: bool(ep.events), 5.0)))
        waiter.start()
        driver.call(lambda stack, now: ep.send(PEER_IP, 9, b"payload", now))
        assert device.wire.recv(65536)[12:14] == b"\x08\x06"  # who-has 10.0.0.2
        device.wire.send(arp(2, STACK_MAC, STACK_IP, STACK_MAC))
        request = device.wire.recv(65536)  # the queued echo request, released by the ARP reply
        assert request[12:14] == b"\x08\x00" and request[34] == 8
        device.wire.send(echo_reply(0x4321, 9))
        waiter.join(5.0)
        assert got == [True]
        with driver.lock:
            event = ep.events.popleft()
        assert isinstance(event, EchoReply) and event.sequence == 9 and event.src == PEER_IP
    finally:
        driver.close()


def test_idle_loop_sleeps(device: PairDevice) -> None:
    driver = make_driver(device)
    driver.start()
    try:
        before = time.process_time()
        time.sleep(0.5)  # the measurement window
        assert time.process_time() - before < 0.05
    finally:
        driver.close()


def test_device_failure_ends_the_loop_and_releases_waiters(device: PairDevice) -> None:
    driver = make_driver(device)
    driver.start()
    try:
        device.wire.close()
        t0 = time.monotonic()
        assert driver.wait_for(lambda: False, 5.0) is False
        assert time.monotonic() - t0 < 2.0
        assert not driver.running
        assert driver.error is not None and driver.error.errno == errno.EBADFD
    finally:
        driver.close()


def test_run_until_signal_returns_the_signal_and_restores_handlers(device: PairDevice) -> None:
    driver = make_driver(device)
    before = signal.getsignal(signal.SIGUSR1)

    # If the signal fails to stop the loop, cutting the wire does, and the test fails instead of hanging.
    watchdog = threading.Timer(5.0, device.wire.close)

    def ready() -> None:
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        watchdog.start()

    try:
        assert driver.run_until_signal((signal.SIGUSR1,), ready) == signal.SIGUSR1
    finally:
        watchdog.cancel()
        driver.close()
    assert driver.error is None
    assert signal.getsignal(signal.SIGUSR1) == before
