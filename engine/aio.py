"""The asyncio API at its public name; it lives in ``engine/api/``."""

from .api.aio import *  # noqa: F403
from .api.aio import __all__ as __all__
