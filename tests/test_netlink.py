"""The rtnetlink client of live mode (engine/live/netlink.py), without a kernel.

Requests are checked against bytes laid out by hand from the kernel headers
and decoded by pyroute2 (an independent implementation, kept for --lab);
replies built by pyroute2 are decoded by ours. A stand-in socket plays the
kernel, so truncated and garbage replies can be fed in: each must end in a
SetupError, never a traceback or a hang.
"""

import errno
import struct
import subprocess
import sys
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from simstack.engine.live import netlink
from simstack.engine.live.netlink import Link, Netlink, NetlinkError
from simstack.engine.wire.errors import SetupError

little_endian = pytest.mark.skipif(sys.byteorder != "little", reason="netlink is host byte order; bytes below are LE")
TAP = Link("tap0", 7, "tun", 2, False, False, 1500)


class FakeKernel:
    """A socket that answers each request with what ``reply(seq)`` returns, one datagram per recv."""

    def __init__(self, reply: Callable[[int], list[bytes]]) -> None:
        self.reply = reply
        self.sent: list[bytes] = []
        self.queue: list[bytes] = []
        self.closed = False

    def send(self, data: bytes, /) -> int:
        self.sent.append(data)
        seq = struct.unpack_from("=I", data, 8)[0]
        self.queue += self.reply(seq)
        return len(data)

    def recv(self, size: int, /) -> bytes:
        if not self.queue:
            raise TimeoutError("timed out")  # what the real socket's REPLY_TIMEOUT gives
        return self.queue.pop(0)[:size]

    def close(self) -> None:
        self.closed = True


def ack(seq: int, error: int = 0) -> bytes:
    """An NLMSG_ERROR: struct nlmsgerr (error, then the request's header, here zeroed)."""
    return netlink.nlmsg(netlink.NLMSG_ERROR, 0, seq, struct.pack("=i", -error) + bytes(16))


def pyroute2_link(seq: int, index: int = 7, flags: int = 0, attrs: list[tuple[str, object]] | None = None,
                  msg_flags: int = 0) -> bytes:
    """An RTM_NEWLINK encoded by pyroute2."""
    m = ifinfmsg()
    m["index"] = index
    m["flags"] = flags
    m["attrs"] = attrs if attrs is not None else []
    m["header"]["type"] = netlink.RTM_NEWLINK
    m["header"]["flags"] = msg_flags
    m["header"]["sequence_number"] = seq
    m.encode()
    return bytes(m.data)


def tun_info(tun_type: int, multi_queue: int) -> tuple[str, object]:
    return ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "tun"), ("IFLA_INFO_DATA", {"attrs": [
        ("IFLA_TUN_TYPE", tun_type), ("IFLA_TUN_MULTI_QUEUE", multi_queue)]})]})


# -- requests ------------------------------------------------------------------------------
@little_endian
def test_getlink_request_bytes_by_hand() -> None:
    k = FakeKernel(lambda seq: [ack(seq, errno.ENODEV)])
    assert Netlink(k).link("tap0") is None
    expected = bytes.fromhex(
        "2c000000" "1200" "0500" "01000000" "00000000"   # nlmsghdr: len 44, RTM_GETLINK, REQUEST|ACK, seq 1, pid 0
        "00" "00" "0000" "00000000" "00000000" "00000000"  # ifinfomsg: AF_UNSPEC, pad, type, index 0, flags, change
        "0900" "0300" "7461703000" "000000"  # rtattr: len 9, IFLA_IFNAME, "tap0\0", padded to 12
    )
    assert k.sent == [expected]


@little_endian
def test_newaddr_request_bytes_by_hand() -> None:
    k = FakeKernel(lambda seq: [ack(seq)])
    Netlink(k).add_address(TAP, bytes([10, 0, 0, 2]), 24)
    expected = bytes.fromhex(
        "28000000" "1400" "0506" "01000000" "00000000"  # len 40, RTM_NEWADDR, REQUEST|ACK|EXCL|CREATE
        "02" "18" "00" "00" "07000000"  # ifaddrmsg: AF_INET, /24, flags, RT_SCOPE_UNIVERSE, index 7
        "0800" "0200" "0a000002"  # IFA_LOCAL 10.0.0.2
        "0800" "0100" "0a000002"  # IFA_ADDRESS 10.0.0.2
    )
    assert k.sent == [expected]


def test_setlink_requests_decoded_by_pyroute2() -> None:
    k = FakeKernel(lambda seq: [ack(seq)])
    nl = Netlink(k)
    nl.set_up(TAP)
    nl.set_up(TAP, False)
    nl.set_mtu(TAP, 9000)
    nl.delete(TAP)
    seen = []
    for data in k.sent:
        m = ifinfmsg(data)
        m.decode()
        seen.append((m["header"]["type"], m["header"]["flags"], m["index"], m["flags"], m["change"],
                     m.get_attr("IFLA_MTU")))
    req = netlink.NLM_F_REQUEST | netlink.NLM_F_ACK
    assert seen == [
        (netlink.RTM_SETLINK, req, 7, 1, 1, None),  # IFF_UP in flags and in ifi_change
        (netlink.RTM_SETLINK, req, 7, 0, 1, None),
        (netlink.RTM_SETLINK, req, 7, 0, 0, 9000),
        (netlink.RTM_DELLINK, req, 7, 0, 0, None),
    ]
    assert [struct.unpack_from("=I", d, 8)[0] for d in k.sent] == [1, 2, 3, 4]  # a new sequence number each


