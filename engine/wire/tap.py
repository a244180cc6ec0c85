"""A TAP device opened through /dev/net/tun: Ethernet frames in and out of the kernel.

Only the file descriptor lives here; links and addresses are netlink's job
(``netlink.py``). Opened with IFF_NO_PI, every read returns exactly one frame
and every write sends exactly one, with no 4-byte packet-information prefix.
"""

import errno
import fcntl
import os
import struct

from .errors import SetupError

TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA  # _IOW('T', 202, int)
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFNAMSIZ = 16
MAX_FRAME = 65536  # a read never returns more; any MTU a TAP can have fits

_IFREQ = struct.Struct(f"{IFNAMSIZ}sH22x")  # struct ifreq: name, flags, union padding


def check_name(name: str) -> None:
    """Reject names the kernel would refuse (dev_valid_name), or would turn into another name, with the reason."""
    if not name or len(name.encode()) >= IFNAMSIZ:
        raise SetupError(f"bad interface name {name!r}: want 1 to {IFNAMSIZ - 1} bytes")
    if name in (".", "..") or any(c in "/:" or c in " \t\n\v\f\r" for c in name):
        raise SetupError(f"bad interface name {name!r}: no '/', ':' or whitespace, and not '.' or '..'")
    if "%" in name:
        # dev_alloc_name: "tap%d" asks the kernel for the first free tap0, tap1, ...; simstack must know the name
        # it gets, to find the link and to remove it later.
        raise SetupError(f"bad interface name {name!r}: '%' asks the kernel to choose the number (tap%d becomes "
                         f"tap0, tap1, ...); give the exact name, like tap0")


class Tap:
    """One attached TAP queue, non-blocking, closed on exec.

    ``read_batch`` drains what is queued without blocking so the driver reads
    a burst in one wake-up; a write error is returned, not raised, because one
    frame the kernel refuses (link down, for instance) must not stop the stack.
    """

    def __init__(self, name: str, fd: int) -> None:
        self.name = name
        self._fd = fd

    @classmethod
    def attach(cls, name: str, path: str = TUN_PATH) -> "Tap":
        """Attach to ``name``, creating a non-persistent TAP when none exists.

        The kernel removes a non-persistent TAP when its last descriptor
        closes, which is why the descriptor is opened close-on-exec: a child
        process must not keep the device alive after simstack exits.
        """
        check_name(name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SetupError(f"{path} does not exist: load the tun module (modprobe tun) "
                             f"or create the node (mknod {path} c 10 200)") from None
        except PermissionError:
            raise SetupError(f"{name}: permission denied opening {path}: run as root "
                             f"(or give this user access to {path} and CAP_NET_ADMIN)") from None
        except OSError as e:
            raise SetupError(f"cannot open {path}: {e.strerror}") from None
        try:
            fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(name.encode(), IFF_TAP | IFF_NO_PI))
        except OSError as e:
            os.close(fd)
            raise SetupError(_tunsetiff_message(name, path, e)) from None
        return cls(name, fd)

    def fileno(self) -> int:
        return self._fd

    def read_batch(self, limit: int) -> list[bytes]:
        """Up to ``limit`` frames already queued; empty when there were none."""
        frames: list[bytes] = []
        fd = self._fd
        read = os.read
        try:
            for _ in range(limit):
                frames.append(read(fd, MAX_FRAME))
        except BlockingIOError:
            pass
        return frames

    def write(self, frame: bytes) -> OSError | None:
        try:
            os.write(self._fd, frame)
        except BlockingIOError as e:  # the kernel's backlog is full: a dropped frame, as on a NIC
            return e
        except OSError as e:
            if e.errno in (errno.EBADF, errno.EBADFD):
                raise
            return e
        return None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def closed(self) -> bool:
        return self._fd < 0


def _tunsetiff_message(name: str, path: str, e: OSError) -> str:
    if e.errno == errno.EPERM:
        return f"{name}: operation not permitted: creating or attaching a TAP needs root or CAP_NET_ADMIN"
    if e.errno == errno.EBUSY:
        return f"{name}: the TAP is already attached to another process (device busy)"
    if e.errno in (errno.ENOTTY, errno.EBADFD):
        return f"{path} is not the TUN/TAP control device"
    if e.errno == errno.EINVAL:
        return f"{name}: the kernel refused to attach it as a single-queue TAP without packet info (EINVAL)"
    return f"{name}: cannot attach the TAP: {e.strerror}"
