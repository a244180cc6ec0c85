"""``ping`` from the stack: echo requests through ``open_echo``, printed as iputils prints them.

It runs as an application thread on ``LiveDriver``: every stack access goes
through ``call`` or the driver's lock, and it sleeps on the driver's
condition between sends, so replies are printed as soon as the loop has them.
Address resolution is the stack's business: the first request waits in the
ARP queue, and if ARP gives up the stack reports Host Unreachable.
"""

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from simstack.protocols import icmp
from simstack.protocols.addresses import ip_to_str
from simstack.protocols.stack import EchoEndpoint, EchoReply, IcmpErrorEvent, NoRoute, Stack

from .driver import LiveDriver

HEADERS = 28  # IPv4 (20) + ICMP (8), for the "56(84) bytes" banner

_UNREACHABLE = {
    icmp.NET_UNREACHABLE: "Destination Net Unreachable",
    icmp.HOST_UNREACHABLE: "Destination Host Unreachable",
    icmp.PROTOCOL_UNREACHABLE: "Destination Protocol Unreachable",
    icmp.PORT_UNREACHABLE: "Destination Port Unreachable",
    icmp.FRAG_NEEDED: "Frag needed and DF set",
}
_TIME_EXCEEDED = {icmp.TTL_EXCEEDED: "Time to live exceeded", icmp.REASSEMBLY_EXCEEDED: "Frag reassembly time exceeded"}


class PingError(Exception):
    """A request could not be sent at all (ENETUNREACH): ping's exit 2."""


def error_text(type_: int, code: int) -> str:
    """The words iputils uses for an ICMP error."""
    if type_ == icmp.DEST_UNREACHABLE:
        return _UNREACHABLE.get(code, f"Dest Unreachable, Bad Code: {code}")
    if type_ == icmp.TIME_EXCEEDED:
        return _TIME_EXCEEDED.get(code, f"Time exceeded, Bad Code: {code}")
    if type_ == icmp.PARAMETER_PROBLEM:
        return "Parameter problem"
    return f"Bad ICMP type: {type_}"


def format_ms(seconds: float) -> str:
    """RTTs with about three significant digits, as iputils shows them."""
    ms = seconds * 1000
    if ms < 1:
        return f"{ms:.3f}"
    if ms < 10:
        return f"{ms:.2f}"
    if ms < 100:
        return f"{ms:.1f}"
    return f"{ms:.0f}"


@dataclass
class PingResult:
    transmitted: int = 0
    received: int = 0
    errors: int = 0
    duplicates: int = 0
    rtts: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def loss_percent(self) -> float:
        return 100.0 * (self.transmitted - self.received) / self.transmitted if self.transmitted else 0.0

    def summary(self, dst: str) -> str:
        parts = [f"{self.transmitted} packets transmitted", f"{self.received} received"]
        if self.duplicates:
            parts.append(f"+{self.duplicates} duplicates")
        if self.errors:
            parts.append(f"+{self.errors} errors")
        parts.append(f"{self.loss_percent:g}% packet loss")
        parts.append(f"time {self.elapsed * 1000:.0f}ms")
        lines = [f"--- {dst} ping statistics ---", ", ".join(parts)]
        if self.rtts:
            ms = [r * 1000 for r in self.rtts]
            mean = statistics.fmean(ms)
            mdev = math.sqrt(max(0.0, statistics.fmean(m * m for m in ms) - mean * mean))
            lines.append(f"rtt min/avg/max/mdev = {min(ms):.3f}/{mean:.3f}/{max(ms):.3f}/{mdev:.3f} ms")
        return "\n".join(lines)


