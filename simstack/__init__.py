"""simstack: a user-space TCP/IP stack over a TAP device or a replayable simulated wire."""

__version__ = "0.1.0"
