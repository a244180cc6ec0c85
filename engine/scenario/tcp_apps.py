"""The applications behind TCP traffic, for a scenario written from frames.

A stack sends a SYN because an application connected, a SYN-ACK because one
listens, data because one wrote, a FIN because one closed; a replay needs
``app:`` steps that do the same. ``infer`` reads the TCP segments of a
recording or a capture, in order, and says which calls to make and before
which frame:

- a SYN-ACK from port P: a stream socket bound to P and listening, at the
  start; after the peer's segment that completes the handshake, ``accept``;
- a SYN from the stack: a socket bound to its port, non-blocking, and
  ``connect`` (``EINPROGRESS``) just before it;
- new data from the stack: ``send`` of that data just before it;
- data to the stack: ``recv`` when the window the stack advertises shows
  that its application read: the right edge of the window (ACK + window)
  moves right only as data leaves the receive buffer (RFC 9293 3.8.6), so a
  move of N octets is a read of N octets, made just before the segment that
  shows it;
- the stack's first FIN: ``close`` just before it (after reading what is
  left, since closing with unread data would reset, RFC 9293 3.10.4), or
  ``shutdown`` of the sending side when the peer sends data afterwards.

Every socket is non-blocking, so no call waits on the replay's clock. Ports
listed in ``services`` are served by the stack's own services and left alone.
The calls hold plain values (addresses as bytes); the recorder and the
importer render them.
"""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from simstack.protocols.tcp import ACK, FIN, OPT_WSCALE, PSH, RST, SYN

MASK = 0xFFFFFFFF


@dataclass
class AppCall:
    """``app: op`` with ``args`` (in order), to run before event ``before`` (len(events): at the end) at ``t``."""

    before: int
    t: float
    op: str
    args: list[tuple[str, Any]]
    note: str = ""


@dataclass
class _Conn:
    sock: str
    listener: str | None = None  # the listening socket of a passive open
    accepted: bool = False
    rcv_nxt: int | None = None  # the peer's next in-order octet
    held: dict[int, bytes] = field(default_factory=dict)  # peer data above rcv_nxt
    readable: int = 0  # octets in order that the application has not read
    edge: int | None = None  # the right edge of the window the stack last advertised
    shift: int = 0  # the stack's window scale, if both SYNs offered one (RFC 7323 2.2)
    offered: int | None = None  # the stack's wscale from its SYN, until the peer's shows both agree
    sent: int | None = None  # one past the highest octet the stack sent
    fin: bool = False


def infer(events: Sequence[tuple[float, str, Mapping[str, Any]]], stack_ip: bytes,
          services: Collection[int] = ()) -> list[AppCall]:
    """``events``: (time, "<" to the stack or ">" from it, decoded fields), absolute numbers."""
    calls: list[AppCall] = []
    conns: dict[tuple[int, bytes, int], _Conn] = {}  # (stack port, peer ip, peer port)
    listeners: dict[int, str] = {}
    scaled: dict[tuple[int, bytes, int], bool] = {}  # whether the peer's SYN offered a window scale
    count = 0

    def new_name(prefix: str) -> str:
        nonlocal count
        count += 1
        return f"{prefix}{count}"

    for i, (t, direction, f) in enumerate(events):
        if "tcp.sport" not in f or f.get("ipv4.mf") or f.get("ipv4.frag"):
            continue
        flags = f["tcp.flags"]
        if direction == ">":
            if f["ipv4.src"] != stack_ip:
                continue
            key = (f["tcp.sport"], f["ipv4.dst"], f["tcp.dport"])
        else:
            if f["ipv4.dst"] != stack_ip:
                continue
            key = (f["tcp.dport"], f["ipv4.src"], f["tcp.sport"])
        port, peer_ip, peer_port = key
        conn = conns.get(key)
        if direction == ">" and flags & (SYN | ACK | RST) == SYN | ACK:
            if port in services or (conn is not None and not conn.fin and conn.listener is None):
                continue  # a service's, or the stack's own SYN again in a simultaneous open
            if port not in listeners:
                listeners[port] = name = f"server{port}"
                calls += [AppCall(0, 0.0, "socket", [("socket", name), ("type", "stream")],
                                  f"the stack answers SYNs to port {port}: an application listens there"),
                          AppCall(0, 0.0, "setblocking", [("socket", name), ("blocking", False)]),
                          AppCall(0, 0.0, "bind", [("socket", name), ("addr", (b"", port))]),
                          AppCall(0, 0.0, "listen", [("socket", name)])]
            if conn is None or conn.fin:
                conn = conns[key] = _Conn(new_name("conn"), listener=listeners[port])
            conn.rcv_nxt = f["tcp.ack"]
            conn.sent = (f["tcp.seq"] + 1) & MASK
            conn.shift = (_wscale(f) or 0) if scaled.get(key) else 0  # the peer's SYN offered one too
            conn.edge = (f["tcp.ack"] + f["tcp.win"]) & MASK  # a SYN's window is never scaled
            continue
        if direction == ">" and flags & (SYN | ACK | RST) == SYN:
            if conn is None or conn.fin:
                conn = conns[key] = _Conn(new_name("client"))
                s = conn.sock
                calls += [AppCall(i, t, "socket", [("socket", s), ("type", "stream")],
                                  "the stack opens a connection: an application connects"),
                          AppCall(i, t, "setblocking", [("socket", s), ("blocking", False)]),
                          AppCall(i, t, "bind", [("socket", s), ("addr", (b"", port))]),
                          AppCall(i, t, "connect", [("socket", s), ("addr", (peer_ip, peer_port)),
                                                    ("error", "EINPROGRESS")])]
            conn.sent = (f["tcp.seq"] + 1) & MASK
            conn.offered = _wscale(f)
            continue
        if direction == "<" and flags & (SYN | ACK) == SYN:
            scaled[key] = _wscale(f) is not None
        if conn is None:
            continue
        if flags & RST:
            # The stack's reset ends the connection; the peer's, when it is exactly at RCV.NXT (RFC 5961 3.2:
            # one merely in the window draws a challenge ACK). A later segment on its ports is no application's.
            if direction == ">" or f["tcp.seq"] == conn.rcv_nxt:
                conn.fin = True
                del conns[key]
            continue
        if direction == "<":
            if flags & SYN:
                if flags & ACK:  # the SYN-ACK answering the stack's SYN
                    conn.rcv_nxt = (f["tcp.seq"] + 1) & MASK
                    if conn.offered is not None and _wscale(f) is not None:
                        conn.shift = conn.offered
                continue
            if conn.listener is not None and not conn.accepted and flags & ACK:
                conn.accepted = True
                calls.append(AppCall(i + 1, t, "accept", [("socket", conn.listener), ("as", conn.sock),
                                                          ("addr", (peer_ip, peer_port))],
                                     "the handshake is complete: the application takes the connection"))
            data = f.get("tcp.data", b"")
            if data and conn.rcv_nxt is not None and not conn.fin:
                conn.readable += _arrive(conn, f["tcp.seq"], data)
            continue
        # from the stack, on a known connection
        data = f.get("tcp.data", b"")
        seq = f["tcp.seq"]
        if flags & ACK:
            edge = (f["tcp.ack"] + (f["tcp.win"] << conn.shift)) & MASK
            if conn.edge is not None:
                moved = (edge - conn.edge) & MASK
                if 0 < moved < 1 << 31 and conn.readable:
                    calls.append(_recv(i, t, conn, min(moved, conn.readable)))
            if conn.edge is None or 0 < (edge - conn.edge) & MASK < 1 << 31:
                conn.edge = edge
        if data and conn.sent is not None:
            new = ((seq + len(data)) - conn.sent) & MASK
            if 0 < new <= len(data):
                write = _write(events, i, key, stack_ip, data[len(data) - new:], flags)
                calls.append(AppCall(i, t, "send", [("socket", conn.sock), ("data", write)],
                                     "the application writes what the segments below carry"))
                conn.sent = (conn.sent + len(write)) & MASK
        if flags & FIN and not conn.fin:
            conn.fin = True
            if conn.readable:
                calls.append(_recv(i, t, conn, conn.readable, "the application reads the rest before it closes"))
            later = any(d == "<" and g.get("tcp.data") and _key(g, d, stack_ip) == key for _, d, g in events[i + 1:])
            if later:
                calls.append(AppCall(i, t, "shutdown", [("socket", conn.sock), ("how", "wr")],
                                     "the application is done sending but reads on: the FIN follows"))
            else:
                calls.append(AppCall(i, t, "close", [("socket", conn.sock)], "the application closes: the FIN follows"))
    return calls


