"""Bad inputs, gVisor style: tables of one-line descriptions and the exact verdict.

A compiled parser skips length checks, and so does a ``struct``, so every
``parse`` checks lengths itself; these tables feed truncated and lying headers
to whichever parser the stack runs. The parsers are looked up through
``simstack.protocols.stack``, so the tables test the codec the stack runs (the
struct codec ``layout`` derives; tests/test_layout.py holds it to construct).

Part (a) asks each ``parse`` for the exact ``Malformed.reason``. Part (b) wraps
the same kinds of bad headers in frames built by scapy and hands them to a whole
``Stack``: the right counter must move, nothing may raise, and nothing may be
sent unless an ICMP error is the RFC answer. Part (c) throws random bytes and
mutated valid frames at ``Stack.receive`` and checks that every frame is
accounted for, layer by layer.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw
from scapy.utils import checksum as scapy_checksum

from simstack.protocols import stack as stack_module
from simstack.protocols import udp_layer as udp_layer_module
from simstack.protocols.errors import Malformed
from simstack.protocols.stack import Stack, StackConfig

STACK_MAC = "02:00:00:00:00:01"
STACK_IP = "10.0.0.1"
PEER_MAC = "02:00:00:00:00:02"
PEER_IP = "10.0.0.2"
GATEWAY_MAC = "02:00:00:00:00:fe"
GATEWAY_IP = "10.0.0.254"
OTHER_MAC = "02:00:00:00:00:99"
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"
SUBNET_BROADCAST = "10.0.0.255"
ECHO_ID = 0x1C2D
ECHO_DATA = b"simstack-ping-data!"  # no zero octets: no truncation of it keeps the checksum right
UDP_DATA = b"simstack-udp-data"
PROTO_EXPERIMENT = 253  # RFC 3692
CLOSED_PORT = 9

ETH_HEADER = 14
IP_HEADER = 20
UDP_HEADER = 8


def mac_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def ip_bytes(text: str) -> bytes:
    return bytes(int(part) for part in text.split("."))


# The parsers the stack runs (the modules stack.py imports); UDP's checksum
# needs the addresses the datagram came with.
_RUN_BY_STACK: dict[str, Any] = vars(stack_module)
PARSERS: dict[str, Callable[[bytes], object]] = {
    "ethernet": _RUN_BY_STACK["ethernet"].parse,
    "arp": _RUN_BY_STACK["arp"].parse,
    "ipv4": _RUN_BY_STACK["ipv4"].parse,
    "icmp": _RUN_BY_STACK["icmp"].parse,
    "udp": lambda data: vars(udp_layer_module)["udp"].parse(data, ip_bytes(PEER_IP), ip_bytes(STACK_IP)),
}


def patched(data: bytes, offset: int, value: bytes) -> bytes:
    """``data`` with ``value`` written at ``offset``: for fields scapy will not write as asked."""
    return data[:offset] + value + data[offset + len(value) :]


def scapy_ok(covered: bytes) -> bool:
    """scapy's RFC 1071 verdict: bytes with their checksum in place sum to zero."""
    return bool(scapy_checksum(covered) == 0)


# -- frames and headers, all built by scapy --------------------------------------
def ether(payload: Any, dst: str = STACK_MAC, src: str = PEER_MAC, vlan: int | None = None, **kw: Any) -> bytes:
    if vlan is None:
        return bytes(Ether(dst=dst, src=src, **kw) / payload)
    return bytes(Ether(dst=dst, src=src) / Dot1Q(vlan=vlan, **kw) / payload)


def ip_to_us(**kw: Any) -> Any:
    fields: dict[str, Any] = {"src": PEER_IP, "dst": STACK_IP, "id": 0x1234}
    fields.update(kw)
    return IP(**fields)


def echo(type_: int = 8, data: bytes = ECHO_DATA, **kw: Any) -> Any:
    return ICMP(type=type_, id=ECHO_ID, seq=1, **kw) / Raw(load=data)


def ping(**ip_kw: Any) -> Any:
    return ip_to_us(**ip_kw) / echo()


def udp_to_us(dport: int = CLOSED_PORT, **udp_kw: Any) -> Any:
    return ip_to_us() / UDP(sport=40000, dport=dport, **udp_kw) / Raw(load=UDP_DATA)


def arp_request(**kw: Any) -> Any:
    fields: dict[str, Any] = {"op": 1, "hwsrc": PEER_MAC, "psrc": PEER_IP, "hwdst": ZERO_MAC, "pdst": STACK_IP}
    fields.update(kw)
    return ARP(**fields)


ETH_UNTAGGED = ether(Raw(load=bytes(range(1, 47))), type=0x0800)
ETH_TAGGED = ether(Raw(load=bytes(range(1, 47))), vlan=5, type=0x0800)
ARP_OK = bytes(arp_request())
ROUTER_ALERT = b"\x94\x04\x00\x00"  # RFC 2113; one option word, so IHL is 6
IP_WITH_OPTIONS = bytes(ping(options=ROUTER_ALERT))
IP_PLAIN = bytes(ping())
IP_PLAIN_CHECKSUM = int(IP(IP_PLAIN).chksum)
ICMP_ECHO = bytes(echo())
ICMP_ECHO_CHECKSUM = int(ICMP(ICMP_ECHO).chksum)
UDP_OK = bytes(udp_to_us())[IP_HEADER:]
UDP_OK_CHECKSUM = int(IP(bytes(udp_to_us()))[UDP].chksum)
UDP_TO_ELSEWHERE = bytes(ip_to_us(dst="10.0.0.99") / UDP(sport=40000, dport=CLOSED_PORT) / Raw(load=UDP_DATA))[IP_HEADER:]


# -- part (a): each parser, exact reasons ------------------------------------------
@dataclass(frozen=True)
class Bad:
    description: str
    layer: str
    data: bytes
    reason: str
    checksummed: int = 0  # leading bytes scapy checksummed: proves only the named lie is wrong


def ip_bad(description: str, pkt: Any, reason: str) -> Bad:
    """A datagram scapy built with one field forced; unless that field is the checksum,
    scapy computed the checksum over the header it built."""
    data = bytes(pkt)
    header_len = 0 if pkt.chksum is not None else len(data) - len(bytes(pkt.payload))
    return Bad(description, "ipv4", data, reason, checksummed=header_len)


