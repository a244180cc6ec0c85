"""Reading captures: classic pcap and pcapng, either byte order, declared with construct.

``simstack import`` turns a capture into a scenario, so it must read what
tcpdump (pcap, microsecond magic), ``tcpdump --time-stamp-precision nano``
(pcap, nanosecond magic) and tshark/dumpcap (pcapng) write, on any machine's
byte order. Every header is a construct declaration, one per byte order
(classic pcap's live in ``engine/pcap.py``, shared with the writer); the only
code here walks records and turns timestamps into integer nanoseconds, so no precision is lost to
floats before the importer computes time differences.

Anything that is not a capture, ends in the middle of a record, or carries
frames other than Ethernet raises ``CaptureError`` with one line saying so:
the importer prints it and exits 2.
"""

import io
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from construct import (
    Bytes,
    Check,
    Const,
    ConstructError,
    GreedyBytes,
    GreedyRange,
    Int16ub,
    Int16ul,
    Int32ub,
    Int32ul,
    Int64sb,
    Int64sl,
    OneOf,
    Padding,
    Struct,
    this,
)

from .pcap import LINKTYPE_ETHERNET, PCAP_BE, PCAP_LE, PCAP_MAGIC_NSEC, PCAP_MAGIC_USEC

LINKTYPE_NAMES = {
    0: "NULL (BSD loopback)",
    1: "ETHERNET",
    101: "RAW (bare IP)",
    105: "IEEE802_11",
    113: "LINUX_SLL (tcpdump -i any)",
    127: "IEEE802_11_RADIOTAP",
    228: "IPV4",
    229: "IPV6",
    276: "LINUX_SLL2 (tcpdump -i any)",
}

PCAPNG_SHB = 0x0A0D0D0A  # reads the same in both byte orders, on purpose
PCAPNG_BOM = 0x1A2B3C4D
PCAPNG_IDB = 1
PCAPNG_SPB = 3
PCAPNG_EPB = 6
OPT_ENDOFOPT = 0
OPT_IF_TSRESOL = 9
OPT_IF_TSOFFSET = 14
MAX_RECORD = 64 * 1024 * 1024  # no frame is this big; a larger length means a corrupt file
MAX_CAPTURE_BYTES = 64 * 1024 * 1024  # the largest capture ``simstack import`` reads (docs/recording.md)


class CaptureError(Exception):
    """The file cannot be imported; the message is one line for the user."""


@dataclass(frozen=True)
class CapturedFrame:
    ns: int  # timestamp, nanoseconds since the epoch (or whatever origin the capture used)
    data: bytes
    orig_len: int  # length on the wire; more than len(data) when the snaplen cut the frame

    @property
    def t(self) -> float:
        return self.ns / 1e9

    @property
    def cut(self) -> bool:
        return self.orig_len > len(self.data)


@dataclass
class Capture:
    format: str  # "pcap" or "pcapng"
    linktype: int
    frames: list[CapturedFrame] = field(default_factory=list)


# -- classic pcap ------------------------------------------------------------------
_PCAP_RECORDS = (PCAP_LE[1].compile(), PCAP_BE[1].compile())  # one a frame: compiled, three times as fast


def _read_pcap(stream: io.BytesIO, size: int) -> Capture:
    cap = Capture("pcap", LINKTYPE_ETHERNET)
    cap.frames.extend(_pcap_frames(stream, size, cap))
    return cap


def _pcap_frames(stream: io.BytesIO, size: int, cap: Capture) -> Iterator[CapturedFrame]:
    """The frames of a classic pcap, one at a time; ``cap`` learns the link type from the file header."""
    header = record = None
    for (header_fmt, _), record_fmt in zip((PCAP_LE, PCAP_BE), _PCAP_RECORDS, strict=True):
        stream.seek(0)
        try:
            header = header_fmt.parse_stream(stream)
        except ConstructError:
            continue
        record = record_fmt
        break
    if header is None or record is None:
        raise CaptureError("truncated capture: the pcap file header is cut short")
    linktype = header.network & 0xFFFF
    _check_linktype(linktype, "the capture")
    scale = 1 if header.magic == PCAP_MAGIC_NSEC else 1000
    cap.linktype = linktype
    count = 0
    while stream.tell() < size:
        at = stream.tell()
        try:
            rec = record.parse_stream(stream)
        except ConstructError:
            raise CaptureError(f"truncated capture: record header cut short at byte {at}") from None
        if rec.incl_len > MAX_RECORD:
            raise CaptureError(f"corrupt capture: record at byte {at} claims {rec.incl_len} bytes")
        data = stream.read(rec.incl_len)
        count += 1
        if len(data) < rec.incl_len:
            raise CaptureError(f"truncated capture: frame {count} has {len(data)} of its "
                               f"{rec.incl_len} bytes")
        ns = _stamp(rec.ts_sec * 1_000_000_000 + rec.ts_frac * scale, count)
        yield CapturedFrame(ns, data, rec.orig_len)


