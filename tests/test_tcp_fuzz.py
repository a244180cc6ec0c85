"""TCP under attack: hostile frames into ``Stack.receive`` with A's connection in each of the eleven states.

The world (tests/tcp_fuzz_world.py) is two real stacks on a wire the test controls; A's connection is put in
a state by ordinary means (a handshake, a close, a segment held on the wire), then gets forged segments with
one field chosen near the values that matter (window edges, the 2^32 wrap, impossible flag sets, bad option
lengths, bad Data Offsets), random frames, truncated and byte-flipped copies of the peer's frames, the peer's
real frames, timer firings and socket calls, in the order Hypothesis draws. After every frame and call the
invariants of tests/tcp_invariants.py hold on every TCB of both stacks, and every byte an application read
is the peer's byte at that place in the stream. No exception may escape the stack.

``make test`` runs it derandomized (tests/conftest.py): FRAMES_PER_EXAMPLE frames at least in each example,
so the examples below put at least ``len(STATES) * EXAMPLES * FRAMES_PER_EXAMPLE`` frames through the stack
(plus every truncation of ``test_truncation_at_every_byte``); ``make fuzz`` draws at random, and many more.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tcp_fuzz_world import (
    CONFIGS,
    IP_A,
    IP_B,
    MAC_A,
    MAC_B,
    PORT,
    STATES,
    ByteSource,
    World,
    build,
    frame,
    held_bytes,
    run,
    step,
)
from tcp_invariants import InvariantError, StreamCheck, check_conn, stream_bytes

from simstack.protocols import tcp
from simstack.protocols.tcp import (
    ACK,
    FIN,
    OPT_MSS,
    OPT_SACK,
    OPT_SACK_PERMITTED,
    OPT_TIMESTAMP,
    OPT_WSCALE,
    PSH,
    SYN,
    Option,
    Tcp,
)
from simstack.protocols.tcp_conn import TcpConfig

EXAMPLES = 12
FRAMES_PER_EXAMPLE = 80
MAX_STEPS = 600  # a bound on the steps an example takes to put its frames through


class DrawSource:
    """The world's choices as Hypothesis draws, so a failure shrinks to the steps that matter."""

    def __init__(self, data: st.DataObject, world_frames: "list[World]", frames: int) -> None:
        self.data = data
        self.worlds = world_frames
        self.frames = frames
        self.steps = 0

    def num(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi)) if hi > lo else lo

    def blob(self, n: int) -> bytes:
        return self.data.draw(st.binary(min_size=n, max_size=n))

    def more(self) -> bool:
        self.steps += 1
        return self.steps <= MAX_STEPS and (not self.worlds or self.worlds[0].frames < self.frames)


@pytest.mark.parametrize("state", STATES)
@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_frames_timers_and_calls_keep_the_invariants(state: str, data: st.DataObject) -> None:
    configs = CONFIGS[data.draw(st.integers(0, len(CONFIGS) - 1), label="configs")]
    w = build(state, configs, seed=data.draw(st.integers(0, 255)), data=data.draw(st.sampled_from((0, 100, 5000))),
              wrap=data.draw(st.booleans(), label="ISNs near 2^32"))
    if state != "CLOSED":
        assert w.target is not None and w.target.state == state, w.target
    worlds = [w]
    start = w.frames
    src = DrawSource(data, worlds, start + FRAMES_PER_EXAMPLE)
    while src.more():
        step(w, src)
    assert w.frames - start >= FRAMES_PER_EXAMPLE, f"only {w.frames - start} frames in {MAX_STEPS} steps"


def _valid_frames(w: World) -> list[bytes]:
    """Frames B really sent, and a data segment to the target (or port 80) with each kind of option."""
    conn = w.target
    if conn is None or not conn.remote_port:
        ports, seq, ack = (40000, PORT), 1000, 0
    else:
        ports, seq, ack = (conn.remote_port, conn.local_port), conn.rcv_nxt, conn.snd_una
    frames = list(w.recent)
    for opt in (Option(OPT_MSS, 1460), Option(OPT_WSCALE, 7), Option(OPT_SACK_PERMITTED),
                Option(OPT_TIMESTAMP, (1, 2)), Option(OPT_SACK, ((seq + 100, seq + 200),)), Option(99, b"xy")):
        seg = Tcp(*ports, seq, ack, ACK | PSH, 65535, 0, (opt,), stream_bytes(seq, 20))
        frames.append(frame(MAC_B, MAC_A, IP_B, IP_A, tcp.emit(seg, IP_B, IP_A)))
    return frames


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("configs", [0, 1], ids=["plain", "options"])
def test_truncation_at_every_byte(state: str, configs: int) -> None:
    """Every prefix of a valid frame is dropped and counted (``World.inject(malformed=True)``), in every state."""
    w = build(state, CONFIGS[configs], data=5000, wrap=configs == 1)
    frames = _valid_frames(w)
    assert frames
    before = w.frames
    for f in frames:
        for cut in range(len(f)):
            if cut >= _ip_end(f):
                break
            w.inject(f[:cut], malformed=True)
    assert w.frames - before >= sum(min(len(f), _ip_end(f)) for f in frames) - len(frames)


