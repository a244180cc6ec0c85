"""Readiness as data: a batch of a thousand datagrams through the echo service at a flat stack depth,
and a live session that outlives a bug in a handler.

The live driver runs here against an in-memory device (an eventfd says when
frames wait), so no root is needed; ``tests/live`` runs the same driver on a
real TAP.
"""

import contextlib
import logging
import os
import random
import sys
import threading
from collections import deque
from types import FrameType

import pytest
from scapy.all import ARP, IP, UDP, Ether, raw

from simstack.engine.api.services import UdpEcho, start_services
from simstack.engine.live.driver import LiveDriver
from simstack.engine.live.livehost import LiveHost
from simstack.engine.scenario.loader import loads
from simstack.engine.scenario.runner import Runner
from simstack.protocols.stack import Stack, StackConfig
from simstack.protocols.transport import Readiness, Ready
from simstack.protocols.udp_ports import UdpEndpoint

STACK_MAC, PEER_MAC = "aa:bb:cc:dd:ee:ff", "02:00:00:00:00:02"


class ListDevice:
    """Frames in a deque; an eventfd is readable while any wait."""

    def __init__(self) -> None:
        self.inbox: deque[bytes] = deque()
        self.sent: list[bytes] = []
        self.fd = os.eventfd(0, os.EFD_NONBLOCK)
        self.all_sent = threading.Event()
        self.expect = 0

    def fileno(self) -> int:
        return self.fd

    def push(self, frames: list[bytes]) -> None:
        self.inbox.extend(frames)
        os.eventfd_write(self.fd, 1)

    def read_batch(self, limit: int) -> list[bytes]:
        out = [self.inbox.popleft() for _ in range(min(limit, len(self.inbox)))]
        if not self.inbox:
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self.fd)
        return out

    def write(self, frame: bytes) -> OSError | None:
        self.sent.append(frame)
        if len(self.sent) >= self.expect:
            self.all_sent.set()
        return None


def _stack() -> Stack:
    return Stack(StackConfig(mac=bytes.fromhex(STACK_MAC.replace(":", "")), ip=bytes([10, 0, 0, 1])), random.Random(3))


def _udp(sport: int, dport: int, data: bytes) -> bytes:
    return bytes(raw(Ether(dst=STACK_MAC, src=PEER_MAC) / IP(src="10.0.0.2", dst="10.0.0.1")
                     / UDP(sport=sport, dport=dport) / data))


def _arp_request() -> bytes:
    return bytes(raw(Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC) / ARP(op=1, hwsrc=PEER_MAC, psrc="10.0.0.2",
                                                                       pdst="10.0.0.1")))


def _depth() -> int:
    frame: FrameType | None = sys._getframe()
    n = 0
    while frame is not None:
        n += 1
        frame = frame.f_back
    return n


def test_a_thousand_queued_datagrams_go_through_echo_in_one_batch_at_a_flat_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    depths: list[int] = []
    handle = UdpEcho.handle

    def measured(self: UdpEcho, sock: object, data: bytes, addr: tuple[str, int]) -> None:
        depths.append(_depth())
        handle(self, sock, data, addr)  # type: ignore[arg-type]

    monkeypatch.setattr(UdpEcho, "handle", measured)
    device = ListDevice()
    stack = _stack()
    # The echo socket's queue holds them all, so the batch really is one batch.
    driver = LiveDriver(stack, device, batch=1001)
    host = LiveHost(driver)
    start_services(host, ["echo"])
    datagrams = [_udp(40000 + i % 1000, 7, i.to_bytes(4, "big")) for i in range(1000)]
    device.expect = 1 + 1000  # the ARP reply, then a thousand echoes
    device.push([_arp_request(), *datagrams])
    driver.start()
    try:
        assert device.all_sent.wait(10), f"{len(device.sent)} frames sent"
    finally:
        driver.close()
    echoed = [Ether(f)[UDP].load for f in device.sent[1:]]
    assert echoed == [i.to_bytes(4, "big") for i in range(1000)]
    assert stack.counters["udp.delivered"] == 1000
    assert len(depths) == 1000 and max(depths) - min(depths) <= 2, (min(depths), max(depths))
    assert max(depths) < 60