# -- pcapng --------------------------------------------------------------------------
# The section header's first three words, read little-endian: the byte-order
# magic tells which declaration set reads the rest of the section.
SHB_PEEK = Struct(
    "type" / Const(PCAPNG_SHB, Int32ul),
    "total_length" / Int32ul,
    "bom" / OneOf(Int32ul, (PCAPNG_BOM, 0x4D3C2B1A)),
)


@dataclass(frozen=True)
class _PcapngFormats:
    block: Any
    shb: Any
    idb: Any
    epb: Any
    spb: Any
    options: Any


def _pcapng_formats(i16: Any, i32: Any, s64: Any) -> _PcapngFormats:
    option = Struct(
        "code" / i16,
        "length" / i16,
        "value" / Bytes(this.length),
        Padding(lambda ctx: -ctx.length % 4),
    )
    return _PcapngFormats(
        block=Struct(
            "type" / i32,
            "total_length" / i32,
            Check((this.total_length >= 12) & (this.total_length % 4 == 0) & (this.total_length <= MAX_RECORD)),
            "body" / Bytes(this.total_length - 12),
            "trailer" / i32,
            Check(this.trailer == this.total_length),
        ),
        shb=Struct(
            "bom" / Const(PCAPNG_BOM, i32),
            "major" / i16,
            "minor" / i16,
            "section_length" / s64,
            "options" / GreedyBytes,
        ),
        idb=Struct(
            "linktype" / i16,
            "reserved" / i16,
            "snaplen" / i32,
            "options" / GreedyBytes,
        ),
        epb=Struct(
            "interface_id" / i32,
            "ts_high" / i32,
            "ts_low" / i32,
            "captured_len" / i32,
            "original_len" / i32,
            "data" / Bytes(this.captured_len),
            Padding(lambda ctx: -ctx.captured_len % 4),
            "options" / GreedyBytes,
        ),
        spb=Struct(
            "original_len" / i32,
            "data" / GreedyBytes,  # captured length = min(original, snaplen); the rest is padding
        ),
        options=GreedyRange(option),
    )


PCAPNG_LE = _pcapng_formats(Int16ul, Int32ul, Int64sl)
PCAPNG_BE = _pcapng_formats(Int16ub, Int32ub, Int64sb)


@dataclass
class _Interface:
    linktype: int
    snaplen: int
    to_ns: Callable[[int], int]


def _options(fmt: _PcapngFormats, data: bytes, what: str) -> list[Any]:
    """A block's options up to opt_endofopt; one that runs past the block is a corrupt file, not the end of the list."""
    options = list(fmt.options.parse(data))
    used = sum(4 + opt.length + (-opt.length % 4) for opt in options)
    ended = bool(options) and options[-1].code == OPT_ENDOFOPT
    if not ended and len(data) - used >= 4:
        raise CaptureError(f"corrupt capture: an option of {what} runs past the end of its block")
    return options


def _ts_converter(options: list[Any], byteorder: Literal["little", "big"], what: str) -> Callable[[int], int]:
    """if_tsresol (default: microseconds) and if_tsoffset, as a function of the raw 64-bit stamp."""
    resol = 6
    offset = 0
    for opt in options:
        if opt.code == OPT_ENDOFOPT:
            break
        if opt.code == OPT_IF_TSRESOL:
            if opt.length != 1:
                raise CaptureError(f"corrupt capture: if_tsresol of {what} is {opt.length} bytes long, not 1")
            resol = opt.value[0]
        elif opt.code == OPT_IF_TSOFFSET:
            if opt.length != 8:
                raise CaptureError(f"corrupt capture: if_tsoffset of {what} is {opt.length} bytes long, not 8")
            offset = int.from_bytes(opt.value, byteorder, signed=True)  # seconds, in the section's byte order
    base = offset * 1_000_000_000
    if resol & 0x80:  # a negative power of two
        shift = resol & 0x7F
        return lambda ts: base + (ts * 1_000_000_000 >> shift)
    if resol <= 9:
        factor = 10 ** (9 - resol)
        return lambda ts: base + ts * factor
    divisor = 10 ** (resol - 9)
    return lambda ts: base + ts // divisor


