"""Deterministic CPU services for tests and benchmarks: echo, sha256, sleep."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Mapping
from typing import Any

from miner.executors.base import ExecContext, ExecResult, bad_params
from miner.executors.params import Params

MIB = 1024 * 1024


class EchoExecutor:
    """Returns its parameters."""

    service = "echo"

    async def run(self, params: Mapping[str, Any], ctx: ExecContext) -> ExecResult:
        if not isinstance(params, Mapping):
            raise bad_params("params", f"must be an object, got {type(params).__name__}")
        ctx.progress(1.0, "echoed")
        return ExecResult(inline=dict(params))


def stream_chunk(seed: str, index: int) -> bytes:
    """MiB number `index` of the deterministic byte stream named by `seed`."""
    return random.Random(f"aitbc-sha256:{seed}:{index}").randbytes(MIB)


class Sha256Executor:
    """sha256 over `mib` MiB of a deterministic byte stream (a CPU benchmark with a checkable
    answer); progress per MiB; cancellation takes effect between chunks."""

    service = "sha256"

    async def run(self, params: Mapping[str, Any], ctx: ExecContext) -> ExecResult:
        p = Params(params, ("mib", "seed"))
        mib = p.integer("mib", 1, lo=1, hi=1024)
        seed = p.text("seed", "", max_len=200)
        digest = hashlib.sha256()

        def step(index: int) -> None:
            digest.update(stream_chunk(seed, index))

        for index in range(mib):
            # Each chunk runs in a thread so the event loop (heartbeats) keeps going.
            await asyncio.to_thread(step, index)
            ctx.progress((index + 1) / mib, f"{index + 1}/{mib} MiB")
        return ExecResult(inline={"sha256": digest.hexdigest(), "mib": mib}, units_hint=mib)


class SleepExecutor:
    """Sleeps `seconds` (at most 3600) with progress; for cancel and drain tests."""

    service = "sleep"

    async def run(self, params: Mapping[str, Any], ctx: ExecContext) -> ExecResult:
        p = Params(params, ("seconds",))
        seconds = p.number("seconds", 1.0, lo=0, hi=3600)
        steps = max(1, min(100, int(seconds * 4)))
        ctx.progress(0.0, "sleeping")
        for i in range(steps):
            await asyncio.sleep(seconds / steps)
            ctx.progress((i + 1) / steps, f"slept {seconds * (i + 1) / steps:.2f}s")
        return ExecResult(inline={"slept_s": seconds}, units_hint=seconds)
