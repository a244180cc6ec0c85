"""Congestion control and the SACK scoreboard against the RFCs' own definitions.

CUBIC's window is checked against RFC 9438's closed form W_cubic(t) = C (t - K)^3 + W_max;
the scoreboard's pipe and IsLost against RFC 6675's octet-by-octet definitions, on
scoreboards hypothesis draws.
"""

import itertools

from hypothesis import given
from hypothesis import strategies as st

from simstack.protocols.seqnum import MASK
from simstack.protocols.tcp_cc import CUBIC, CUBIC_BETA, CUBIC_C, NEWRENO, PHASES, CubicState
from simstack.protocols.tcp_sack import DUP_THRESH, Scoreboard

MSS = 1000


class Tcb:
    def __init__(self, cwnd: int, srtt: float = 0.1) -> None:
        self.cwnd = cwnd
        self.ssthresh = 1 << 30
        self.snd_mss = MSS
        self.srtt: float | None = srtt
        self.cc_state: CubicState | None = None


def _round_trips(tcb: Tcb, start: float, seconds: float, rtt: float = 0.1) -> list[tuple[float, float]]:
    """Every RTT the whole window is acknowledged, one ACK a segment; (time, cwnd in segments) per RTT."""
    out = []
    t = start
    while t < start + seconds:
        for _ in range(tcb.cwnd // MSS):
            CUBIC.on_ack(tcb, MSS, MSS, t)
        t += rtt
        out.append((t, tcb.cwnd / MSS))
    return out


def test_cubic_after_a_loss_keeps_seventy_percent_then_follows_the_cubic_curve() -> None:
    tcb = Tcb(100 * MSS)
    CUBIC.on_congestion(tcb, 100 * MSS, 0.0)
    assert tcb.ssthresh == int(CUBIC_BETA * 100 * MSS)  # RFC 9438 4.6: 0.7, not Reno's 0.5
    tcb.cwnd = tcb.ssthresh  # the end of recovery
    k = ((100 - 70) / CUBIC_C) ** (1 / 3)  # RFC 9438 figure 2: about 4.2 s
    trace = _round_trips(tcb, 0.0, 8.0)
    alpha = 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA)
    w_est = 70.0
    for t, w in trace:
        # RFC 9438 4.3: W_est, Reno's window, grows alpha_cubic a round trip up to W_max, then 1
        w_est += alpha if w_est < 100 else 1.0
        # the window aims at W_cubic one RTT ahead (4.4), or W_est where that is larger (the Reno-friendly
        # region, here from about 5.8 s); it stays within a few segments of the larger
        assert abs(w - max(CUBIC_C * (t - k) ** 3 + 100, w_est)) < 3, (t, w)
    steps = [(t, b - a) for (t, a), (_, b) in itertools.pairwise(trace)]
    before = [d for t, d in steps if t < k - 0.5]
    after = [d for t, d in steps if k + 0.5 < t < 5.5]
    assert all(x >= y - 0.05 for x, y in itertools.pairwise(before))  # concave: growth slows to W_max
    assert all(y >= x - 0.05 for x, y in itertools.pairwise(after))  # convex: then speeds up
    assert before[0] > 5 * min(before + after)
    plateau = [w for t, w in trace if abs(t - k) < 0.3]
    assert plateau and all(abs(w - 100) < 1.5 for w in plateau)


def test_cubic_fast_convergence_lowers_w_max_when_a_loss_comes_below_it() -> None:
    tcb = Tcb(100 * MSS)
    CUBIC.on_congestion(tcb, 100 * MSS, 0.0)
    tcb.cwnd = 80 * MSS
    CUBIC.on_congestion(tcb, 80 * MSS, 1.0)
    assert tcb.cc_state is not None
    assert abs(tcb.cc_state.w_max - 80 * (1 + CUBIC_BETA) / 2) < 1e-9  # RFC 9438 4.7


def test_cubic_in_the_reno_friendly_region_grows_at_least_as_reno_would() -> None:
    # a short RTT keeps W_cubic flat for long: W_est (RFC 9438 4.3) takes over
    tcb = Tcb(20 * MSS, srtt=0.001)
    CUBIC.on_congestion(tcb, 20 * MSS, 0.0)
    tcb.cwnd = tcb.ssthresh
    trace = _round_trips(tcb, 0.0, 0.1, rtt=0.001)
    alpha = 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA)
    assert trace[-1][1] >= 14 + alpha * len(trace) * 0.9


