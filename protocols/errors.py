"""The one exception the receive path raises for bytes it cannot trust."""


class Malformed(ValueError):
    """A header failed an integrity or sanity check.

    ``reason`` is a short snake_case word; the stack counts drops under it, so
    it is part of the observable behaviour (scenarios assert on it).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
