"""SYN cookies (RFC 4987 3.6): when a listener's SYN queue is full, the half-open connection lives in our ISN.

The cookie is the ISN of a SYN-ACK sent without keeping any state; the
handshake's ACK brings it back as ACK - 1, and the connection is rebuilt from
it and from the ACK itself. RFC 4987 3.6's layout, 32 bits:

    | t: 5 bits | m: 3 bits | s: 24 bits |

``t`` is a counter that ticks every 64 seconds (modulo 32), ``m`` indexes a
table of MSS values (the largest not above the peer's), and ``s`` is a keyed
hash of the 4-tuple, the peer's ISN, ``m`` and the *whole* counter, so a
cookie stops validating after two ticks and cannot be replayed when ``t``
comes round again 2048 seconds later. The key comes from the layer's secret,
itself drawn from the stack's injected generator; nothing here reads a clock
or global randomness.

What a cookie cannot carry is lost: window scaling, SACK-permitted and
timestamps are not offered on a cookie's SYN-ACK (Linux would hide them in
the timestamp; RFC 4987 3.6 lists the loss as the price of cookies).
"""

import hashlib

PERIOD = 64.0  # seconds a tick of t lasts (RFC 4987 3.6: "a slowly incrementing counter", 64 s)
T_BITS = 5
MAX_AGE = 2  # ticks a cookie stays valid: 64 to 128 s (Linux MAX_SYNCOOKIE_AGE)
# MSS values a cookie can name (RFC 4987 3.6: "an encoding of the MSS"), ascending; the first is MIN_MSS.
MSS_TABLE = (64, 536, 1220, 1300, 1360, 1400, 1440, 1460)
_S_MASK = (1 << 24) - 1
_PERSON = b"syncook"


def key_from(secret: bytes) -> bytes:
    """A key of the cookies' own, derived from the layer's secret (no second draw from the generator)."""
    return hashlib.blake2s(secret, digest_size=16, person=_PERSON).digest()


def tick(now: float) -> int:
    return int(now // PERIOD)


def mss_index(mss: int) -> int:
    """The largest table entry not above ``mss`` (the first entry when ``mss`` is below them all)."""
    index = 0
    for i, value in enumerate(MSS_TABLE):
        if value <= mss:
            index = i
    return index


def _hash(key: bytes, tup: bytes, peer_isn: int, m: int, count: int) -> int:
    h = hashlib.blake2s(tup + peer_isn.to_bytes(4, "big") + bytes((m,)) + count.to_bytes(8, "big"),
                        key=key, digest_size=4)
    return int.from_bytes(h.digest(), "big") & _S_MASK


def four_tuple(lip: bytes, lport: int, rip: bytes, rport: int) -> bytes:
    return lip + lport.to_bytes(2, "big") + rip + rport.to_bytes(2, "big")


def encode(key: bytes, tup: bytes, peer_isn: int, mss: int, now: float) -> int:
    """The ISN of a cookie SYN-ACK answering a SYN whose sequence number is ``peer_isn`` and MSS ``mss``."""
    count = tick(now)
    m = mss_index(mss)
    return ((count & ((1 << T_BITS) - 1)) << 27) | (m << 24) | _hash(key, tup, peer_isn, m, count)


def decode(key: bytes, tup: bytes, peer_isn: int, cookie: int, now: float) -> int | None:
    """The MSS a cookie (ACK - 1 of the returning ACK, ``peer_isn`` its SEQ - 1) stands for, or None if forged or old."""
    t = cookie >> 27
    m = (cookie >> 24) & 7
    s = cookie & _S_MASK
    count = tick(now)
    for age in range(MAX_AGE):
        then = count - age
        if then >= 0 and then & ((1 << T_BITS) - 1) == t and _hash(key, tup, peer_isn, m, then) == s:
            return MSS_TABLE[m]
    return None
