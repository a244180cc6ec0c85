"""A stack with two interfaces, as a host and as a router (RFC 1812), its frames built and read by scapy.

The router sits between a LAN (10.0.1.0/24, interface 0) and a WAN
(10.0.2.0/24, interface 1, MTU 576 in the fragmentation tests). Every frame it
sends is decoded by scapy, whose checksums and reassembly are the reference,
and every received datagram's fate is one counter.
"""

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP, IPerror, IPOption_RR, IPOption_Security, defragment
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw

from simstack.protocols.forwarding import decrement_ttl
from simstack.protocols.fragments import copied_options, fragment
from simstack.protocols.ipv4 import Ipv4, emit
from simstack.protocols.ipv4 import parse as parse_ipv4
from simstack.protocols.stack import Interface, Stack, StackConfig

LAN_MAC, WAN_MAC = "02:00:00:00:01:01", "02:00:00:00:02:01"
LAN_IP, WAN_IP = "10.0.1.1", "10.0.2.1"
CLIENT_MAC, CLIENT_IP = "02:00:00:00:01:02", "10.0.1.2"
SERVER_MAC, SERVER_IP = "02:00:00:00:02:02", "10.0.2.2"
UPSTREAM_MAC, UPSTREAM_IP = "02:00:00:00:02:fe", "10.0.2.254"
LAN, WAN = 0, 1


def b(text: str) -> bytes:
    if ":" in text:
        return bytes.fromhex(text.replace(":", ""))
    return bytes(int(x) for x in text.split("."))


def router(forward: bool = True, wan_mtu: int = 1500, **settings: Any) -> Stack:
    config = StackConfig.of((Interface(b(LAN_MAC), b(LAN_IP), 24, name="lan"),
                             Interface(b(WAN_MAC), b(WAN_IP), 24, mtu=wan_mtu, name="wan")),
                            forward=forward, **settings)
    return Stack(config)


def from_client(payload: Packet, **ip: Any) -> bytes:
    fields = {"src": CLIENT_IP, "dst": SERVER_IP, **ip}
    return bytes(Ether(src=CLIENT_MAC, dst=LAN_MAC) / IP(**fields) / payload)


def ping(seq: int = 1, size: int = 56, **ip: Any) -> bytes:
    return from_client(ICMP(type=8, id=7, seq=seq) / Raw(bytes(i & 0xFF for i in range(size))), **ip)


def arp_reply(mac: str, ip: str, to_mac: str = WAN_MAC, to_ip: str = WAN_IP) -> bytes:
    return bytes(Ether(src=mac, dst=to_mac) / ARP(op=2, hwsrc=mac, psrc=ip, hwdst=to_mac, pdst=to_ip))


def learn(stack: Stack, iface: int, mac: str, ip: str) -> None:
    """An ARP request from ``ip`` to the stack on ``iface``: RFC 826 "add"; the reply is checked and thrown away."""
    mine_mac, mine_ip = (LAN_MAC, LAN_IP) if iface == LAN else (WAN_MAC, WAN_IP)
    stack.receive(bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, psrc=ip, pdst=mine_ip)), 0.0,
                  iface)
    assert [(Ether(f)[ARP].op, Ether(f)[ARP].hwsrc) for f in stack.transmit(iface)] == [(2, mine_mac)]


def checksum_ok(header: bytes) -> bool:
    """scapy's verdict: the checksum it computes for these fields is the one the header carries."""
    p = IP(header)
    carried = p.chksum
    del p.chksum
    return bool(IP(bytes(p)).chksum == carried)


def ready_router(**kw: Any) -> Stack:
    stack = router(**kw)
    learn(stack, LAN, CLIENT_MAC, CLIENT_IP)
    learn(stack, WAN, SERVER_MAC, SERVER_IP)
    return stack


def drops(stack: Stack) -> dict[str, int]:
    return {k: v for k, v in stack.counters.snapshot().items() if ".drop." in k}


