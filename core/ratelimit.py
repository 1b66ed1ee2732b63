"""Per-API-key token-bucket rate limits per route class, in memory or shared through Redis."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import ResourceExhausted, Unavailable

# A rule named "*" applies to every route class that has no rule of its own; a class with
# neither is not limited.
DEFAULT_CLASS = "*"
_CLASS_RE = re.compile(r"[a-z0-9_.-]{1,64}|\*")


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    """`rate_per_s` tokens refill per second, up to `burst` (also the starting balance)."""

    rate_per_s: float
    burst: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_per_s) and self.rate_per_s > 0):
            raise ValueError(f"rate_per_s: must be a finite number > 0, got {self.rate_per_s}")
        if not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"burst: must be an integer >= 1, got {self.burst!r}")


class RateLimitExceeded(ResourceExhausted):
    """Too many calls for one key in one route class; retry after `retry_after_s` (HTTP 429)."""

    def __init__(self, retry_after_s: float, route_class: str):
        super().__init__(
            f"rate limit exceeded for {route_class!r}; retry after {retry_after_s:.3f}s",
            reason="rate_limited",
            metadata={"route_class": route_class},
            retry_after_s=retry_after_s,
        )
        self.route_class = route_class


def parse_rules(text: str) -> dict[str, RateLimitRule]:
    """Parse `"submit=20/40,read=100/200"` (class=rate_per_s/burst); errors name the part."""
    rules: dict[str, RateLimitRule] = {}
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        name, eq, spec = part.partition("=")
        name, spec = name.strip(), spec.strip()
        rate_text, slash, burst_text = spec.partition("/")
        if not eq or not slash:
            raise ValueError(f"rate limit {part!r}: expected class=rate/burst, e.g. submit=20/40")
        if not _CLASS_RE.fullmatch(name):
            raise ValueError(f"rate limit {part!r}: class must match [a-z0-9_.-]+ or be '*'")
        if name in rules:
            raise ValueError(f"rate limit {part!r}: class {name!r} is given twice")
        try:
            rate = float(rate_text)
        except ValueError:
            raise ValueError(f"rate limit {part!r}: rate {rate_text!r} is not a number") from None
        if not burst_text.strip().isdigit():
            raise ValueError(f"rate limit {part!r}: burst {burst_text!r} is not an integer")
        try:
            rules[name] = RateLimitRule(rate_per_s=rate, burst=int(burst_text))
        except ValueError as exc:
            raise ValueError(f"rate limit {part!r}: {exc}") from None
    return rules


def _rule_for(rules: Mapping[str, RateLimitRule], route_class: str) -> RateLimitRule | None:
    rule = rules.get(route_class)
    return rule if rule is not None else rules.get(DEFAULT_CLASS)


def _check_cost(cost: int, rule: RateLimitRule) -> None:
    if not 1 <= cost <= rule.burst:
        # A cost above the burst could never be paid: a caller bug, not a client's fault.
        raise ValueError(f"cost: must be between 1 and the burst ({rule.burst}), got {cost}")


class MemoryRateLimiter:
    """Buckets of one process. Full buckets are swept out once the table doubles in size."""

    def __init__(
        self,
        rules: Mapping[str, RateLimitRule],
        clock: Callable[[], float] = time.monotonic,
    ):
        self._rules = dict(rules)
        self._clock = clock
        # (key_id, route_class) -> [tokens, last_refill]
        self._buckets: dict[tuple[str, str], list[float]] = {}
        self._sweep_at = 1024

    def __len__(self) -> int:
        return len(self._buckets)

    def rule(self, route_class: str) -> RateLimitRule | None:
        """The rule that limits `route_class`, if any."""
        return _rule_for(self._rules, route_class)

    async def acquire(self, key_id: str, route_class: str, cost: int = 1) -> None:
        rule = self._rules.get(route_class) or self._rules.get(DEFAULT_CLASS)
        if rule is None:
            return
        if cost != 1:
            _check_cost(cost, rule)
        now = self._clock()
        bucket = self._buckets.get((key_id, route_class))
        if bucket is None:
            if len(self._buckets) >= self._sweep_at:
                self._sweep(now)
            tokens = float(rule.burst)
            bucket = self._buckets[(key_id, route_class)] = [tokens, now]
        else:
            elapsed = now - bucket[1]
            tokens = bucket[0] + elapsed * rule.rate_per_s if elapsed > 0 else bucket[0]
            if tokens > rule.burst:
                tokens = float(rule.burst)
            bucket[1] = now
        if tokens < cost:
            bucket[0] = tokens
            raise RateLimitExceeded((cost - tokens) / rule.rate_per_s, route_class)
        bucket[0] = tokens - cost

    def _sweep(self, now: float) -> None:
        """Forget buckets that have refilled: a missing bucket starts full, so it is the same."""
        for key, (tokens, last) in list(self._buckets.items()):
            rule = _rule_for(self._rules, key[1])
            if rule is None or tokens + (now - last) * rule.rate_per_s >= rule.burst:
                del self._buckets[key]
        self._sweep_at = max(1024, 2 * len(self._buckets))


# One atomic step of the token bucket. Time comes from the Redis server so that every
# process sharing the bucket agrees; state is (tokens, microseconds) and the key expires
# once the bucket would be full again (a missing key starts full, so nothing is lost).
_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local last = tonumber(state[2])
if tokens == nil or last == nil then
  tokens = burst
else
  local elapsed = now - last
  if elapsed > 0 then tokens = math.min(burst, tokens + elapsed * rate / 1000000) end
end
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'ts', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, string.format('%.17g', retry)}
"""


class RedisRateLimiter:
    """Buckets shared by every process on one Redis: one EVALSHA per call."""

    def __init__(self, client: Any, rules: Mapping[str, RateLimitRule], prefix: str = "aitbc:rl:"):
        from redis.exceptions import RedisError  # redis is an optional extra

        self._rules = dict(rules)
        self._prefix = prefix
        self._script = client.register_script(_LUA)
        self._redis_error = RedisError

    def rule(self, route_class: str) -> RateLimitRule | None:
        """The rule that limits `route_class`, if any."""
        return _rule_for(self._rules, route_class)

    def key(self, key_id: str, route_class: str) -> str:
        """The Redis key of one bucket (the class comes first: it never holds ':')."""
        return f"{self._prefix}{route_class}:{key_id}"

    async def acquire(self, key_id: str, route_class: str, cost: int = 1) -> None:
        rule = _rule_for(self._rules, route_class)
        if rule is None:
            return
        _check_cost(cost, rule)
        try:
            allowed, retry = await self._script(
                keys=[self.key(key_id, route_class)],
                args=[repr(rule.rate_per_s), rule.burst, cost],
            )
        except self._redis_error as exc:
            # Fail closed, like the nonce store: an unreachable Redis must not lift the limits.
            raise Unavailable(
                f"rate limiter unavailable: {exc}", reason="ratelimit_unavailable"
            ) from exc
        if int(allowed) != 1:
            raise RateLimitExceeded(float(retry), route_class)
