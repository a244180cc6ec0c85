"""Classic pcap files, declared once with construct for the writer and the reader.

The writer (little-endian, microsecond stamps, linktype Ethernet) writes frame
by frame and flushes, so a capture can be read while it grows; the reader in
``capture.py`` uses the same declarations in either byte order.
"""

from typing import Any, BinaryIO

from construct import Int16ub, Int16ul, Int32sb, Int32sl, Int32ub, Int32ul, OneOf, Struct

LINKTYPE_ETHERNET = 1
SNAPLEN = 262144
PCAP_MAGIC_USEC = 0xA1B2C3D4
PCAP_MAGIC_NSEC = 0xA1B23C4D


def _pcap_formats(i16: Any, i32: Any, s32: Any) -> tuple[Any, Any]:
    """The global header and the record header, in one byte order."""
    header = Struct(
        "magic" / OneOf(i32, (PCAP_MAGIC_USEC, PCAP_MAGIC_NSEC)),
        "version_major" / i16,
        "version_minor" / i16,
        "thiszone" / s32,
        "sigfigs" / i32,
        "snaplen" / i32,
        "network" / i32,  # low 16 bits: the link type; high bits may flag an FCS
    )
    record = Struct(
        "ts_sec" / i32,
        "ts_frac" / i32,  # micro- or nanoseconds, as the magic says
        "incl_len" / i32,
        "orig_len" / i32,
    )
    return header, record


PCAP_LE = _pcap_formats(Int16ul, Int32ul, Int32sl)
PCAP_BE = _pcap_formats(Int16ub, Int32ub, Int32sb)
_HEADER, _RECORD_DECL = PCAP_LE
_RECORD = _RECORD_DECL.compile()


class PcapWriter:
    def __init__(self, stream: BinaryIO, flush: bool = True) -> None:
        self.stream = stream
        self.flush = flush
        stream.write(_HEADER.build({"magic": PCAP_MAGIC_USEC, "version_major": 2, "version_minor": 4, "thiszone": 0,
                                    "sigfigs": 0, "snaplen": SNAPLEN, "network": LINKTYPE_ETHERNET}))
        self._flush()

    def write(self, t: float, frame: bytes) -> None:
        usec_total = round(t * 1_000_000)
        sec, usec = divmod(usec_total, 1_000_000)
        data = frame[:SNAPLEN]
        self.stream.write(_RECORD.build({"ts_sec": sec, "ts_frac": usec, "incl_len": len(data), "orig_len": len(frame)}))
        self.stream.write(data)
        self._flush()

    def _flush(self) -> None:
        if self.flush:
            self.stream.flush()

    def close(self) -> None:
        self.stream.close()
