"""TCP header (RFC 9293 3.1): the value type shared by the codec and the connection code.

The construct declaration, ``parse`` and ``emit`` are filled in beside this
value type; the connection code (``tcp_conn``) only ever sees ``Tcp`` values.
"""

from dataclasses import dataclass
from typing import Any, NamedTuple

# Control bits (RFC 9293 3.1, RFC 3168 for ECE/CWR).
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

# Option kinds (RFC 9293 3.2, RFC 7323, RFC 2018).
OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8

HEADER_LEN = 20
MAX_HEADER = 60


class Option(NamedTuple):
    """One option, in wire order.

    ``value`` by kind: MSS and WSCALE an int; SACK a tuple of (left, right)
    edges; TIMESTAMP a (TSval, TSecr) pair; SACK_PERMITTED, NOP and EOL None;
    an unknown kind its raw bytes.
    """

    kind: int
    value: Any = None


@dataclass(frozen=True, slots=True)
class Tcp:
    src_port: int
    dst_port: int
    seq: int = 0
    ack: int = 0
    flags: int = 0
    window: int = 0
    urgent: int = 0
    options: tuple[Option, ...] = ()
    payload: bytes = b""
    # Set by parse(); emit() computes them when left as None.
    data_offset: int | None = None  # in 32-bit words
    checksum: int | None = None

    def option(self, kind: int) -> Any:
        """The value of the first option of ``kind``, or None when absent (SACK-permitted gives True)."""
        for opt in self.options:
            if opt.kind == kind:
                return True if kind == OPT_SACK_PERMITTED else opt.value
        return None
