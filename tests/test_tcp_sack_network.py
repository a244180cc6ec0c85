"""Loss recovery between two simstacks over a bad simulated wire: with SACK (RFC 6675) and without (RFC 6582).

The same 10 MB cross a link that loses 3%, reorders 10% and duplicates 1% of the
frames, once with SACK negotiated and once without; both arrive intact, and the
scoreboard must pay: fewer retransmission timeouts and less virtual time than
NewReno's one-hole-per-round-trip recovery. Much of it is the D-SACKs: with 10%
reordering most recoveries are spurious, and only a SACK sender learns it and
undoes them (RFC 3708).
"""

import dataclasses
import hashlib
import random

import pytest

from simstack.engine.scenario.simhost import drain, host_pair, stream_pair
from simstack.engine.wire.impair import Impairment
from simstack.engine.wire.network import SimNetwork
from simstack.protocols.tcp_conn import TcpConfig

LINK = "loss=3%,reorder=10%,duplicate=1%,delay=1ms"
SIZE = 10_000_000


def transfer(tcp: TcpConfig, seed: int) -> tuple[float, dict[str, int]]:
    """Send SIZE random bytes from b to a; (virtual seconds, b's counters). The bytes are checked by sha256."""
    net = SimNetwork(seed)
    a, b = host_pair(net, Impairment.parse(LINK), tcp, seeds=(seed, seed + 1))
    client, conn = stream_pair(a, b)
    received = hashlib.sha256()
    state = {"bytes": 0}

    def take(data: bytes) -> None:
        received.update(data)
        state["bytes"] += len(data)

    closed = drain(a, conn, take)
    data = random.Random(seed).randbytes(SIZE)
    client.sendall(data)
    client.close()
    assert net.run_until(closed, net.now + 36000), f"{state['bytes']} of {SIZE} by {net.now:.1f}"
    assert state["bytes"] == SIZE
    assert received.hexdigest() == hashlib.sha256(data).hexdigest()
    counters = b.stack.counters
    names = ("tcp.timeout", "tcp.retransmit", "tcp.fast_retransmit", "tcp.sack_recovery", "tcp.rx.dsack", "tcp.undo")
    return net.now, {name: counters[name] for name in names}


def _compare(congestion: str) -> tuple[tuple[float, dict[str, int]], tuple[float, dict[str, int]]]:
    base = TcpConfig(rto_min=0.2, congestion=congestion)
    plain = transfer(dataclasses.replace(base, sack=False), 7)
    sacked = transfer(dataclasses.replace(base, sack=True, dsack=True), 7)
    (pt, p), (st, s) = plain, sacked
    print(f"\n{congestion}: without SACK {pt:.1f} s, {p['tcp.timeout']} RTOs, {p['tcp.retransmit']} retransmissions, "
          f"{p['tcp.fast_retransmit']} fast retransmits; with SACK {st:.1f} s, {s['tcp.timeout']} RTOs, "
          f"{s['tcp.retransmit']} retransmissions, {s['tcp.sack_recovery']} SACK recoveries, {s['tcp.rx.dsack']} D-SACKs, "
          f"{s['tcp.undo']} recoveries undone")
    assert s["tcp.sack_recovery"] > 0 and p["tcp.sack_recovery"] == 0
    assert s["tcp.rx.dsack"] > 0 and p["tcp.rx.dsack"] == 0
    # the scoreboard resends holes only: fewer retransmissions than go-back-N and NewReno's guesses
    assert s["tcp.retransmit"] < p["tcp.retransmit"]
    return plain, sacked


@pytest.mark.parametrize("congestion", ["newreno", "cubic"])
def test_sack_recovers_with_fewer_timeouts_and_sooner(congestion: str) -> None:
    (plain_time, plain), (sack_time, sacked) = _compare(congestion)
    assert sacked["tcp.timeout"] < plain["tcp.timeout"]
    assert sack_time < plain_time
