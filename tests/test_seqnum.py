"""Sequence-number arithmetic (RFC 9293 3.4) against a plain signed 32-bit reference."""

from hypothesis import given, settings
from hypothesis import strategies as st

from simstack.protocols.seqnum import in_window, seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt, seq_max, seq_min

U32 = st.integers(0, 0xFFFFFFFF)
SETTINGS = settings(max_examples=500, deadline=None, derandomize=True)


def signed(d: int) -> int:
    """Two's-complement reading of a 32-bit difference, the way C does (int32_t)(a - b)."""
    d &= 0xFFFFFFFF
    return d - (1 << 32) if d & 0x80000000 else d


@SETTINGS
@given(U32, U32)
def test_comparisons_agree_with_signed_difference(a: int, b: int) -> None:
    d = signed(a - b)
    assert seq_diff(a, b) == d
    assert seq_lt(a, b) == (d < 0 and d != -(1 << 31))
    assert seq_gt(a, b) == (d > 0)
    assert seq_le(a, b) == (d <= 0 and d != -(1 << 31))
    assert seq_ge(a, b) == (d >= 0)
    assert not (seq_lt(a, b) and seq_gt(a, b))
    assert seq_max(a, b) in (a, b) and seq_min(a, b) in (a, b)


@SETTINGS
@given(U32, st.integers(-(1 << 31) + 1, (1 << 31) - 1))
def test_add_then_diff_round_trips(a: int, n: int) -> None:
    b = seq_add(a, n)
    assert 0 <= b <= 0xFFFFFFFF
    assert seq_diff(b, a) == n
    assert seq_gt(b, a) == (n > 0) and seq_lt(b, a) == (n < 0)


@SETTINGS
@given(U32, st.integers(0, 1 << 20), st.integers(0, 1 << 20))
def test_in_window_across_the_wrap(start: int, size: int, off: int) -> None:
    x = (start + off) & 0xFFFFFFFF
    assert in_window(x, start, size) == (off < size)


def test_the_wrap_itself() -> None:
    assert seq_lt(0xFFFFFFFF, 0) and seq_gt(0, 0xFFFFFFFF)
    assert seq_diff(5, 0xFFFFFFFB) == 10
    assert in_window(3, 0xFFFFFFF0, 20) and not in_window(4, 0xFFFFFFF0, 20)
    assert seq_max(0xFFFFFFFF, 1) == 1 and seq_min(0xFFFFFFFF, 1) == 0xFFFFFFFF
