"""Applications on a live stack in one ``with``: ``with simstack_host("tap0") as host: ...``.

``open_session`` is the general tool: ``simstack live`` builds on it and
decides itself how the loop runs (in the foreground, until a signal). An
application that just wants sockets needs the opposite defaults, and this
module is only those: the loop in a background thread from the start, stopped
before the session is torn down, and no built-in service, so every port is
the application's to bind. What is left in the application is socket code.
"""

import contextlib
import sys
from collections.abc import Iterable, Iterator
from typing import TextIO

from ..api.sockets import Socket
from ..wire.errors import SetupError
from .livehost import LiveHost
from .session import LiveOptions, open_session

__all__ = ["LiveHost", "SetupError", "Socket", "simstack_host"]  # what an application needs, from one place


@contextlib.contextmanager
def simstack_host(ifname: str = "tap0", ip: str = "10.0.0.1/24", *, mac: str = LiveOptions.mac,
                  host_ip: str = LiveOptions.host_ip, serve: Iterable[str] = (), pcap: str | None = None,
                  out: TextIO | None = None) -> Iterator[LiveHost]:
    """A socket host on the TAP ``ifname`` (created, and removed afterwards, when it does not exist).

    The stack answers ARP and ping as soon as this yields; ``host.socket(...)``
    gives sockets. On the way out (normally, or by an exception such as
    ``KeyboardInterrupt``) the loop stops and everything the session set up is
    undone. Raises ``SetupError`` (one line, meant for the user) when the TAP
    cannot be set up.
    """
    opts = LiveOptions(ifname, ip=ip, mac=mac, host_ip=host_ip, serve=tuple(serve), pcap=pcap)
    with open_session(opts, out if out is not None else sys.stdout) as session:
        session.driver.start()
        try:
            yield session.host
        finally:
            session.driver.stop()
