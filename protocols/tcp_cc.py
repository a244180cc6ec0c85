"""Congestion control behind one small interface, chosen per connection (TCP_CONGESTION) or per stack.

An algorithm is a stateless singleton: what it keeps lives in the TCB, ``cwnd`` and
``ssthresh`` in bytes, and, for CUBIC alone, a small ``__slots__`` object made at the
first congestion event, so ten thousand idle connections cost nothing more here.
The TCB decides *when* (loss detection and recovery, RFC 5681, 6582, 6675); an
algorithm decides *how much* (growth per ACK, the new ssthresh on a loss).

The recovery phases are Linux's ``tcp_ca_state``: ``open``, ``disorder`` (duplicate
ACKs or SACK blocks, no loss yet), ``recovery`` (fast recovery), ``loss`` (after an
RTO). ``PHASES`` is the (phase, event) -> phase table the TCB steps through with one
dict lookup per event.
"""

from typing import Protocol

OPEN, DISORDER, RECOVERY, LOSS = "open", "disorder", "recovery", "loss"
# Linux's numbering of tcp_ca_state, as struct tcp_info's tcpi_ca_state reports it (CWR=2 unused here).
CA_STATE_NUMBER = {OPEN: 0, DISORDER: 1, RECOVERY: 3, LOSS: 4}

# (phase, event) -> next phase.
#   dupack     a duplicate ACK or new SACK information, no loss detected yet
#   lost       fast retransmit: DupThresh duplicates, or IsLost(SND.UNA) (RFC 5681 3.2, RFC 6675 5)
#   partial    new data acknowledged, below the recovery point (RFC 6582 3.2 step 4)
#   recovered  the recovery point acknowledged (RFC 6582 3.2 step 3, RFC 6675 5 (A)), or in disorder
#              every SACKed and duplicated segment acknowledged
#   rto        the retransmission timer expired (RFC 5681 (4), RFC 6298 5.5)
PHASES: dict[tuple[str, str], str] = {
    (OPEN, "dupack"): DISORDER, (OPEN, "lost"): RECOVERY, (OPEN, "rto"): LOSS,
    (OPEN, "partial"): OPEN, (OPEN, "recovered"): OPEN,  # ACKs read on the slow path after a recovery (D-SACK undo)
    (DISORDER, "dupack"): DISORDER, (DISORDER, "lost"): RECOVERY, (DISORDER, "partial"): DISORDER,
    (DISORDER, "recovered"): OPEN, (DISORDER, "rto"): LOSS,
    (RECOVERY, "dupack"): RECOVERY, (RECOVERY, "partial"): RECOVERY, (RECOVERY, "recovered"): OPEN,
    (RECOVERY, "rto"): LOSS, (RECOVERY, "lost"): RECOVERY,
    (LOSS, "dupack"): LOSS, (LOSS, "partial"): LOSS, (LOSS, "recovered"): OPEN, (LOSS, "rto"): LOSS,
    (LOSS, "lost"): LOSS,
}


class CubicState:
    """CUBIC's per-connection memory (RFC 9438 4.1): in segments and seconds."""

    __slots__ = ("cwnd_epoch", "k", "t_epoch", "w_est", "w_max")

    def __init__(self) -> None:
        self.w_max = 0.0  # W_max: the window before the last reduction
        self.k = 0.0  # K: seconds from the epoch's start until W_cubic reaches W_max again
        self.t_epoch: float | None = None  # the current congestion avoidance stage began here
        self.cwnd_epoch = 0.0
        self.w_est = 0.0  # W_est: what Reno would have by now (the Reno-friendly region)


class CongestionTcb(Protocol):
    """What an algorithm reads and writes of a TCB."""

    cwnd: int
    ssthresh: int
    snd_mss: int
    srtt: float | None
    cc_state: CubicState | None


class Congestion(Protocol):
    name: str

    def on_ack(self, tcb: CongestionTcb, acked: int, limit: int, now: float) -> None:
        """New data acknowledged outside recovery: grow cwnd. ``limit`` caps slow start's step (RFC 3465 L)."""

    def on_congestion(self, tcb: CongestionTcb, flight: int, now: float) -> None:
        """Fast retransmit: set ssthresh; the TCB sets cwnd as its recovery algorithm says."""

    def on_rto(self, tcb: CongestionTcb, flight: int, now: float) -> None:
        """The retransmission timer expired: ssthresh down, cwnd to the loss window (RFC 5681 (4))."""

    def on_idle_restart(self, tcb: CongestionTcb, window: int, now: float) -> None:
        """Sending again after an RTO of silence: cwnd to at most the restart window (RFC 5681 4.1)."""