# -- the TTL and its checksum ----------------------------------------------------------
@given(ttl=st.integers(2, 255), proto=st.integers(0, 255), ident=st.integers(0, 0xFFFF), tos=st.integers(0, 255),
       src=st.binary(min_size=4, max_size=4), dst=st.binary(min_size=4, max_size=4), df=st.booleans(),
       options=st.sampled_from([b"", b"\x01\x01\x01\x00", bytes(IPOption_RR(routers=["1.2.3.4"])) + b"\x00"]))
def test_the_incremental_checksum_is_the_checksum_scapy_computes(ttl: int, proto: int, ident: int, tos: int, src: bytes,
                                                                 dst: bytes, df: bool, options: bytes) -> None:
    """RFC 1624: updating the checksum for TTL - 1 gives what computing it afresh gives, the 0xFFFF corner included."""
    packet = emit(Ipv4(src=src, dst=dst, protocol=proto, payload=b"xyz", ttl=ttl, identification=ident, tos=tos, df=df,
                       options=options))
    out = decrement_ttl(packet)
    assert checksum_ok(out)
    assert out[8] == ttl - 1 and out[:8] == packet[:8] and out[12:] == packet[12:]
    parse_ipv4(out)  # verifies the checksum


# -- forwarding a datagram ---------------------------------------------------------------
def test_a_ping_is_forwarded_after_arp_with_ttl_one_lower_and_macs_rewritten() -> None:
    stack = router()
    learn(stack, LAN, CLIENT_MAC, CLIENT_IP)
    request = ping(ttl=64)
    stack.receive(request, 0.0, LAN)
    (who_has,) = stack.transmit(WAN)
    arp = Ether(who_has)
    assert (arp.dst, arp.src, arp[ARP].op, arp[ARP].psrc, arp[ARP].pdst) == (
        "ff:ff:ff:ff:ff:ff", WAN_MAC, 1, WAN_IP, SERVER_IP)
    assert stack.transmit(LAN) == []
    stack.receive(arp_reply(SERVER_MAC, SERVER_IP), 0.1, WAN)
    (out,) = stack.transmit(WAN)
    sent, got = Ether(request), Ether(out)
    assert (got.src, got.dst) == (WAN_MAC, SERVER_MAC)
    assert got[IP].ttl == 63 and checksum_ok(bytes(got[IP]))
    assert bytes(got[IP].payload) == bytes(sent[IP].payload) and got[IP].id == sent[IP].id
    assert stack.counters["ipv4.forward"] == 1 and drops(stack) == {}
    # and the answer comes back the other way, the client already known
    reply = bytes(Ether(src=SERVER_MAC, dst=WAN_MAC) / IP(src=SERVER_IP, dst=CLIENT_IP, ttl=64) / ICMP(type=0, id=7, seq=1))
    stack.receive(reply, 0.2, WAN)
    (back,) = stack.transmit(LAN)
    assert (Ether(back).dst, Ether(back)[IP].ttl, Ether(back)[ICMP].type) == (CLIENT_MAC, 63, 0)
    assert stack.counters["ipv4.forward"] == 2


def test_a_static_route_sends_via_its_gateway_and_longest_prefix_wins() -> None:
    config = StackConfig.of((Interface(b(LAN_MAC), b(LAN_IP), 24), Interface(b(WAN_MAC), b(WAN_IP), 24)),
                            forward=True, routes=((b("192.168.0.0"), 16, b(UPSTREAM_IP)),), gateway=b("10.0.1.254"))
    stack = Stack(config)
    learn(stack, LAN, CLIENT_MAC, CLIENT_IP)
    learn(stack, WAN, UPSTREAM_MAC, UPSTREAM_IP)
    stack.receive(ping(dst="192.168.7.7"), 0.0, LAN)
    (out,) = stack.transmit(WAN)
    assert (Ether(out).dst, Ether(out)[IP].dst) == (UPSTREAM_MAC, "192.168.7.7")
    # the default route's gateway is on the LAN: out the way the datagram came (no redirect is sent)
    stack.receive(ping(dst="8.8.8.8"), 0.0, LAN)
    (asks,) = stack.transmit(LAN)
    assert Ether(asks)[ARP].pdst == "10.0.1.254"