class Pinger:
    """Sends ``count`` echo requests ``interval`` seconds apart and reports each answer.

    After the last request it waits up to ``linger`` seconds for answers still
    outstanding (long enough, by default, for ARP to give up and the stack to
    report the host unreachable). ``interrupt()`` ends it early, as Ctrl-C
    ends ping, and it still prints the summary.
    """

    def __init__(self, driver: LiveDriver, dst: bytes, *, count: int = 5, interval: float = 1.0, size: int = 56,
                 linger: float | None = None, out: TextIO) -> None:
        self.driver = driver
        self.dst = dst
        self.count = count
        self.interval = interval
        self.size = size
        arp = driver.stack.config.arp
        self.linger = arp.retrans_time * arp.max_probes + 1.0 if linger is None else linger
        self.out = out
        self.result = PingResult()
        self._interrupted = False
        self._sent: dict[int, float] = {}
        self._replied: set[int] = set()
        self._errored: set[int] = set()
        # The pattern Linux ping puts after its timestamp, so captures look familiar.
        self._payload = bytes((i + 8) & 0xFF for i in range(size))

    def interrupt(self) -> None:
        self._interrupted = True
        self.driver.notify()

    def run(self) -> int:
        """0 when at least one reply came back, 1 when none did (iputils' convention)."""
        driver = self.driver
        dst = ip_to_str(self.dst)
        try:
            driver.call(lambda stack, now: stack.route(self.dst))
        except NoRoute as e:
            raise PingError(f"ping {dst}: {e.strerror}") from None
        ep: EchoEndpoint = driver.call(lambda stack, now: stack.open_echo())
        self._print(f"PING {dst} ({dst}) {self.size}({self.size + HEADERS}) bytes of data.")
        try:
            self._loop(ep)
        finally:
            driver.call(lambda stack, now: ep.close())
        self._print("")
        self._print(self.result.summary(dst))
        return 0 if self.result.received else 1

    def _loop(self, ep: EchoEndpoint) -> None:
        driver = self.driver
        first = next_send = driver.now()
        give_up = math.inf
        seq = 0
        while not self._interrupted and driver.running:
            now = driver.now()
            if seq < self.count and now >= next_send:
                seq += 1
                sent_at = driver.call(self._sender(ep, seq))
                self._sent[seq] = sent_at
                self.result.transmitted += 1
                self.result.elapsed = sent_at - first
                next_send += self.interval
                if seq == self.count:
                    give_up = sent_at + self.linger
            if seq == self.count and (len(self._replied | self._errored) == self.count or now >= give_up):
                break
            wake_at = next_send if seq < self.count else give_up
            with driver.condition:
                driver.condition.wait_for(lambda: bool(ep.events) or self._interrupted or not driver.running,
                                          max(0.0, wake_at - driver.now()))
                events = list(ep.events)
                ep.events.clear()
            for event in events:
                self._report(event)

    def _sender(self, ep: EchoEndpoint, seq: int) -> Callable[[Stack, float], float]:
        def send(_stack: Stack, now: float) -> float:
            try:
                ep.send(self.dst, seq & 0xFFFF, self._payload, now)
            except NoRoute as e:
                raise PingError(f"ping {ip_to_str(self.dst)}: {e.strerror}") from None
            return now

        return send

    def _report(self, event: EchoReply | IcmpErrorEvent) -> None:
        seq = event.sequence
        if isinstance(event, IcmpErrorEvent):
            if seq in self._sent and seq not in self._errored:
                self._errored.add(seq)
                self.result.errors += 1
            self._print(f"From {ip_to_str(event.src)} icmp_seq={seq} {error_text(event.type, event.code)}")
            return
        sent = self._sent.get(seq)
        if sent is None or event.src != self.dst:
            return  # not one of ours: another run's sequence, or a reply from elsewhere
        rtt = event.time - sent
        dup = seq in self._replied
        if dup:
            self.result.duplicates += 1
        else:
            self._replied.add(seq)
            self.result.received += 1
            self.result.rtts.append(rtt)
        self._print(f"{len(event.data) + icmp.HEADER_LEN} bytes from {ip_to_str(event.src)}: icmp_seq={seq} "
                    f"ttl={event.ttl} time={format_ms(rtt)} ms{' (DUP!)' if dup else ''}")

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)
