"""Test helpers shared by the test suite: real-service discovery (PostgreSQL, Redis), missing
programs, and ASGI apps served on a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from typing import Any, NoReturn

POSTGRES_URL = os.environ.get(
    "AITBC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("AITBC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def services_required() -> bool:
    """True when a missing PostgreSQL/Redis must fail the run instead of skipping (CI)."""
    return os.environ.get("AITBC_REQUIRE_SERVICES", "") in ("1", "true", "yes")


def tcp_reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def unavailable(what: str) -> NoReturn:
    """A service or program the test needs is missing: skip, or fail under
    AITBC_REQUIRE_SERVICES=1 (CI), naming what is missing."""
    import pytest  # only tests call this; bench imports this module without pytest

    if services_required():
        pytest.fail(f"{what} and AITBC_REQUIRE_SERVICES=1")
    pytest.skip(f"{what} (set AITBC_REQUIRE_SERVICES=1 to make this a failure)")


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, *, lifespan: str = "off") -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1, a free port; yields the base URL."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan=lifespan)
    )
    # uvicorn swaps signal handlers while serving; the test process keeps its own.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:  # uvicorn offers no event for "listening"
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
