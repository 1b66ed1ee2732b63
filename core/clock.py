"""Time sources: the system clock, and a fake clock tests can advance."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock unix seconds (what is stored and shown)."""

    def monotonic(self) -> float:
        """Monotonic seconds (what liveness and timeouts measure)."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to; `advance` also yields to the event loop."""

    def __init__(self, start: float = 1_800_000_000.0):
        self._now = start
        self._mono = 1000.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    async def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds
        await asyncio.sleep(0)