PARSE_TABLE: list[Bad] = [
    # Ethernet
    Bad("empty buffer", "ethernet", b"", "truncated"),
    Bad("13 bytes: the EtherType cut in half", "ethernet", ETH_UNTAGGED[:13], "truncated"),
    Bad("802.1Q TPID and nothing after it", "ethernet", ETH_TAGGED[:14], "truncated"),
    Bad("802.1Q TCI cut in half", "ethernet", ETH_TAGGED[:15], "truncated"),
    Bad("802.1Q tag without its inner EtherType", "ethernet", ETH_TAGGED[:16], "truncated"),
    Bad("802.1Q inner EtherType cut in half", "ethernet", ETH_TAGGED[:17], "truncated"),
    # ARP
    Bad("ARP of 27 bytes: target address one short", "arp", ARP_OK[:27], "truncated"),
    Bad("ARP of 8 bytes: the fixed part only", "arp", ARP_OK[:8], "truncated"),
    Bad("hardware type 6 (IEEE 802), not Ethernet", "arp", patched(ARP_OK, 0, b"\x00\x06"), "unsupported_format"),
    Bad("hardware type 0", "arp", patched(ARP_OK, 0, b"\x00\x00"), "unsupported_format"),
    Bad("protocol type 0x86dd (IPv6), not IPv4", "arp", patched(ARP_OK, 2, b"\x86\xdd"), "unsupported_format"),
    Bad("protocol type 0x0806", "arp", patched(ARP_OK, 2, b"\x08\x06"), "unsupported_format"),
    Bad("hardware length 8, not 6", "arp", patched(ARP_OK, 4, b"\x08"), "unsupported_format"),
    Bad("hardware length 0", "arp", patched(ARP_OK, 4, b"\x00"), "unsupported_format"),
    Bad("protocol length 16, not 4", "arp", patched(ARP_OK, 5, b"\x10"), "unsupported_format"),
    Bad("protocol length 0", "arp", patched(ARP_OK, 5, b"\x00"), "unsupported_format"),
    # IPv4: lengths
    Bad("IPv4 of 19 bytes", "ipv4", IP_PLAIN[:19], "truncated"),
    Bad("IPv4 of 1 byte", "ipv4", IP_PLAIN[:1], "truncated"),
    ip_bad("IHL 0", ping(ihl=0), "bad_ihl"),
    ip_bad("IHL 4, below the 5-word minimum", ping(ihl=4), "bad_ihl"),
    ip_bad("IHL 15 (60 bytes) with 47 bytes present", ping(ihl=15), "bad_ihl"),
    ip_bad("IHL 6 on a bare 20-byte header", ip_to_us(ihl=6), "bad_ihl"),
    ip_bad("total length 1000 with 47 bytes present", ping(len=1000), "bad_total_length"),
    ip_bad("total length 65535 with 47 bytes present", ping(len=65535), "bad_total_length"),
    ip_bad("total length 48, one past the buffer", ping(len=48), "bad_total_length"),
    ip_bad("total length 19, below the minimum header", ping(len=19), "bad_total_length"),
    ip_bad("total length 0", ping(len=0), "bad_total_length"),
    ip_bad("total length 20 with IHL 6 (a 24-byte header)", ping(len=20, options=ROUTER_ALERT), "bad_total_length"),
    # IPv4: version
    ip_bad("version 6 under an IPv4 parser", ping(version=6), "bad_version"),
    ip_bad("version 0", ping(version=0), "bad_version"),
    ip_bad("version 15", ping(version=15), "bad_version"),
    ip_bad("version 6 and IHL 4: the version is judged first", ping(version=6, ihl=4), "bad_version"),
    # IPv4: checksum
    ip_bad("header checksum off by one", ping(chksum=IP_PLAIN_CHECKSUM ^ 1), "bad_checksum"),
    ip_bad("header checksum zero (not optional in IPv4)", ping(chksum=0), "bad_checksum"),
    Bad("TTL changed after checksumming", "ipv4", patched(IP_PLAIN, 8, bytes((IP_PLAIN[8] - 1,))), "bad_checksum"),
    Bad("source address bit flipped", "ipv4", patched(IP_PLAIN, 12, bytes((IP_PLAIN[12] ^ 0x80,))), "bad_checksum"),
    Bad("option octet changed after checksumming", "ipv4", patched(IP_WITH_OPTIONS, 22, b"\x01"), "bad_checksum"),
    # ICMP
    Bad("ICMP of 7 bytes", "icmp", ICMP_ECHO[:7], "truncated"),
    Bad("ICMP of 0 bytes", "icmp", b"", "truncated"),
    Bad("ICMP checksum off by one", "icmp", bytes(echo(chksum=ICMP_ECHO_CHECKSUM ^ 1)), "bad_checksum"),
    Bad("ICMP checksum zero", "icmp", bytes(echo(chksum=0)), "bad_checksum"),
    Bad("echo data bit flipped", "icmp", patched(ICMP_ECHO, 10, bytes((ICMP_ECHO[10] ^ 4,))), "bad_checksum"),
    Bad("last (odd) data octet changed", "icmp", ICMP_ECHO[:-1] + b"?", "bad_checksum"),
    Bad("header only, checksum of the whole message", "icmp", ICMP_ECHO[:8], "bad_checksum"),
    Bad(
        "unreachable, checksum over a longer quote", "icmp", bytes(ICMP(type=3, code=1) / Raw(load=IP_PLAIN))[:-3], "bad_checksum"
    ),
    # UDP
    Bad("UDP of 7 bytes", "udp", UDP_OK[:7], "truncated"),
    Bad("UDP Length 7, below its own header", "udp", patched(UDP_OK, 4, (7).to_bytes(2, "big")), "bad_length"),
    Bad("UDP Length 0", "udp", patched(UDP_OK, 4, b"\x00\x00"), "bad_length"),
    Bad("UDP Length one past the buffer", "udp", patched(UDP_OK, 4, (len(UDP_OK) + 1).to_bytes(2, "big")), "bad_length"),
    Bad("UDP checksum off by one", "udp", patched(UDP_OK, 6, (UDP_OK_CHECKSUM ^ 1).to_bytes(2, "big")), "bad_checksum"),
    Bad("UDP checksum of another destination's pseudo-header", "udp", UDP_TO_ELSEWHERE, "bad_checksum"),
]


@pytest.mark.parametrize("bad", PARSE_TABLE, ids=lambda b: f"{b.layer}: {b.description}")
def test_parse_rejects(bad: Bad) -> None:
    if bad.checksummed:
        assert scapy_ok(bad.data[: bad.checksummed]), "the row must lie about one thing only"
    with pytest.raises(Malformed) as info:
        PARSERS[bad.layer](bad.data)
    assert info.value.reason == bad.reason


