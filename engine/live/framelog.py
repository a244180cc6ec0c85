"""Where live frames are recorded: a pcap file, and one decoded line each for ``-v``.

The driver hands over monotonic time; pcap readers expect the wall clock. The
offset between the two is taken once, so the capture's timestamps keep the
exact spacing the stack saw even if the wall clock is stepped meanwhile.
"""

import time
from typing import TextIO

from ..scenario.recorder import Recorder
from ..scenario.runner import describe
from ..wire.pcap import PcapWriter


class FrameLog:
    """A ``FrameHook`` for ``LiveDriver``; each pcap record is flushed as it is written."""

    def __init__(self, pcap: PcapWriter | None = None, verbose: TextIO | None = None, start: float | None = None) -> None:
        self.pcap = pcap
        self.verbose = verbose
        mono = time.monotonic()
        self.start = mono if start is None else start
        self.wall_offset = time.time() - mono
        self.recorder: Recorder | None = None  # --record: the session becomes a scenario

    def __call__(self, direction: str, frame: bytes, now: float) -> None:
        if self.pcap is not None:
            self.pcap.write(now + self.wall_offset, frame)
        if self.verbose is not None:
            print(f"  {now - self.start:10.6f} {direction} {describe(frame)}", file=self.verbose, flush=True)
        if self.recorder is not None:
            self.recorder.record(now, direction, frame)

    @property
    def active(self) -> bool:
        return self.pcap is not None or self.verbose is not None or self.recorder is not None

    def close(self) -> None:
        if self.pcap is not None:
            self.pcap.close()
            self.pcap = None
