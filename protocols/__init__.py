"""Protocol formats and behaviour: pure functions and state machines, no I/O.

Everything in this package takes bytes and a time and gives bytes back, so the
same code runs over a TAP device and over the simulated wire.
"""
