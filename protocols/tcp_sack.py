"""The sender's SACK scoreboard (RFC 6675): what the peer reported holding above SND.UNA.

A connection makes one at the first SACK block it receives and drops it once the
cumulative ACK passes every block, so a connection without reordering or loss never
holds one. Blocks are kept as absolute sequence numbers, ascending and disjoint;
arithmetic is on offsets from SND.UNA so that it survives wrapping.
"""

from .seqnum import MASK, seq_lt

DUP_THRESH = 3  # RFC 6675 2: DupThresh


class Scoreboard:
    """SACKed ranges, HighRxt, and the Proportional Rate Reduction counts of the recovery under way (RFC 6937)."""

    __slots__ = ("blocks", "high_rxt", "prr_delivered", "prr_out", "recover_fs", "rxt_mark", "sacked", "undo_cwnd",
                 "undo_retrans", "undo_ssthresh", "undo_until")

    def __init__(self, una: int) -> None:
        self.blocks: list[tuple[int, int]] = []
        self.sacked = 0  # bytes SACKed in all
        self.high_rxt = una  # RFC 6675 HighRxt, as one past the highest octet retransmitted
        self.prr_delivered = 0  # RFC 6937 prr_delivered, prr_out and RecoverFS
        self.prr_out = 0
        self.recover_fs = 0
        self.rxt_mark: int | None = None  # SND.MAX when we last retransmitted
        # RFC 3708 3.2: cwnd and ssthresh before the last recovery, and its retransmissions not yet D-SACKed;
        # when every one comes back D-SACKed the recovery was spurious and is undone (0: nothing to undo)
        self.undo_cwnd = 0
        self.undo_ssthresh = 0
        self.undo_retrans = 0
        self.undo_until = una  # the slow path reads ACKs for D-SACKs until SND.UNA reaches this

    def retransmission_lost(self, una: int, mss: int) -> bool:
        """Data first sent after our last retransmission has been SACKed as IsLost would count it lost: the
        retransmissions before it are lost too (Linux's tcp_mark_lost_retrans, the idea RFC 8985 generalises).
        RFC 6675 alone leaves a lost retransmission to the RTO."""
        mark = self.rxt_mark
        if mark is None:
            return False
        return self.is_lost(mark, una, mss) and seq_lt(una, mark)

    def update(self, reported: tuple[tuple[int, int], ...], una: int, snd_max: int) -> tuple[int, int]:
        """Take an ACK's blocks; (octets newly SACKed, D-SACK blocks seen).

        A first block below the cumulative ACK, or inside the second, reports a duplicate (RFC 2883 4):
        counted, never taken as SACKed data. Other blocks must lie within SND.UNA..SND.MAX (RFC 6675 5:
        the scoreboard holds only what was sent and not yet acknowledged); a block beyond is ignored.
        """
        new = dsack = 0
        limit = (snd_max - una) & MASK
        for i, (start, end) in enumerate(reported):
            if i == 0 and (not seq_lt(una, end) or (len(reported) > 1 and _inside(start, end, reported[1]))):
                dsack += 1
                continue
            lo = (start - una) & MASK
            hi = (end - una) & MASK
            if lo >= hi or hi > limit:  # empty, wrapped below SND.UNA, or beyond what was sent
                if hi <= limit and hi > 0:
                    lo = 0  # starts below SND.UNA, ends above it: the part above counts
                else:
                    continue
            new += self._add(lo, hi, una)
        return new, dsack

    def _add(self, lo: int, hi: int, una: int) -> int:
        keep: list[tuple[int, int]] = []
        before = 0
        for bs, be in self.blocks:
            rbs = (bs - una) & MASK
            rbe = (be - una) & MASK
            if rbe < lo or rbs > hi:
                keep.append((bs, be))
            else:
                before += rbe - rbs
                if rbs < lo:
                    lo = rbs
                if rbe > hi:
                    hi = rbe
        keep.append(((una + lo) & MASK, (una + hi) & MASK))
        keep.sort(key=lambda b: (b[0] - una) & MASK)
        self.blocks = keep
        added = hi - lo - before
        self.sacked += added
        return added

    def prune(self, una: int) -> None:
        """The cumulative ACK reached ``una``: forget what it covers."""
        keep = []
        sacked = 0
        for bs, be in self.blocks:
            if not seq_lt(una, be):
                continue
            if seq_lt(bs, una):
                bs = una
            keep.append((bs, be))
            sacked += (be - bs) & MASK
        self.blocks = keep
        self.sacked = sacked
        if seq_lt(self.high_rxt, una):
            self.high_rxt = una

    def is_lost(self, seq: int, una: int, mss: int) -> bool:
        """RFC 6675 4 IsLost: DupThresh discontiguous SACKed ranges above ``seq``, or more than
        (DupThresh - 1) * SMSS octets SACKed above it."""
        rel = (seq - una) & MASK
        above = count = 0
        for bs, be in self.blocks:
            rbe = (be - una) & MASK
            if rbe > rel:
                rbs = (bs - una) & MASK
                above += rbe - (rbs if rbs > rel else rel)
                count += 1
        return count >= DUP_THRESH or above > (DUP_THRESH - 1) * mss

    def pipe(self, una: int, snd_max: int, mss: int) -> int:
        """RFC 6675 4 SetPipe, in octets: those not SACKed and not lost, and those retransmitted, once more."""
        pipe = prev = 0
        hr = (self.high_rxt - una) & MASK
        above = self.sacked
        n = len(self.blocks)
        for i, (bs, be) in enumerate(self.blocks):
            rbs = (bs - una) & MASK
            if rbs > prev:
                if not (n - i >= DUP_THRESH or above > (DUP_THRESH - 1) * mss):
                    pipe += rbs - prev
                if hr > prev:
                    pipe += (hr if hr < rbs else rbs) - prev
            rbe = (be - una) & MASK
            above -= rbe - rbs
            prev = rbe
        end = (snd_max - una) & MASK
        if end > prev:
            pipe += end - prev  # above the highest SACK nothing is lost yet
            if hr > prev:
                pipe += (hr if hr < end else end) - prev
        return pipe

    def next_hole(self, una: int, mss: int) -> tuple[int, int, bool] | None:
        """RFC 6675 4 NextSeg rules (1) and (3): the first unSACKed range above HighRxt and below the highest
        SACKed octet, as (seq, length of at most one SMSS, lost); a lost one first."""
        prev = 0
        hr = (self.high_rxt - una) & MASK
        above = self.sacked
        n = len(self.blocks)
        first: tuple[int, int, bool] | None = None
        for i, (bs, be) in enumerate(self.blocks):
            rbs = (bs - una) & MASK
            start = hr if hr > prev else prev
            if start < rbs:
                lost = n - i >= DUP_THRESH or above > (DUP_THRESH - 1) * mss
                seg = ((una + start) & MASK, min(mss, rbs - start), lost)
                if lost:
                    return seg
                if first is None:
                    first = seg
            rbe = (be - una) & MASK
            above -= rbe - rbs
            prev = rbe
        return first

    def sacked_end(self, seq: int, una: int) -> int | None:
        """If ``seq`` lies in a SACKed block, where the block ends."""
        rel = (seq - una) & MASK
        for bs, be in self.blocks:
            if (bs - una) & MASK <= rel < (be - una) & MASK:
                return be
        return None

    def next_sacked(self, seq: int, una: int) -> int | None:
        """The start of the first SACKed block above ``seq``."""
        rel = (seq - una) & MASK
        for bs, _ in self.blocks:
            if (bs - una) & MASK > rel:
                return bs
        return None


def _inside(start: int, end: int, other: tuple[int, int]) -> bool:
    return not seq_lt(start, other[0]) and not seq_lt(other[1], end)
