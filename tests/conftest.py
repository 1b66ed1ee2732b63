"""Suite-wide fixtures: the real PostgreSQL and Redis servers (skip or fail when absent)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from core.testing import POSTGRES_URL, REDIS_URL, tcp_reachable, unavailable


def _need(url: str, what: str) -> str:
    parts = urlsplit(url.replace("+psycopg", ""))
    host, port = parts.hostname or "127.0.0.1", parts.port or 0
    if not tcp_reachable(host, port):
        unavailable(f"{what} is not reachable at {host}:{port}")
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """SQLAlchemy URL of the real PostgreSQL test database."""
    return _need(POSTGRES_URL, "PostgreSQL")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real Redis server."""
    return _need(REDIS_URL, "Redis")


@pytest.fixture(autouse=True)
def _reap_coordinator_processes():
    """A failed e2e test must not leave a coordinator running (it would skew later tests)."""
    yield
    from coordinator.testing import CoordinatorProcess

    for proc in list(CoordinatorProcess.live):
        proc.kill()
        CoordinatorProcess.live.discard(proc)