def _write(events: Sequence[tuple[float, str, Mapping[str, Any]]], i: int, key: tuple[int, bytes, int],
           stack_ip: bytes, first: bytes, flags: int) -> bytes:
    """The data of one write: this segment's new data and the segments that continue it, up to one with PSH.

    A stack sets PSH on the segment that empties its send buffer (RFC 9293
    3.9.1 SEND); one without PSH says the same write goes on in the next.
    """
    out = bytearray(first)
    nxt = (events[i][2]["tcp.seq"] + len(events[i][2].get("tcp.data", b""))) & MASK
    j = i + 1
    while not flags & (PSH | FIN) and j < len(events):
        _, d, g = events[j]
        j += 1
        if d != ">" or _key(g, d, stack_ip) != key or not g.get("tcp.data"):
            continue
        if g["tcp.seq"] != nxt:
            continue  # a retransmission
        out += g["tcp.data"]
        nxt = (nxt + len(g["tcp.data"])) & MASK
        flags = g["tcp.flags"]
    return bytes(out)


def _recv(i: int, t: float, conn: _Conn, n: int, note: str = "") -> AppCall:
    conn.readable -= n
    return AppCall(i, t, "recv", [("socket", conn.sock), ("size", n), ("len", n)],
                   note or f"the window the stack offers next shows that its application read {n} octets")


def _wscale(f: Mapping[str, Any]) -> int | None:
    for kind, value in f.get("tcp.options", ()):
        if kind == OPT_WSCALE and isinstance(value, int):
            return min(value, 14)  # RFC 7323 2.3: larger shifts are taken as 14
    return None


def _key(f: Mapping[str, Any], direction: str, stack_ip: bytes) -> tuple[int, bytes, int] | None:
    if "tcp.sport" not in f:
        return None
    if direction == ">":
        return f["tcp.sport"], f["ipv4.dst"], f["tcp.dport"]
    return f["tcp.dport"], f["ipv4.src"], f["tcp.sport"]


def _arrive(conn: _Conn, seq: int, data: bytes) -> int:
    """Octets that became readable in order when ``data`` arrived at ``seq``."""
    assert conn.rcv_nxt is not None
    off = (conn.rcv_nxt - seq) & MASK
    if off < len(data):
        conn.held[seq] = data
    start = conn.rcv_nxt
    while True:
        progressed = False
        for s, d in list(conn.held.items()):
            skip = (conn.rcv_nxt - s) & MASK
            if skip >= 1 << 31:
                continue  # still above rcv_nxt
            del conn.held[s]
            if skip < len(d):
                conn.rcv_nxt = (conn.rcv_nxt + len(d) - skip) & MASK
                progressed = True
        if not progressed:
            break
    return (conn.rcv_nxt - start) & MASK