def test_parse_controls_accept() -> None:
    """The bases the table corrupts parse cleanly, so each row fails for its own reason."""
    for layer, data in (
        ("ethernet", ETH_UNTAGGED),
        ("ethernet", ETH_TAGGED),
        ("arp", ARP_OK),
        ("ipv4", IP_PLAIN),
        ("ipv4", IP_WITH_OPTIONS),
        ("icmp", ICMP_ECHO),
        ("udp", UDP_OK),
        ("udp", patched(UDP_OK, 6, b"\x00\x00")),  # RFC 768: zero, no checksum computed
    ):
        assert reason_of(layer, data) is None, layer


def reason_of(layer: str, data: bytes) -> str | None:
    try:
        PARSERS[layer](data)
    except Malformed as e:
        return e.reason
    return None


def test_ethernet_every_truncation() -> None:
    for n in range(ETH_HEADER):
        assert reason_of("ethernet", ETH_UNTAGGED[:n]) == "truncated", n
    for n in range(ETH_HEADER + 4):
        assert reason_of("ethernet", ETH_TAGGED[:n]) == "truncated", n
    # One octet more and the header is whole: an empty payload is not an error.
    assert reason_of("ethernet", ETH_UNTAGGED[:ETH_HEADER]) is None
    assert reason_of("ethernet", ETH_TAGGED[: ETH_HEADER + 4]) is None


def test_arp_every_truncation() -> None:
    for n in range(len(ARP_OK)):
        assert reason_of("arp", ARP_OK[:n]) == "truncated", n
    assert reason_of("arp", ARP_OK) is None


def test_ipv4_every_truncation() -> None:
    header = (IP_WITH_OPTIONS[0] & 0x0F) * 4
    assert header == IP_HEADER + len(ROUTER_ALERT)
    for n in range(len(IP_WITH_OPTIONS)):
        if n < IP_HEADER:
            want = "truncated"
        elif n < header:
            want = "bad_ihl"  # the IHL says more than the buffer holds
        else:
            want = "bad_total_length"  # Total Length says more than the buffer holds
        assert reason_of("ipv4", IP_WITH_OPTIONS[:n]) == want, n
    assert reason_of("ipv4", IP_WITH_OPTIONS) is None


def test_icmp_every_truncation() -> None:
    for n in range(len(ICMP_ECHO)):
        prefix = ICMP_ECHO[:n]
        want = "truncated" if n < 8 else ("bad_checksum" if not scapy_ok(prefix) else None)
        assert want is not None, "ECHO_DATA was chosen so that no prefix keeps a valid checksum"
        assert reason_of("icmp", prefix) == want, n
    assert reason_of("icmp", ICMP_ECHO) is None


def test_udp_every_truncation() -> None:
    for n in range(len(UDP_OK)):
        assert reason_of("udp", UDP_OK[:n]) == ("truncated" if n < UDP_HEADER else "bad_length"), n
    assert reason_of("udp", UDP_OK) is None


# -- part (b): whole stack ---------------------------------------------------------
def _learn(mac: str, ip: str, vlan: int | None) -> bytes:
    return ether(arp_request(hwsrc=mac, psrc=ip), dst=BROADCAST_MAC, src=mac, vlan=vlan)


def new_stack(vlan: int | None = None) -> Stack:
    """A stack at 10.0.0.1/24 behind 10.0.0.254 that knows the peer's and gateway's MACs."""
    stack = Stack(StackConfig(mac=mac_bytes(STACK_MAC), ip=ip_bytes(STACK_IP), gateway=ip_bytes(GATEWAY_IP), vlan=vlan))
    for mac, ip in ((PEER_MAC, PEER_IP), (GATEWAY_MAC, GATEWAY_IP)):
        stack.receive(_learn(mac, ip, vlan), now=0.0)
    assert len(stack.transmit()) == 2  # the two ARP replies
    return stack


@dataclass(frozen=True)
class Outcome:
    delta: dict[str, int]
    sent: list[bytes]

    def drops(self) -> dict[str, int]:
        return {k: v for k, v in self.delta.items() if ".drop." in k}