class NewReno:
    """RFC 5681 slow start and congestion avoidance with RFC 3465 byte counting; RFC 6582 recovery is the TCB's."""

    __slots__ = ()
    name = "newreno"

    def on_ack(self, tcb: CongestionTcb, acked: int, limit: int, now: float) -> None:
        cwnd = tcb.cwnd
        if cwnd < tcb.ssthresh:
            tcb.cwnd = cwnd + (acked if acked < limit else limit)  # RFC 5681 3.1 slow start, RFC 3465 L
        else:
            mss = tcb.snd_mss
            # RFC 5681 3.1 (3) congestion avoidance, one SMSS*SMSS/cwnd an ACK; with L > 1, an ACK covering
            # several segments (a stretch ACK, or the ACK of a TSO segment) counts each, as Linux's
            # tcp_cong_avoid_ai does
            covered = acked if acked < limit else limit
            tcb.cwnd = cwnd + max(1, mss * (covered if covered > mss else mss) // cwnd)

    def on_congestion(self, tcb: CongestionTcb, flight: int, now: float) -> None:
        tcb.ssthresh = max(flight // 2, 2 * tcb.snd_mss)  # RFC 5681 (4)

    def on_rto(self, tcb: CongestionTcb, flight: int, now: float) -> None:
        tcb.ssthresh = max(flight // 2, 2 * tcb.snd_mss)  # RFC 5681 (4)
        tcb.cwnd = tcb.snd_mss  # the loss window

    def on_idle_restart(self, tcb: CongestionTcb, window: int, now: float) -> None:
        if tcb.cwnd > window:
            tcb.cwnd = window


CUBIC_C = 0.4  # RFC 9438 4.1
CUBIC_BETA = 0.7
CUBIC_ALPHA = 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA)  # RFC 9438 4.3: Reno's average rate at beta 0.7


class Cubic:
    """RFC 9438: after a loss the window follows W_cubic(t) = C (t - K)^3 + W_max, concave up to W_max, then convex."""

    __slots__ = ()
    name = "cubic"

    def on_ack(self, tcb: CongestionTcb, acked: int, limit: int, now: float) -> None:
        cwnd = tcb.cwnd
        if cwnd < tcb.ssthresh:
            tcb.cwnd = cwnd + (acked if acked < limit else limit)  # RFC 9438 4.10: slow start as Reno's
            return
        s = tcb.cc_state
        if s is None:
            s = tcb.cc_state = CubicState()
        mss = tcb.snd_mss
        w = cwnd / mss
        if s.t_epoch is None:
            # RFC 9438 4.2: a congestion avoidance stage begins; with no reduction behind it (after an RTO,
            # or none yet) W_max is the window now and K is 0 (4.8)
            s.t_epoch = now
            s.cwnd_epoch = s.w_est = w
            if s.w_max <= w:
                s.w_max = w
                s.k = 0.0
            else:
                s.k = ((s.w_max - w) / CUBIC_C) ** (1 / 3)  # RFC 9438 figure 2
        t = now - s.t_epoch
        segments = acked / mss
        # RFC 9438 4.3: W_est grows as Reno's would, with alpha_cubic until it reaches W_max, then 1
        s.w_est += (1.0 if s.w_est >= s.w_max else CUBIC_ALPHA) * segments / w
        if CUBIC_C * (t - s.k) ** 3 + s.w_max < s.w_est:
            w = s.w_est  # the Reno-friendly region
        else:
            # RFC 9438 4.4-4.5: toward W_cubic one RTT ahead, clamped to [cwnd, 1.5 cwnd]
            rtt = tcb.srtt or 0.0
            target = CUBIC_C * (t + rtt - s.k) ** 3 + s.w_max
            if target < w:
                target = w
            elif target > 1.5 * w:
                target = 1.5 * w
            w += (target - w) / w * segments
        grown = int(w * mss)
        if grown > cwnd:
            tcb.cwnd = grown

    def on_congestion(self, tcb: CongestionTcb, flight: int, now: float) -> None:
        s = tcb.cc_state
        if s is None:
            s = tcb.cc_state = CubicState()
        mss = tcb.snd_mss
        w = tcb.cwnd / mss
        # RFC 9438 4.7 fast convergence: a window that stopped short of the last W_max releases bandwidth
        s.w_max = w * (1 + CUBIC_BETA) / 2 if w < s.w_max else w
        s.t_epoch = None
        tcb.ssthresh = max(int(flight * CUBIC_BETA), 2 * mss)  # RFC 9438 4.6

    def on_rto(self, tcb: CongestionTcb, flight: int, now: float) -> None:
        mss = tcb.snd_mss
        tcb.ssthresh = max(int(flight * CUBIC_BETA), 2 * mss)  # RFC 9438 4.8: ssthresh by beta_cubic
        tcb.cwnd = mss  # and cwnd as Reno's (RFC 5681 (4))
        s = tcb.cc_state
        if s is not None:
            s.w_max = 0.0  # the next stage starts with K = 0 and W_max = its first window (4.8)
            s.t_epoch = None

    def on_idle_restart(self, tcb: CongestionTcb, window: int, now: float) -> None:
        if tcb.cwnd > window:
            tcb.cwnd = window
        s = tcb.cc_state
        if s is not None:
            s.t_epoch = None  # no growth for the silent time (Linux bictcp_cwnd_event CA_EVENT_TX_START)


NEWRENO = NewReno()
CUBIC = Cubic()
ALGORITHMS: dict[str, Congestion] = {NEWRENO.name: NEWRENO, CUBIC.name: CUBIC}
