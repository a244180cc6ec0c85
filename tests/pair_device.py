"""A frame device for the live driver without root: the driver's end of a SOCK_SEQPACKET pair.

The test plays the wire on ``wire``; closing it reads as the device going
away (EBADFD), as a deleted TAP does.
"""

import errno
import socket


class PairDevice:
    def __init__(self, wire_timeout: float = 3.0) -> None:
        self.inner, self.wire = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.inner.setblocking(False)
        self.wire.settimeout(wire_timeout)

    def fileno(self) -> int:
        return self.inner.fileno()

    def read_batch(self, limit: int) -> list[bytes]:
        frames: list[bytes] = []
        try:
            for _ in range(limit):
                frame = self.inner.recv(65536)
                if not frame:
                    raise OSError(errno.EBADFD, "the wire was cut")
                frames.append(frame)
        except BlockingIOError:
            pass
        return frames

    def write(self, frame: bytes) -> OSError | None:
        self.inner.send(frame)
        return None

    def close(self) -> None:
        self.inner.close()
        self.wire.close()
