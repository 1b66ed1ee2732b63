"""The domain tests' coordinator: in-memory store, fake clock, no background tasks."""

from __future__ import annotations

import pytest

from coordinator.domain.service import Coordinator
from coordinator.domain.settings import Settings
from coordinator.store.memory import MemoryJobStore
from core.clock import FakeClock


@pytest.fixture
async def env():
    clock = FakeClock()
    store = MemoryJobStore()
    coord = Coordinator(store, settings=Settings(), clock=clock)
    await coord.start(background=False)
    yield coord, clock, store
    await coord.stop()
