"""Segmentation and checksum offload (``simstack live --offload``) without a TAP: the virtio-net header codec,
the header our frames get, the receive of 64 KB segments the kernel vouched for, and the partial checksums
TCP leaves on an offload interface, completed the way the kernel completes them and held to scapy's.

The header's layout is Linux's ``struct virtio_net_hdr`` in include/uapi/linux/virtio_net.h (scapy has no
layer for it): u8 flags, u8 gso_type, then __virtio16 hdr_len, gso_size, csum_start, csum_offset, ten bytes,
little-endian as the TAP is told (TUNSETVNETLE). The live tests in tests/live/test_offload.py hold it to the
kernel itself.
"""

import contextlib
import struct

import pytest
from construct import Int8ul, Int16ul, Struct
from pair_device import PairDevice
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from simstack.engine.live.driver import LiveDriver
from simstack.engine.live.session import LiveOptions, plan
from simstack.engine.wire import vnet
from simstack.engine.wire.errors import SetupError
from simstack.protocols.checksum import ones_sum
from simstack.protocols.errors import Malformed
from simstack.protocols.interface import TSO_MAX, Interface
from simstack.protocols.stack import Stack, StackConfig
from simstack.protocols.tcp_conn import TcpConn

MAC, PEER_MAC = bytes.fromhex("aabbccddeeff"), bytes.fromhex("020000000002")
IP_, PEER = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
ME, YOU = "10.0.0.1", "10.0.0.2"
LINUX_LAYOUT = struct.Struct("<BBHHHH")  # include/uapi/linux/virtio_net.h, struct virtio_net_hdr


# -- the header codec --------------------------------------------------------------------------------------
def test_the_header_is_linux_struct_virtio_net_hdr() -> None:
    hdr = vnet.VnetHeader(vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4, 0x0042, 0x05B4, 0x0022, 0x0010)
    wire = vnet.emit(hdr)
    assert wire == bytes([0x01, 0x01, 0x42, 0x00, 0xB4, 0x05, 0x22, 0x00, 0x10, 0x00])  # worked by hand
    assert wire == LINUX_LAYOUT.pack(*hdr)
    assert vnet.HEADER_LEN == LINUX_LAYOUT.size == 10
    assert vnet.parse(wire + b"frame") == hdr
    # the declaration and construct's own reading of it agree with the codec
    reference = Struct("flags" / Int8ul, "gso_type" / Int8ul, "hdr_len" / Int16ul, "gso_size" / Int16ul,
                       "csum_start" / Int16ul, "csum_offset" / Int16ul)
    assert vnet.HEADER.build(hdr._asdict()) == reference.build(hdr._asdict()) == wire
    assert vnet.parse(wire).csum_ok and vnet.parse(bytes([vnet.F_DATA_VALID]) + bytes(9)).csum_ok
    assert not vnet.parse(vnet.ZERO).csum_ok


@pytest.mark.parametrize("n", [0, 1, 9])
def test_a_short_read_is_malformed(n: int) -> None:
    with pytest.raises(Malformed) as e:
        vnet.parse(bytes(n))
    assert e.value.reason == "truncated"


def _never(*_: object) -> int:
    raise AssertionError("no GSO lookup for a frame within the MTU")


def test_our_tcp_segment_gets_needs_csum_at_the_tcp_header() -> None:
    frame = bytes(Ether(dst=PEER_MAC, src=MAC) / IP(src=ME, dst=YOU) / TCP(sport=9, dport=40000, flags="A")
                  / (b"x" * 100))
    assert vnet.parse(vnet.header_for(frame, 1500, _never)) == (vnet.F_NEEDS_CSUM, vnet.GSO_NONE, 54, 0, 34, 16)
    tagged = bytes(Ether(dst=PEER_MAC, src=MAC) / Dot1Q(vlan=5) / IP(src=ME, dst=YOU, options=b"\x01" * 4)
                   / TCP(sport=9, dport=40000, flags="A", options=[("NOP", None)] * 4))
    assert vnet.parse(vnet.header_for(tagged, 1500, _never)) == (vnet.F_NEEDS_CSUM, vnet.GSO_NONE, 18 + 24 + 24, 0,
                                                                   18 + 24, 16)