def diff(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def receive(stack: Stack, frame: bytes, now: float = 1.0) -> Outcome:
    before = stack.counters.snapshot()
    stack.receive(frame, now)
    return Outcome(diff(before, stack.counters.snapshot()), stack.transmit())


def run_timers(stack: Stack, now: float) -> Outcome:
    before = stack.counters.snapshot()
    stack.on_timer(now)
    return Outcome(diff(before, stack.counters.snapshot()), stack.transmit())


def datagram_of(frame: bytes) -> Any:
    """scapy's IP layer of a sent frame, cut at its own Total Length (no link padding)."""
    ip = Ether(frame)[IP]
    return IP(bytes(ip)[: ip.len])


def check_checksums(ip: Any) -> None:
    raw = bytes(ip)
    header = ip.ihl * 4
    assert scapy_ok(raw[:header]), "IPv4 header checksum"
    if ip.proto == 1:
        assert scapy_ok(raw[header:]), "ICMP checksum"


Answer = Callable[[bytes], None]


def icmp_error(type_: int, code: int, datagram: bytes, to: str = PEER_IP, via: str = PEER_MAC) -> Answer:
    """An ICMP error to the sender quoting the datagram (RFC 792; short datagrams are quoted whole)."""

    def check(frame: bytes) -> None:
        eth = Ether(frame)
        assert eth.dst == via
        assert eth.src == STACK_MAC
        ip = datagram_of(frame)
        assert (ip.src, ip.dst, ip.proto) == (STACK_IP, to, 1)
        msg = ip[ICMP]
        assert (msg.type, msg.code) == (type_, code)
        assert bytes(msg.payload) == datagram  # link padding excluded
        check_checksums(ip)

    return check


def echo_reply(request: bytes, via: str = PEER_MAC) -> Answer:
    """RFC 792 / RFC 1122 3.2.2.6: addresses swapped, identifier, sequence and data echoed."""
    req = datagram_of(request)

    def check(frame: bytes) -> None:
        assert Ether(frame).dst == via
        ip = datagram_of(frame)
        assert (ip.src, ip.dst, ip.proto) == (req.dst, req.src, 1)
        msg = ip[ICMP]
        assert (msg.type, msg.code, msg.id, msg.seq) == (0, 0, req[ICMP].id, req[ICMP].seq)
        assert bytes(msg.payload) == bytes(req[ICMP].payload)
        check_checksums(ip)

    return check


@dataclass(frozen=True)
class Case:
    description: str
    frame: bytes
    counter: str  # must move by exactly one; no other drop counter may move
    answer: Answer | None = None  # None: nothing may be sent


def frame_ip(payload: Any, **eth_kw: Any) -> bytes:
    return ether(payload, type=0x0800, **eth_kw)


def with_ip_checksum(datagram: bytes) -> bytes:
    """The header checksum recomputed by scapy's helper after a deliberate lie elsewhere."""
    zeroed = patched(datagram, 10, b"\x00\x00")
    header = (datagram[0] & 0x0F) * 4
    return patched(zeroed, 10, scapy_checksum(zeroed[:header]).to_bytes(2, "big"))


UNKNOWN = ip_to_us(proto=PROTO_EXPERIMENT) / Raw(load=b"experimental payload")
UNKNOWN_RAW = bytes(UNKNOWN)
UNKNOWN_LONG = bytes(ip_to_us(proto=PROTO_EXPERIMENT) / Raw(load=bytes(range(1, 41))))
UNKNOWN_SHORTENED = with_ip_checksum(patched(UNKNOWN_LONG, 2, (30).to_bytes(2, "big")))
UDP_CLOSED = bytes(udp_to_us())
UDP_NO_CHECKSUM = bytes(udp_to_us(chksum=0))
OUR_ECHO = bytes(IP(src=STACK_IP, dst="192.0.2.9", id=7) / echo(data=b"12345678"))
THEIR_ECHO = bytes(IP(src="192.0.2.8", dst="192.0.2.9", id=7) / echo(data=b"12345678"))
PING_FRAME = frame_ip(ping())


def unreachable(quote: bytes, src: str = GATEWAY_IP) -> Any:
    return IP(src=src, dst=STACK_IP) / ICMP(type=3, code=1) / Raw(load=quote)


def arp_frame(arp_bytes: bytes) -> bytes:
    return ether(Raw(load=arp_bytes), type=0x0806)


STACK_TABLE: list[Case] = [
    # Ethernet
    Case("runt of 10 bytes", ETH_UNTAGGED[:10], "eth.drop.truncated"),
    Case("802.1Q tag cut short at 16 bytes", ETH_TAGGED[:16], "eth.drop.truncated"),
    Case("unknown EtherType 0x88b5", ether(Raw(load=IP_PLAIN), type=0x88B5), "eth.drop.unknown_ethertype"),
    Case("IPv6 EtherType carrying IPv4 bytes", ether(Raw(load=IP_PLAIN), type=0x86DD), "eth.drop.unknown_ethertype"),
    Case("802.3 length field, not an EtherType", ether(Raw(load=IP_PLAIN), type=len(IP_PLAIN)), "eth.drop.unknown_ethertype"),
    Case("unicast to another host's MAC", frame_ip(ping(), dst=OTHER_MAC), "eth.drop.not_for_us"),
    Case("IPv4 multicast MAC 01:00:5e:00:00:fb", frame_ip(ping(), dst="01:00:5e:00:00:fb"), "eth.drop.multicast"),
    Case("tagged VLAN 5 to an untagged stack", frame_ip(ping(), vlan=5), "eth.drop.wrong_vlan"),
    # ARP
    Case("ARP cut to 27 bytes", arp_frame(ARP_OK[:27]), "arp.drop.truncated"),
    Case("ARP hardware type 6", arp_frame(patched(ARP_OK, 0, b"\x00\x06")), "arp.drop.unsupported_format"),
    Case("ARP protocol type IPv6", arp_frame(patched(ARP_OK, 2, b"\x86\xdd")), "arp.drop.unsupported_format"),
    Case("ARP hardware length 8", arp_frame(patched(ARP_OK, 4, b"\x08")), "arp.drop.unsupported_format"),
    Case("ARP protocol length 16", arp_frame(patched(ARP_OK, 5, b"\x10")), "arp.drop.unsupported_format"),
    Case("ARP opcode 3 (RARP request)", ether(arp_request(op=3)), "arp.drop.bad_op"),
    Case("ARP opcode 0", ether(arp_request(op=0)), "arp.drop.bad_op"),
    Case("ARP sent with our own MAC", ether(arp_request(hwsrc=STACK_MAC)), "arp.drop.own_frame"),
    Case("ARP claiming our IP from another MAC", ether(arp_request(psrc=STACK_IP)), "arp.drop.address_conflict"),
    Case("ARP with a broadcast sender MAC", ether(arp_request(hwsrc=BROADCAST_MAC)), "arp.drop.bad_sender"),
    Case("ARP with a multicast sender MAC", ether(arp_request(hwsrc="01:00:5e:00:00:01")), "arp.drop.bad_sender"),
    Case("ARP request for another host", ether(arp_request(pdst="10.0.0.77"), dst=BROADCAST_MAC), "arp.rx.not_for_us"),
    # IPv4 lengths, version, checksum
    Case("IPv4 cut to 19 bytes", frame_ip(Raw(load=IP_PLAIN[:19])), "ipv4.drop.truncated"),
    Case("IHL 4", frame_ip(ping(ihl=4)), "ipv4.drop.bad_ihl"),
    Case("IHL 15 with 47 bytes present", frame_ip(ping(ihl=15)), "ipv4.drop.bad_ihl"),
    Case("total length 1000 with 47 bytes present", frame_ip(ping(len=1000)), "ipv4.drop.bad_total_length"),
    Case("total length 19, below the header", frame_ip(ping(len=19)), "ipv4.drop.bad_total_length"),
    Case("total length 20 with a 24-byte header", frame_ip(ping(len=20, options=ROUTER_ALERT)), "ipv4.drop.bad_total_length"),
    Case("version 6 under EtherType 0x0800", frame_ip(ping(version=6)), "ipv4.drop.bad_version"),
    Case("header checksum off by one", frame_ip(ping(chksum=IP_PLAIN_CHECKSUM ^ 1)), "ipv4.drop.bad_checksum"),
    # IPv4 addressing
    Case("addressed to another host", frame_ip(ping(dst="10.0.0.77")), "ipv4.drop.not_for_us"),
    Case("source 255.255.255.255", frame_ip(ping(src="255.255.255.255")), "ipv4.drop.bad_source"),
    Case("source is the subnet broadcast", frame_ip(ping(src=SUBNET_BROADCAST)), "ipv4.drop.bad_source"),
    Case("multicast source 224.0.0.251", frame_ip(ping(src="224.0.0.251")), "ipv4.drop.bad_source"),
    Case(
        "loopback source 127.0.0.1 (RFC 1122 3.2.1.3 (g))",
        frame_ip(ping(src="127.0.0.1"), src=GATEWAY_MAC),
        "ipv4.drop.bad_source",
    ),
    Case("our own address as the source", frame_ip(ping(src=STACK_IP)), "ipv4.drop.bad_source"),
    # IPv4 fragments (RFC 791 3.2): held for reassembly, or refused
    Case("first fragment, 8-byte multiple: held", frame_ip(ip_to_us(flags="MF") / Raw(load=b"f" * 16)), "ipv4.frag.rx"),
    Case("later fragment (offset 8): held", frame_ip(ping(frag=1)), "ipv4.frag.rx"),
    Case(
        "MF fragment of 19 bytes, not a multiple of 8",
        frame_ip(ip_to_us(flags="MF") / Raw(load=b"f" * 19)),
        "ipv4.drop.frag_bad_length",
    ),
    Case(
        "ping of death: offset 65528 plus 16 bytes", frame_ip(ip_to_us(frag=8191) / Raw(load=b"f" * 16)), "ipv4.drop.frag_too_big"
    ),
    # Unknown protocol: the ICMP error RFC 1122 3.2.2.1 asks of a host
    Case("unknown protocol 253", frame_ip(UNKNOWN), "ipv4.drop.unknown_protocol", icmp_error(3, 2, UNKNOWN_RAW)),
    Case(
        "unknown protocol padded to 60 bytes: padding not quoted",
        frame_ip(UNKNOWN) + bytes(60 - len(frame_ip(UNKNOWN))),
        "ipv4.drop.unknown_protocol",
        icmp_error(3, 2, UNKNOWN_RAW),
    ),
    Case(
        "unknown protocol, Total Length lies short: quote stops there",
        frame_ip(Raw(load=UNKNOWN_SHORTENED)),
        "ipv4.drop.unknown_protocol",
        icmp_error(3, 2, UNKNOWN_SHORTENED[:30]),
    ),
    Case(
        "unknown protocol to 255.255.255.255",
        frame_ip(ip_to_us(proto=PROTO_EXPERIMENT, dst="255.255.255.255")),
        "ipv4.drop.unknown_protocol",
    ),
    Case(
        "unknown protocol to the subnet broadcast",
        frame_ip(ip_to_us(proto=PROTO_EXPERIMENT, dst=SUBNET_BROADCAST)),
        "ipv4.drop.unknown_protocol",
    ),
    Case("unknown protocol in a link-layer broadcast", frame_ip(UNKNOWN, dst=BROADCAST_MAC), "ipv4.drop.unknown_protocol"),
    Case(
        "unknown protocol from 0.0.0.0", frame_ip(ip_to_us(proto=PROTO_EXPERIMENT, src="0.0.0.0")), "ipv4.drop.bad_source"
    ),
    Case(
        "unknown protocol, a held later fragment",
        frame_ip(ip_to_us(proto=PROTO_EXPERIMENT, frag=1) / Raw(load=b"x" * 8)),
        "ipv4.frag.rx",
    ),
    # ICMP
    Case("ICMP of 7 bytes", frame_ip(ip_to_us(proto=1) / Raw(load=ICMP_ECHO[:7])), "icmp.drop.truncated"),
    Case("Total Length leaves 4 ICMP bytes, the frame carries all", frame_ip(ping(len=IP_HEADER + 4)), "icmp.drop.truncated"),
    Case("ICMP checksum off by one", frame_ip(ip_to_us() / echo(chksum=ICMP_ECHO_CHECKSUM ^ 1)), "icmp.drop.bad_checksum"),
    Case(
        "Total Length trims the echo data: ICMP checksum fails",
        frame_ip(ping(len=IP_HEADER + len(ICMP_ECHO) - 2)),
        "icmp.drop.bad_checksum",
    ),
    Case("echo request to 255.255.255.255", frame_ip(ping(dst="255.255.255.255"), dst=BROADCAST_MAC), "icmp.drop.broadcast_echo"),
    Case("echo request to the subnet broadcast", frame_ip(ping(dst=SUBNET_BROADCAST)), "icmp.drop.broadcast_echo"),
    Case("echo request to our IP in a link broadcast", frame_ip(ping(), dst=BROADCAST_MAC), "icmp.drop.broadcast_echo"),
    Case("echo reply nobody asked for", frame_ip(ip_to_us() / echo(type_=0)), "icmp.drop.no_listener"),
    Case("timestamp request (type 13)", frame_ip(ip_to_us() / ICMP(type=13)), "icmp.drop.unhandled_type"),
    Case("unreachable quoting 10 junk bytes", frame_ip(unreachable(b"0123456789")), "icmp.drop.bad_quote"),
    Case("unreachable quoting a datagram we did not send", frame_ip(unreachable(THEIR_ECHO)), "icmp.drop.bad_quote"),
    Case("unreachable quoting a version 6 header", frame_ip(unreachable(patched(OUR_ECHO, 0, b"\x65"))), "icmp.drop.bad_quote"),
    Case("unreachable quoting IHL 15 with 36 bytes", frame_ip(unreachable(patched(OUR_ECHO, 0, b"\x4f"))), "icmp.drop.bad_quote"),
    Case("unreachable quoting IHL 4", frame_ip(unreachable(patched(OUR_ECHO, 0, b"\x44"))), "icmp.drop.bad_quote"),
    Case("unreachable quoting our header and 7 bytes", frame_ip(unreachable(OUR_ECHO[:27])), "icmp.drop.bad_quote"),
    Case("unreachable about an echo nobody is waiting for", frame_ip(unreachable(OUR_ECHO)), "icmp.drop.no_listener"),
    Case(
        "unreachable with a bad ICMP checksum",
        frame_ip(IP(src=GATEWAY_IP, dst=STACK_IP) / ICMP(type=3, code=1, chksum=0x1234) / Raw(load=OUR_ECHO)),
        "icmp.drop.bad_checksum",
    ),
    # UDP
    Case("UDP of 7 bytes", frame_ip(ip_to_us(proto=17) / Raw(load=UDP_OK[:7])), "udp.drop.truncated"),
    Case("UDP Length 100 beyond the datagram", frame_ip(udp_to_us(len=100)), "udp.drop.bad_length"),
    Case("UDP Length 7", frame_ip(udp_to_us(len=7)), "udp.drop.bad_length"),
    Case("UDP checksum off by one", frame_ip(udp_to_us(chksum=UDP_OK_CHECKSUM ^ 1)), "udp.drop.bad_checksum"),
    # RFC 1122 4.1.3.1: port unreachable, unless the datagram was a broadcast
    Case("UDP to a closed port", frame_ip(udp_to_us()), "udp.drop.no_port", icmp_error(3, 3, UDP_CLOSED)),
    Case(
        "UDP without checksum to a closed port",
        frame_ip(udp_to_us(chksum=0)),
        "udp.drop.no_port",
        icmp_error(3, 3, UDP_NO_CHECKSUM),
    ),
    Case(
        "UDP to a closed port, subnet broadcast",
        frame_ip(ip_to_us(dst=SUBNET_BROADCAST) / UDP(dport=CLOSED_PORT)),
        "udp.drop.no_port",
    ),
    Case("UDP to a closed port in a link broadcast", frame_ip(udp_to_us(), dst=BROADCAST_MAC), "udp.drop.no_port"),
]


@pytest.mark.parametrize("case", STACK_TABLE, ids=lambda c: c.description)
def test_stack_counts_and_answers(case: Case) -> None:
    stack = new_stack()
    out = receive(stack, case.frame)
    assert out.delta["eth.rx"] == 1
    assert out.delta.get(case.counter) == 1, out.delta
    assert {k: v for k, v in out.drops().items() if k != case.counter} == {}, out.delta
    if case.answer is None:
        assert out.sent == [], [Ether(f).summary() for f in out.sent]
    else:
        assert len(out.sent) == 1, out.delta
        case.answer(out.sent[0])


# Well-formed twins of the table's frames: the stack answers them, so the
# table's "nothing sent" and "counter moved" verdicts are not vacuous.
SMALL_PING = frame_ip(ip_to_us() / echo(data=b"ab"))
CONTROLS: list[tuple[str, bytes, Answer]] = [
    ("ping", PING_FRAME, echo_reply(PING_FRAME)),
    ("ping padded to 60 bytes", SMALL_PING + bytes(60 - len(SMALL_PING)), echo_reply(SMALL_PING)),
    ("ping with a Router Alert option", frame_ip(ping(options=ROUTER_ALERT)), echo_reply(frame_ip(ping(options=ROUTER_ALERT)))),
    # RFC 1122 3.2.1.7: a host MUST NOT discard a datagram for a TTL below 2.
    ("ping with TTL 0", frame_ip(ping(ttl=0)), echo_reply(frame_ip(ping(ttl=0)))),
    (
        "ping from off-link, answered through the gateway",
        frame_ip(ping(src="192.0.2.1"), src=GATEWAY_MAC),
        echo_reply(frame_ip(ping(src="192.0.2.1")), via=GATEWAY_MAC),
    ),
]


@pytest.mark.parametrize(("description", "frame", "answer"), CONTROLS, ids=[c[0] for c in CONTROLS])
def test_stack_controls_answered(description: str, frame: bytes, answer: Answer) -> None:
    out = receive(new_stack(), frame)
    assert out.drops() == {}
    assert out.delta.get("icmp.tx.echo_reply") == 1
    assert len(out.sent) == 1
    answer(out.sent[0])


def test_stack_arp_request_padded_is_answered() -> None:
    frame = ether(arp_request(hwsrc=OTHER_MAC, psrc="10.0.0.77"), dst=BROADCAST_MAC, src=OTHER_MAC) + bytes(18)
    out = receive(new_stack(), frame)
    assert out.drops() == {}
    assert out.delta.get("arp.tx.reply") == 1
    (sent,) = out.sent
    reply = Ether(sent)[ARP]
    assert (reply.op, reply.hwsrc, reply.psrc, reply.hwdst, reply.pdst) == (2, STACK_MAC, STACK_IP, OTHER_MAC, "10.0.0.77")


def test_stack_every_truncation_of_a_ping() -> None:
    for n in range(len(PING_FRAME)):
        if n < ETH_HEADER:
            want = "eth.drop.truncated"
        elif n < ETH_HEADER + IP_HEADER:
            want = "ipv4.drop.truncated"
        else:
            want = "ipv4.drop.bad_total_length"
        out = receive(new_stack(), PING_FRAME[:n])
        assert out.drops() == {want: 1}, (n, out.delta)
        assert out.sent == [], n


def test_stack_every_truncation_of_a_tagged_ping() -> None:
    frame = frame_ip(ping(), vlan=5)
    for n in range(len(frame)):
        if n < ETH_HEADER + 4:
            want = "eth.drop.truncated"
        elif n < ETH_HEADER + 4 + IP_HEADER:
            want = "ipv4.drop.truncated"
        else:
            want = "ipv4.drop.bad_total_length"
        out = receive(new_stack(vlan=5), frame[:n])
        assert out.drops() == {want: 1}, (n, out.delta)
        assert out.sent == [], n
    out = receive(new_stack(vlan=5), frame)
    assert out.drops() == {}
    assert len(out.sent) == 1
    assert Ether(out.sent[0])[Dot1Q].vlan == 5


def test_stack_every_truncation_of_an_arp_request() -> None:
    frame = ether(arp_request(hwsrc=OTHER_MAC, psrc="10.0.0.77"), dst=BROADCAST_MAC, src=OTHER_MAC)
    for n in range(len(frame)):
        want = "eth.drop.truncated" if n < ETH_HEADER else "arp.drop.truncated"
        out = receive(new_stack(), frame[:n])
        assert out.drops() == {want: 1}, (n, out.delta)
        assert out.sent == [], n


REASSEMBLY_TIMEOUT = StackConfig(mac=b"", ip=b"").reassembly.timeout


def held_first_fragment(dst: str, eth_dst: str) -> bytes:
    return frame_ip(ip_to_us(dst=dst, proto=17, flags="MF", id=99) / Raw(load=b"u" * 16), dst=eth_dst)


def test_stack_reassembly_timeout_answers_unicast() -> None:
    """RFC 792 / RFC 1122 3.3.2: time exceeded (code 1) once fragment zero timed out."""
    frame = held_first_fragment(STACK_IP, STACK_MAC)
    stack = new_stack()
    assert receive(stack, frame).sent == []
    out = run_timers(stack, 1.0 + REASSEMBLY_TIMEOUT)
    assert out.drops() == {"ipv4.drop.frag_timeout": 1}
    (error,) = [f for f in out.sent if IP in Ether(f)]
    icmp_error(11, 1, datagram_of(frame).build())(error)


@pytest.mark.parametrize(
    ("dst", "eth_dst"),
    [(SUBNET_BROADCAST, BROADCAST_MAC), ("255.255.255.255", BROADCAST_MAC), (STACK_IP, BROADCAST_MAC)],
    ids=["subnet broadcast", "limited broadcast", "link-layer broadcast"],
)
def test_stack_reassembly_timeout_silent_for_broadcast(dst: str, eth_dst: str) -> None:
    stack = new_stack()
    assert receive(stack, held_first_fragment(dst, eth_dst)).sent == []
    out = run_timers(stack, 1.0 + REASSEMBLY_TIMEOUT)
    assert out.drops() == {"ipv4.drop.frag_timeout": 1}
    assert [Ether(f).summary() for f in out.sent if IP in Ether(f)] == []


def test_stack_does_not_answer_zero_source() -> None:
    out = receive(new_stack(), frame_ip(ping(src="0.0.0.0")))
    assert out.sent == [], [Ether(f).summary() for f in out.sent]
    assert out.drops() == {"ipv4.drop.bad_source": 1}


def test_stack_accepts_priority_tagged_frame() -> None:
    frame = frame_ip(ping(), vlan=0, prio=5)
    out = receive(new_stack(), frame)
    assert out.drops() == {}
    assert len(out.sent) == 1
    echo_reply(frame)(out.sent[0])


# -- part (c): random bytes and mutated frames ------------------------------------
def names(layer: str, *reasons: str) -> set[str]:
    return {f"{layer}.drop.{r}" for r in reasons}


# Verdicts on a received frame, read off stack.py, fragments.py and udp_ports.py.
ETH_DROPS = names("eth", "truncated", "not_for_us", "multicast", "wrong_vlan", "unknown_ethertype")
ARP_DROPS = names("arp", "truncated", "unsupported_format", "bad_op", "own_frame", "address_conflict", "bad_sender")
IPV4_DROPS = names("ipv4", "truncated", "bad_version", "bad_ihl", "bad_total_length", "bad_checksum", "not_for_us", "bad_source")
FRAG_DROPS = names("ipv4", "frag_bad_length", "frag_too_big", "frag_overlap", "frag_too_many", "frag_no_room")
ICMP_DROPS = names("icmp", "truncated", "bad_checksum", "broadcast_echo", "no_listener", "unhandled_type", "bad_quote")
UDP_DROPS = names("udp", "truncated", "bad_length", "bad_checksum", "no_port", "not_connected_peer", "queue_full")
UNKNOWN_PROTOCOL = "ipv4.drop.unknown_protocol"
# Drops on the output side of an answer, or later: not a verdict on the received frame.
LATER_DROPS = names("ipv4", "no_route", "too_big", "frag_timeout") | names("arp", "queue_full", "cache_full", "unresolved")
KNOWN_DROPS = ETH_DROPS | ARP_DROPS | IPV4_DROPS | FRAG_DROPS | ICMP_DROPS | UDP_DROPS | LATER_DROPS | {UNKNOWN_PROTOCOL}


def total(delta: dict[str, int], counters: set[str]) -> int:
    return sum(delta.get(n, 0) for n in counters)


def is_arp_reply_to_us(frame: bytes) -> bool:
    """scapy's view: an Ethernet/IPv4 ARP reply to us from a sender we may learn; RFC 826 learns and answers nothing.

    RFC 826 looks at the format first ("?Do I have the hardware type in
    ar$hrd?", "?Do I speak the protocol in ar$pro?"): a reply with another
    hardware or protocol type, or other address lengths, is a bad frame and
    gets a verdict. So do replies from our own MAC or IP, or a multicast sender.
    """
    p = Ether(frame)
    if ARP not in p:
        return False
    a = p[ARP]
    if (a.hwtype, a.ptype, a.hwlen, a.plen) != (1, 0x0800, 6, 4):
        return False
    sender = mac_bytes(a.hwsrc)
    return a.op == 2 and a.pdst == STACK_IP and a.psrc != STACK_IP and sender != mac_bytes(STACK_MAC) \
        and not sender[0] & 1


def check_accounted(frame: bytes, out: Outcome, later: Outcome) -> None:
    """Every frame ends in exactly one verdict at each layer it reached.

    ``out`` is what receiving it did; ``later`` is the reassembly timeout that
    ends a fragment the stack held (a fresh stack holds at most that one).
    """
    d = out.delta
    unknown = {k for k in out.drops() if k not in KNOWN_DROPS}
    assert unknown == set(), f"drop reasons this test does not know: {unknown}"
    assert d.get("eth.rx") == 1
    # Ethernet: dropped, or handed to ARP or IPv4.
    assert total(d, ETH_DROPS) + d.get("arp.rx", 0) + d.get("ipv4.rx", 0) == 1, d
    if d.get("arp.rx"):
        verdicts = total(d, ARP_DROPS) + d.get("arp.rx.not_for_us", 0) + d.get("arp.tx.reply", 0)
        assert verdicts == (0 if is_arp_reply_to_us(frame) else 1), d
    to_protocols = d.get("icmp.rx", 0) + d.get("udp.rx", 0) + d.get(UNKNOWN_PROTOCOL, 0)
    if d.get("ipv4.rx"):
        # Dropped, held as a fragment, or handed to a protocol (a completed datagram counts twice).
        assert total(d, IPV4_DROPS) + d.get("ipv4.frag.rx", 0) + to_protocols - d.get("ipv4.frag.reassembled", 0) == 1, d
    if d.get("ipv4.frag.rx"):
        settled = total(d, FRAG_DROPS) + d.get("ipv4.frag.duplicate", 0) + d.get("ipv4.frag.reassembled", 0)
        assert settled <= 1, d
        if not settled:  # held: the reassembly timer must end it
            assert later.delta.get("ipv4.drop.frag_timeout") == 1, (d, later.delta)
    if d.get("icmp.rx"):
        # No echo endpoint or socket is open: an error handed on (icmp.rx.error) ends in no_listener.
        assert total(d, ICMP_DROPS) + d.get("icmp.tx.echo_reply", 0) == 1, d
        assert d.get("icmp.rx.error", 0) <= d.get("icmp.drop.no_listener", 0), d
    if d.get("udp.rx"):
        assert total(d, UDP_DROPS) + d.get("udp.delivered", 0) == 1, d
    # What went out answers this frame (with the ARP request it may wait on).
    assert d.get("eth.tx", 0) == len(out.sent)
    answers = sum(d.get(n, 0) for n in ("icmp.tx.echo_reply", "arp.tx.reply"))
    answers += sum(v for k, v in d.items() if k.startswith("icmp.tx.error."))
    assert answers <= 1, d
    if out.sent:
        assert answers == 1, d
        for sent in out.sent:
            if IP in Ether(sent):
                check_checksums(datagram_of(sent))


ARP_FRAME = ether(arp_request(hwsrc=OTHER_MAC, psrc="10.0.0.77"), dst=BROADCAST_MAC, src=OTHER_MAC)
SEEDS = [
    PING_FRAME,
    frame_ip(ping(options=ROUTER_ALERT)),
    frame_ip(UNKNOWN),
    frame_ip(unreachable(OUR_ECHO)),
    frame_ip(ip_to_us() / echo(type_=0)),
    frame_ip(udp_to_us()),
    frame_ip(ip_to_us(flags="MF") / Raw(load=b"f" * 16)),
    ARP_FRAME,
]
IP_AT = ETH_HEADER


def fix_checksums(buf: bytearray, ip: bool, inner: bool) -> None:
    """Recompute (with scapy's helper) whichever checksums the lies left room for."""
    if len(buf) < IP_AT + IP_HEADER:
        return
    hlen = (buf[IP_AT] & 0x0F) * 4
    if hlen < IP_HEADER or IP_AT + hlen > len(buf):
        return
    length = int.from_bytes(buf[IP_AT + 2 : IP_AT + 4], "big")
    start, end = IP_AT + hlen, IP_AT + length
    if inner and buf[IP_AT + 9] == 1 and start + 8 <= end <= len(buf):
        buf[start + 2 : start + 4] = b"\x00\x00"
        buf[start + 2 : start + 4] = scapy_checksum(bytes(buf[start:end])).to_bytes(2, "big")
    elif inner and buf[IP_AT + 9] == 17 and start + 8 <= end <= len(buf):
        buf[start + 6 : start + 8] = b"\x00\x00"  # RFC 768: zero, "no checksum computed"
    if ip:
        buf[IP_AT + 10 : IP_AT + 12] = b"\x00\x00"
        buf[IP_AT + 10 : IP_AT + 12] = scapy_checksum(bytes(buf[IP_AT : IP_AT + hlen])).to_bytes(2, "big")


MUTATIONS = ("truncate", "flip", "byte", "total_length", "ihl", "icmp_type", "frag", "extend")


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    buf = bytearray(draw(st.sampled_from(SEEDS)))
    for op in draw(st.lists(st.sampled_from(MUTATIONS), max_size=4)):
        if op == "truncate":
            del buf[draw(st.integers(0, len(buf))) :]
        elif op == "flip" and buf:
            buf[draw(st.integers(0, len(buf) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and buf:
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
        elif op == "total_length" and len(buf) >= IP_AT + 4:
            near = st.integers(max(0, len(buf) - IP_AT - 8), len(buf) - IP_AT + 8)
            buf[IP_AT + 2 : IP_AT + 4] = min(draw(st.one_of(st.integers(0, 0xFFFF), near)), 0xFFFF).to_bytes(2, "big")
        elif op == "ihl" and len(buf) > IP_AT:
            buf[IP_AT] = (buf[IP_AT] & 0xF0) | draw(st.integers(0, 15))
        elif op == "icmp_type" and len(buf) > IP_AT + IP_HEADER:
            buf[IP_AT + IP_HEADER] = draw(st.sampled_from([0, 3, 4, 5, 8, 11, 12, 13, 255]))
        elif op == "frag" and len(buf) >= IP_AT + 8:
            buf[IP_AT + 6 : IP_AT + 8] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
        elif op == "extend":
            buf += draw(st.binary(max_size=64))
    fix_checksums(buf, draw(st.booleans()), draw(st.booleans()))
    return bytes(buf)


@st.composite
def addressed_junk(draw: st.DrawFn) -> bytes:
    """A plausible Ethernet header for us, then anything."""
    dst = draw(st.sampled_from([mac_bytes(STACK_MAC), mac_bytes(BROADCAST_MAC)]))
    ethertype = draw(st.one_of(st.sampled_from([0x0800, 0x0806, 0x8100]), st.integers(0, 0xFFFF)))
    return dst + draw(st.binary(min_size=6, max_size=6)) + ethertype.to_bytes(2, "big") + draw(st.binary(max_size=80))


frames = st.one_of(st.binary(max_size=100), addressed_junk(), mutated_frames())


def receive_and_settle(frame: bytes) -> tuple[Outcome, Outcome]:
    stack = new_stack()
    out = receive(stack, frame)  # raising fails the test
    later = run_timers(stack, 2.0 + REASSEMBLY_TIMEOUT)
    return out, later


# Found by a random run: an ARP reply to us with hardware type 0, which the stack rightly drops.
HTYPE_ZERO_REPLY = bytes.fromhex("ffffffffffff000000000000 0806 0000 0800 0604 0002 000000000000 00000000 000000000000 0a000001")


@settings(max_examples=500, deadline=None)
@given(frame=frames)
@example(frame=HTYPE_ZERO_REPLY)
def test_receive_never_raises_and_accounts_for_every_frame(frame: bytes) -> None:
    out, later = receive_and_settle(frame)
    check_accounted(frame, out, later)


@pytest.mark.parametrize(
    "fields",
    [{"hwtype": 0}, {"hwtype": 6}, {"ptype": 0x86DD}, {"hwlen": 8}, {"plen": 16},  # unsupported_format
     {"hwsrc": STACK_MAC}, {"psrc": STACK_IP}, {"hwsrc": "01:00:5e:00:00:01"}],  # own_frame, address_conflict, bad_sender
    ids=["htype0", "htype6", "ptype_ipv6", "hlen8", "plen16", "own_mac", "own_ip", "multicast_sender"])
def test_a_bad_arp_reply_to_us_gets_a_verdict(fields: dict[str, Any]) -> None:
    """The oracle above and the stack agree on ARP replies to us that are not to be learned from."""
    frame = ether(arp_request(op=2, hwdst=STACK_MAC, **fields), dst=BROADCAST_MAC)
    assert not is_arp_reply_to_us(frame)
    out, later = receive_and_settle(frame)
    assert total(out.delta, ARP_DROPS) == 1, out.delta
    check_accounted(frame, out, later)
    assert out.sent == []


def test_accounting_sees_every_kind_of_verdict() -> None:
    """The fuzz check above is only as good as its bookkeeping: hold it to the tables."""
    for case in STACK_TABLE:
        check_accounted(case.frame, *receive_and_settle(case.frame))
    for _, frame, _ in CONTROLS:
        check_accounted(frame, *receive_and_settle(frame))
    reply_to_us = ether(arp_request(op=2, hwdst=STACK_MAC))
    out, later = receive_and_settle(reply_to_us)
    assert out.sent == []
    check_accounted(reply_to_us, out, later)
    # And it does catch a frame with no verdict: here, a ping whose reply was lost.
    out, later = receive_and_settle(PING_FRAME)
    silent = Outcome({k: v for k, v in out.delta.items() if k != "icmp.tx.echo_reply"}, out.sent)
    with pytest.raises(AssertionError):
        check_accounted(PING_FRAME, silent, later)
