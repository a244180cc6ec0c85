"""Sequence-number arithmetic modulo 2**32 (RFC 9293 3.4, RFC 1982 serial numbers).

Sequence numbers wrap, so ``<`` on plain ints is wrong as soon as a
connection crosses 2**32; every comparison of two sequence numbers goes
through these functions. They are plain functions on ints, not a wrapper
type: the per-segment path calls a handful of them, and a class with
operators would cost an object per value (measured in tests/test_seqnum.py).

"a < b" means b lies less than half the space ahead of a. Two numbers exactly
2**31 apart are unordered: neither is less than the other.
"""

MOD = 1 << 32
MASK = MOD - 1
HALF = 1 << 31


def seq_add(a: int, n: int) -> int:
    """``a + n`` wrapped into 0..2**32-1 (n may be negative)."""
    return (a + n) & MASK


def seq_diff(a: int, b: int) -> int:
    """The signed distance ``a - b``, in -2**31..2**31-1."""
    d = (a - b) & MASK
    return d - MOD if d >= HALF else d


def seq_lt(a: int, b: int) -> bool:
    return 0 < ((b - a) & MASK) < HALF


def seq_le(a: int, b: int) -> bool:
    return ((b - a) & MASK) < HALF


def seq_gt(a: int, b: int) -> bool:
    return 0 < ((a - b) & MASK) < HALF


def seq_ge(a: int, b: int) -> bool:
    return ((a - b) & MASK) < HALF


def in_window(x: int, start: int, size: int) -> bool:
    """``start <= x < start + size`` in sequence space (RFC 9293 3.10.7.4's test)."""
    return ((x - start) & MASK) < size


def seq_max(a: int, b: int) -> int:
    return b if ((b - a) & MASK) < HALF else a


def seq_min(a: int, b: int) -> int:
    return a if ((b - a) & MASK) < HALF else b
