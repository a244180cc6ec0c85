"""The protocol values as construct itself reads and writes them: the reference for tests and the benchmark.

The protocol modules run a ``struct`` codec that ``layout`` derives from each
construct declaration (``HEADER``). This module goes the long way instead,
through the declaration: ``decode`` turns what ``HEADER.parse`` gives into
the value type (``Ipv4``...) and ``encode`` turns a value into what
``HEADER.build`` takes, so tests can hold ``parse``/``emit`` to construct's
own reading of the same bytes.

``construct_codec()`` patches ``parse``/``emit`` of the five protocol modules
with the same conversions around ``HEADER.compile()``, after the same
integrity checks the modules make (compiled construct skips length checks):
the baseline ``bench/replay_ping.py`` reports its ratio against, run in the
same process as the derived codec. Nothing in the package uses it.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from simstack.protocols import arp, ethernet, icmp, ipv4, udp
from simstack.protocols.checksum import internet_checksum, verify
from simstack.protocols.errors import Malformed


# -- construct's Container <-> the value types ------------------------------------------
def ethernet_value(c: Any) -> ethernet.Ethernet:
    tag = c.tag
    if tag is None:
        return ethernet.Ethernet(dst=c.dst, src=c.src, ethertype=c.ethertype, payload=c.payload)
    tci = tag.tci
    return ethernet.Ethernet(dst=c.dst, src=c.src, ethertype=tag.ethertype, payload=c.payload, vlan=tci & 0x0FFF,
                             pcp=tci >> 13, dei=bool(tci & 0x1000))


def ethernet_fields(e: ethernet.Ethernet) -> dict[str, Any]:
    if e.vlan is None:
        return {"dst": e.dst, "src": e.src, "ethertype": e.ethertype, "tag": None, "payload": e.payload}
    tci = (e.pcp & 7) << 13 | (0x1000 if e.dei else 0) | (e.vlan & 0x0FFF)
    return {"dst": e.dst, "src": e.src, "ethertype": ethernet.TYPE_VLAN, "tag": {"tci": tci, "ethertype": e.ethertype},
            "payload": e.payload}


def arp_value(c: Any) -> arp.Arp:
    return arp.Arp(op=c.op, sha=c.sha, spa=c.spa, tha=c.tha, tpa=c.tpa, htype=c.htype, ptype=c.ptype, hlen=c.hlen,
                   plen=c.plen)


def arp_fields(a: arp.Arp) -> dict[str, Any]:
    return {"htype": a.htype, "ptype": a.ptype, "hlen": a.hlen, "plen": a.plen, "op": a.op, "sha": a.sha, "spa": a.spa,
            "tha": a.tha, "tpa": a.tpa}


def ipv4_value(c: Any) -> ipv4.Ipv4:
    ff = c.flags_fragment
    return ipv4.Ipv4(src=c.src, dst=c.dst, protocol=c.protocol, payload=c.payload, ttl=c.ttl,
                     identification=c.identification, tos=c.tos, df=bool(ff & ipv4.FLAG_DF), mf=bool(ff & ipv4.FLAG_MF),
                     frag_offset=(ff & 0x1FFF) * 8, options=c.options, reserved_flag=bool(ff & ipv4.FLAG_RESERVED),
                     ihl=c.version_ihl & 0x0F, total_length=c.total_length, checksum=c.checksum)


def ipv4_fields(ip: ipv4.Ipv4) -> dict[str, Any]:
    """What HEADER.build takes for ``ip``; None leaves IHL and Total Length to the declaration's Defaults."""
    ff = ((ipv4.FLAG_RESERVED if ip.reserved_flag else 0) | (ipv4.FLAG_DF if ip.df else 0)
          | (ipv4.FLAG_MF if ip.mf else 0) | ip.frag_offset // 8)
    return {"version_ihl": None if ip.ihl is None else 0x40 | ip.ihl, "tos": ip.tos, "total_length": ip.total_length,
            "identification": ip.identification, "flags_fragment": ff, "ttl": ip.ttl, "protocol": ip.protocol,
            "checksum": ip.checksum or 0, "src": ip.src, "dst": ip.dst, "options": ip.options, "payload": ip.payload}


def icmp_value(c: Any) -> icmp.Icmp:
    rest, t = c.rest, c.type
    if t in (icmp.ECHO_REQUEST, icmp.ECHO_REPLY):
        return icmp.Icmp(type=t, code=c.code, data=c.data, identifier=rest.identifier, sequence=rest.sequence,
                         checksum=c.checksum)
    if t == icmp.DEST_UNREACHABLE:
        return icmp.Icmp(type=t, code=c.code, data=c.data, next_hop_mtu=rest.next_hop_mtu, checksum=c.checksum)
    if t == icmp.PARAMETER_PROBLEM:
        return icmp.Icmp(type=t, code=c.code, data=c.data, pointer=rest.pointer, checksum=c.checksum)
    return icmp.Icmp(type=t, code=c.code, data=c.data, checksum=c.checksum)


def icmp_fields(m: icmp.Icmp) -> dict[str, Any]:
    """What HEADER.build takes for ``m``, unused bits zero and the checksum as given (0 for None)."""
    t = m.type
    if t in (icmp.ECHO_REQUEST, icmp.ECHO_REPLY):
        rest: dict[str, int] = {"identifier": m.identifier, "sequence": m.sequence}
    elif t == icmp.DEST_UNREACHABLE:
        rest = {"unused": 0, "next_hop_mtu": m.next_hop_mtu}
    elif t == icmp.PARAMETER_PROBLEM:
        rest = {"pointer": m.pointer, "unused": 0, "unused2": 0}
    else:
        rest = {"unused": 0}
    return {"type": t, "code": m.code, "checksum": m.checksum or 0, "rest": rest, "data": m.data}


def udp_value(c: Any) -> udp.Udp:
    return udp.Udp(src_port=c.src_port, dst_port=c.dst_port, payload=c.payload, length=c.length, checksum=c.checksum)


def udp_fields(d: udp.Udp) -> dict[str, Any]:
    return {"src_port": d.src_port, "dst_port": d.dst_port, "length": d.length, "checksum": d.checksum or 0,
            "payload": d.payload}


# -- the reference readings, through the interpreted declaration ----------------------------
def decode(module: ModuleType, data: bytes) -> Any:
    """``module``'s value of ``data`` as construct's interpreted ``HEADER.parse`` reads it (no checks of meaning)."""
    if module is ipv4:
        total = (data[2] << 8) | data[3]
        return ipv4_value(ipv4.HEADER.parse(data[:total]))  # Total Length rules; what follows is padding
    if module is udp:
        length = (data[4] << 8) | data[5]
        return udp_value(udp.HEADER.parse(data[:length]))
    convert: dict[ModuleType, Callable[[Any], Any]] = {ethernet: ethernet_value, arp: arp_value, icmp: icmp_value}
    return convert[module](module.HEADER.parse(data))


# -- the compiled codec, patched in for the benchmark's baseline ------------------------------------
_ETH = ethernet.HEADER.compile()
_ARP = arp.HEADER.compile()
_IPV4 = ipv4.HEADER.compile()
_ICMP = icmp.HEADER.compile()
_UDP = udp.HEADER.compile()


def _parse_ethernet(frame: bytes) -> ethernet.Ethernet:
    n = len(frame)
    if n < ethernet.HEADER_LEN:
        raise Malformed("truncated", f"{n} bytes, header needs {ethernet.HEADER_LEN}")
    if frame[12] == 0x81 and frame[13] == 0x00 and n < ethernet.HEADER_LEN + ethernet.TAG_LEN:
        raise Malformed("truncated", "802.1Q tag cut short")
    return ethernet_value(_ETH.parse(bytes(frame)))


def _emit_ethernet(eth: ethernet.Ethernet, pad: bool = True) -> bytes:
    frame: bytes = _ETH.build(ethernet_fields(eth))
    if pad and len(frame) < ethernet.MIN_FRAME:
        frame += bytes(ethernet.MIN_FRAME - len(frame))
    return frame


def _parse_arp(data: bytes) -> arp.Arp:
    if len(data) < arp.LENGTH:
        raise Malformed("truncated", f"{len(data)} bytes, ARP needs {arp.LENGTH}")
    a = arp_value(_ARP.parse(data))
    if (a.htype, a.ptype, a.hlen, a.plen) != (arp.HTYPE_ETHERNET, arp.PTYPE_IPV4, 6, 4):
        raise Malformed("unsupported_format", f"htype {a.htype} ptype {a.ptype:#06x}")
    return a


def _emit_arp(a: arp.Arp) -> bytes:
    return bytes(_ARP.build(arp_fields(a)))


def _parse_ipv4(data: bytes, verify_checksum: bool = True) -> ipv4.Ipv4:
    data = bytes(data)
    n = len(data)
    if n < ipv4.MIN_HEADER:
        raise Malformed("truncated", f"{n} bytes, header needs {ipv4.MIN_HEADER}")
    if data[0] >> 4 != 4:
        raise Malformed("bad_version", f"version {data[0] >> 4}")
    hlen = (data[0] & 0x0F) * 4
    total = (data[2] << 8) | data[3]
    if hlen < ipv4.MIN_HEADER or hlen > n:
        raise Malformed("bad_ihl", f"IHL {hlen // 4}")
    if total < hlen or total > n:
        raise Malformed("bad_total_length", f"total length {total}")
    if verify_checksum and not verify(data[:hlen]):
        raise Malformed("bad_checksum")
    return ipv4_value(_IPV4.parse(data[:total]))


def _emit_ipv4(ip: ipv4.Ipv4) -> bytes:
    packet = bytearray(_IPV4.build({**ipv4_fields(ip), "checksum": 0}))
    hlen = (packet[0] & 0x0F) * 4
    csum = internet_checksum(packet[:hlen]) if ip.checksum is None else ip.checksum
    packet[10:12] = csum.to_bytes(2, "big")
    return bytes(packet)


def _parse_icmp(data: bytes, verify_checksum: bool = True) -> icmp.Icmp:
    data = bytes(data)
    if len(data) < icmp.HEADER_LEN:
        raise Malformed("truncated", f"{len(data)} bytes, ICMP needs {icmp.HEADER_LEN}")
    if verify_checksum and not verify(data):
        raise Malformed("bad_checksum")
    return icmp_value(_ICMP.parse(data))


def _emit_icmp(m: icmp.Icmp) -> bytes:
    out = bytearray(_ICMP.build({**icmp_fields(m), "checksum": 0}))
    csum = internet_checksum(out) if m.checksum is None else m.checksum
    out[2:4] = csum.to_bytes(2, "big")
    return bytes(out)


def _parse_udp(data: bytes, src: bytes, dst: bytes, verify_checksum: bool = True) -> udp.Udp:
    n = len(data)
    if n < udp.HEADER_LEN:
        raise Malformed("truncated", f"{n} bytes, UDP needs {udp.HEADER_LEN}")
    length = (data[4] << 8) | data[5]
    if length < udp.HEADER_LEN or length > n:
        raise Malformed("bad_length", f"length {length}")
    data = data[:length]
    if verify_checksum and not udp.checksum_ok(data, src, dst):
        raise Malformed("bad_checksum")
    return udp_value(_UDP.parse(data))


def _emit_udp(d: udp.Udp, src: bytes, dst: bytes) -> bytes:
    out = bytearray(_UDP.build({**udp_fields(d), "checksum": 0}))
    if d.checksum is None:
        pseudo = ipv4.pseudo_header_sum(src, dst, ipv4.PROTO_UDP, len(out))
        csum = internet_checksum(out, pseudo) or 0xFFFF  # RFC 768: a computed zero is sent as all ones
    else:
        csum = d.checksum
    out[6:8] = csum.to_bytes(2, "big")
    return bytes(out)


_PATCHES: dict[ModuleType, tuple[Callable[..., Any], Callable[..., Any]]] = {
    ethernet: (_parse_ethernet, _emit_ethernet),
    arp: (_parse_arp, _emit_arp),
    ipv4: (_parse_ipv4, _emit_ipv4),
    icmp: (_parse_icmp, _emit_icmp),
    udp: (_parse_udp, _emit_udp),
}


@contextmanager
def construct_codec() -> Iterator[None]:
    """Every ``parse``/``emit`` of the five protocol modules runs construct's compiled codec for the duration."""
    saved = {module: (module.parse, module.emit) for module in _PATCHES}
    try:
        for module, (parse, emit) in _PATCHES.items():
            module.parse, module.emit = parse, emit  # type: ignore[attr-defined]
        yield
    finally:
        for module, (parse, emit) in saved.items():
            module.parse, module.emit = parse, emit  # type: ignore[attr-defined]
