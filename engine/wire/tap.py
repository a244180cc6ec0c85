"""A TAP device opened through /dev/net/tun: Ethernet frames in and out of the kernel.

Only the file descriptor lives here; links and addresses are netlink's job
(``netlink.py``). Opened with IFF_NO_PI, every read returns exactly one frame
and every write sends exactly one, with no 4-byte packet-information prefix.

With ``offload`` the TAP is opened as QEMU opens one for a virtio-net guest:
IFF_VNET_HDR puts a ``struct virtio_net_hdr`` (``vnet.py``) before every frame
both ways, and TUNSETOFFLOAD (TUN_F_CSUM | TUN_F_TSO4) lets the kernel send
TCP segments of up to 64 KB with their checksums left partial, as it does to
a NIC that segments and checksums in hardware. Reads then return the header
and the frame together; ``write_vnet`` writes a header and a frame as one.
"""

import contextlib
import errno
import fcntl
import os
import struct

from .errors import SetupError

TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA  # _IOW('T', 202, int)
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0  # _IOW('T', 208, unsigned int)
TUNSETVNETHDRSZ = 0x400454D8  # _IOW('T', 216, int)
TUNSETVNETLE = 0x400454DC  # _IOW('T', 220, int)
TUN_F_CSUM = 0x01  # we take frames whose checksum is left partial
TUN_F_TSO4 = 0x02  # ... and TCP/IPv4 segments longer than the MTU
IFNAMSIZ = 16
MAX_FRAME = 65536  # a read never returns more; any MTU a TAP can have fits
MAX_VNET_READ = 10 + 18 + 65535 + 1  # with offload: the header, a tagged Ethernet header, the largest IPv4 datagram
_INT = struct.Struct("i")

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

    def __init__(self, name: str, fd: int, offload: bool = False) -> None:
        self.name = name
        self._fd = fd
        self.offload = offload
        self._read_size = MAX_VNET_READ if offload else MAX_FRAME

    @classmethod
    def attach(cls, name: str, path: str = TUN_PATH, offload: bool = False) -> "Tap":
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
        flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
        try:
            fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(name.encode(), flags))
        except OSError as e:
            os.close(fd)
            raise SetupError(_tunsetiff_message(name, path, e)) from None
        if offload:
            try:
                _offload(fd)
            except OSError as e:
                os.close(fd)
                raise SetupError(f"{name}: the kernel refused the virtio-net header or offload settings: "
                                 f"{e.strerror}") from None
        else:
            # The offloads belong to the device: a persistent TAP an --offload session left would go on
            # handing over 64 KB segments with partial checksums, with no header left to say so.
            with contextlib.suppress(OSError):
                fcntl.ioctl(fd, TUNSETOFFLOAD, 0)
        return cls(name, fd, offload)

    def fileno(self) -> int:
        return self._fd

    def read_batch(self, limit: int) -> list[bytes]:
        """Up to ``limit`` frames already queued; empty when there were none."""
        frames: list[bytes] = []
        fd = self._fd
        read = os.read
        size = self._read_size
        try:
            for _ in range(limit):
                frames.append(read(fd, size))
        except BlockingIOError:
            pass
        return frames

    def write(self, frame: bytes) -> OSError | None:
        try:
            os.write(self._fd, frame)
        except OSError as e:
            return _write_error(e)
        return None

    def write_vnet(self, header: bytes, frame: bytes) -> OSError | None:
        """One frame after its virtio-net header, in one write (``offload``); errors as ``write``."""
        try:
            os.writev(self._fd, (header, frame))
        except OSError as e:
            return _write_error(e)
        return None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def closed(self) -> bool:
        return self._fd < 0


def _write_error(e: OSError) -> OSError:
    """A failed write, returned: EAGAIN is the kernel's backlog full, a dropped frame as on a NIC. A closed
    descriptor is raised instead: the device is gone, and the loop must end rather than count drops."""
    if e.errno in (errno.EBADF, errno.EBADFD):
        raise e
    return e


def _offload(fd: int) -> None:
    """The header's size and byte order, then what the kernel may hand over (TUN_F_* of linux/if_tun.h).

    The size and the byte order belong to the device, not to this descriptor: a persistent TAP keeps what
    its last user set, so both are set, never assumed. Ten bytes: ``vnet.py`` says why not twelve.
    Little-endian: the virtio 1.0 order, and legacy virtio's on x86 anyway (TUNSETVNETLE).
    """
    fcntl.ioctl(fd, TUNSETVNETHDRSZ, _INT.pack(10))
    fcntl.ioctl(fd, TUNSETVNETLE, _INT.pack(1))
    fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4)


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
