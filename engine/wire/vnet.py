"""The virtio-net header a TAP opened with IFF_VNET_HDR puts before every frame, both ways.

Linux's ``struct virtio_net_hdr`` (include/uapi/linux/virtio_net.h), the
legacy ten-byte form::

    __u8        flags;        /* VIRTIO_NET_HDR_F_NEEDS_CSUM 1, _DATA_VALID 2 */
    __u8        gso_type;     /* VIRTIO_NET_HDR_GSO_NONE 0, _TCPV4 1, ... | _ECN 0x80 */
    __virtio16  hdr_len;      /* Ethernet + IP + TCP/UDP headers */
    __virtio16  gso_size;     /* bytes of payload per segment the frame is cut into */
    __virtio16  csum_start;   /* where the checksum's coverage starts */
    __virtio16  csum_offset;  /* where, after csum_start, the checksum goes */

It is what lets the kernel hand over and take TCP segments of up to 64 KB
however small the MTU, the way it does with a guest's virtio-net (QEMU opens
its TAP the same way): a GSO frame says how the receiver would cut it, and a
NEEDS_CSUM frame carries a checksum that covers only the pseudo-header, left
for the other side to complete over ``frame[csum_start:]`` and store at
``csum_start + csum_offset``. DATA_VALID says the kernel checked it already.

``__virtio16`` is little-endian here because the TAP is told so
(TUNSETVNETLE, ``tap.py``), whatever the host's byte order. The twelve-byte
``virtio_net_hdr_mrg_rxbuf`` adds ``num_buffers``, which only means something
when one packet spans several receive buffers (VIRTIO_NET_F_MRG_RXBUF); a TAP
read returns one whole packet into one buffer, so simstack asks for ten
(TUNSETVNETHDRSZ).

The declaration is the single source of truth; ``parse`` and ``emit`` run the
one ``struct`` ``layout.derive`` reads off it, after checking the length.
"""

from collections.abc import Callable
from typing import NamedTuple

from construct import Int8ul, Int16ul, Struct

from simstack.protocols import layout
from simstack.protocols.checksum import internet_checksum
from simstack.protocols.errors import Malformed

F_NEEDS_CSUM = 1
F_DATA_VALID = 2
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3
GSO_TCPV6 = 4
GSO_UDP_L4 = 5
GSO_ECN = 0x80

HEADER = Struct(
    "flags" / Int8ul,
    "gso_type" / Int8ul,
    "hdr_len" / Int16ul,
    "gso_size" / Int16ul,
    "csum_start" / Int16ul,
    "csum_offset" / Int16ul,
)
_LAYOUT = layout.derive(HEADER)
HEADER_LEN = _LAYOUT.size  # 10
_unpack = _LAYOUT.unpack_from
_pack = _LAYOUT.pack
ZERO = bytes(HEADER_LEN)  # no checksum to complete, not GSO: every frame but our own TCP segments


class VnetHeader(NamedTuple):
    flags: int = 0
    gso_type: int = GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0

    @property
    def csum_ok(self) -> bool:
        """The transport checksum needs no checking: the kernel verified it, or left it partial (its own segment)."""
        return bool(self.flags & (F_NEEDS_CSUM | F_DATA_VALID))


def parse(buf: bytes | bytearray | memoryview) -> VnetHeader:
    """The header at the start of ``buf`` (a whole read from the TAP); ``Malformed`` if it is cut short."""
    if len(buf) < HEADER_LEN:
        raise Malformed("truncated", f"{len(buf)} bytes, the virtio-net header needs {HEADER_LEN}")
    return VnetHeader(*_unpack(buf))


def emit(hdr: VnetHeader) -> bytes:
    return bytes(_pack(*hdr))


_TCP = 6
_NOT_FIRST_FRAGMENT = 0x3FFF  # MF and the fragment offset (RFC 791): any of them set, not one whole datagram
_ETH = 14
_VLAN_ETH = 18

GsoSize = Callable[[bytes, int, bytes, int], int]
"""The MSS in use on the connection (local address, port, remote address, port) a segment belongs to; 0 unknown."""


def header_for(frame: bytes, mtu: int, gso_size: GsoSize) -> bytes:
    """The header one of our frames goes out with, on a TAP with offload.

    A TCP/IPv4 segment carries a partial checksum (the core leaves every one
    partial on an offload interface), so it gets NEEDS_CSUM with the TCP
    header's place (the checksum is 16 bytes into it, RFC 9293 3.1); one
    longer than the MTU gets GSO TCPV4 too, cut into ``gso_size`` bytes of
    payload: the connection's MSS, and never more than the MTU carries
    beside these headers. Anything else (ARP, ICMP, UDP, a fragment) was
    checksummed in full and goes as it is, with a zero header.
    """
    n = len(frame)
    l3 = _ETH
    if n >= _VLAN_ETH and frame[12] == 0x81 and frame[13] == 0x00:
        l3 = _VLAN_ETH
    if n < l3 + 20 or frame[l3 - 2] != 0x08 or frame[l3 - 1] != 0x00 or frame[l3 + 9] != _TCP \
            or (frame[l3 + 6] << 8 | frame[l3 + 7]) & _NOT_FIRST_FRAGMENT:
        return ZERO
    ihl = (frame[l3] & 0x0F) * 4
    l4 = l3 + ihl
    if n < l4 + 20:
        return ZERO
    hdr_len = l4 + (frame[l4 + 12] >> 4) * 4
    total = frame[l3 + 2] << 8 | frame[l3 + 3]
    if total <= mtu:
        return _pack(F_NEEDS_CSUM, GSO_NONE, hdr_len, 0, l4, 16)
    most = mtu - (hdr_len - l3)
    mss = gso_size(frame[l3 + 12:l3 + 16], frame[l4] << 8 | frame[l4 + 1], frame[l3 + 16:l3 + 20],
                   frame[l4 + 2] << 8 | frame[l4 + 3])
    return _pack(F_NEEDS_CSUM, GSO_TCPV4, hdr_len, mss if 0 < mss < most else most, l4, 16)


def _unknown(*_: object) -> int:
    return 0


def complete(frame: bytes) -> bytes:
    """``frame`` with the TCP checksum the core left partial filled in, as the kernel fills it in.

    What a device with checksum offload does (Linux's skb_checksum_help): sum
    from ``csum_start`` to the end, the partial sum in the field included, and
    store the complement ``csum_offset`` further on. The simulated wire does
    it for an offload interface, so a scenario sees what a wire would carry.
    """
    hdr = _unpack(header_for(frame, 0xFFFF, _unknown))
    if not hdr[0] & F_NEEDS_CSUM:
        return frame
    start, at = hdr[4], hdr[4] + hdr[5]
    return frame[:at] + internet_checksum(frame[start:]).to_bytes(2, "big") + frame[at + 2:]
