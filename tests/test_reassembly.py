"""Reassembly as a property: any order and any duplicates give back the datagram; any overlap drops it."""

from hypothesis import given, settings
from hypothesis import strategies as st

from simstack.protocols import ipv4
from simstack.protocols.counters import Counters
from simstack.protocols.fragments import Reassembler, ReassemblyConfig, fragment
from simstack.protocols.timers import Timers

SRC, DST = b"\x0a\x00\x00\x02", b"\x0a\x00\x00\x01"


def make(expired: list[ipv4.Ipv4] | None = None, **config: int) -> tuple[Reassembler, Counters, Timers]:
    counters, timers = Counters(), Timers()
    sink = expired if expired is not None else []
    r = Reassembler(ReassemblyConfig(**config), timers, counters, lambda first, raw, now: sink.append(first))
    return r, counters, timers


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 9000), piece=st.integers(1, 200).map(lambda n: n * 8), data=st.data())
def test_any_order_with_duplicates_reassembles(size: int, piece: int, data: st.DataObject) -> None:
    payload = bytes((i * 7) & 0xFF for i in range(size))
    pieces = fragment(ipv4.Ipv4(SRC, DST, 17, payload, identification=5), 20 + piece)
    order = data.draw(st.permutations(range(len(pieces))))
    if len(pieces) == 1:
        return  # not a fragment at all; the stack never hands it to the reassembler
    # Duplicates of pieces already sent, all before the piece that completes the datagram.
    dupes = data.draw(st.lists(st.sampled_from(order[:-1]), max_size=5))
    r, counters, _ = make()
    results = []
    for i in [*order[:-1], *dupes, order[-1]]:
        p = ipv4.parse(ipv4.emit(pieces[i]))
        out = r.add(p, b"", 0.0)
        if out is not None:
            results.append(out)
    if len(pieces) > ReassemblyConfig.max_fragments:
        assert results == [] and counters["ipv4.drop.frag_too_many"] >= 1  # the per-datagram bound
        return
    assert len(results) == 1
    assert results[0].payload == payload
    assert counters["ipv4.frag.duplicate"] == len(dupes)
    assert r.pending == {} and r.bytes == 0


@settings(max_examples=200, deadline=None)
@given(a=st.integers(0, 100), la=st.integers(1, 50), b=st.integers(0, 100), lb=st.integers(1, 50))
def test_any_overlap_poisons_the_datagram(a: int, la: int, b: int, lb: int) -> None:
    sa, sb = a * 8, b * 8
    ea, eb = sa + la * 8, sb + lb * 8
    overlap = sa < eb and sb < ea  # the contents differ, so even the same range is an overlap
    r, counters, _ = make()
    first = ipv4.Ipv4(SRC, DST, 17, bytes([1]) * (la * 8), identification=9, mf=True, frag_offset=sa)
    second = ipv4.Ipv4(SRC, DST, 17, bytes([2]) * (lb * 8), identification=9, mf=True, frag_offset=sb)
    r.add(first, b"", 0.0)
    r.add(second, b"", 0.0)
    assert (counters["ipv4.drop.frag_overlap"] == 1) == overlap


def test_timeout_reports_only_with_fragment_zero_and_frees_memory() -> None:
    expired: list[ipv4.Ipv4] = []
    r, counters, timers = make(expired, timeout=30)
    r.add(ipv4.Ipv4(SRC, DST, 17, bytes(64), identification=1, mf=True), b"", 0.0)
    r.add(ipv4.Ipv4(SRC, DST, 17, bytes(64), identification=2, mf=True, frag_offset=64), b"", 0.0)
    assert r.bytes == 128 and timers.next_deadline() == 30
    for kind, key in timers.pop_due(30.0):
        assert kind == "frag"
        r.on_timer(key, 30.0)  # type: ignore[arg-type]
    assert [p.identification for p in expired] == [1]
    assert r.bytes == 0 and not r.pending
    assert counters["ipv4.drop.frag_timeout"] == 2


def test_byte_bound_evicts_oldest() -> None:
    r, counters, _ = make(max_bytes=1000, max_datagrams=100)
    for ident in range(10):
        r.add(ipv4.Ipv4(SRC, DST, 17, bytes(400), identification=ident, mf=True), b"", 0.0)
        assert r.bytes <= 1000
    assert counters["ipv4.frag.evicted"] == 8
    assert sorted(k[3] for k in r.pending) == [8, 9]
