"""Calls that block across later steps (packetdrill's ``0...0.1 read()``), and asyncio on the virtual clock."""

import asyncio
import random
import textwrap
import time

import pytest
from scapy.all import IP, UDP, Ether, raw

from simstack.engine.api import aio
from simstack.engine.scenario.loader import loads
from simstack.engine.scenario.runner import Runner
from simstack.engine.scenario.simhost import SimHost
from simstack.protocols.stack import Stack, StackConfig

HEAD = """
description: a receive that blocks while the peer's datagram is on its way
hosts:
  peer: {mac: "02:00:00:00:00:02", ip: 10.0.0.2}
steps:
  - at: 0
    inject: {arp: {op: request}}
  - expect: {arp: {op: reply}}
  - app: socket
    socket: s
  - app: bind
    socket: s
    addr: [any, 5000]
"""


def run(steps: str) -> tuple[bool, str]:
    result = Runner(loads(HEAD + textwrap.indent(textwrap.dedent(steps), "  "), "t.yaml")).run()
    return result.passed, result.report


def test_a_blocked_receive_returns_when_a_later_inject_arrives() -> None:
    ok, report = run("""
        - at: 1.0
          app: recvfrom
          socket: s
          until: +0.25
          data: hello
          addr: [peer, 6000]
        - at: 1.25
          inject: {udp: {sport: 6000, dport: 5000, data: hello}}
        - counters: {udp.delivered: 1}
    """)
    assert ok, report


def test_returning_later_than_until_fails_the_call_step_not_the_inject() -> None:
    ok, report = run("""
        - at: 1.0
          app: recvfrom
          socket: s
          until: 1.2
        - at: 1.25
          inject: {udp: {sport: 6000, dport: 5000, data: hello}}
    """)
    assert not ok
    assert report.startswith("t.yaml:15: step 5 (app)"), report  # line 15: the recvfrom step
    assert "still blocked at t=1.200000" in report


def test_returning_earlier_than_until_fails() -> None:
    ok, report = run("""
        - at: 1.0
          app: recv
          socket: s
          until: 2.0
        - at: 1.5
          inject: {udp: {sport: 6000, dport: 5000, data: hello}}
        - expect: nothing
          for: 1
    """)
    assert not ok
    assert "recv returned at t=1.500000, expected t=2.000000" in report


def test_the_result_of_a_blocked_call_is_checked_when_it_returns() -> None:
    ok, report = run("""
        - at: 1.0
          app: recv
          socket: s
          within: 1
          data: what we wanted
        - at: 1.5
          inject: {udp: {sport: 6000, dport: 5000, data: something else}}
    """)
    assert not ok
    assert report.startswith("t.yaml:15: step 5 (app) failed at t=1.500000"), report
    assert b"something else".hex() in report


def test_a_call_still_blocked_when_the_scenario_ends_fails() -> None:
    ok, report = run("""
        - at: 1.0
          app: recv
          socket: s
          within: 5
    """)
    assert not ok
    assert "recv was still blocked when the scenario ended" in report


def test_wait_blocks_until_the_call_returns_and_moves_the_clock() -> None:
    ok, report = run("""
        - at: 1.0
          app: recvfrom
          socket: s
          within: 3
          data: late
        - app: wait
          socket: s
        - counters: {udp.delivered: 0}
    """)
    assert not ok  # nothing ever arrives: wait cannot be satisfied
    assert "still blocked at t=4.000000" in report or "can never return" in report


def test_until_is_only_for_calls_that_can_block() -> None:
    from simstack.engine.scenario.loader import ScenarioError

    with pytest.raises(ScenarioError, match="until goes with a call that can block"):
        loads(HEAD + "  - app: close\n    socket: s\n    until: 1\n", "t.yaml")


# -- asyncio on the virtual clock ------------------------------------------------------------
STACK_MAC, PEER_MAC = "aa:bb:cc:dd:ee:ff", "02:00:00:00:00:02"


def _host() -> SimHost:
    config = StackConfig(mac=bytes.fromhex(STACK_MAC.replace(":", "")), ip=bytes([10, 0, 0, 1]))
    host = SimHost(Stack(config, random.Random(1)))
    return host


def _udp(data: bytes) -> bytes:
    frame = Ether(dst=STACK_MAC, src=PEER_MAC) / IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=6000, dport=5000) / data
    return bytes(raw(frame))


def test_asyncio_runs_on_the_virtual_clock_and_wakes_on_an_inject() -> None:
    host = _host()
    s = host.socket()
    s.bind(("", 5000))
    s.setblocking(False)
    host.wire.call_at(2.5, lambda: host.wire.inject(_udp(b"at 2.5")))

    async def main() -> tuple[bytes, float]:
        data = await aio.sock_recv(s, 100)
        return data, asyncio.get_running_loop().time()

    started = time.monotonic()
    assert aio.run_virtual(host, main()) == (b"at 2.5", 2.5)
    assert time.monotonic() - started < 2.0  # virtual seconds, not real ones


def test_asyncio_timeouts_are_virtual_too() -> None:
    host = _host()
    s = host.socket()
    s.bind(("", 5000))
    s.setblocking(False)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(aio.sock_recv(s, 100), 30)
        return loop.time()

    started = time.monotonic()
    assert aio.run_virtual(host, main()) == pytest.approx(30.0)
    assert time.monotonic() - started < 5.0