def test_without_forwarding_nothing_passes_and_the_counters_say_why() -> None:
    stack = router(forward=False)
    learn(stack, LAN, CLIENT_MAC, CLIENT_IP)
    learn(stack, WAN, SERVER_MAC, SERVER_IP)
    for seq in range(3):
        stack.receive(ping(seq), 0.0, LAN)
    assert stack.transmit_all() == []
    assert drops(stack) == {"ipv4.drop.not_for_us": 3}
    assert stack.counters["ipv4.forward.disabled"] == 3 and stack.counters["ipv4.forward"] == 0


def test_ttl_one_is_time_exceeded_from_the_router_quoting_the_datagram() -> None:
    stack = ready_router()
    request = ping(ttl=1)
    stack.receive(request, 0.0, LAN)
    assert stack.transmit(WAN) == []
    (err,) = stack.transmit(LAN)
    e = Ether(err)
    assert (e.dst, e[IP].src, e[IP].dst, e[ICMP].type, e[ICMP].code) == (CLIENT_MAC, LAN_IP, CLIENT_IP, 11, 0)
    assert bytes(e[ICMP].payload) == bytes(Ether(request)[IP])  # 84 bytes: all of it fits in 576
    assert drops(stack) == {"ipv4.drop.ttl_exceeded": 1}


def test_a_datagram_to_the_router_with_ttl_one_is_received() -> None:
    """RFC 1812 5.3.1: the TTL is checked only when forwarding."""
    stack = ready_router()
    stack.receive(ping(ttl=1, dst=WAN_IP), 0.0, LAN)
    (reply,) = stack.transmit(LAN)
    assert (Ether(reply)[IP].src, Ether(reply)[ICMP].type) == (WAN_IP, 0)


def test_no_route_is_network_unreachable() -> None:
    stack = ready_router()
    stack.receive(ping(dst="192.0.2.9"), 0.0, LAN)
    (err,) = stack.transmit(LAN)
    assert (Ether(err)[IP].src, Ether(err)[ICMP].type, Ether(err)[ICMP].code) == (LAN_IP, 3, 0)
    assert drops(stack) == {"ipv4.drop.no_route": 1}


def test_arp_failure_on_the_far_side_is_host_unreachable_after_the_retries() -> None:
    stack = router()
    learn(stack, LAN, CLIENT_MAC, CLIENT_IP)
    stack.receive(ping(dst="10.0.2.77"), 0.0, LAN)
    requests = stack.transmit(WAN)
    for t in (1.0, 2.0, 3.0):
        stack.on_timer(t)
        requests += stack.transmit(WAN)
    assert [Ether(f)[ARP].pdst for f in requests] == ["10.0.2.77"] * 3
    (err,) = stack.transmit(LAN)
    e = Ether(err)
    assert (e[IP].src, e[IP].dst, e[ICMP].type, e[ICMP].code) == (LAN_IP, CLIENT_IP, 3, 1)
    assert e[IPerror].dst == "10.0.2.77"
    assert drops(stack) == {"arp.drop.unresolved": 1}


def test_a_big_datagram_is_fragmented_for_the_smaller_link_and_scapy_puts_it_back_together() -> None:
    stack = ready_router(wan_mtu=576)
    big = from_client(UDP(sport=5000, dport=7) / Raw(bytes(range(256)) * 5), id=0x4242, ttl=9)
    stack.receive(big, 0.0, LAN)
    pieces = [Ether(f) for f in stack.transmit(WAN)]
    assert len(pieces) == 3 and all(len(p[IP]) <= 576 for p in pieces)
    assert [p[IP].frag * 8 for p in pieces] == [0, 552, 1104]
    whole = defragment([p[IP] for p in pieces])[0]
    original = Ether(big)[IP]
    assert bytes(whole[UDP]) == bytes(original[UDP]) and whole[IP].ttl == 8 and whole[IP].id == 0x4242
    assert stack.counters["ipv4.forward.fragmented"] == 1 and stack.counters["ipv4.frag.tx"] == 3


