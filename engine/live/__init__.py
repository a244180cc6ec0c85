"""Live sessions on a real TAP: the driver, session set-up, netlink, the lab, signals, ping.

May use ``api``, ``wire`` and ``scenario`` (a session can record one).
"""