def test_a_segment_over_the_mtu_is_gso_tcpv4_cut_at_the_connections_mss() -> None:
    frame = bytes(Ether(dst=PEER_MAC, src=MAC) / IP(src=ME, dst=YOU) / TCP(sport=9, dport=40000, flags="A")
                  / (b"x" * 14600))
    asked: list[tuple[bytes, int, bytes, int]] = []

    def mss(*key: object) -> int:
        asked.append(key)  # type: ignore[arg-type]
        return 1400

    assert vnet.parse(vnet.header_for(frame, 1500, mss)) == (vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4, 54, 1400, 34, 16)
    assert asked == [(IP_, 9, PEER, 40000)]
    # an unknown connection, or an MSS the MTU cannot carry beside these headers: what the MTU carries
    assert vnet.parse(vnet.header_for(frame, 1500, lambda *_: 0)).gso_size == 1460
    assert vnet.parse(vnet.header_for(frame, 1500, lambda *_: 9000)).gso_size == 1460


@pytest.mark.parametrize("packet", [
    ARP(op=2, psrc=ME, pdst=YOU),
    IP(src=ME, dst=YOU) / ICMP() / (b"p" * 3000),
    IP(src=ME, dst=YOU) / UDP(sport=7, dport=7) / (b"u" * 100),
    IP(src=ME, dst=YOU, flags="MF") / TCP(sport=9, dport=1) / (b"f" * 100),
    IP(src=ME, dst=YOU, frag=100) / (b"f" * 100),
], ids=["arp", "icmp", "udp", "first-fragment", "fragment"])
def test_every_other_frame_gets_a_zero_header(packet: object) -> None:
    frame = bytes(Ether(dst=PEER_MAC, src=MAC) / packet)  # type: ignore[operator]
    assert vnet.header_for(frame, 1500, _never) == vnet.ZERO == bytes(10)


# -- the core: 64 KB segments in and out ------------------------------------------------------------------
def _stack(offload: bool, mtu: int = 1500) -> Stack:
    return Stack(StackConfig.of([Interface(MAC, IP_, 24, mtu, offload=offload)]))


def _frame(tcp: TCP, payload: bytes = b"", partial: bool = False, corrupt: bool = False) -> bytes:
    """A segment from the peer; ``partial``: its checksum left as the kernel leaves it (pseudo-header alone)."""
    pkt = Ether(dst=MAC, src=PEER_MAC) / IP(src=YOU, dst=ME) / tcp / payload
    raw = bytearray(bytes(pkt))
    if partial:
        length = len(raw) - 34
        raw[50:52] = ones_sum(PEER + IP_ + bytes((0, 6, length >> 8, length & 0xFF))).to_bytes(2, "big")
    if corrupt:
        raw[-1] ^= 0xFF
    return bytes(raw)


def _connected(stack: Stack, mss: int = 1460) -> tuple[TcpConn, int, int]:
    """An accepted connection from the peer's port 40000 to our port 9: (it, our next seq, the peer's next seq)."""
    stack.receive(bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC) / ARP(op=1, hwsrc=PEER_MAC, psrc=YOU, pdst=ME)),
                  0.0)
    stack.transmit()
    listener = stack.tcp.open()
    listener.bind(IP_, 9)
    listener.listen()
    stack.receive(_frame(TCP(sport=40000, dport=9, flags="S", seq=1000, window=65535, options=[("MSS", mss)])), 0.0)
    (synack,) = stack.transmit()
    assert dict(Ether(synack)[TCP].options)["MSS"] == stack.ports[0].mtu - 40  # RFC 9293 3.7.1: 8960 at MTU 9000
    ours = Ether(synack)[TCP].seq + 1
    stack.receive(_frame(TCP(sport=40000, dport=9, flags="A", seq=1001, ack=ours, window=65535)), 0.0)
    conn = listener.accept()
    assert conn is not None
    return conn, ours, 1001


@pytest.mark.parametrize("csum", ["partial", "full"])
def test_a_64_kb_segment_the_kernel_vouched_for_is_taken(csum: str) -> None:
    stack = _stack(offload=True)
    conn, ours, seq = _connected(stack)
    data = bytes(range(256)) * 250  # 64000 bytes, 44 segments at MSS 1460: one GSO TCPV4 frame from the kernel
    frame = _frame(TCP(sport=40000, dport=9, flags="PA", seq=seq, ack=ours, window=65535), data,
                   partial=csum == "partial")
    assert len(frame) > 1500
    stack.receive(frame, 1.0, csum_ok=True)
    assert conn.recv(100000, 1.0) == data
    (ack,) = [Ether(f)[TCP] for f in stack.transmit()]
    assert ack.ack == seq + len(data)  # at once: the segment counts as many full-sized ones (RFC 5681 4.2)