def test_a_fragment_fragmented_again_keeps_its_offsets_and_its_more_fragments_flag() -> None:
    stack = ready_router(wan_mtu=576)
    data = bytes(range(256)) * 8  # 2048 bytes of UDP payload
    datagram = IP(src=CLIENT_IP, dst=SERVER_IP, id=77) / UDP(sport=1, dport=2) / Raw(data)
    first, second = datagram.fragment(1208)  # 1208 and 848 bytes of the datagram's payload
    for piece in (first, second):
        stack.receive(bytes(Ether(src=CLIENT_MAC, dst=LAN_MAC) / piece), 0.0, LAN)
    out = [Ether(f)[IP] for f in stack.transmit(WAN)]
    # 552 bytes a piece on the 576-byte link: 552 + 552 + 104, then 552 + 296
    assert [(p.frag * 8, len(p.payload), p.flags.MF) for p in out] == [
        (0, 552, 1), (552, 552, 1), (1104, 104, 1), (1208, 552, 1), (1760, 296, 0)]
    assert bytes(defragment(out)[0][UDP].payload) == data


def test_df_too_big_is_fragmentation_needed_with_the_next_hop_mtu() -> None:
    stack = ready_router(wan_mtu=576)
    stack.receive(from_client(UDP(sport=5000, dport=7) / Raw(b"x" * 1000), flags="DF"), 0.0, LAN)
    assert stack.transmit(WAN) == []
    (err,) = stack.transmit(LAN)
    e = Ether(err)
    assert (e[ICMP].type, e[ICMP].code, e[ICMP].nexthopmtu) == (3, 4, 576)
    assert drops(stack) == {"ipv4.drop.frag_needed": 1}


@pytest.mark.parametrize(("frame", "reason"), [
    (bytes(Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / IP(src=CLIENT_IP, dst=SERVER_IP) / ICMP()), "link_broadcast"),
    (ping(dst="10.0.2.255"), "directed_broadcast"),
    (ping(dst="10.0.2.0"), "directed_broadcast"),
    (ping(dst="127.0.0.1"), "martian"),
    (ping(dst="0.1.2.3"), "martian"),
    (ping(dst="224.0.0.9"), "martian"),
    (ping(dst="240.0.0.9"), "martian"),
    (ping(src="240.0.0.1"), "bad_source"),
    (ping(src="10.0.2.255"), "bad_source"),
    (ping(src="127.0.0.1"), "bad_source"),
    (ping(src=WAN_IP), "bad_source"),
], ids=["link-broadcast", "directed-broadcast", "subnet-zero", "loopback", "this-network", "multicast", "class-e",
        "class-e-source", "broadcast-source", "loopback-source", "own-source"])
def test_what_a_router_must_not_forward_is_dropped_silently(frame: bytes, reason: str) -> None:
    stack = ready_router()
    stack.receive(frame, 0.0, LAN)
    assert stack.transmit_all() == []
    assert drops(stack) == {f"ipv4.drop.{reason}": 1}


def test_time_exceeded_errors_are_rate_limited_as_a_host_limits_them() -> None:
    stack = ready_router()
    for seq in range(10):
        stack.receive(ping(seq, ttl=1), 0.0, LAN)
    assert len(stack.transmit(LAN)) == 6  # Linux's burst per destination
    assert stack.counters["icmp.suppressed.rate_limited"] == 4
    stack.receive(ping(11, ttl=1), 1.0, LAN)
    assert len(stack.transmit(LAN)) == 1  # one more a second later


