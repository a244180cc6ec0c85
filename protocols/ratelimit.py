"""Token bucket for ICMP errors (RFC 1812 4.3.2.8, RFC 1122 3.2.2 "SHOULD limit")."""


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float = 0.0) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def allow(self, now: float) -> bool:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class IcmpErrorLimiter:
    """Linux's two limits on ICMP errors: per destination and for the whole host.

    Per destination: a burst of 6, then one a second (icmp_ratelimit=1000 ms,
    XRLIM_BURST_FACTOR 6). Whole host: 1000 a second, burst 50
    (icmp_msgs_per_sec / icmp_msgs_burst). The per-destination table is bounded.
    """

    def __init__(self, per_dest_rate: float = 1.0, per_dest_burst: int = 6, total_rate: float = 1000.0,
                 total_burst: int = 50, max_peers: int = 1024) -> None:
        self.per_dest_rate = per_dest_rate
        self.per_dest_burst = per_dest_burst
        self.total = TokenBucket(total_rate, total_burst)
        self.max_peers = max_peers
        self.peers: dict[bytes, TokenBucket] = {}

    def allow(self, dst: bytes, now: float) -> bool:
        bucket = self.peers.get(dst)
        if bucket is None:
            if len(self.peers) >= self.max_peers:
                del self.peers[next(iter(self.peers))]  # oldest first
            bucket = self.peers[dst] = TokenBucket(self.per_dest_rate, self.per_dest_burst, now)
        return bucket.allow(now) and self.total.allow(now)
