"""The socket host of a live stack: sockets and services on a ``LiveDriver``.

Blocking calls from application threads wait on the driver's condition
variable; readiness callbacks (the built-in services) run in the loop thread
after a batch of frames, timers or calls marked endpoints ready, outside the
driver's lock.
"""

from collections.abc import Callable
from typing import TypeVar

from simstack.protocols.stack import Stack
from simstack.protocols.transport import Ready

from ..api.sockets import SocketHost
from .driver import LiveDriver

T = TypeVar("T")


class LiveHost(SocketHost):
    def __init__(self, driver: LiveDriver) -> None:
        super().__init__()
        self.driver = driver
        driver.on_ready = self.dispatch_ready

    def call(self, fn: Callable[[Stack, float], T]) -> T:
        return self.driver.call(fn)

    def take_ready(self) -> list[tuple[object, Ready]]:
        return self.driver.take_ready()

    def wait_until(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        return self.driver.wait_for(ready, timeout)

    @property
    def stack(self) -> Stack:
        return self.driver.stack
