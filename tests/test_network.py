"""Two simstacks on one simulated segment, and the seeded impairment both the wire and live mode use."""

import contextlib
import hashlib
import random

import pytest

from simstack.engine.api.services import start_services
from simstack.engine.scenario.simhost import NetHost
from simstack.engine.wire.impair import Impairer, ImpairError, Impairment
from simstack.engine.wire.network import SimNetwork
from simstack.protocols.stack import Stack, StackConfig


def _pair(seed: int, impair: str = "") -> tuple[SimNetwork, NetHost, NetHost, list[str]]:
    lines: list[str] = []
    net = SimNetwork(seed, trace=lambda t, who, d, f: lines.append(f"{t:.6f} {who} {d} {f.hex()}"))
    spec = Impairment.parse(impair)
    a = net.attach("a", Stack(StackConfig(mac=bytes.fromhex("020000000001"), ip=bytes([10, 0, 0, 1])),
                              random.Random(seed)), spec)
    b = net.attach("b", Stack(StackConfig(mac=bytes.fromhex("020000000002"), ip=bytes([10, 0, 0, 2])),
                              random.Random(seed + 1)), spec)
    return net, NetHost(net, a), NetHost(net, b), lines


def _echo_many(seed: int, impair: str, count: int = 200) -> tuple[list[bytes], list[str], NetHost]:
    _net, a, b, lines = _pair(seed, impair)
    start_services(b, ["echo"])
    s = a.socket()
    s.bind(("", 5000))
    s.settimeout(0.5)
    got: list[bytes] = []
    for i in range(count):
        s.sendto(i.to_bytes(2, "big") * 50, ("10.0.0.2", 7))
        with contextlib.suppress(TimeoutError):
            got.append(s.recv(2000))
    return got, lines, a


def test_two_stacks_resolve_each_other_and_echo_over_a_clean_link() -> None:
    got, _lines, a = _echo_many(1, "", 50)
    assert got == [i.to_bytes(2, "big") * 50 for i in range(50)]
    assert a.stack.counters["arp.tx.request"] == 1


def test_a_lossy_link_loses_what_its_seed_says_and_repeats_exactly() -> None:
    first, trace1, _ = _echo_many(7, "loss=10%,duplicate=2%,delay=1ms,jitter=0.5ms")
    second, trace2, _ = _echo_many(7, "loss=10%,duplicate=2%,delay=1ms,jitter=0.5ms")
    _other, trace3, _ = _echo_many(8, "loss=10%,duplicate=2%,delay=1ms,jitter=0.5ms")
    assert 120 < len(first) < 200  # about 19% of round trips lose one of their two frames
    assert first == second and trace1 == trace2
    digest = [hashlib.sha256("\n".join(t).encode()).hexdigest() for t in (trace1, trace3)]
    assert digest[0] != digest[1]


def test_corruption_is_caught_by_checksums_not_delivered() -> None:
    got, _, _a = _echo_many(3, "corrupt=30%", 100)
    assert len(got) < 100
    for data in got:
        assert len(data) == 100 and data[:2] * 50 == data  # nothing corrupt reached the application


@pytest.mark.parametrize(("text", "want"), [
    ("loss=5%,delay=20ms,jitter=5ms,reorder=10%,duplicate=1%,corrupt=0.1%,rate=10mbit",
     Impairment(loss=0.05, delay=0.02, jitter=0.005, reorder=0.1, duplicate=0.01, corrupt=0.001, rate=10e6)),
    ("delay=1.5,loss=0.25", Impairment(delay=1.5, loss=0.25)),
    ("", Impairment()),
])
def test_specs_parse_as_netem_writes_them(text: str, want: Impairment) -> None:
    assert Impairment.parse(text) == want


@pytest.mark.parametrize(("text", "message"), [
    ("loss=150%", "loss must be a probability"),
    ("delay=nan", "must be a finite number"),
    ("loss", "want NAME=VALUE"),
    ("bogus=1", "unknown impairment 'bogus'"),
    ("loss=1%,loss=2%", "loss is given twice"),
    ("rate=fast", "not a number"),
])
def test_bad_specs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ImpairError, match=message):
        Impairment.parse(text)


def test_rate_paces_frames_and_reorder_holds_some_back() -> None:
    paced = Impairer(Impairment(rate=8000.0), random.Random(1))  # 1,000 bytes a second
    times = [paced.apply(bytes(100), 0.0)[0][0] for _ in range(3)]
    assert times == pytest.approx([0.1, 0.2, 0.3])
    held = Impairer(Impairment(reorder=0.5, reorder_gap=0.01), random.Random(2))
    whens = [held.apply(b"x", 1.0)[0][0] for _ in range(200)]
    assert 60 < whens.count(1.01) < 140 and whens.count(1.0) + whens.count(1.01) == 200
    assert held.counts["reordered"] == whens.count(1.01)