def _ip_end(f: bytes) -> int:
    """A frame's meaningful length: past it there is only Ethernet padding, which a receiver ignores."""
    if f[12:14] == b"\x08\x00":
        return 14 + int.from_bytes(f[16:18], "big")
    if f[12:14] == b"\x08\x06":
        return 14 + 28
    return len(f)


@pytest.mark.parametrize("length", [0, 1, 13, 14, 33, 34, 53, 54, 60, 100, 600])
@settings(max_examples=10, suppress_health_check=[HealthCheck.large_base_example])
@given(data=st.data())
def test_random_frames(length: int, data: st.DataObject) -> None:
    """Random bytes, and random bytes behind a valid Ethernet header to A, in an ESTABLISHED world."""
    w = build("ESTABLISHED", CONFIGS[data.draw(st.integers(0, len(CONFIGS) - 1))])
    for _ in range(10):
        body = data.draw(st.binary(min_size=length, max_size=length))
        w.inject(body)
        w.inject((MAC_A + MAC_B + b"\x08\x00" + body)[:max(length, 14)])
    assert w.target is not None


def test_fuzz_inputs_decode_the_same_every_time() -> None:
    """The atheris target and the Hypothesis tests share the decoder: one input, one history (no hidden randomness)."""
    data = bytes(range(256)) * 8

    def history(d: bytes) -> tuple[int, float, dict[str, int], dict[str, int]]:
        w = run(ByteSource(d), max_steps=200)
        return w.frames, w.now, w.a.counters.snapshot(), w.b.counters.snapshot()

    assert history(data) == history(data)
    assert history(data) != history(data[::-1])


def test_checker_catches_what_it_claims() -> None:
    """The oracle can fail: a TCB pushed out of order, an over-full queue, a byte read out of place."""
    w = build("ESTABLISHED", (TcpConfig(), TcpConfig()), data=100)
    conn = w.target
    assert conn is not None
    check_conn(conn)
    conn.snd_nxt = (conn.snd_una - 1) & 0xFFFFFFFF
    with pytest.raises(InvariantError, match="snd_una"):
        check_conn(conn)
    conn.snd_nxt = conn.snd_una
    conn.sndbuf += bytes(conn.sndbuf_size + 1)
    with pytest.raises(InvariantError, match="send buffer"):
        check_conn(conn)
    del conn.sndbuf[:]
    check = StreamCheck(conn)
    check.got(stream_bytes(conn.irs + 1, 10))
    with pytest.raises(InvariantError, match="not the peer's bytes"):
        check.got(stream_bytes(conn.irs + 1, 10))  # the same ten bytes again: a duplicate delivered
    conn.rcvbuf += stream_bytes(conn.rcv_nxt + 1, 5)  # held one place off
    conn.rcv_nxt = (conn.rcv_nxt + 5) & 0xFFFFFFFF
    with pytest.raises(InvariantError, match="receive buffer holds"):
        held_bytes(conn)
    conn.rcvbuf[-5:] = stream_bytes(conn.rcv_nxt - 5, 5)
    held_bytes(conn)
    w.check()
    conn.fin_rcvd = True  # a FIN taken where nobody sent one
    with pytest.raises(InvariantError, match="is not one sent"):
        w.check()


def test_synack_data_is_trimmed_to_the_window() -> None:
    """Found by the random fuzz runs: a SYN-ACK carrying 65400 octets to a SYN that offered 4096 put them all
    in the receive buffer. RFC 9293 3.10.7.3 continues at 3.10.7.4's sixth step, where a segment is trimmed
    to the window offered (its FIN with it): 4096 octets are taken, the rest (and the FIN) are not."""
    w = build("SYN-SENT", CONFIGS[3])  # rcvbuf 4096
    conn = w.target
    assert conn is not None
    peer_isn = 1 << 20
    seg = Tcp(conn.remote_port, conn.local_port, peer_isn, (conn.iss + 1) & 0xFFFFFFFF, SYN | ACK | FIN, 65535, 0, (),
              stream_bytes(peer_isn + 1, 65400))
    w.inject(frame(MAC_B, MAC_A, IP_B, IP_A, tcp.emit(seg, IP_B, IP_A)))  # the invariants run here
    assert conn.state == "ESTABLISHED" and not conn.fin_rcvd
    assert len(conn.rcvbuf) == 4096 and conn.rcv_nxt == peer_isn + 1 + 4096
