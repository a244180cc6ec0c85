"""Drop rules and the link shaper: the scenario language's fields as a filter, and seeded impairment per direction."""

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

from simstack.engine.scenario.droprules import DropRuleError, DropRules, parse_rule
from simstack.engine.scenario.fields import Context, Host
from simstack.engine.wire.impair import Impairer, Impairment, LinkShaper, link_rng
from simstack.protocols.counters import Counters

STACK = Host("stack", bytes.fromhex("020000000001"), bytes([10, 0, 1, 1]))
CTX = Context(STACK, {"client": Host("client", bytes.fromhex("020000000002"), bytes([10, 0, 1, 2]))})


def ping(src: str = "10.0.1.2", kind: int = 8) -> bytes:
    return bytes(Ether(dst="02:00:00:00:00:01", src="02:00:00:00:00:02") / IP(src=src, dst="10.0.1.1") / ICMP(type=kind))


def udp(dport: int) -> bytes:
    return bytes(Ether(dst="02:00:00:00:00:01") / IP(src="10.0.1.2", dst="10.0.1.1") / UDP(sport=1, dport=dport) / b"x")


def test_a_rule_drops_what_it_names_and_nothing_else() -> None:
    rules = DropRules([parse_rule("icmp.type=echo-request,ipv4.src=10.0.1.2", CTX)])
    assert not rules.admit(ping())
    assert rules.admit(ping(src="10.0.1.3"))
    assert rules.admit(ping(kind=0))
    assert rules.admit(udp(7))
    assert rules.admit(bytes(Ether() / ARP()))
    assert rules.counts() == {"wire.rule.1.matched": 1, "wire.rule.1.dropped": 1}


def test_host_names_numbers_and_hex_are_values_as_in_a_scenario() -> None:
    assert parse_rule("ipv4.src=client", CTX).fields["ipv4.src"] == bytes([10, 0, 1, 2])
    assert parse_rule("udp.dport=0x9", CTX).fields["udp.dport"] == 9
    assert parse_rule("icmp.type=8", CTX).fields["icmp.type"] == 8
    assert parse_rule("ipv4.df=true", CTX).fields["ipv4.df"] is True


def test_every_n_drops_the_nth_match_and_counts_every_match() -> None:
    rules = DropRules([parse_rule("udp.dport=9,every=3"), parse_rule("udp.dport=9")])
    verdicts = [rules.admit(udp(9)) for _ in range(6)]
    # the first rule passes two in three; the second drops what the first passed
    assert verdicts == [False] * 6
    assert rules.counts() == {"wire.rule.1.matched": 6, "wire.rule.1.dropped": 2,
                              "wire.rule.2.matched": 4, "wire.rule.2.dropped": 4}
    alone = DropRules([parse_rule("udp.dport=9,every=3")])
    assert [alone.admit(udp(9)) for _ in range(7)] == [True, True, False, True, True, False, True]


def test_a_bad_checksum_escapes_a_rule_that_does_not_name_it_as_it_fails_an_expect() -> None:
    rules = DropRules([parse_rule("icmp.type=echo-request")])
    good = ping()
    bad = good[:-2] + bytes([good[-2] ^ 0xFF, good[-1]])  # the ICMP checksum's first byte
    assert rules.admit(bad) and not rules.admit(good)


@pytest.mark.parametrize(("text", "message"), [
    ("", "want LAYER.FIELD=VALUE"),
    ("icmp.type", "want LAYER.FIELD=VALUE"),
    ("type=8", "want LAYER.FIELD"),
    ("icmp.kind=8", "icmp.kind: unknown field"),
    ("ipx.type=8", "ipx: unknown layer"),
    ("icmp.type=banana", "icmp.type: want an integer or one of"),
    ("udp.dport=70000", "70000 does not fit in 16 bits"),
    ("udp.dport=9,every=0", "every=0"),
    ("udp.dport=9,every=x", "every=x"),
    ("every=2", "name at least one field"),
    ("udp.dport=9,udp.dport=7", "udp.dport is given twice"),
    ("icmp.type=8,udp.dport=9", "a frame carries one of"),
])
def test_a_bad_rule_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(DropRuleError, match=message):
        parse_rule(text, CTX)


def test_tcp_rules_need_the_tcp_fields_of_the_scenario_language() -> None:
    """Whatever layers the language has, a rule may name; today's frames decode TCP only if fields.py knows it."""
    try:
        rule = parse_rule("tcp.dport=80")
    except DropRuleError as e:
        assert "tcp: unknown layer" in str(e)
        return
    rules = DropRules([rule])
    assert not rules.admit(bytes(Ether() / IP(src="10.0.1.2", dst="10.0.1.1") / TCP(dport=80)))


# -- the shaper ------------------------------------------------------------------------
def test_the_same_seed_loses_the_same_frames_whatever_the_times() -> None:
    """Which frames are lost is a function of the seed and their order, not of when they come."""
    frames = [udp(i) for i in range(200)]

    def fates(seed: int, times: list[float]) -> list[bool]:
        shaper = LinkShaper(Impairment.parse("loss=10%"), Impairment(), seed)
        return [bool(shaper.inbound(f, t)) for f, t in zip(frames, times, strict=True)]

    steady = fates(1, [i * 0.001 for i in range(200)])
    bursty = fates(1, [float(i // 50) for i in range(200)])
    assert steady == bursty
    assert 10 <= steady.count(False) <= 30
    assert fates(2, [0.0] * 200) != steady


def test_each_direction_and_interface_draws_from_its_own_generator() -> None:
    draws = {(d, i): link_rng(5, d, i).random() for d in ("in", "out") for i in (0, 1)}
    assert len(set(draws.values())) == 4
    assert link_rng(5, "in", 0).random() == draws[("in", 0)]
    # the inbound generator is the one an Impairer of the same seed would get
    alone = Impairer(Impairment(loss=0.5), link_rng(9, "in", 0))
    shaper = LinkShaper(Impairment(loss=0.5), Impairment(loss=0.5), 9)
    assert [bool(alone.apply(b"x", 0.0)) for _ in range(50)] == [bool(shaper.inbound(b"x", 0.0)) for _ in range(50)]


def test_drop_rules_come_before_impairment_and_counts_are_published() -> None:
    rules = DropRules([parse_rule("udp.dport=9")])
    shaper = LinkShaper(Impairment(delay=0.05), Impairment(duplicate=1.0), 3, admit=rules.admit)
    assert shaper.inbound(udp(9), 1.0) == []
    assert shaper.inbound(udp(7), 1.0) == [(1.05, udp(7))]
    assert shaper.outbound(b"f", 2.0) == [(2.0, b"f"), (2.0, b"f")]
    counters = Counters()
    shaper.publish(counters)
    rules.publish(counters)
    assert {k: v for k, v in counters.snapshot().items() if v} == {
        "wire.in.delayed": 1, "wire.in.passed": 1, "wire.out.duplicated": 1, "wire.out.passed": 1,
        "wire.rule.1.dropped": 1, "wire.rule.1.matched": 1}
    assert shaper.refused == 1