def test_newaddr_request_decoded_by_pyroute2() -> None:
    k = FakeKernel(lambda seq: [ack(seq)])
    Netlink(k).add_address(TAP, bytes([192, 168, 7, 1]), 30)
    m = ifaddrmsg(k.sent[0])
    m.decode()
    assert (m["family"], m["prefixlen"], m["index"], m.get_attr("IFA_LOCAL"), m.get_attr("IFA_ADDRESS")) == (
        2, 30, 7, "192.168.7.1", "192.168.7.1")


# -- replies -------------------------------------------------------------------------------
@pytest.mark.parametrize(("flags", "attrs", "expected"), [
    (1, [("IFLA_IFNAME", "tap0"), ("IFLA_MTU", 9000), tun_info(2, 0)], Link("tap0", 7, "tun", 2, False, True, 9000)),
    (0, [("IFLA_MTU", 1500), tun_info(1, 0)], Link("tap0", 7, "tun", 1, False, False, 1500)),
    (0, [("IFLA_MTU", 1500), tun_info(2, 1)], Link("tap0", 7, "tun", 2, True, False, 1500)),
    (0x1043, [("IFLA_MTU", 1500), ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth")]})],
     Link("tap0", 7, "veth", None, False, True, 1500)),
    (0, [("IFLA_MTU", 65536)], Link("tap0", 7, None, None, False, False, 65536)),
    (0, [], Link("tap0", 7, None, None, False, False, 1500)),
])
def test_link_decodes_what_pyroute2_encodes(flags: int, attrs: list[tuple[str, object]], expected: Link) -> None:
    k = FakeKernel(lambda seq: [pyroute2_link(seq, flags=flags, attrs=attrs), ack(seq)])
    assert Netlink(k).link("tap0") == expected


def test_multipart_reply_over_several_datagrams_and_a_stale_answer() -> None:
    multi = netlink.NLM_F_MULTI
    done = netlink.nlmsg(netlink.NLMSG_DONE, multi, 1, struct.pack("=i", 0))
    k = FakeKernel(lambda seq: [
        ack(seq + 100, errno.EPERM),  # an answer to some other request: not ours
        pyroute2_link(seq, attrs=[("IFLA_MTU", 1400), tun_info(2, 0)], msg_flags=multi)
        + netlink.nlmsg(netlink.NLMSG_NOOP, 0, seq, b""),
        done])
    assert Netlink(k).link("tap0") == Link("tap0", 7, "tun", 2, False, False, 1400)


@pytest.mark.parametrize(("code", "text"), [
    (errno.EPERM, "cannot set the MTU of tap0 to 9000: operation not permitted: live mode needs root or CAP_NET_ADMIN"),
    (errno.EINVAL, "cannot set the MTU of tap0 to 9000: Invalid argument"),
])
def test_errno_becomes_one_line(code: int, text: str) -> None:
    with pytest.raises(SetupError) as e:
        Netlink(FakeKernel(lambda seq: [ack(seq, code)])).set_mtu(TAP, 9000)
    assert str(e.value) == text


def test_lookup_error_other_than_enodev() -> None:
    with pytest.raises(SetupError, match="cannot look up tap0: operation not permitted"):
        Netlink(FakeKernel(lambda seq: [ack(seq, errno.EPERM)])).link("tap0")


def test_message_takes_our_error_and_pyroute2s() -> None:
    from pyroute2 import NetlinkError as Pyroute2Error

    assert netlink._message("x", NetlinkError(errno.EEXIST)) == "x: File exists"
    assert netlink._message("x", Pyroute2Error(errno.EEXIST)) == "x: File exists"


# -- malformed replies ---------------------------------------------------------------------
def good_reply(seq: int) -> bytes:
    return pyroute2_link(seq, flags=1, attrs=[("IFLA_MTU", 9000), tun_info(2, 0)])


@pytest.mark.parametrize("cut", [1, 15, 16, 20, 31, 40, 60])
def test_truncated_reply(cut: int) -> None:
    """A datagram cut short anywhere: in the header, in ifinfomsg, in an attribute, in a nested one."""
    k = FakeKernel(lambda seq: [good_reply(seq)[:cut]])
    with pytest.raises(SetupError, match="cannot look up tap0: "):
        Netlink(k).link("tap0")


@pytest.mark.parametrize(("name", "reply"), [
    ("empty datagram", lambda seq: [b""]),
    ("nlmsg_len below the header", lambda seq: [struct.pack("=IHHII", 8, netlink.NLMSG_ERROR, 0, seq, 0)]),
    ("nlmsg_len past the end", lambda seq: [struct.pack("=IHHII", 400, netlink.RTM_NEWLINK, 0, seq, 0)]),
    ("NLMSG_ERROR without its errno", lambda seq: [netlink.nlmsg(netlink.NLMSG_ERROR, 0, seq, b"\0\0")]),
    ("positive errno", lambda seq: [netlink.nlmsg(netlink.NLMSG_ERROR, 0, seq, struct.pack("=i", 5))]),
    ("ACK without the link", lambda seq: [ack(seq)]),
    ("ifinfomsg too short", lambda seq: [netlink.nlmsg(netlink.RTM_NEWLINK, 0, seq, bytes(8)), ack(seq)]),
    ("rta_len 2", lambda seq: [netlink.nlmsg(netlink.RTM_NEWLINK, 0, seq, bytes(16) + b"\x02\x00\x04\x00"),
                               ack(seq)]),
    ("IFLA_MTU of 2 bytes", lambda seq: [netlink.nlmsg(netlink.RTM_NEWLINK, 0, seq,
                                                       bytes(16) + netlink.rtattr(netlink.IFLA_MTU, b"\x01\x02")),
                                         ack(seq)]),
    ("nested rta_len past its parent", lambda seq: [netlink.nlmsg(netlink.RTM_NEWLINK, 0, seq, bytes(16) + netlink.rtattr(
        netlink.IFLA_LINKINFO, b"\x40\x00\x01\x00tun\0")), ack(seq)]),
    ("IFLA_TUN_TYPE empty", lambda seq: [netlink.nlmsg(netlink.RTM_NEWLINK, 0, seq, bytes(16) + netlink.rtattr(
        netlink.IFLA_LINKINFO, netlink.rtattr(netlink.IFLA_INFO_KIND, b"tun\0") + netlink.rtattr(
            netlink.IFLA_INFO_DATA, netlink.rtattr(netlink.IFLA_TUN_TYPE, b"")))), ack(seq)]),
    ("no reply at all", lambda seq: []),
    ("only answers to other requests", lambda seq: [ack(seq + 1), ack(seq - 1, errno.EPERM)]),
])
def test_malformed_reply(name: str, reply: Callable[[int], list[bytes]]) -> None:
    with pytest.raises(SetupError, match=r"^cannot look up tap0: (malformed netlink reply|no netlink reply)"):
        Netlink(FakeKernel(reply)).link("tap0")


@given(st.binary(max_size=200), st.booleans())
def test_garbage_reply_is_a_setup_error_or_an_answer(garbage: bytes, stamp: bool) -> None:
    """Random bytes, optionally with our sequence number stamped in so they get parsed past the header."""
    def reply(seq: int) -> list[bytes]:
        data = bytearray(garbage)
        if stamp and len(data) >= 12:
            data[8:12] = struct.pack("=I", seq)
        return [bytes(data)]

    k = FakeKernel(reply)
    try:
        found = Netlink(k).link("tap0")
    except SetupError as e:
        assert str(e).startswith("cannot look up tap0: ")
    else:
        assert found is None or isinstance(found, Link)


@given(st.integers(min_value=0, max_value=200))
def test_every_truncation_of_a_good_reply(cut: int) -> None:
    whole = FakeKernel(lambda seq: [good_reply(seq), ack(seq)])
    assert Netlink(whole).link("tap0") == Link("tap0", 7, "tun", 2, False, True, 9000)
    k = FakeKernel(lambda seq: [good_reply(seq)[:cut], ack(seq)])
    try:
        Netlink(k).link("tap0")
    except SetupError as e:
        assert "malformed netlink reply" in str(e) or "no netlink reply" in str(e)
    else:
        assert cut >= len(good_reply(1))


def test_rtattr_alignment() -> None:
    assert [len(netlink.rtattr(1, bytes(n))) for n in range(6)] == [4, 8, 8, 8, 8, 12]
    assert netlink.rtattr(3, b"ab") == b"\x06\x00\x03\x00ab\0\0"  # rta_len 6: the padding is not counted


# -- pyroute2 stays out of plain live mode -------------------------------------------------
def test_plain_live_setup_does_not_import_pyroute2() -> None:
    script = (
        "import sys\n"
        "import simstack.cli\n"
        "from simstack.engine.live import session\n"
        "from simstack.engine.live.netlink import Netlink\n"
        "p = session.plan(session.LiveOptions('tap0'))\n"
        "assert p.lab is None\n"
        "try:\n"
        "    with Netlink() as nl:\n"
        "        nl.link('lo')\n"
        "except Exception:\n"
        "    pass  # no netlink socket here: the import is what is checked\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pyroute2'))\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    lab = subprocess.run([sys.executable, "-c", script.replace("LiveOptions('tap0')", "LiveOptions('tap0', lab='x')")
                          .replace("p.lab is None", "p.lab is not None")
                          + "from simstack.engine.live.lab import _root\n"
                          "try:\n    _root().__enter__()\nexcept Exception:\n    pass\n"
                          "print('pyroute2' in sys.modules)\n"], capture_output=True, text=True, timeout=60)
    assert lab.returncode == 0, lab.stderr
    assert lab.stdout.split()[-1] == "True"  # the check can fail: the lab does load it
