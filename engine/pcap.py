"""Classic pcap files (linktype Ethernet), declared with construct like every format.

Written frame by frame and flushed, so a capture can be read while it grows.
"""

from typing import BinaryIO

from construct import Const, Int16ul, Int32ul, Struct

LINKTYPE_ETHERNET = 1
SNAPLEN = 262144

GLOBAL_HEADER = Struct(
    "magic" / Const(0xA1B2C3D4, Int32ul),  # microsecond timestamps, little-endian
    "version_major" / Const(2, Int16ul),
    "version_minor" / Const(4, Int16ul),
    "thiszone" / Int32ul,
    "sigfigs" / Int32ul,
    "snaplen" / Int32ul,
    "network" / Int32ul,
)
RECORD_HEADER = Struct(
    "ts_sec" / Int32ul,
    "ts_usec" / Int32ul,
    "incl_len" / Int32ul,
    "orig_len" / Int32ul,
)
_RECORD = RECORD_HEADER.compile()


class PcapWriter:
    def __init__(self, stream: BinaryIO, flush: bool = True) -> None:
        self.stream = stream
        self.flush = flush
        stream.write(GLOBAL_HEADER.build({"thiszone": 0, "sigfigs": 0, "snaplen": SNAPLEN, "network": LINKTYPE_ETHERNET}))
        self._flush()

    def write(self, t: float, frame: bytes) -> None:
        usec_total = round(t * 1_000_000)
        sec, usec = divmod(usec_total, 1_000_000)
        data = frame[:SNAPLEN]
        self.stream.write(_RECORD.build({"ts_sec": sec, "ts_usec": usec, "incl_len": len(data), "orig_len": len(frame)}))
        self.stream.write(data)
        self._flush()

    def _flush(self) -> None:
        if self.flush:
            self.stream.flush()

    def close(self) -> None:
        self.stream.close()
