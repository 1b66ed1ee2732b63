"""Token-bucket rate limits: memory (fake clock) and Redis (shared by clients and processes)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import grpc
import pytest
import redis
import redis.asyncio as aioredis
from google.rpc import error_details_pb2

from core.errors import ResourceExhausted, Unavailable
from core.ratelimit import (
    MemoryRateLimiter,
    RateLimitExceeded,
    RateLimitRule,
    RedisRateLimiter,
    parse_rules,
)


class FakeTime:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


async def drain(limiter, key: str, route_class: str, attempts: int) -> int:
    allowed = 0
    for _ in range(attempts):
        try:
            await limiter.acquire(key, route_class)
            allowed += 1
        except RateLimitExceeded:
            pass
    return allowed


# -- rules ------------------------------------------------------------------------------------


def test_parse_rules():
    rules = parse_rules(" submit=20/40, read=100.5/200 ,*=1/1,")
    assert rules == {
        "submit": RateLimitRule(20, 40),
        "read": RateLimitRule(100.5, 200),
        "*": RateLimitRule(1, 1),
    }
    assert parse_rules("") == {}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("submit=20", "'submit=20'"),
        ("submit", "expected class=rate/burst"),
        ("Sub mit=1/2", "class must match"),
        ("a=1/2,a=3/4", "given twice"),
        ("a=x/2", "rate 'x' is not a number"),
        ("a=1/2.5", "burst '2.5' is not an integer"),
        ("a=0/2", "rate_per_s"),
        ("a=inf/2", "rate_per_s"),
        ("a=1/0", "burst"),
    ],
)
def test_parse_rules_names_the_bad_part(text, needle):
    with pytest.raises(ValueError, match="rate limit") as info:
        parse_rules(text)
    assert needle in str(info.value)


def test_exceeded_is_resource_exhausted_with_retry_info():
    err = RateLimitExceeded(0.25, "submit")
    assert isinstance(err, ResourceExhausted) and err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (
        err.retry_after_s == 0.25 and err.route_class == "submit" and err.reason == "rate_limited"
    )
    kinds = {d.DESCRIPTOR.full_name: d for d in err.details()}
    assert kinds["google.rpc.RetryInfo"].retry_delay.ToNanoseconds() == 250_000_000
    info = kinds["google.rpc.ErrorInfo"]
    assert (
        isinstance(info, error_details_pb2.ErrorInfo) and info.metadata["route_class"] == "submit"
    )


# -- memory -----------------------------------------------------------------------------------


async def test_memory_burst_then_refusal_then_refill():
    clock = FakeTime()
    limiter = MemoryRateLimiter({"submit": RateLimitRule(rate_per_s=4, burst=10)}, clock=clock)
    assert await drain(limiter, "k", "submit", 10) == 10
    with pytest.raises(RateLimitExceeded) as info:
        await limiter.acquire("k", "submit")
    assert info.value.retry_after_s == pytest.approx(1 / 4)
    assert info.value.route_class == "submit"
    clock.now += 0.125  # half a token: still refused, and the wait shrinks accordingly
    with pytest.raises(RateLimitExceeded) as info:
        await limiter.acquire("k", "submit")
    assert info.value.retry_after_s == pytest.approx(0.125)
    clock.now += 0.125
    await limiter.acquire("k", "submit")
    clock.now += 3600  # refill stops at the burst
    assert await drain(limiter, "k", "submit", 20) == 10


async def test_memory_keys_and_classes_are_independent():
    clock = FakeTime()
    rules = {"submit": RateLimitRule(1, 2), "read": RateLimitRule(1, 3)}
    limiter = MemoryRateLimiter(rules, clock=clock)
    assert await drain(limiter, "a", "submit", 5) == 2
    assert await drain(limiter, "b", "submit", 5) == 2
    assert await drain(limiter, "a", "read", 5) == 3


async def test_memory_default_rule_and_unlimited_classes():
    clock = FakeTime()
    limited = MemoryRateLimiter({"*": RateLimitRule(1, 2)}, clock=clock)
    assert await drain(limited, "a", "miner", 5) == 2
    assert await drain(limited, "a", "admin", 5) == 2  # its own bucket under the default rule
    unlimited = MemoryRateLimiter({"submit": RateLimitRule(1, 1)}, clock=clock)
    assert await drain(unlimited, "a", "read", 100) == 100
    assert len(unlimited) == 0


async def test_memory_cost():
    clock = FakeTime()
    limiter = MemoryRateLimiter({"submit": RateLimitRule(2, 5)}, clock=clock)
    await limiter.acquire("k", "submit", cost=4)
    with pytest.raises(RateLimitExceeded) as info:
        await limiter.acquire("k", "submit", cost=3)
    assert info.value.retry_after_s == pytest.approx(1.0)
    for bad in (0, 6):
        with pytest.raises(ValueError, match="cost"):
            await limiter.acquire("k", "submit", cost=bad)


async def test_memory_forgets_refilled_buckets():
    clock = FakeTime()
    limiter = MemoryRateLimiter({"read": RateLimitRule(10, 5)}, clock=clock)
    for i in range(1, 1024):
        await limiter.acquire(f"k{i}", "read")
    await limiter.acquire("k0", "read", cost=5)  # k0 is now empty
    assert len(limiter) == 1024
    clock.now += 0.2  # everyone else has refilled; k0 has 2 of 5 tokens
    await limiter.acquire("new", "read")
    assert len(limiter) == 2
    assert await drain(limiter, "k0", "read", 5) == 2  # k0's state survived the sweep


async def test_memory_clock_going_backwards_does_not_mint_tokens():
    clock = FakeTime()
    limiter = MemoryRateLimiter({"read": RateLimitRule(1, 1)}, clock=clock)
    await limiter.acquire("k", "read")
    clock.now -= 100
    with pytest.raises(RateLimitExceeded):
        await limiter.acquire("k", "read")


# -- Redis ------------------------------------------------------------------------------------


@pytest.fixture
async def redis_env(redis_url):
    """Two independent clients (as two processes would have) and a unique key prefix."""
    clients = [aioredis.from_url(redis_url), aioredis.from_url(redis_url)]
    prefix = f"test:rl:{uuid.uuid4().hex}:"
    yield clients, prefix
    keys = [k async for k in clients[0].scan_iter(match=prefix + "*")]
    if keys:
        await clients[0].delete(*keys)
    for client in clients:
        await client.aclose()


SLOW = RateLimitRule(rate_per_s=0.01, burst=3)  # refill is negligible within a test


@pytest.mark.redis
async def test_redis_burst_refusal_and_ttl(redis_env):
    (client, _), prefix = redis_env
    limiter = RedisRateLimiter(client, {"submit": SLOW}, prefix=prefix)
    assert await drain(limiter, "k", "submit", 3) == 3
    with pytest.raises(RateLimitExceeded) as info:
        await limiter.acquire("k", "submit")
    # 1/rate = 100 s, less whatever trickled in since the last call.
    assert 90 < info.value.retry_after_s <= 100
    pttl = await client.pttl(limiter.key("k", "submit"))
    assert 0 < pttl <= 301_000  # gone once the bucket would be full again


@pytest.mark.redis
async def test_redis_cost_and_partial_wait(redis_env):
    (client, _), prefix = redis_env
    limiter = RedisRateLimiter(client, {"submit": SLOW}, prefix=prefix)
    await limiter.acquire("k", "submit", cost=2)
    with pytest.raises(RateLimitExceeded) as info:
        await limiter.acquire("k", "submit", cost=3)
    assert 190 < info.value.retry_after_s <= 200  # 2 missing tokens at 0.01/s
    with pytest.raises(ValueError, match="cost"):
        await limiter.acquire("k", "submit", cost=4)
    await limiter.acquire("k", "submit")  # the refused call took nothing


@pytest.mark.redis
async def test_redis_refills_from_server_time(redis_env):
    (client, _), prefix = redis_env
    limiter = RedisRateLimiter(client, {"submit": RateLimitRule(0.5, 3)}, prefix=prefix)
    assert await drain(limiter, "k", "submit", 4) == 3
    key = limiter.key("k", "submit")
    # Pretend the last call was 10 s ago: 5 tokens trickle in, capped at the burst of 3.
    last = float(await client.hget(key, "ts"))
    await client.hset(key, "ts", repr(last - 10_000_000))
    assert await drain(limiter, "k", "submit", 5) == 3


@pytest.mark.redis
async def test_redis_keys_and_classes_are_independent(redis_env):
    (client, _), prefix = redis_env
    limiter = RedisRateLimiter(
        client, {"submit": SLOW, "read": RateLimitRule(0.01, 2)}, prefix=prefix
    )
    assert await drain(limiter, "a", "submit", 5) == 3
    assert await drain(limiter, "b", "submit", 5) == 3
    assert await drain(limiter, "a", "read", 5) == 2
    assert await drain(limiter, "a", "unlisted", 5) == 5


@pytest.mark.redis
async def test_redis_bucket_shared_by_two_limiters(redis_env):
    (first, second), prefix = redis_env
    rules = {"submit": RateLimitRule(rate_per_s=0.01, burst=40)}
    a = RedisRateLimiter(first, rules, prefix=prefix)
    b = RedisRateLimiter(second, rules, prefix=prefix)
    got = await asyncio.gather(drain(a, "k", "submit", 40), drain(b, "k", "submit", 40))
    assert sum(got) == 40


@pytest.mark.redis
async def test_redis_down_fails_closed():
    client = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises(Unavailable):
            await RedisRateLimiter(client, {"submit": SLOW}).acquire("k", "submit")
    finally:
        await client.aclose()


# Run in each child process: wait for "go", then try `attempts` calls, print how many passed.
CHILD = """
import asyncio, sys
import redis.asyncio as aioredis
from core.ratelimit import RateLimitExceeded, RateLimitRule, RedisRateLimiter

async def main(url, prefix, attempts):
    client = aioredis.from_url(url)
    limiter = RedisRateLimiter(client, {"submit": RateLimitRule(0.01, 50)}, prefix=prefix)
    await client.ping()
    print("ready", flush=True)
    sys.stdin.readline()
    allowed = 0
    for _ in range(attempts):
        try:
            await limiter.acquire("shared-key", "submit")
            allowed += 1
        except RateLimitExceeded:
            pass
    print(allowed, flush=True)
    await client.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


@pytest.mark.redis
def test_redis_limit_holds_across_two_os_processes(redis_url):
    prefix = f"test:rl:{uuid.uuid4().hex}:"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, redis_url, prefix, "50"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready"
        for child in children:  # start both together, so their calls interleave
            child.stdin.write("go\n")
            child.stdin.flush()
        counts = [int(child.communicate(timeout=30)[0].strip()) for child in children]
        assert all(child.returncode == 0 for child in children)
        assert sum(counts) == 50
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        with redis.Redis.from_url(redis_url) as client:
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)
