"""SYN cookies (RFC 4987 3.6): the cookie maths alone, then a listener that uses them between two TCP layers."""

import dataclasses

from hypothesis import given
from hypothesis import strategies as st
from tcp_harness import A_IP, B_IP, Net

from simstack.protocols import tcp_cookies as tc
from simstack.protocols.tcp import ACK, OPT_MSS, OPT_WSCALE, RST, SYN, Option, Tcp
from simstack.protocols.tcp_conn import ANY, TcpConfig

KEY = tc.key_from(bytes(range(16)))
TUP = tc.four_tuple(A_IP, 80, B_IP, 40000)
FAST = TcpConfig(msl=0.5, rto_min=0.2, rto_initial=0.2)


# -- the maths ------------------------------------------------------------------------------
def test_round_trip_gives_the_mss_at_or_below_the_peers() -> None:
    for mss, expected in ((1460, 1460), (1459, 1440), (9000, 1460), (536, 536), (1000, 536), (40, 64)):
        cookie = tc.encode(KEY, TUP, 12345, mss, now=10.0)
        assert tc.decode(KEY, TUP, 12345, cookie, now=10.0) == expected


def test_layout_is_rfc_4987s() -> None:
    now = 5 * tc.PERIOD + 1
    cookie = tc.encode(KEY, TUP, 7, 1460, now)
    assert cookie >> 27 == 5  # t: the 64-second counter
    assert (cookie >> 24) & 7 == tc.MSS_TABLE.index(1460)  # m: the MSS index
    assert 0 <= cookie < 1 << 32


def test_a_cookie_lives_two_ticks() -> None:
    cookie = tc.encode(KEY, TUP, 7, 1460, now=100.0)  # tick 1
    assert tc.decode(KEY, TUP, 7, cookie, now=127.9) == 1460
    assert tc.decode(KEY, TUP, 7, cookie, now=191.0) == 1460  # tick 2: still valid
    assert tc.decode(KEY, TUP, 7, cookie, now=192.0) is None  # tick 3: too old
    assert tc.decode(KEY, TUP, 7, cookie, now=63.0) is None  # from the future


def test_counter_wraparound() -> None:
    """t is 5 bits: tick 31 then tick 32 (t = 0) still validates, and a cookie 32 ticks old never does."""
    last = 31 * tc.PERIOD + 10
    cookie = tc.encode(KEY, TUP, 99, 1460, last)
    assert cookie >> 27 == 31
    assert tc.decode(KEY, TUP, 99, cookie, last + tc.PERIOD) == 1460  # t wrapped to 0
    old = tc.encode(KEY, TUP, 99, 1460, 0.5)  # tick 0: t = 0, as at tick 32
    assert tc.decode(KEY, TUP, 99, old, 32 * tc.PERIOD + 0.5) is None  # the hash covers the whole counter


def test_forged_cookie_is_rejected() -> None:
    cookie = tc.encode(KEY, TUP, 7, 1460, 10.0)
    assert tc.decode(KEY, TUP, 7, cookie ^ 1, 10.0) is None  # one bit of the hash
    assert tc.decode(KEY, TUP, 7, cookie ^ (1 << 24), 10.0) is None  # another MSS
    assert tc.decode(tc.key_from(b"another secret.."), TUP, 7, cookie, 10.0) is None  # another stack's key
    forged = sum(tc.decode(KEY, TUP, 7, guess, 10.0) is not None for guess in range(0, 1 << 32, 99_991))
    assert forged == 0  # 43,000 guesses, each with a 2**-24 chance


tuples = st.tuples(st.binary(min_size=4, max_size=4), st.integers(0, 65535), st.binary(min_size=4, max_size=4),
                   st.integers(0, 65535))


@given(a=tuples, b=tuples, isn=st.integers(0, (1 << 32) - 1), mss=st.integers(1, 65535),
       sent=st.floats(0, 1e6), later=st.floats(0, 400))
def test_a_cookie_validates_only_for_its_own_tuple_and_window(a: tuple[bytes, int, bytes, int],
                                                              b: tuple[bytes, int, bytes, int], isn: int, mss: int,
                                                              sent: float, later: float) -> None:
    cookie = tc.encode(KEY, tc.four_tuple(*a), isn, mss, sent)
    now = sent + later
    in_window = tc.tick(now) - tc.tick(sent) < tc.MAX_AGE
    assert (tc.decode(KEY, tc.four_tuple(*a), isn, cookie, now) is not None) == in_window
    if b != a:
        assert tc.decode(KEY, tc.four_tuple(*b), isn, cookie, sent) is None
    assert tc.decode(KEY, tc.four_tuple(*a), (isn + 1) % (1 << 32), cookie, sent) is None


