"""The TCP services (echo, discard, HTTP) on a replay: two simstacks on a simulated segment, no root.

The client side is a second simstack driven through the socket API, and the
HTTP answers are read by Python's own ``http.client``, not by h11, so the
server's bytes are checked by a parser it does not share. A replay with
``SimHost`` alone checks the segments themselves against scapy.
"""

import hashlib
import http.client
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from scapy.all import ARP, IP, TCP, Ether, raw

from simstack.engine.api import httpd, services
from simstack.engine.api.sockets import AF_INET, SOCK_STREAM
from simstack.engine.api.stream import StreamSocket
from simstack.engine.api.tcp_service import CHUNK
from simstack.engine.scenario.simhost import NetHost, SimHost
from simstack.engine.wire.impair import Impairment
from simstack.engine.wire.network import SimNetwork
from simstack.protocols.stack import Stack, StackConfig

SERVER_IP, CLIENT_IP = "10.0.0.1", "10.0.0.2"


class Pair:
    def __init__(self, names: list[str], impair: str = "", seed: int = 1) -> None:
        self.net = SimNetwork(seed)
        spec = Impairment.parse(impair) if impair else None
        self.server = NetHost(self.net, self.net.attach("server", Stack(
            StackConfig(mac=bytes.fromhex("020000000001"), ip=bytes([10, 0, 0, 1])), random.Random(seed)), spec),
            default_wait=60)
        self.client = NetHost(self.net, self.net.attach("client", Stack(
            StackConfig(mac=bytes.fromhex("020000000002"), ip=bytes([10, 0, 0, 2])), random.Random(seed + 1)), spec),
            default_wait=60)
        self.services = services.start_services(self.server, names)

    def connect(self, port: int) -> StreamSocket:
        s = self.client.socket(AF_INET, SOCK_STREAM)
        s.settimeout(60)
        s.connect((SERVER_IP, port))
        return s

    def server_states(self) -> dict[str, int]:
        states: dict[str, int] = {}
        for conn in self.server.stack.tcp.conns.values():
            states[conn.state] = states.get(conn.state, 0) + 1
        return states

    def settle(self, seconds: float) -> None:
        self.net.advance(self.net.now + seconds)


def echo_through(pair: Pair, sock: StreamSocket, data: bytes) -> bytes:
    """Send ``data`` and collect the echo, both from readiness callbacks; what came back by EOF."""
    got = bytearray()
    done = [False]
    view = memoryview(data)
    sock.setblocking(False)

    def readable() -> None:
        while True:
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                return
            if not chunk:
                done[0] = True
                pair.client.remove_reader(sock)
                return
            got.extend(chunk)

    def writable() -> None:
        nonlocal view
        while view:
            try:
                view = view[sock.send(view[:65536]):]  # type: ignore[arg-type]
            except BlockingIOError:
                return
        pair.client.remove_writer(sock)
        sock.shutdown(1)

    pair.client.add_reader(sock, readable)
    pair.client.add_writer(sock, writable)
    assert pair.net.run_until(lambda: done[0], pair.net.now + 120), f"{len(got)} of {len(data)} bytes echoed"
    return bytes(got)


def test_tcp_echo_returns_a_megabyte_intact_and_closes_after_the_peer() -> None:
    pair = Pair(["echo"])
    data = random.Random(3).randbytes(1_000_000)
    s = pair.connect(7)
    assert hashlib.sha256(echo_through(pair, s, data)).digest() == hashlib.sha256(data).digest()
    s.close()
    pair.settle(1)
    assert pair.server_states() == {}  # the server closed second: no TIME-WAIT on its side
    assert not pair.services[0].parts[1].conns  # type: ignore[attr-defined]


def test_tcp_echo_over_a_lossy_link() -> None:
    pair = Pair(["echo"], "loss=3%,reorder=5%,duplicate=1%,delay=1ms", seed=4)
    data = random.Random(4).randbytes(300_000)
    assert echo_through(pair, pair.connect(7), data) == data


def test_echo_stops_reading_while_its_send_buffer_is_full_so_the_window_closes() -> None:
    pair = Pair(["echo"])
    s = pair.connect(7)
    s.setblocking(False)
    data = random.Random(5).randbytes(2_000_000)
    sent = 0
    # The client never reads: the echo's send buffer fills, it stops reading, its window closes,
    # and the client's sends stop being taken.
    for _ in range(200):
        try:
            sent += s.send(data[sent:sent + 65536])
        except BlockingIOError:
            pair.settle(0.5)
    [echo] = pair.services[0].parts[1].conns  # type: ignore[attr-defined]
    conn = echo.sock._endpoint
    assert len(echo.out) <= CHUNK
    assert not echo.reading
    assert len(conn.rcvbuf) >= conn.rcvbuf_size - 1500  # the stack holds what echo does not read
    assert sent < 4 * 131072 + CHUNK  # bounded: both sides' send and receive buffers and one chunk
    assert pair.client.stack.counters["tcp.persist_probe"] > 0  # the client probed the closed window
    # Reading reopens everything; the rest goes through and comes back intact.
    rest = bytearray()
    while True:
        try:
            chunk = s.recv(1 << 20)
        except BlockingIOError:
            break
        rest.extend(chunk)
    got = bytes(rest) + echo_through(pair, s, data[sent:])
    assert got == data


