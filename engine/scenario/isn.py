"""Sequence numbers as packetdrill writes them: relative to each side's initial sequence number.

A scenario cannot know the stack's ISN (RFC 6528 draws it from a clock and a
secret), so it writes sequence and acknowledgment numbers relative to it, and
the runner learns the ISNs from the SYNs that cross the wire:

- every SYN the stack sends gives the stack's ISN, and a SYN-ACK also the
  peer's, the one it acknowledges (so a new incarnation of a connection is
  learned from the stack's answer to it);
- a SYN sent to the stack gives its sender's ISN if it is the first SYN of
  its connection (``see``), or if the scenario wrote its number absolute
  (the runner calls ``learn_syn``). A SYN written relative on a connection
  whose ISN is known is a SYN inside that connection, such as RFC 5961 4.2
  tests, and changes nothing.

An ISN not seen yet counts as 0, so until a SYN sets it a relative number is
the absolute one (a reset to a closed port says ``seq: 0``, as packetdrill's
``R. 0:0(0)``).

``Rel`` marks a number written relative; a plain ``int`` is absolute
(``seq: {abs: N}``). ``Isns.absolute`` turns the relative numbers of a
segment's fields into absolute ones for one direction (its own sequence number
counts from the sender's ISN; the acknowledgment number and SACK blocks from
the receiver's), and ``Isns.relative`` does the opposite for a decoded
segment, so the recorder can write what it saw.
"""

from collections.abc import Mapping
from typing import Any

from simstack.protocols.tcp import ACK, OPT_SACK, SYN, Option

from .tcp_words import ANY, OptionsPattern

MASK = 0xFFFFFFFF
Direction = tuple[bytes, int, bytes, int]  # (source ip, source port, destination ip, destination port)


class Rel(int):
    """A sequence number written relative to an ISN, already reduced mod 2^32."""

    def __repr__(self) -> str:
        return f"Rel({int(self)})"


def _shift_options(options: Any, base: int, sign: int) -> Any:
    """SACK edges moved by ``base`` (added for sign 1, taken away for -1); other options as they are."""
    items = options.options if isinstance(options, OptionsPattern) else options
    if items is None or not any(o.kind == OPT_SACK and not isinstance(o.value, bytes) for o in items):
        return options
    moved = tuple(
        Option(OPT_SACK, tuple(tuple(e if e is ANY else (e + sign * base) & MASK for e in block) for block in o.value))
        if o.kind == OPT_SACK and not isinstance(o.value, bytes) else o
        for o in items
    )
    return OptionsPattern(moved) if isinstance(options, OptionsPattern) else moved


def _syn(frame: bytes) -> tuple[Direction, int, int, int] | None:
    """(direction, seq, ack, flags) of a TCP SYN in an Ethernet frame; None for anything else."""
    if len(frame) < 54:
        return None
    etype = frame[12:14]
    ip = 14
    if etype == b"\x81\x00":
        etype = frame[16:18]
        ip = 18
    if etype != b"\x08\x00" or frame[ip + 9] != 6 or frame[ip] >> 4 != 4:
        return None
    if (frame[ip + 6] & 0x1F) or frame[ip + 7]:
        return None  # a fragment other than the first carries no TCP header
    t = ip + (frame[ip] & 0x0F) * 4
    if len(frame) < t + 14 or not frame[t + 13] & SYN:
        return None
    key = (frame[ip + 12:ip + 16], int.from_bytes(frame[t:t + 2], "big"), frame[ip + 16:ip + 20],
           int.from_bytes(frame[t + 2:t + 4], "big"))
    return key, int.from_bytes(frame[t + 4:t + 8], "big"), int.from_bytes(frame[t + 8:t + 12], "big"), frame[t + 13]


class Isns:
    """The ISN of each direction of each connection, learned from the SYNs that crossed the wire."""

    __slots__ = ("_isn",)

    def __init__(self) -> None:
        self._isn: dict[Direction, int] = {}

    def see(self, frame: bytes, direction: str) -> None:
        """Learn from ``frame`` (``">"`` sent by the stack, ``"<"`` sent to it) if it is a SYN; cheap otherwise."""
        syn = _syn(frame)
        if syn is None:
            return
        key, seq, ack, flags = syn
        if direction == ">":
            self._isn[key] = seq
            if flags & ACK:
                self._isn[(key[2], key[3], key[0], key[1])] = (ack - 1) & MASK
        elif key not in self._isn:
            self._isn[key] = seq

    def learn_syn(self, frame: bytes) -> None:
        """``frame`` is a SYN whose number the scenario wrote absolute: it sets its sender's ISN."""
        syn = _syn(frame)
        if syn is not None:
            self._isn[syn[0]] = syn[1]

    def learn(self, direction: Direction, isn: int) -> None:
        self._isn[direction] = isn

    def known(self, direction: Direction) -> bool:
        return direction in self._isn

    def base(self, direction: Direction) -> int:
        """The ISN of the sender of ``direction``; 0 while none is known."""
        return self._isn.get(direction, 0)

    def bases(self, src: bytes, sport: int, dst: bytes, dport: int) -> tuple[int, int]:
        """(ISN for this direction's sequence numbers, ISN for its acknowledgments)."""
        isn = self._isn
        return isn.get((src, sport, dst, dport), 0), isn.get((dst, dport, src, sport), 0)

    def absolute(self, flat: Mapping[str, Any], src: bytes, sport: int, dst: bytes, dport: int) -> dict[str, Any]:
        """``flat`` with its relative numbers made absolute, for a segment from (src, sport) to (dst, dport)."""
        out = dict(flat)
        seq_base, ack_base = self.bases(src, sport, dst, dport)
        seq = flat.get("tcp.seq")
        if isinstance(seq, Rel):
            out["tcp.seq"] = (seq_base + seq) & MASK
        ack = flat.get("tcp.ack")
        if isinstance(ack, Rel):
            out["tcp.ack"] = (ack_base + ack) & MASK
        if "tcp.options" in flat and ack_base:
            out["tcp.options"] = _shift_options(flat["tcp.options"], ack_base, 1)  # SACK: the receiver's space
        return out

    def relative(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """A decoded segment's fields with sequence numbers, acknowledgment and SACK blocks made relative."""
        if "tcp.seq" not in fields:
            return dict(fields)
        seq_base, ack_base = self.bases(fields["ipv4.src"], fields["tcp.sport"], fields["ipv4.dst"], fields["tcp.dport"])
        out = dict(fields)
        out["tcp.seq"] = Rel((fields["tcp.seq"] - seq_base) & MASK)
        out["tcp.ack"] = Rel((fields["tcp.ack"] - ack_base) & MASK)
        if "tcp.options" in fields and ack_base:
            out["tcp.options"] = _shift_options(fields["tcp.options"], ack_base, -1)
        return out