def test_without_the_kernels_word_the_checksum_is_checked() -> None:
    for offload in (False, True):
        stack = _stack(offload)
        conn, ours, seq = _connected(stack)
        data = b"z" * 64000
        head = TCP(sport=40000, dport=9, flags="PA", seq=seq, ack=ours, window=65535)
        stack.receive(_frame(head, data, corrupt=True), 1.0)
        stack.receive(_frame(head, data, partial=True), 1.0)  # partial, but not said so: as wrong as any
        assert stack.counters["tcp.drop.bad_checksum"] == 2
        assert conn.recv(100000, 1.0) is None
        stack.receive(_frame(head, data), 1.0)  # a frame over the MTU, whole and correct: taken as before
        assert conn.recv(100000, 1.0) == data


def test_a_reassembled_datagram_is_checked_whatever_its_last_fragment_said() -> None:
    stack = _stack(offload=True)
    conn, ours, seq = _connected(stack)
    pkt = IP(src=YOU, dst=ME, id=7) / TCP(sport=40000, dport=9, flags="PA", seq=seq, ack=ours, window=65535) / (
        b"q" * 2000)
    raw = bytearray(bytes(pkt))
    raw[-1] ^= 0xFF  # a wrong checksum
    body = bytes(raw[20:])
    cut = 1480
    for off, part, mf in ((0, body[:cut], "MF"), (cut, body[cut:], 0)):
        frag = IP(src=YOU, dst=ME, id=7, proto=6, flags=mf, frag=off // 8) / part
        stack.receive(bytes(Ether(dst=MAC, src=PEER_MAC) / frag), 1.0, csum_ok=True)
    assert stack.counters["tcp.drop.bad_checksum"] == 1
    assert conn.recv(100000, 1.0) is None


@pytest.mark.parametrize("mtu", [1500, 9000])
def test_our_segments_are_up_to_64_kb_with_a_partial_checksum_the_kernel_completes(mtu: int) -> None:
    stack = _stack(offload=True, mtu=mtu)
    mss = mtu - 40
    conn, _, _ = _connected(stack, mss)
    conn.send(b"".join(i.to_bytes(4, "big") for i in range(50000)), 1.0)  # 200 KB
    frames = stack.transmit()
    assert frames
    sent = 0
    for frame in frames:
        hdr = vnet.parse(vnet.header_for(frame, mtu, lambda *key: stack.tcp.conns[key].snd_mss))  # type: ignore[index]
        seg = Ether(frame)[TCP]
        n = len(seg.payload)
        sent += n
        assert n % mss == 0 and n <= TSO_MAX  # whole segments for the kernel to cut
        assert hdr.flags == vnet.F_NEEDS_CSUM and (hdr.csum_start, hdr.csum_offset) == (34, 16)
        if n > mss:
            assert (hdr.gso_type, hdr.gso_size, hdr.hdr_len) == (vnet.GSO_TCPV4, mss, 54)
        # The kernel's completion (skb_checksum_help): fold the sum from csum_start on, field included,
        # and store its complement at csum_start + csum_offset.
        done = bytearray(frame)
        at = hdr.csum_start + hdr.csum_offset
        done[at:at + 2] = (~ones_sum(frame[hdr.csum_start:]) & 0xFFFF).to_bytes(2, "big")
        reference = Ether(frame)
        del reference[TCP].chksum
        assert bytes(done) == bytes(Ether(bytes(reference)))  # scapy's full checksum
    # the initial window (RFC 6928), the peer's 65535 bytes at most, in one frame
    assert len(frames) == 1 and sent == min(10 * mss, max(2 * mss, 14600), 65535 // mss * mss)


def test_small_frames_keep_full_checksums_on_an_offload_interface() -> None:
    stack = _stack(offload=True)
    stack.receive(bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC) / ARP(op=1, hwsrc=PEER_MAC, psrc=YOU, pdst=ME)),
                  0.0)
    stack.receive(bytes(Ether(dst=MAC, src=PEER_MAC) / IP(src=YOU, dst=ME) / ICMP(id=1, seq=1) / b"ping"), 0.0)
    arp, reply = stack.transmit()
    assert vnet.header_for(arp, 1500, _never) == vnet.header_for(reply, 1500, _never) == vnet.ZERO
    echo = Ether(reply)
    redo = Ether(reply)
    del redo[ICMP].chksum
    assert bytes(Ether(bytes(redo))) == bytes(echo)


