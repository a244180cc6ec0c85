"""``simstack_host`` at its public name; it lives in ``engine/live/``."""

from .live.app import LiveHost, SetupError, Socket, simstack_host

__all__ = ["LiveHost", "SetupError", "Socket", "simstack_host"]
