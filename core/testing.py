"""Test helpers shared by the test suite: real-service discovery (PostgreSQL, Redis)."""

from __future__ import annotations

import os
import socket

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