# -- a host with two interfaces ----------------------------------------------------------
def test_each_interface_answers_arp_for_its_own_address_with_its_own_mac() -> None:
    stack = router(forward=False)
    stack.receive(bytes(Ether(src=SERVER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=SERVER_MAC, psrc=SERVER_IP,
                                                                               pdst=WAN_IP)), 0.0, WAN)
    stack.receive(bytes(Ether(src=SERVER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=SERVER_MAC, psrc=SERVER_IP,
                                                                               pdst=LAN_IP)), 0.0, WAN)
    out = stack.transmit_all()
    assert [(i, Ether(f)[ARP].hwsrc, Ether(f)[ARP].psrc) for i, f in out] == [(WAN, WAN_MAC, WAN_IP)]
    assert stack.ports[WAN].arp.lookup(b(SERVER_IP)) is not None and stack.ports[LAN].arp.lookup(b(SERVER_IP)) is None


def test_a_frame_for_one_interface_arriving_on_the_other_is_not_taken() -> None:
    stack = ready_router()
    stack.receive(bytes(Ether(src=SERVER_MAC, dst=LAN_MAC) / IP(src=SERVER_IP, dst=LAN_IP) / ICMP()), 0.0, WAN)
    assert stack.transmit_all() == [] and drops(stack) == {"eth.drop.not_for_us": 1}


def test_the_host_answers_from_the_interface_the_route_back_leaves_by() -> None:
    stack = ready_router(forward=False)
    stack.receive(bytes(Ether(src=SERVER_MAC, dst=WAN_MAC) / IP(src=SERVER_IP, dst=LAN_IP) / ICMP(id=3)), 0.0, WAN)
    ((iface, reply),) = stack.transmit_all()
    assert (iface, Ether(reply).src, Ether(reply)[IP].src, Ether(reply)[IP].dst) == (WAN, WAN_MAC, LAN_IP, SERVER_IP)


def test_a_config_whose_first_interface_disagrees_with_its_own_fields_is_refused() -> None:
    lan = Interface(b(LAN_MAC), b(LAN_IP), 24)
    with pytest.raises(ValueError, match=r"StackConfig\.ip differs"):
        StackConfig(mac=b(LAN_MAC), ip=b(WAN_IP), interfaces=(lan,))
    assert StackConfig.of((lan,)).ifaces == (lan,)
    assert StackConfig(mac=b(LAN_MAC), ip=b(LAN_IP)).ifaces == (lan,)


# -- options in fragments ----------------------------------------------------------------
def test_only_copied_options_ride_in_later_fragments() -> None:
    """RFC 791 3.1: security (type 130) has the copied flag, record route (7) does not."""
    security = bytes(IPOption_Security(length=11, security=0, compartment=0, handling_restrictions=0,
                                       transmission_control_code=b"\0\0\0"))
    record = bytes(IPOption_RR(routers=["0.0.0.0"]))
    options = security + record
    options += bytes(-len(options) % 4)
    assert copied_options(options) == security + bytes(-len(security) % 4)
    header = Ipv4(src=b(CLIENT_IP), dst=b(SERVER_IP), protocol=17, payload=bytes(400), options=options)
    first, *rest = fragment(header, 200)
    assert first.options == options and rest and all(p.options == copied_options(options) for p in rest)
    scapy_pieces = [IP(emit(p)) for p in (first, *rest)]
    assert bytes(defragment(scapy_pieces)[0][IP].payload) == bytes(400)


# -- properties, scapy the judge ---------------------------------------------------------
@given(size=st.integers(0, 4000), df=st.booleans(), ttl=st.integers(2, 255), mtu=st.sampled_from([68, 576, 1006, 1500]),
       ident=st.integers(0, 0xFFFF), tos=st.integers(0, 255))
