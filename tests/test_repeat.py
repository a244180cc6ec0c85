"""``repeat:`` (engine/scenario/repeat.py): each copy is the frame the fields would build, checksums as scapy computes."""

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether

from simstack.engine.scenario.fields import build_frame
from simstack.engine.scenario.loader import ScenarioError, loads
from simstack.engine.scenario.repeat import frames

HEAD = """description: repeat
hosts:
  peer: {mac: "02:00:00:00:00:02", ip: 10.0.0.2}
steps:
"""


def _step(body: str) -> object:
    return loads(HEAD + body).steps[-1]


@pytest.mark.parametrize(("inject", "vary"), [
    ("{ipv4: {src: 198.18.255.254}, tcp: {sport: 65534, dport: 80, flags: S, seq: {abs: 4294967290}, "
     "options: [mss 1460]}}", {"ipv4.src": 1, "tcp.sport": 1, "tcp.seq": 3}),
    ("{eth: {vlan: 5}, ipv4: {id: 7}, udp: {sport: 1, dport: 9, data: hello}}",
     {"udp.sport": 1000, "udp.dport": -1, "ipv4.id": 30000}),
    ("{ipv4: {dst: 10.0.0.1}, icmp: {type: echo-request, id: 65535, seq: 1, data: {size: 9}}}",
     {"icmp.id": 1, "icmp.seq": 65535}),
])
def test_copies_are_the_frames_the_fields_build(inject: str, vary: dict[str, int]) -> None:
    """Copy i equals build_frame of the fields with i*step added (wrapping), and scapy finds its checksums right."""
    vary_text = ", ".join(f"{k}: {v}" for k, v in vary.items())
    step = _step(f"  - inject: {inject}\n    repeat: {{count: 5, vary: {{{vary_text}}}}}\n")
    sc = loads(HEAD + f"  - inject: {inject}\n")
    flat = sc.steps[-1].build or {}
    assert step.repeat is not None  # type: ignore[attr-defined]
    copies = list(frames(step.frames[0], step.repeat))  # type: ignore[attr-defined]
    assert len(copies) == 5
    widths = {"ipv4.src": 32, "ipv4.dst": 32, "ipv4.id": 16, "tcp.sport": 16, "tcp.seq": 32, "udp.sport": 16,
              "udp.dport": 16, "icmp.id": 16, "icmp.seq": 16}
    for i, copy in enumerate(copies):
        if flat:  # TCP: built from the fields with the varied values, as the runner would
            fields = dict(flat)
            for name, step_ in vary.items():
                base = fields[name] if not name.startswith("ipv4.") else int.from_bytes(fields[name], "big")
                value = (base + i * step_) % (1 << widths[name])
                fields[name] = value.to_bytes(4, "big") if name.startswith("ipv4.") else value
            assert copy == build_frame(fields, sc.ctx)
        pkt = Ether(copy)
        ip = pkt[IP]
        layer = pkt[TCP] if TCP in pkt else pkt[UDP] if UDP in pkt else pkt[ICMP]
        want_ip, want_l4 = ip.chksum, layer.chksum
        del ip.chksum
        del layer.chksum
        again = Ether(bytes(pkt))
        assert again[IP].chksum == want_ip, f"copy {i}: IPv4 checksum"
        assert type(layer) in again and again[type(layer)].chksum == want_l4, f"copy {i}: transport checksum"
    first = Ether(copies[0])
    last = Ether(copies[4])
    for name, step_ in vary.items():
        layer_name, _, field = name.partition(".")
        attr = {"sport": "sport", "dport": "dport", "seq": "seq", "ack": "ack", "src": "src", "dst": "dst",
                "id": "id"}[field]
        cls = {"ipv4": IP, "tcp": TCP, "udp": UDP, "icmp": ICMP}[layer_name]
        a, b = getattr(first[cls], attr), getattr(last[cls], attr)
        if layer_name == "ipv4" and field in ("src", "dst"):
            a, b = int.from_bytes(bytes(map(int, a.split("."))), "big"), int.from_bytes(bytes(map(int, b.split("."))), "big")
        assert b == (a + 4 * step_) % (1 << widths[name])


def test_a_named_checksum_stays_as_named() -> None:
    step = _step("  - inject: {udp: {dport: 9, checksum: 0x1234}}\n    repeat: {count: 3, vary: {udp.sport: 1}}\n")
    copies = list(frames(step.frames[0], step.repeat))  # type: ignore[attr-defined]
    assert [Ether(c)[UDP].chksum for c in copies] == [0x1234] * 3
    assert [Ether(c)[UDP].sport for c in copies] == [0, 1, 2]


@pytest.mark.parametrize(("body", "message"), [
    ("  - inject: {udp: {dport: 9}}\n    repeat: {vary: {udp.sport: 1}}\n", "repeat needs 'count'"),
    ("  - inject: {udp: {dport: 9}}\n    repeat: {count: 0}\n", "count must be an integer from 1 to 1000000"),
    ("  - inject: {udp: {dport: 9}}\n    repeat: {count: 2, vary: {udp.len: 1}}\n", "udp.len cannot vary"),
    ("  - inject: {udp: {dport: 9}}\n    repeat: {count: 2, vary: {tcp.sport: 1}}\n", "carries no tcp header"),
    ("  - inject: {arp: {op: request}}\n    repeat: {count: 2}\n", "not one"),
    ("  - inject: {udp: {dport: 9}}\n    repeat: {count: 2, every: -1}\n", "every must be a number"),
    ("  - inject: {udp: {dport: 9, data: {size: 100}}}\n    fragment: 48\n    repeat: {count: 2}\n",
     "repeat and fragment exclude each other"),
    ("  - expect: {udp: {dport: 9}}\n    repeat: {count: 2}\n", "unknown key 'repeat'"),
])
def test_bad_repeats_are_refused_with_their_line(body: str, message: str) -> None:
    with pytest.raises(ScenarioError) as e:
        loads(HEAD + body)
    assert message in e.value.message and e.value.line >= 5


def test_copies_arrive_every_interval() -> None:
    sc = loads(HEAD + """  - at: 0
    inject: {arp: {op: request}}
  - expect: {arp: {op: reply}}
  - at: 2
    inject: {udp: {sport: 100, dport: 4444}}
    repeat: {count: 3, every: 0.5, vary: {udp.sport: 1}}
  - at: 3
    expect: {icmp: {type: dest-unreachable, code: port-unreachable}}
""")
    from simstack.engine.scenario.runner import Runner

    times: list[float] = []
    runner = Runner(sc, trace=lambda t, d, f: times.append(t) if d == "<" else None)
    result = runner.run()
    assert times[1:] == [2.0, 2.5, 3.0]
    assert not result.passed  # three port unreachables were sent (the limiter's burst is 6); one was expected
