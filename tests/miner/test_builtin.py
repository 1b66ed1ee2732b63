"""echo / sha256 / sleep: results, progress, validation, cancellation."""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path

import pytest

from miner.executors import ExecContext, ExecutionError
from miner.executors.builtin import EchoExecutor, Sha256Executor, SleepExecutor


def ctx_for(tmp_path: Path, store, progress: list | None = None) -> ExecContext:
    events = progress if progress is not None else []
    return ExecContext("job-1", tmp_path, lambda f, m: events.append((f, m)), store)


async def test_sha256_over_a_deterministic_stream(tmp_path: Path, store) -> None:
    progress: list = []
    result = await Sha256Executor().run(
        {"mib": 3.0, "seed": "s1"}, ctx_for(tmp_path, store, progress)
    )
    # Recomputed independently: the stream is documented as Random("aitbc-sha256:<seed>:<i>").
    expected = hashlib.sha256()
    for i in range(3):
        expected.update(random.Random(f"aitbc-sha256:s1:{i}").randbytes(1 << 20))
    assert result.inline == {"sha256": expected.hexdigest(), "mib": 3}
    assert [round(f, 3) for f, _ in progress] == [0.333, 0.667, 1.0]
    other = await Sha256Executor().run({"mib": 3, "seed": "s2"}, ctx_for(tmp_path, store))
    assert other.inline["sha256"] != result.inline["sha256"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"mib": 0}, "mib:"),
        ({"mib": 1025}, "mib:"),
        ({"mib": 1.5}, "mib:"),
        ({"mib": True}, "mib:"),
        ({"mib": "4"}, "mib:"),
        ({"seed": 7}, "seed:"),
        ({"mb": 4}, "mb: unknown parameter"),
    ],
)
async def test_sha256_validation_names_the_field(tmp_path: Path, store, params, field) -> None:
    with pytest.raises(ExecutionError) as err:
        await Sha256Executor().run(params, ctx_for(tmp_path, store))
    assert err.value.code == "bad_params" and not err.value.retryable
    assert err.value.message.startswith(field)


async def test_sha256_honours_cancellation_between_chunks(tmp_path: Path, store) -> None:
    first = asyncio.Event()
    progress: list = []

    def report(fraction: float, message: str) -> None:
        progress.append(fraction)
        first.set()

    ctx = ExecContext("j", tmp_path, report, store)
    task = asyncio.create_task(Sha256Executor().run({"mib": 1024}, ctx))
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(progress) < 1024


async def test_sleep_and_echo(tmp_path: Path, store) -> None:
    progress: list = []
    result = await SleepExecutor().run({"seconds": 0.05}, ctx_for(tmp_path, store, progress))
    assert result.inline == {"slept_s": 0.05} and progress[-1][0] == 1.0
    for bad in ({"seconds": 3601}, {"seconds": -1}, {"seconds": "1"}):
        with pytest.raises(ExecutionError, match="seconds:"):
            await SleepExecutor().run(bad, ctx_for(tmp_path, store))
    echoed = await EchoExecutor().run({"a": [1, {"b": None}]}, ctx_for(tmp_path, store))
    assert echoed.inline == {"a": [1, {"b": None}]}
    with pytest.raises(ExecutionError, match="params: must be an object"):
        await EchoExecutor().run(["x"], ctx_for(tmp_path, store))  # type: ignore[arg-type]