def test_newreno_slow_start_then_congestion_avoidance_and_the_loss_window() -> None:
    tcb = Tcb(10 * MSS)
    tcb.ssthresh = 12 * MSS
    NEWRENO.on_ack(tcb, 5 * MSS, MSS, 0.0)  # RFC 3465 L = 1: one SMSS however much was acknowledged
    assert tcb.cwnd == 11 * MSS
    NEWRENO.on_ack(tcb, 5 * MSS, 2 * MSS, 0.0)
    assert tcb.cwnd == 13 * MSS
    NEWRENO.on_ack(tcb, MSS, MSS, 0.0)  # above ssthresh: MSS*MSS/cwnd
    assert tcb.cwnd == 13 * MSS + MSS // 13
    NEWRENO.on_rto(tcb, 9 * MSS, 0.0)
    assert (tcb.cwnd, tcb.ssthresh) == (MSS, 4500)  # RFC 5681 (4)


def test_every_phase_has_an_rto_and_open_returns_only_by_recovering() -> None:
    phases = {p for p, _ in PHASES}
    assert all((p, "rto") in PHASES for p in phases)
    assert {p for (p, _), nxt in PHASES.items() if nxt == "open" and p != "open"} == {"disorder", "recovery", "loss"}
    assert {e for (p, e), nxt in PHASES.items() if p == "open" and nxt == "open"} == {"partial", "recovered"}


# -- the scoreboard against RFC 6675 4, octet by octet ------------------------------------
SMSS = 10
BASE = MASK - 150  # near the wrap, so that arithmetic modulo 2^32 is exercised


def _sacked(blocks: list[tuple[int, int]], octet: int) -> bool:
    return any(s <= octet < e for s, e in blocks)


def _is_lost(blocks: list[tuple[int, int]], octet: int) -> bool:
    above = sum(e - max(s, octet + 1) for s, e in blocks if e > octet + 1)
    ranges = sum(1 for s, e in blocks if e > octet + 1)
    return ranges >= DUP_THRESH or above > (DUP_THRESH - 1) * SMSS


@st.composite
def scoreboards(draw: st.DrawFn) -> tuple[list[tuple[int, int]], int, int]:
    high = draw(st.integers(1, 300))
    cuts = sorted(set(draw(st.lists(st.integers(1, high), max_size=10))))
    blocks = [(a, b) for a, b in zip(cuts[::2], cuts[1::2], strict=False) if a < b]
    return blocks, high, draw(st.integers(0, high))


@given(scoreboards())
def test_pipe_and_is_lost_are_rfc_6675s_octet_by_octet(board: tuple[list[tuple[int, int]], int, int]) -> None:
    blocks, high, high_rxt = board
    sb = Scoreboard(BASE)
    reported = tuple(((BASE + s) & MASK, (BASE + e) & MASK) for s, e in blocks)
    new, dsack = sb.update(reported[::-1], BASE, (BASE + high) & MASK)  # any order, some adjacent
    assert dsack == 0 or len(reported) > 1
    sb.high_rxt = (BASE + high_rxt) & MASK
    want_pipe = 0
    for octet in range(high):
        if not _sacked(blocks, octet):
            want_pipe += (not _is_lost(blocks, octet)) + (octet < high_rxt)  # SetPipe (a) and (b)
    if dsack == 0:
        assert new == sum(e - s for s, e in blocks)
        assert sb.pipe(BASE, (BASE + high) & MASK, SMSS) == want_pipe
        for octet in range(high):
            if not _sacked(blocks, octet):
                assert sb.is_lost((BASE + octet) & MASK, BASE, SMSS) == _is_lost(blocks, octet)


def test_blocks_outside_the_window_are_ignored_and_a_dsack_is_counted() -> None:
    una = 1000
    sb = Scoreboard(una)
    new, dsack = sb.update(((500, 600), (1100, 1200)), una, 2000)  # below the cumulative ACK: D-SACK
    assert (new, dsack) == (100, 1)
    new, dsack = sb.update(((1150, 1300), (1900, 2100)), una, 2000)  # the second beyond SND.MAX
    assert (new, dsack) == (100, 0)
    assert sb.blocks == [(1100, 1300)]
    new, dsack = sb.update(((1120, 1180), (1100, 1300)), una, 2000)  # first inside the second: D-SACK
    assert (new, dsack) == (0, 1)
    sb.prune(1200)
    assert sb.blocks == [(1200, 1300)] and sb.sacked == 100
