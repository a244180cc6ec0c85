"""What applications program against: sockets, asyncio, the built-in services.

Depends only on ``simstack.protocols``; the same code runs on a live host and in a replay.
"""