def _read_pcapng(stream: io.BytesIO, size: int) -> Capture:
    cap = Capture("pcapng", LINKTYPE_ETHERNET)
    cap.frames.extend(_pcapng_frames(stream, size))
    return cap


@dataclass
class _Read:
    """What the frames read so far tell the next one: how many, and the last one's time (a simple packet's)."""

    count: int = 0
    ns: int = 0


def _pcapng_frames(stream: io.BytesIO, size: int) -> Iterator[CapturedFrame]:
    """The frames of a pcapng file, one at a time."""
    read = _Read()
    fmt = PCAPNG_LE
    interfaces: list[_Interface] = []
    while stream.tell() < size:
        at = stream.tell()
        try:
            peek = SHB_PEEK.parse_stream(stream)
        except ConstructError:
            peek = None
        stream.seek(at)
        if peek is not None:
            fmt = PCAPNG_LE if peek.bom == PCAPNG_BOM else PCAPNG_BE
            interfaces = []  # interface ids are per section
        elif at == 0:
            raise CaptureError("truncated capture: the pcapng section header is cut short")
        try:
            block = fmt.block.parse_stream(stream)
        except ConstructError:
            if stream.seek(0, io.SEEK_END) - at < 12:
                raise CaptureError(f"truncated capture: block header cut short at byte {at}") from None
            stream.seek(at)
            raise CaptureError(f"truncated capture: block at byte {at} is cut short or corrupt") from None
        try:
            frame = _pcapng_block(read, fmt, block, interfaces)
        except ConstructError as e:
            # construct's message is "Error in path ... -> field" and, on the next line, what went wrong
            why = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise CaptureError(f"corrupt capture: block of type {block.type:#x} at byte {at}: {why}") from None
        if frame is not None:
            read.count += 1
            read.ns = frame.ns
            yield frame


def _pcapng_block(read: _Read, fmt: _PcapngFormats, block: Any, interfaces: list[_Interface]) -> CapturedFrame | None:
    if block.type == PCAPNG_SHB:
        fmt.shb.parse(block.body)
    elif block.type == PCAPNG_IDB:
        idb = fmt.idb.parse(block.body)
        what = f"interface {len(interfaces)}"
        _check_linktype(idb.linktype, what)
        options = _options(fmt, idb.options, what)
        to_ns = _ts_converter(options, "big" if fmt is PCAPNG_BE else "little", what)
        interfaces.append(_Interface(idb.linktype, idb.snaplen, to_ns))
    elif block.type == PCAPNG_EPB:
        epb = fmt.epb.parse(block.body)
        if epb.interface_id >= len(interfaces):
            raise CaptureError(f"corrupt capture: a packet names interface {epb.interface_id}, "
                               f"but only {len(interfaces)} are described")
        iface = interfaces[epb.interface_id]
        ts = epb.ts_high << 32 | epb.ts_low
        return CapturedFrame(_stamp(iface.to_ns(ts), read.count + 1), bytes(epb.data), epb.original_len)
    elif block.type == PCAPNG_SPB:
        spb = fmt.spb.parse(block.body)
        if not interfaces:
            raise CaptureError("corrupt capture: a simple packet block comes before any interface description")
        iface = interfaces[0]
        caplen = spb.original_len if not iface.snaplen else min(spb.original_len, iface.snaplen)
        if caplen > len(spb.data):
            raise CaptureError("corrupt capture: a simple packet block is shorter than its packet")
        # No timestamp in a simple packet block: it shares the previous frame's time.
        return CapturedFrame(read.ns, bytes(spb.data[:caplen]), spb.original_len)
    # name resolution, statistics, journal, custom and unknown blocks carry no frames
    return None


MAX_STAMP_NS = 1 << 63  # 2262-04-11: what a signed 64-bit count of nanoseconds holds, as most tools keep time


