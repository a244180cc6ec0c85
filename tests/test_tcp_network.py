"""TCP between two simstacks on one simulated segment: a bulk transfer over a bad link, the same every run."""

import hashlib
import random
import time

from simstack.engine.scenario.simhost import drain, host_pair, stream_pair
from simstack.engine.wire.impair import Impairment
from simstack.engine.wire.network import SimNetwork

BAD_LINK = "loss=5%,reorder=5%,duplicate=1%,delay=1ms"


def transfer(size: int, impair: str, seed: int) -> tuple[str, str, float, dict[str, int]]:
    """Send ``size`` random bytes from b to a; (sha256 received, sha256 of the whole trace, virtual seconds, b's counters)."""
    trace = hashlib.sha256()

    def record(t: float, who: str, direction: str, frame: bytes) -> None:
        trace.update(f"{t:.9f} {who} {direction} ".encode())
        trace.update(frame)

    net = SimNetwork(seed, trace=record)
    a, b = host_pair(net, Impairment.parse(impair), seeds=(seed, seed + 1))
    client, conn = stream_pair(a, b)
    received = hashlib.sha256()
    count = [0]

    def take(data: bytes) -> None:
        received.update(data)
        count[0] += len(data)

    closed = drain(a, conn, take)
    data = random.Random(seed).randbytes(size)
    client.sendall(data)
    client.close()
    assert net.run_until(closed, net.now + 3600), f"{count[0]} of {size} bytes by t={net.now:.1f}"
    assert count[0] == size
    assert received.hexdigest() == hashlib.sha256(data).hexdigest()
    return received.hexdigest(), trace.hexdigest(), net.now, b.stack.counters.snapshot()


def test_ten_megabytes_over_a_lossy_reordering_duplicating_link_arrive_intact_and_repeat_exactly() -> None:
    started = time.monotonic()
    first = transfer(10_000_000, BAD_LINK, 11)
    second = transfer(10_000_000, BAD_LINK, 11)
    assert first[0] == second[0]  # the same bytes (checked against the source inside transfer)
    assert first[1] == second[1]  # and the same frames at the same virtual times, in the same order
    assert first[3]["tcp.retransmit"] > 0  # the link did lose segments
    assert time.monotonic() - started < 120


def test_another_seed_gives_another_trace_and_the_same_bytes() -> None:
    one = transfer(500_000, BAD_LINK, 1)
    two = transfer(500_000, BAD_LINK, 2)
    assert one[1] != two[1]  # each run's bytes were checked against its own source inside transfer


def test_a_clean_link_needs_no_retransmission() -> None:
    _, _, elapsed, counters = transfer(2_000_000, "", 5)
    assert counters.get("tcp.retransmit", 0) == 0 and elapsed < 1.0