def test_many_echo_connections_at_once() -> None:
    pair = Pair(["echo"])
    socks = [pair.connect(7) for _ in range(50)]
    payloads = [random.Random(i).randbytes(20_000) for i in range(50)]
    for s, p in zip(socks, payloads, strict=True):
        s.setblocking(False)
        assert s.send(p) == len(p)
    pair.settle(2)
    for s, p in zip(socks, payloads, strict=True):
        assert s.recv(100_000) == p
        s.close()
    pair.settle(1)
    assert pair.server_states() == {}


def test_discard_reads_everything_and_sends_nothing() -> None:
    pair = Pair(["discard"])
    s = pair.connect(9)
    s.sendall(random.Random(6).randbytes(500_000))
    s.shutdown(1)
    assert s.recv(10) == b""  # discard closes once the peer has
    assert pair.server.stack.counters["tcp.rx"] > 300
    s.close()
    pair.settle(1)
    assert pair.server_states() == {}


def test_echo_and_discard_start_on_udp_and_tcp_under_one_name() -> None:
    pair = Pair(["echo", "discard"])
    tcp = pair.server.stack.tcp
    assert sorted(tcp.listeners) == [7, 9]
    u = pair.client.socket()
    u.settimeout(5)
    u.sendto(b"udp too", (SERVER_IP, 7))
    assert u.recvfrom(100) == (b"udp too", (SERVER_IP, 7))


def test_service_names_are_checked() -> None:
    assert services.service_error("echo") is None
    assert services.service_error("http") is None
    assert "unknown service" in (services.service_error("gopher") or "")
    assert "unknown service" in (services.service_error("echo:/tmp") or "")
    assert "not a directory" in (services.service_error("http:/no/such/dir") or "")
    with pytest.raises(ValueError):
        services.make_service("gopher")


# -- HTTP ------------------------------------------------------------------------------------
class _Raw(io.RawIOBase):
    def __init__(self, sock: StreamSocket) -> None:
        self.sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        return self.sock.recv_into(b)


class SockAdapter:
    """What ``http.client`` needs of a socket: sendall and makefile."""

    def __init__(self, sock: StreamSocket) -> None:
        self.sock = sock

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_Raw(self.sock))

    def close(self) -> None:
        self.sock.close()


def client(pair: Pair) -> http.client.HTTPConnection:
    c = http.client.HTTPConnection(SERVER_IP, 80)
    c.sock = SockAdapter(pair.connect(80))  # type: ignore[assignment]
    return c


