"""netem where the kernel has none: a relay between the kernel and simstack that loses, reorders and duplicates.

    impair_relay.py STACK_IF KERNEL_TAP [--to-stack SPEC] [--to-kernel SPEC] [--seed N]

The kernel's end of the link becomes KERNEL_TAP, a TAP this relay holds (the
test gives its kernel side the address); simstack keeps its own TAP,
STACK_IF, whose kernel side has no address: the relay reads and writes it
through a packet socket. Every frame from KERNEL_TAP goes to simstack
through an ``Impairer`` with SPEC (``engine/wire/impair.py``'s syntax, as
``loss=3%,reorder=10%,duplicate=1%,delay=1ms``), which is what ``tc qdisc
add dev STACK_IF root netem ...`` would do to the kernel's frames; frames
from simstack go back through ``--to-kernel``'s (none by default).

Run inside the test's namespace with ``net.ipv4.conf.all.arp_ignore=1``, so
the kernel answers ARP only on the interface that has the address. Prints
``{"ready": ...}`` once both ends are open, and the impairers' counts on
SIGTERM.
"""

import argparse
import heapq
import itertools
import json
import random
import select
import signal
import socket
import sys
import time
from types import FrameType

from simstack.engine.wire.impair import Impairer, Impairment
from simstack.engine.wire.tap import Tap

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stack_if")
    p.add_argument("kernel_tap")
    p.add_argument("--to-stack", default="")
    p.add_argument("--to-kernel", default="")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    rng = random.Random(a.seed)
    to_stack = Impairer(Impairment.parse(a.to_stack), random.Random(rng.getrandbits(64)))
    to_kernel = Impairer(Impairment.parse(a.to_kernel), random.Random(rng.getrandbits(64)))
    tap = Tap.attach(a.kernel_tap)
    pkt = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    pkt.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    pkt.bind((a.stack_if, 0))
    pkt.setblocking(False)
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ep = select.epoll()
    ep.register(tap.fileno(), select.EPOLLIN)
    ep.register(pkt.fileno(), select.EPOLLIN)
    pending: list[tuple[float, int, bool, bytes]] = []  # (when, seq, to the stack?, frame)
    seq = itertools.count()
    print(json.dumps({"ready": f"{a.kernel_tap} <-> {a.stack_if}"}), flush=True)
    while not stopping:
        now = time.monotonic()
        timeout = max(0.0, pending[0][0] - now) if pending else 1.0
        try:
            events = ep.poll(timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd, _ in events:
            if fd == tap.fileno():
                for frame in tap.read_batch(64):
                    for when, out in to_stack.apply(frame, now):
                        heapq.heappush(pending, (when, next(seq), True, out))
            else:
                for _ in range(64):
                    try:
                        frame, addr = pkt.recvfrom(65536)
                    except BlockingIOError:
                        break
                    except OSError:  # simstack's TAP went away: the relay's work is over
                        stopping = True
                        break
                    if addr[2] == PACKET_OUTGOING:
                        continue  # what the relay (or the kernel) sent towards simstack
                    for when, out in to_kernel.apply(frame, now):
                        heapq.heappush(pending, (when, next(seq), False, out))
        while pending and pending[0][0] <= now:
            _, _, stack_bound, frame = heapq.heappop(pending)
            if stack_bound:
                try:
                    pkt.send(frame)
                except OSError:
                    to_stack.counts["dropped"] += 1
            elif tap.write(frame) is not None:
                to_kernel.counts["dropped"] += 1  # the kernel's backlog was full
    print(json.dumps({"to_stack": to_stack.counts, "to_kernel": to_kernel.counts}), flush=True)
    tap.close()
    pkt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