def test_without_offload_segments_stay_within_the_mss_with_full_checksums() -> None:
    stack = _stack(offload=False)
    conn, _, _ = _connected(stack)
    conn.send(b"w" * 100000, 1.0)
    for frame in stack.transmit():
        seg = Ether(frame)
        assert len(seg[TCP].payload) <= 1460
        del seg[TCP].chksum
        assert bytes(Ether(bytes(seg))) == frame


# -- the driver: headers off on the way in, on on the way out ----------------------------------------------
class VnetPair(PairDevice):
    """A pair device whose messages are a virtio-net header and a frame, as a TAP with IFF_VNET_HDR reads."""

    def read_batch(self, limit: int) -> list[bytes]:
        frames: list[bytes] = []
        with contextlib.suppress(BlockingIOError):
            for _ in range(limit):
                frames.append(self.inner.recv(70000))
        return frames

    def write_vnet(self, header: bytes, frame: bytes) -> OSError | None:
        self.inner.send(header + frame)
        return None


def test_the_driver_strips_and_adds_the_header() -> None:
    stack = _stack(offload=True)
    dev = VnetPair()
    driver = LiveDriver(stack, dev, offload=True)

    def listen(s: Stack, now: float) -> TcpConn:
        ep = s.tcp.open()
        ep.bind(IP_, 9)
        ep.listen()
        return ep

    driver.call(listen)
    driver.start()
    try:
        arp = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC) / ARP(op=1, hwsrc=PEER_MAC, psrc=YOU, pdst=ME))
        dev.wire.send(vnet.ZERO + arp)
        reply = dev.wire.recv(70000)
        assert reply[:10] == vnet.ZERO and Ether(reply[10:])[ARP].op == 2
        dev.wire.send(b"\x01\x00\x00")  # cut short: counted, not passed on
        syn = _frame(TCP(sport=40000, dport=9, flags="S", seq=1000, window=65535, options=[("MSS", 1460)]),
                     partial=True)
        dev.wire.send(vnet.emit(vnet.VnetHeader(vnet.F_NEEDS_CSUM, vnet.GSO_NONE, 54, 0, 34, 16)) + syn)
        out = dev.wire.recv(70000)
        assert vnet.parse(out) == (vnet.F_NEEDS_CSUM, vnet.GSO_NONE, 14 + 20 + 24, 0, 34, 16)
        synack = Ether(out[10:])
        assert synack[TCP].flags == "SA"
        field = synack[TCP].chksum
        assert field == ones_sum(IP_ + PEER + bytes((0, 6, 0, 24)))  # left partial for the kernel
        assert driver.wait_for(lambda: stack.counters["vnet.drop.truncated"] == 1, 2.0)
    finally:
        driver.close()
        dev.close()


@pytest.mark.parametrize(("extra", "words"), [
    ({"more_ifnames": ("tap1",)}, "one IFNAME"),
    ({"forward": True}, "no --forward"),
    ({"impair": "loss=1%"}, "--impair"),
    ({"drops": ("tcp",)}, "--drop"),
    ({"record": "out.yaml"}, "--record"),
])
def test_offload_is_refused_where_frames_must_stay_within_the_mtu(extra: dict[str, object], words: str) -> None:
    with pytest.raises(SetupError) as e:
        plan(LiveOptions("tap0", offload=True, **extra))  # type: ignore[arg-type]
    assert words in str(e.value)


@pytest.mark.parametrize("mtu", [67, 65522])
def test_mtu_out_of_range_is_refused(mtu: int) -> None:
    with pytest.raises(SetupError, match=f"--mtu {mtu}: want 68"):
        plan(LiveOptions("tap0", mtu=mtu))


def test_the_simulated_wire_completes_a_partial_checksum_as_the_kernel_does() -> None:
    pkt = Ether(dst=PEER_MAC, src=MAC) / IP(src=ME, dst=YOU) / TCP(sport=9, dport=40000, flags="PA") / (b"d" * 3001)
    full = bytes(pkt)
    partial = bytearray(full)
    length = len(full) - 34
    partial[50:52] = ones_sum(IP_ + PEER + bytes((0, 6, length >> 8, length & 0xFF))).to_bytes(2, "big")
    assert bytes(partial) != full
    assert vnet.complete(bytes(partial)) == full
    udp = bytes(Ether(dst=PEER_MAC, src=MAC) / IP(src=ME, dst=YOU) / UDP(sport=7, dport=7, chksum=0x1234) / b"u")
    assert vnet.complete(udp) == udp  # not ours to complete: sent whole