def test_a_forwarded_datagram_is_the_datagram_with_one_ttl_less(size: int, df: bool, ttl: int, mtu: int, ident: int,
                                                               tos: int) -> None:
    """Whatever its size, DF and the outgoing MTU: what leaves reassembles (scapy) to what came, TTL one lower,
    or the source learns the next-hop MTU (RFC 1191)."""
    stack = ready_router(wan_mtu=mtu)
    payload = bytes((i * 7) & 0xFF for i in range(size))
    frame = from_client(UDP(sport=4000, dport=5000) / Raw(payload), flags="DF" if df else 0, ttl=ttl, id=ident, tos=tos)
    if len(frame) - 14 > 1500:
        return  # not a frame the LAN could carry
    stack.receive(frame, 0.0, LAN)
    out = [Ether(f) for f in stack.transmit(WAN)]
    errors = [Ether(f) for f in stack.transmit(LAN)]
    sent = Ether(frame)[IP]
    if df and len(sent) > mtu:
        assert out == [] and [(e[ICMP].type, e[ICMP].code, e[ICMP].nexthopmtu) for e in errors] == [(3, 4, mtu)]
        return
    assert errors == [] and out
    assert all(len(p[IP]) <= mtu and checksum_ok(bytes(p[IP])[: p[IP].ihl * 4]) and p.dst == SERVER_MAC for p in out)
    whole = defragment([p[IP] for p in out])[0] if len(out) > 1 else out[0][IP]
    length = sent[UDP].len  # scapy counts Ethernet padding into the last layer: compare the datagram's bytes
    assert whole[UDP].len == length and bytes(whole[UDP])[:length] == bytes(sent[UDP])[:length]
    assert (whole.ttl, whole.id, whole.tos, whole.src, whole.dst) == (ttl - 1, ident, tos, CLIENT_IP, SERVER_IP)


_DSTS = ["10.0.2.2", "10.0.2.9", "10.0.2.255", "10.0.2.0", "10.0.1.1", "10.0.2.1", "192.0.2.1", "127.0.0.1", "224.0.0.5",
         "255.255.255.255", "0.0.0.1", "250.1.1.1"]
_SRCS = ["10.0.1.2", "10.0.2.2", "10.0.1.255", "0.0.0.0", "240.0.0.1", "10.0.2.1", "127.0.0.9"]


@given(dst=st.sampled_from(_DSTS), src=st.sampled_from(_SRCS), ttl=st.integers(0, 3), eth_broadcast=st.booleans(),
       proto=st.sampled_from(["icmp", "udp", "other"]), mf=st.booleans(), df=st.booleans(), size=st.integers(0, 1400))
def test_every_datagram_meets_exactly_one_fate(dst: str, src: str, ttl: int, eth_broadcast: bool, proto: str, mf: bool,
                                               df: bool, size: int) -> None:
    """Forwarded, dropped for one counted reason, held as a fragment, or handed to a transport: one of them, once."""
    stack = ready_router(wan_mtu=576)
    upper = ICMP(type=8) / Raw(bytes(size)) if proto == "icmp" else UDP(dport=9) / Raw(bytes(size)) if proto == "udp" \
        else Raw(bytes(size))
    ip = IP(src=src, dst=dst, ttl=ttl, flags=(1 if mf else 0) | (2 if df else 0))  # scapy: MF is 1, DF is 2
    if proto == "other":
        ip.proto = 253  # RFC 3692's experimental number: no transport takes it
    frame = bytes(Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff" if eth_broadcast else LAN_MAC) / ip / upper)
    before = stack.counters.snapshot()
    stack.receive(frame, 0.0, LAN)
    after = stack.counters.snapshot()
    delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    # a fragment for the router is one fate (frag.rx), whatever reassembly then does with it (test_malformed.py)
    ipv4_drops = sum(v for k, v in delta.items() if k.startswith("ipv4.drop.") and not k.startswith("ipv4.drop.frag_"))
    fates = (ipv4_drops + delta.get("ipv4.forward", 0) + delta.get("ipv4.frag.rx", 0) + delta.get("icmp.rx", 0)
             + delta.get("udp.rx", 0))
    assert delta["ipv4.rx"] == 1 and fates == 1, delta
    if delta.get("ipv4.forward"):  # only a unicast frame with TTL to spare, to a host the router can reach, from one
        assert not eth_broadcast and ttl > 1 and dst in ("10.0.2.2", "10.0.2.9") and src in ("10.0.1.2", "10.0.2.2")