def test_a_bug_in_a_handler_is_counted_logged_and_the_session_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    device = ListDevice()
    stack = _stack()
    bad = bytes.fromhex(STACK_MAC.replace(":", "")) + bytes.fromhex("02000000000288b5") + b"boom"

    def broken(eth: object, port: object, now: float) -> None:
        raise ZeroDivisionError("a bug in a handler")

    stack._ethertypes[0x88B5] = broken
    driver = LiveDriver(stack, device)
    device.expect = 1
    device.push([bad, _arp_request()])
    with caplog.at_level(logging.ERROR, logger="simstack.live"):
        driver.start()
        try:
            assert device.all_sent.wait(5)
        finally:
            driver.close()
    assert stack.counters["stack.error"] == 1
    assert Ether(device.sent[0])[ARP].op == 2  # the next frame was still answered
    assert any(bad.hex() in r.getMessage() and r.exc_info for r in caplog.records)


def test_in_a_replay_the_same_bug_fails_the_scenario_with_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Stack, eth: object, port: object, now: float) -> None:
        raise ZeroDivisionError("a bug in a handler")

    monkeypatch.setattr(Stack, "_rx_arp", broken)
    scenario = loads("""
description: an ARP request that meets a broken handler
steps:
  - at: 0
    inject: {arp: {op: request}}
  - expect: {arp: {op: reply}}
""", "bug.yaml")
    result = Runner(scenario).run()
    assert not result.passed
    assert result.report.startswith("bug.yaml:4: step 1 raised")
    assert "Traceback" in result.report and "ZeroDivisionError: a bug in a handler" in result.report


def test_marks_merge_and_keep_their_order() -> None:
    ready = Readiness()
    a, b = object(), object()
    ready.mark(a, Ready.READABLE)
    ready.mark(b, Ready.WRITABLE)
    ready.mark(a, Ready.HUP)
    assert ready.drain() == [(a, Ready.READABLE | Ready.HUP), (b, Ready.WRITABLE)]
    assert not ready and ready.drain() == []


def test_an_endpoint_marks_itself_only_when_it_becomes_readable() -> None:
    stack = _stack()
    ep = UdpEndpoint(4096, stack.ready)
    ep.deliver(b"one", (b"\x0a\x00\x00\x02", 1), stack.counters)
    ep.deliver(b"two", (b"\x0a\x00\x00\x02", 1), stack.counters)
    assert stack.ready.drain() == [(ep, Ready.READABLE)]
    ep.pop()
    ep.pop()
    ep.deliver(b"three", (b"\x0a\x00\x00\x02", 1), stack.counters)
    assert stack.ready.drain() == [(ep, Ready.READABLE)]


def test_a_reader_added_to_a_socket_with_data_waiting_runs_without_a_new_mark() -> None:
    runner = Runner(loads("description: x\nhosts:\n  peer: {mac: '02:00:00:00:00:02', ip: 10.0.0.2}\n"
                          "steps:\n  - expect: nothing\n    for: 0\n", "x.yaml"))
    s = runner.socket()
    s.bind(("", 5000))
    runner.wire.inject(_arp_request())
    runner.wire.inject(_udp(6000, 5000, b"waiting"))
    got: list[bytes] = []
    s.setblocking(False)
    runner.add_reader(s, lambda: got.append(s.recv(100)))
    runner.wire.settle()
    assert got == [b"waiting"]
    writes: list[int] = []

    def writable() -> None:
        writes.append(1)
        runner.remove_writer(s)

    runner.add_writer(s, writable)
    runner.wire.settle()
    assert writes == [1]