def get(c: http.client.HTTPConnection, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    c.request(method, path)
    r = c.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_bytes(b"<h1>hi</h1>\n")
    (root / "sub" / "data.bin").write_bytes(random.Random(7).randbytes(3_000_000))
    (root / "empty.txt").write_bytes(b"")
    (tmp_path / "secret.txt").write_bytes(b"outside\n")
    (root / "link").symlink_to(tmp_path / "secret.txt")
    return root


def test_http_serves_files_with_keep_alive_head_and_errors(site: Path) -> None:
    pair = Pair([f"http:{site}"])
    c = client(pair)
    big = (site / "sub" / "data.bin").read_bytes()
    status, headers, body = get(c, "/sub/data.bin")
    assert (status, int(headers["content-length"])) == (200, len(big))
    assert hashlib.sha256(body).digest() == hashlib.sha256(big).digest()
    # the same connection again (keep-alive): index, HEAD, empty file, errors
    assert get(c, "/")[::2] == (200, b"<h1>hi</h1>\n")
    status, headers, body = get(c, "/sub/data.bin", "HEAD")
    assert (status, headers["content-length"], body) == (200, str(len(big)), b"")
    assert get(c, "/empty.txt")[::2] == (200, b"")
    assert get(c, "/nothing-here")[0] == 404
    assert get(c, "/sub/")[0] == 404  # a directory without index.html
    assert get(c, "/index.html?x=1")[::2] == (200, b"<h1>hi</h1>\n")
    assert get(c, "/index.html", "POST")[0] == 405
    assert get(c, "/../secret.txt")[0] in (403, 404)
    assert get(c, "/%2e%2e/secret.txt")[0] in (403, 404)
    assert get(c, "/sub/..%2f..%2fsecret.txt")[0] in (403, 404)
    assert get(c, "/link")[0] == 403  # a symlink pointing out of the root
    assert get(c, "/index.html")[0] == 200  # and still the same connection
    assert pair.server.stack.counters["tcp.passive_open"] == 1


def test_http_answers_pipelined_requests_in_order(site: Path) -> None:
    pair = Pair([f"http:{site}"])
    s = pair.connect(80)
    s.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n" * 20 + b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    got = bytearray()
    while chunk := s.recv(65536):
        got.extend(chunk)
    assert got.count(b"HTTP/1.1 200 OK\r\n") == 20 and got.count(b"<h1>hi</h1>\n") == 20
    assert got.rindex(b"HTTP/1.1 404 Not Found\r\n") > got.rindex(b"HTTP/1.1 200 OK\r\n")  # in order, then closed


@pytest.mark.parametrize("request_bytes", [
    b"THIS IS NOT HTTP\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
    b"GET relative HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /%ff HTTP/1.1\r\nHost: x\r\n\r\n",
])
def test_http_answers_400_to_a_bad_request_and_closes(site: Path, request_bytes: bytes) -> None:
    pair = Pair([f"http:{site}"])
    s = pair.connect(80)
    s.sendall(request_bytes)
    got = bytearray()
    while chunk := s.recv(65536):
        got.extend(chunk)
    assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n"), bytes(got)


def test_http_status_page_shows_counters_and_connection_states() -> None:
    pair = Pair(["echo", "http"])
    e = pair.connect(7)
    c = client(pair)
    status, headers, body = get(c, "/status.json")
    assert status == 200 and headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert doc["tcp"]["states"] == {"ESTABLISHED": 2}  # the echo connection and this one
    assert doc["tcp"]["listening"] == [7, 80]
    assert doc["counters"]["tcp.passive_open"] == 2
    assert {"local": f"{SERVER_IP}:7", "remote": f"{CLIENT_IP}:{e.getsockname()[1]}", "state": "ESTABLISHED"} \
        in doc["tcp"]["connections"]
    status, _, text = get(c, "/")
    assert status == 200 and b"ESTABLISHED" in text and b"tcp.passive_open 2" in text
    assert get(c, "/nope")[0] == 404
    e.close()
    pair.settle(0.5)
    doc = json.loads(get(c, "/status.json")[2])
    assert doc["tcp"]["states"] == {"ESTABLISHED": 1}


def test_status_text_lists_every_state() -> None:
    s = {"counters": {"tcp.rx": 3}, "tcp": {"states": {"TIME-WAIT": 2}, "listening": [7],
                                            "connections": [{"local": "a:1", "remote": "b:2", "state": "TIME-WAIT"}]}}
    text = httpd.status_text(s)
    assert "TIME-WAIT    2" in text and "tcp.rx 3" in text and "listening on TCP ports: 7" in text


# -- a replay of one stack, segments checked with scapy ------------------------------------------------
STACK_MAC, PEER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"


def test_tcp_echo_runs_in_a_replay_and_its_segments_parse_in_scapy() -> None:
    stack = Stack(StackConfig(mac=bytes.fromhex("020000000001"), ip=bytes([10, 0, 0, 1])), random.Random(1))
    host = SimHost(stack)
    services.start_services(host, ["echo"])
    ether = Ether(src=PEER_MAC, dst=STACK_MAC)
    host.wire.inject(raw(Ether(dst="ff:ff:ff:ff:ff:ff", src=PEER_MAC) /
                         ARP(op=1, hwsrc=PEER_MAC, psrc=CLIENT_IP, pdst=SERVER_IP)))
    host.wire.pending.clear()

    def inject(**kw: Any) -> list[Any]:
        payload = kw.pop("load", b"")
        host.wire.inject(raw(ether / IP(src=CLIENT_IP, dst=SERVER_IP) / TCP(sport=40000, dport=7, **kw) / payload))
        out = [Ether(f) for _, f in host.wire.pending]
        host.wire.pending.clear()
        return out

    [synack] = inject(flags="S", seq=1000, window=65535, options=[("MSS", 1460)])
    assert synack[TCP].flags == "SA" and synack[TCP].ack == 1001
    isn = synack[TCP].seq
    assert inject(flags="A", seq=1001, ack=isn + 1, window=65535) == []
    [echo] = inject(flags="PA", seq=1001, ack=isn + 1, window=65535, load=b"hello, replay")
    assert echo[TCP].load == b"hello, replay" and echo[TCP].seq == isn + 1 and echo[TCP].ack == 1014
    chk = echo[TCP].chksum
    del echo[TCP].chksum
    assert Ether(raw(echo))[TCP].chksum == chk  # scapy computes the same checksum
    # our FIN: echo closes after the peer's FIN, with its own
    out = inject(flags="FA", seq=1014, ack=isn + 14, window=65535)
    assert any(p[TCP].flags.F for p in out), [p[TCP].flags for p in out]
