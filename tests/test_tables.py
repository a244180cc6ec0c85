"""The behaviour tables, walked row by row (h11's habit), and the fragmenter against scapy's."""

import pytest
from scapy.all import IP, UDP, fragment, raw
from transitions import MachineError

from simstack.protocols import ipv4
from simstack.protocols.arp_cache import MACHINE, STATES, TRANSITIONS, Neighbor, fire
from simstack.protocols.fragments import fragment as our_fragment

ROWS: list[tuple[str, str, str]] = [
    (str(row["trigger"]), src, str(row["dest"]))
    for row in TRANSITIONS
    for src in (row["source"] if isinstance(row["source"], list) else [str(row["source"])])
]


@pytest.mark.parametrize(("trigger", "source", "dest"), ROWS, ids=[f"{t}:{s}->{d}" for t, s, d in ROWS])
def test_every_arp_transition(trigger: str, source: str, dest: str) -> None:
    entry = Neighbor(b"\x0a\x00\x00\x02", 0.0)
    entry.state = source
    fire(trigger, entry)
    assert entry.state == dest


def test_transitions_not_in_the_table_are_refused() -> None:
    allowed = {(t, s) for t, s, _ in ROWS}
    triggers = {t for t, _, _ in ROWS}
    refused = [(t, s) for t in sorted(triggers) for s in STATES if (t, s) not in allowed]
    assert refused  # the table is not "anything goes"
    for trigger, source in refused:
        entry = Neighbor(b"\x0a\x00\x00\x02", 0.0)
        entry.state = source
        with pytest.raises(MachineError):
            fire(trigger, entry)
        assert entry.state == source


def test_entries_share_one_machine() -> None:
    entries = [Neighbor(i.to_bytes(4, "big"), 0.0) for i in range(1000)]
    for e in entries:
        fire("confirm", e)
    assert all(e.state == "REACHABLE" for e in entries)
    assert MACHINE.models == []  # nothing registered per entry: the FAQ's shared-machine pattern


@pytest.mark.parametrize(("size", "mtu"), [(3000, 1500), (65507, 1500), (1473, 1500), (1000, 576), (100, 68)])
def test_fragmenter_agrees_with_scapy(size: int, mtu: int) -> None:
    payload = raw(UDP(sport=1, dport=2) / bytes(i & 0xFF for i in range(size)))
    header = ipv4.Ipv4(b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", ipv4.PROTO_UDP, payload, identification=77)
    ours = [ipv4.parse(ipv4.emit(p)) for p in our_fragment(header, mtu)]
    theirs = fragment(IP(raw(IP(src="10.0.0.1", dst="10.0.0.2", id=77, proto=17) / payload)), fragsize=(mtu - 20) // 8 * 8)
    assert [(p.frag_offset, p.mf, len(p.payload)) for p in ours] == \
        [(t.frag * 8, bool(t.flags.MF), len(raw(t.payload))) for t in theirs]
    assert b"".join(p.payload for p in ours) == payload
    assert all(p.header_len + len(p.payload) <= mtu for p in ours)