def _stamp(ns: int, number: int) -> int:
    """A frame's time, refused when no clock could have written it (if_tsresol or if_tsoffset gone wrong)."""
    if not 0 <= ns < MAX_STAMP_NS:
        raise CaptureError(f"corrupt capture: frame {number} is stamped {ns / 1e9:.6g} s from 1970; simstack reads "
                           f"stamps from 1970 to 2262 (check the interface's if_tsresol and if_tsoffset)")
    return ns


# -- entry points ------------------------------------------------------------------------
def _check_linktype(linktype: int, what: str) -> None:
    if linktype != LINKTYPE_ETHERNET:
        name = LINKTYPE_NAMES.get(linktype, "unknown")
        raise CaptureError(f"{what} has link type {linktype} ({name}); simstack reads Ethernet (link type 1) only")


def parse_capture(data: bytes) -> Capture:
    """Read a whole pcap or pcapng file from memory."""
    stream = io.BytesIO(data)
    if capture_format(data) == "pcap":
        return _read_pcap(stream, len(data))
    return _read_pcapng(stream, len(data))


def capture_format(data: bytes) -> str:
    """"pcap" or "pcapng", by the magic number; CaptureError when it is neither."""
    if not data:
        raise CaptureError("not a capture: the file is empty")
    magic = data[:4]
    pcap_magics = {PCAP_MAGIC_USEC, PCAP_MAGIC_NSEC}
    if len(magic) == 4:
        little = Int32ul.parse(magic)
        big = Int32ub.parse(magic)
        if little in pcap_magics or big in pcap_magics:
            return "pcap"
        if little == PCAPNG_SHB:
            return "pcapng"
    raise CaptureError("not a capture: no pcap or pcapng magic number at the start of the file")


@dataclass
class CaptureFile:
    """A capture read into memory but not parsed: its frames, one at a time, as often as they are asked for.

    ``simstack import`` reads a capture several times over instead of holding
    every frame as an object (a hundred bytes each, besides the frame's own):
    the bytes of the file are all that lives on between the passes.
    """

    format: str  # "pcap" or "pcapng"
    data: bytes

    @classmethod
    def parse(cls, data: bytes) -> "CaptureFile":
        return cls(capture_format(data), data)

    def __iter__(self) -> Iterator[CapturedFrame]:
        """Every frame; CaptureError where the file is cut short or corrupt (after the frames before it)."""
        stream = io.BytesIO(self.data)
        if self.format == "pcap":
            return _pcap_frames(stream, len(self.data), Capture("pcap", LINKTYPE_ETHERNET))
        return _pcapng_frames(stream, len(self.data))


def _read(path: str | Path) -> bytes:
    """The file's bytes, if it is a regular file within the size cap; else a one-line ``CaptureError``."""
    try:
        return read_regular_file(path, MAX_CAPTURE_BYTES)
    except OSError as e:
        raise CaptureError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise CaptureError(f"cannot read {path}: {e}") from None


def open_capture(path: str | Path) -> CaptureFile:
    """A capture file to read frame by frame (``CaptureFile``); ``CaptureError`` has a one-line message."""
    return CaptureFile.parse(_read(path))


def read_capture(path: str | Path) -> Capture:
    """Read a capture file; ``CaptureError`` (also for unreadable files) has a one-line message."""
    return parse_capture(_read(path))


_FILE_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
               stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}


def read_regular_file(path: str | Path, limit: int) -> bytes:
    """All of ``path``, which must be a regular file of at most ``limit`` bytes.

    Input files are read whole, so a device (``/dev/zero``), a pipe, or a file
    that grows while it is read would be read until memory ran out. Raises
    OSError from the system, or ValueError with one line saying what is wrong
    with the file.
    """
    # O_NONBLOCK: opening a FIFO that has no writer returns at once instead of waiting for one.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"not a regular file (it is {_FILE_KINDS.get(stat.S_IFMT(st.st_mode), 'something else')})")
        if st.st_size > limit:
            raise ValueError(f"{st.st_size} bytes is more than the {limit} ({limit >> 20} MiB) simstack reads")
        chunks: list[bytes] = []
        got = 0
        while got <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:
            raise ValueError(f"the file grew past {limit} bytes ({limit >> 20} MiB) while it was read")
        return b"".join(chunks)
    finally:
        os.close(fd)
