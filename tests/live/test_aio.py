"""asyncio on simstack, live: endpoints and ``sock_*`` coroutines against the kernel's own UDP.

The asyncio side runs on simstack in the test's namespace; the other side is
the kernel's UDP (``udp_peer.py``), so every datagram crosses a real stack.
"""

import json
import re
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import UDP_PEER, Netns

pytestmark = pytest.mark.live

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "udp_echo_asyncio.py"


def test_example_client_keeps_a_hundred_datagrams_in_flight(netns: Netns) -> None:
    """All leave before the kernel's ARP reply can come back: the stack holds them (arp.queue_len is 101)."""
    server = netns.spawn(sys.executable, str(UDP_PEER), "serve", "10.0.0.2", "5007")
    server.wait_for_line('"ready"')
    r = netns.run(sys.executable, str(EXAMPLE), "tap0", "--count", "100", "--size", "300", timeout=30)
    assert (r.returncode, r.stderr) == (0, ""), r.stdout + r.stderr
    assert r.stdout == "100 sent, 100 echoed intact, 0 lost or corrupted\n"
    server.kill()
    echoed = re.findall(r'^\{"echoed": 300, "source": "10\.0\.0\.1:(\d+)"\}$', server.stdout, re.M)
    assert len(echoed) == 100 and len(set(echoed)) == 1, server.stdout  # one endpoint, one ephemeral port


def test_example_server_echoes_the_kernels_datagrams(netns: Netns) -> None:
    s = netns.spawn(sys.executable, str(EXAMPLE), "tap0", "--serve", "5007")
    s.wait_for_line("echoing on UDP port 5007", timeout=15)
    rc, out = netns.udp_peer("echo", "10.0.0.1", "5007", "--count", "50", "--max-size", "4000", "--seed", "7")
    assert (rc, out["ok"]) == (0, 50), out  # sizes past the MTU: fragmented both ways
    s.kill()
    assert len(re.findall(r"^\d+ bytes from 10\.0\.0\.2:\d+$", s.stdout, re.M)) == 50, s.stdout


APP = textwrap.dedent("""
    import asyncio, errno, json, sys
    from simstack.engine import aio
    from simstack.engine.app import simstack_host

    results = {}

    class Refused(asyncio.DatagramProtocol):
        def __init__(self):
            self.error = asyncio.get_running_loop().create_future()

        def error_received(self, exc):
            self.error.set_result(type(exc).__name__)

    async def main(host):
        sock = host.socket()
        try:
            await aio.sock_recvfrom(sock, 100)
        except ValueError as e:
            results["blocking"] = str(e)
        sock.setblocking(False)
        sock.bind(("0.0.0.0", 4000))
        try:
            await asyncio.wait_for(aio.sock_recvfrom(sock, 100), 0.2)
        except TimeoutError:
            results["timeout"] = True
        # The kernel's echo server answers; several coroutines wait on one socket at once.
        waiting = [asyncio.create_task(aio.sock_recvfrom(sock, 100)) for _ in range(3)]
        await asyncio.sleep(0)
        for i in range(3):
            await aio.sock_sendto(sock, f"ping {i}".encode(), ("10.0.0.2", 5007))
        got = await asyncio.wait_for(asyncio.gather(*waiting), 5)
        results["echoed"] = sorted([data.decode(), list(addr)] for data, addr in got)
        # A close wakes a coroutine waiting on the socket with EBADF instead of leaving it waiting.
        waiter = asyncio.create_task(aio.sock_recv(sock, 100))
        await asyncio.sleep(0.05)
        sock.close()
        try:
            await asyncio.wait_for(waiter, 5)
        except OSError as e:
            results["closed"] = errno.errorcode[e.errno]
        # A port unreachable from the kernel reaches a connected endpoint's protocol.
        transport, protocol = await aio.create_datagram_endpoint(host, Refused, remote_addr=("10.0.0.2", 5999))
        transport.sendto(b"anyone?")
        results["refused"] = await asyncio.wait_for(protocol.error, 5)
        results["sockname"] = transport.get_extra_info("sockname")[0]
        transport.close()

    with simstack_host("tap0") as host:
        asyncio.run(main(host))
    print(json.dumps(results))
""")


def test_coroutines_wait_wake_time_out_and_see_errors(netns: Netns) -> None:
    server = netns.spawn(sys.executable, str(UDP_PEER), "serve", "10.0.0.2", "5007")
    server.wait_for_line('"ready"')
    r = netns.run(sys.executable, "-c", APP, timeout=30)
    assert (r.returncode, r.stderr) == (0, ""), r.stdout + r.stderr
    assert json.loads(r.stdout) == {
        "blocking": "the socket must be non-blocking",
        "timeout": True,
        "echoed": [[f"ping {i}", ["10.0.0.2", 5007]] for i in range(3)],
        "closed": "EBADF",
        "refused": "ConnectionRefusedError",
        "sockname": "10.0.0.1",
    }