# -- a listener using them ----------------------------------------------------------------------
def _spoofing(config: TcpConfig) -> Net:
    """Host B's address is the forged peer's: what A sends it is logged and goes no further."""
    net = Net(config)
    net.tap = lambda sent: [] if sent.dst == B_IP else None
    return net


def _deliver(net: Net) -> None:
    net.run(until=net.now + 0.01)


def test_full_syn_queue_answers_with_a_cookie_and_its_ack_makes_a_connection() -> None:
    net = _spoofing(FAST)
    listener = net.a.open()
    listener.bind(ANY, 80)
    listener.listen(1)
    # a spoofed half-open connection fills the one-place SYN queue
    net.inject(Tcp(5000, 80, 1000, 0, SYN, 65535, 0, (Option(OPT_MSS, 1460),)), B_IP, A_IP)
    _deliver(net)
    assert len(listener.children) == 1
    net.inject(Tcp(40000, 80, 7000, 0, SYN, 65535, 0, (Option(OPT_MSS, 1400), Option(OPT_WSCALE, 7))), B_IP, A_IP)
    _deliver(net)
    synack = net.log[-1].seg
    assert synack.flags == SYN | ACK and synack.ack == 7001
    assert synack.options == (Option(OPT_MSS, 1460),)  # no room in a cookie for window scaling
    assert net.a.counters["tcp.syncookies_sent"] == 1 and len(listener.children) == 1
    assert (A_IP, 80, B_IP, 40000) not in net.a.tcp.conns  # nothing kept
    net.inject(Tcp(40000, 80, 7001, (synack.seq + 1) & 0xFFFFFFFF, ACK, 1000, 0, (), b"hello"), B_IP, A_IP)
    _deliver(net)
    assert net.a.counters["tcp.syncookies_ok"] == 1
    conn = listener.accept()
    assert conn is not None and conn.state == "ESTABLISHED"
    assert conn.snd_mss == 1400 and conn.snd_wnd == 1000 and not conn.ws_ok
    assert conn.recv(100, net.now) == b"hello"


def test_a_wrong_cookie_is_answered_with_rst_and_counted() -> None:
    net = _spoofing(dataclasses.replace(FAST, syncookies=2))
    listener = net.a.open()
    listener.bind(ANY, 80)
    listener.listen(8)
    net.inject(Tcp(40000, 80, 7000, 0, SYN, 65535, 0, (Option(OPT_MSS, 1460),)), B_IP, A_IP)
    _deliver(net)
    synack = net.log[-1].seg
    assert net.a.counters["tcp.syncookies_sent"] == 1 and not listener.children  # 2: always, queue or not
    net.inject(Tcp(40000, 80, 7001, (synack.seq + 2) & 0xFFFFFFFF, ACK, 1000), B_IP, A_IP)
    _deliver(net)
    assert net.a.counters["tcp.syncookies_failed"] == 1
    assert net.log[-1].seg.flags == RST and listener.accept() is None


def test_without_cookies_a_full_queue_drops_the_syn() -> None:
    net = _spoofing(dataclasses.replace(FAST, syncookies=0))
    listener = net.a.open()
    listener.bind(ANY, 80)
    listener.listen(1)
    for port in (5000, 5001):
        net.inject(Tcp(port, 80, 1000, 0, SYN, 65535, 0, (Option(OPT_MSS, 1460),)), B_IP, A_IP)
    _deliver(net)
    assert net.a.counters["tcp.drop.syn_backlog_full"] == 1 and net.a.counters["tcp.syncookies_sent"] == 0


def test_two_real_peers_connect_through_cookies() -> None:
    """syncookies 2: every handshake goes through a cookie, and data flows both ways after it."""
    net = Net(dataclasses.replace(FAST, syncookies=2))
    listener = net.a.open()
    listener.bind(ANY, 80)
    listener.listen(8)
    client = net.b.open()
    client.connect(A_IP, 80, net.now)
    net.run(until=1.0)
    server = listener.accept()
    assert server is not None and client.state == server.state == "ESTABLISHED"
    assert client.send(b"x" * 5000, net.now) == 5000
    net.run(until=2.0)
    assert server.recv(10000, net.now) == b"x" * 5000
    assert net.a.counters["tcp.syncookies_ok"] == 1
