"""HTTP/1.1 on port 80: the files under a directory, or a status page; h11 parses, callbacks move the bytes.

h11 is sans-IO, as the stack is: bytes go in with ``receive_data``, events
come out, and ``send`` turns a response into bytes. This module only moves
those bytes through a non-blocking stream socket (``tcp_service.py``), one
chunk of a file at a time as send space opens, so a 20 MB download holds
64 KiB here and the rest stays on disk.

``HttpService(root)`` serves GET and HEAD of the files under ``root`` with a
Content-Length, keeps connections alive (and answers pipelined requests in
order), answers 404 for what is not there, 403 for a path that resolves
outside ``root`` (``..``, or a symbolic link pointing out), 405 for other
methods and 400 (or h11's own hint, such as 431) for what does not parse.
``HttpService()`` serves the stack's counters and TCP connections at ``/``
(text) and ``/status.json``.
"""

import json
import mimetypes
import os
import stat
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import h11

from simstack.protocols.addresses import ip_to_str
from simstack.protocols.stack import Stack

from .stream import StreamSocket
from .tcp_service import CHUNK, Connection, TcpService

SERVER = b"simstack"
ALLOW = b"GET, HEAD"
STATUS_CONNECTIONS = 1000  # connections listed one by one on the status page; the counts cover all


def status(stack: Stack, now: float) -> dict[str, Any]:
    """What the status page shows, taken where the stack lives."""
    states: dict[str, int] = {}
    conns: list[dict[str, str]] = []
    for conn in stack.tcp.conns.values():
        states[conn.state] = states.get(conn.state, 0) + 1
        if len(conns) < STATUS_CONNECTIONS:
            lip, lport = conn.local_address
            remote = conn.remote_address
            conns.append({"local": f"{ip_to_str(lip)}:{lport}",
                          "remote": f"{ip_to_str(remote[0])}:{remote[1]}" if remote else "",
                          "state": conn.state})
    listening = sorted(port for port, eps in stack.tcp.listeners.items() if eps)
    return {"counters": stack.counters.snapshot(),
            "tcp": {"states": dict(sorted(states.items())), "listening": listening, "connections": conns}}


def status_text(s: dict[str, Any]) -> str:
    lines = ["simstack status", "", "TCP connections by state:"]
    lines += [f"  {state:12} {n}" for state, n in s["tcp"]["states"].items()] or ["  (none)"]
    lines += ["", f"listening on TCP ports: {' '.join(map(str, s['tcp']['listening'])) or '(none)'}", "", "counters:"]
    lines += [f"  {name} {value}" for name, value in s["counters"].items()]
    lines += ["", "connections:"]
    lines += [f"  {c['local']:21} {c['remote']:21} {c['state']}" for c in s["tcp"]["connections"]]
    return "\n".join(lines) + "\n"


