"""Replay protection: remember each key once for a TTL (in memory, or in Redis across processes)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from core.errors import Unavailable


class NonceStore(Protocol):
    async def add_once(self, key: str, ttl_s: int) -> bool:
        """Record `key` for `ttl_s` seconds; False when it is already recorded (a replay)."""
        ...


class MemoryNonceStore:
    """One process's nonces. Bounded: when full of live entries it refuses (fails closed).

    Expired entries are dropped from the front of an insertion-ordered queue on every call,
    so cleanup is O(1) amortized. The verifier uses one TTL for every nonce, which keeps the
    queue ordered by expiry; with mixed TTLs an expired entry may linger behind a longer-lived
    one until that one expires (lookups still compare expiry times, so this stays correct).
    """

    def __init__(self, max_entries: int = 1_000_000, clock: Callable[[], float] = time.monotonic):
        if max_entries < 1:
            raise ValueError(f"max_entries: must be >= 1, got {max_entries}")
        self._max = max_entries
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._queue: deque[tuple[float, str]] = deque()

    def __len__(self) -> int:
        return len(self._expiry)

    async def add_once(self, key: str, ttl_s: int) -> bool:
        if ttl_s < 1:
            raise ValueError(f"ttl_s: must be >= 1, got {ttl_s}")
        now = self._clock()
        self._purge(now)
        expiry = self._expiry.get(key)
        if expiry is not None and expiry > now:
            return False
        if expiry is None and len(self._expiry) >= self._max:
            # Evicting a live nonce would reopen it to replay; refuse instead.
            retry = max(0.0, self._queue[0][0] - now) if self._queue else 1.0
            raise Unavailable("nonce store is full", reason="nonce_store_full", retry_after_s=retry)
        expiry = now + ttl_s
        self._expiry[key] = expiry
        self._queue.append((expiry, key))
        return True

    def _purge(self, now: float) -> None:
        queue, entries = self._queue, self._expiry
        while queue and queue[0][0] <= now:
            expiry, key = queue.popleft()
            # The key may have been re-added later with a newer expiry; keep that one.
            if entries.get(key) == expiry:
                del entries[key]


class RedisNonceStore:
    """Nonces shared by every process using the same Redis: one `SET key 1 NX EX ttl` each."""

    def __init__(self, client: Any, prefix: str = "aitbc:nonce:"):
        from redis.exceptions import RedisError  # redis is an optional extra

        self._client = client
        self._prefix = prefix
        self._redis_error = RedisError

    async def add_once(self, key: str, ttl_s: int) -> bool:
        if ttl_s < 1:
            raise ValueError(f"ttl_s: must be >= 1, got {ttl_s}")
        try:
            created = await self._client.set(self._prefix + key, b"1", nx=True, ex=ttl_s)
        except self._redis_error as exc:
            # Fail closed: without the store a replay cannot be ruled out.
            raise Unavailable(
                f"nonce store unavailable: {exc}", reason="nonce_store_unavailable"
            ) from exc
        return bool(created)
