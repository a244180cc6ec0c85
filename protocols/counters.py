"""Per-layer counters: received, sent, and dropped by reason.

Names are dotted (``ipv4.drop.bad_checksum``) so a scenario or a test can name
exactly the counter it expects to move, as gVisor's bad-packet tables do.
"""

from collections import defaultdict


class Counters:
    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: defaultdict[str, int] = defaultdict(int)

    def inc(self, name: str, n: int = 1) -> None:
        self.values[name] += n

    def drop(self, layer: str, reason: str) -> None:
        self.values[f"{layer}.drop.{reason}"] += 1

    def __getitem__(self, name: str) -> int:
        return self.values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self.values.items()))

    def report(self) -> str:
        """Grouped by layer, one line each, for the live mode's exit and ``-v``."""
        layers: dict[str, list[str]] = {}
        for name, value in sorted(self.values.items()):
            layer, _, rest = name.partition(".")
            layers.setdefault(layer, []).append(f"{rest}={value}")
        return "\n".join(f"{layer:6} {' '.join(items)}" for layer, items in layers.items())
