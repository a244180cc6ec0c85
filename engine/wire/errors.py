"""The error live mode reports to a person instead of a traceback."""


class SetupError(Exception):
    """Something outside simstack is not as live mode needs it.

    The message is one complete line (what, on which device, and what to do),
    because the command prints it alone on stderr and exits 2: a missing
    privilege or a wrong device name is the user's to fix, not a crash.
    """