class HttpConnection(Connection):
    service: "HttpService"

    def __init__(self, service: TcpService, sock: StreamSocket) -> None:
        super().__init__(service, sock)
        self.http = h11.Connection(h11.SERVER)
        self.body: Any = None  # the open file being sent
        self.left = 0  # bytes of it still to send

    # -- input ---------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.http.receive_data(data)
        self.process()

    def eof_received(self) -> None:
        self.http.receive_data(b"")
        self.process()

    def process(self) -> None:
        """Take events while no response is under way; one request at a time, pipelined ones after."""
        http = self.http
        while not self.closed and self.body is None and not self.out:
            try:
                event = http.next_event()
            except h11.RemoteProtocolError as e:
                self.fail(e.error_status_hint)
                return
            if event is h11.NEED_DATA:
                if http.their_state is h11.CLOSED or http.our_state in (h11.CLOSED, h11.MUST_CLOSE):
                    self.finish()
                else:
                    self.resume_reading()
                return
            if event is h11.PAUSED:
                if http.our_state is h11.DONE and http.their_state is h11.DONE:
                    http.start_next_cycle()
                    continue
                self.finish()  # they sent Connection: close, or we did
                return
            if isinstance(event, h11.Request):
                self.pause_reading()  # until this response is out: pipelined requests wait in the socket
                self.respond(event)
            elif isinstance(event, h11.ConnectionClosed):
                self.finish()
                return
            # Data and EndOfMessage of a request body: nothing to do with them

    # -- output --------------------------------------------------------------------
    def respond(self, req: h11.Request) -> None:
        method = req.method
        if method not in (b"GET", b"HEAD"):
            self.simple(405, b"method not allowed\n", [(b"allow", ALLOW)])
            return
        path = _path(req.target)
        if path is None:
            self.fail(400)
            return
        self.service.serve(self, path, method == b"HEAD")

    def simple(self, code: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None,
               content_type: bytes = b"text/plain; charset=utf-8", head: bool = False) -> None:
        self.start_response(code, len(body), content_type, headers or [])
        self.send_event(h11.EndOfMessage() if head else h11.Data(data=body))
        if not head and not self.closed:
            self.end_response()

    def file(self, path: Path, size: int, head: bool) -> None:
        try:
            f = path.open("rb")
        except OSError:
            self.simple(404, b"not found\n")
            return
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self.start_response(200, size, ctype.encode(), [])
        if head or size == 0:
            f.close()
            self.end_response()
            return
        self.body, self.left = f, size
        self.pump()  # process() goes on with the next request once the body is out

    def start_response(self, code: int, length: int, content_type: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.send_event(h11.Response(status_code=code, reason=_reason(code).encode(), headers=[
            (b"server", SERVER), (b"content-type", content_type), (b"content-length", str(length).encode()),
            *headers]))

    def end_response(self) -> None:
        self.send_event(h11.EndOfMessage())

    def send_event(self, event: h11.Event) -> None:
        try:
            data = self.http.send(event)
        except h11.LocalProtocolError:
            self.abort()
            return
        if data:
            self.write(data)

    def drained(self) -> None:
        """Send space: the rest of the file, then the next request."""
        if self.pump() and not self.closed:
            self.process()

    def pump(self) -> bool:
        """The next chunks of the file while they fit; True when all of the response is in the socket."""
        while self.body is not None and not self.closed:
            chunk = self.body.read(min(CHUNK, self.left))
            if not chunk:  # the file shrank under us: the promised length cannot be kept
                self.abort()
                return False
            self.left -= len(chunk)
            if self.left == 0:
                self._close_body()
            fits = self.write(self.http.send(h11.Data(data=chunk)) or b"")
            if self.left == 0:
                self.end_response()
                break
            if not fits:
                return False  # the rest when the socket drains
        return not self.out

    def fail(self, code: int) -> None:
        """A request h11 refused: answer it if a response may still go, then close."""
        if self.http.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self.simple(code, f"{code} {_reason(code)}\n".encode(), [(b"connection", b"close")])
        self.finish()

    def _close_body(self) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None

    def close(self) -> None:
        self._close_body()
        super().close()


class HttpService(TcpService):
    name = "http"
    port = 80
    handler = HttpConnection

    def __init__(self, root: Path | None = None) -> None:
        super().__init__()
        self.root = root.resolve() if root is not None else None

    def serve(self, conn: HttpConnection, path: str, head: bool) -> None:
        if self.root is None:
            self._status(conn, path, head)
            return
        try:
            target = (self.root / path.lstrip("/")).resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
            conn.simple(404, b"not found\n", head=head)
            return
        if not target.is_relative_to(self.root):
            conn.simple(403, b"forbidden\n", head=head)
            return
        try:
            st = target.stat()
            if stat.S_ISDIR(st.st_mode):
                target = target / "index.html"
                st = target.stat()
        except (OSError, ValueError):
            conn.simple(404, b"not found\n", head=head)
            return
        if not stat.S_ISREG(st.st_mode) or not os.access(target, os.R_OK):
            conn.simple(404, b"not found\n", head=head)
            return
        conn.file(target, st.st_size, head)

    def _status(self, conn: HttpConnection, path: str, head: bool) -> None:
        if path not in ("/", "/status", "/status.json"):
            conn.simple(404, b"not found\n", head=head)
            return
        s = self.host.call(status)
        if path == "/status.json":
            conn.simple(200, json.dumps(s, indent=1).encode() + b"\n", content_type=b"application/json", head=head)
        else:
            conn.simple(200, status_text(s).encode(), head=head)


def _path(target: bytes) -> str | None:
    """The decoded path of a request target (origin or absolute form), or None if it is not one."""
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        return None
    if text.startswith("/"):
        raw = text.partition("?")[0].partition("#")[0]
    elif text.startswith(("http://", "https://")):
        raw = urlsplit(text).path or "/"
    else:
        return None
    try:
        path = unquote(raw, errors="strict") if "%" in raw else raw
    except UnicodeDecodeError:
        return None
    if "\0" in path:
        return None
    return path


def _reason(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"
