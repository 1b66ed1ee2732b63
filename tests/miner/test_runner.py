"""JobRunner: slots, at-most-once leases, cancellation, progress rate limit, result handling."""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
from pathlib import Path

import pytest

from core.errors import AlreadyExists
from miner.executors import ExecContext, ExecResult, ExecutionError, canonical_json
from miner.executors.builtin import EchoExecutor, SleepExecutor


class GateExecutor:
    """Blocks every run until released; records how many run at once and their workdirs."""

    service = "gate"

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.started: asyncio.Queue[Path] = asyncio.Queue()
        self.release = asyncio.Event()

    async def run(self, params, ctx: ExecContext) -> ExecResult:
        self.active += 1
        self.peak = max(self.peak, self.active)
        (ctx.workdir / "scratch").write_text("temp")
        await self.started.put(ctx.workdir)
        try:
            await self.release.wait()
        finally:
            self.active -= 1
        return ExecResult(inline={"job": ctx.job_id})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_slots_bound_concurrency(make_runner) -> None:
    gate = GateExecutor()
    runner = make_runner({"gate": gate}, slots=2)
    tasks = [runner.start(f"lease-{i}", f"job-{i}", "gate", {}) for i in range(3)]
    first = [await gate.started.get(), await gate.started.get()]
    assert gate.active == 2 and runner.free_slots() == 0
    assert set(runner.inflight()) == {"lease-0", "lease-1", "lease-2"}
    assert runner.inflight()["lease-2"] == "job-2"
    assert gate.started.empty()  # the third waits for a slot
    gate.release.set()
    results = await asyncio.gather(*tasks)
    assert [r.inline for r in results] == [{"job": f"job-{i}"} for i in range(3)]
    assert gate.peak == 2
    assert runner.inflight() == {} and runner.free_slots() == 2
    assert not any(d.exists() for d in first)  # workdirs removed


async def test_a_lease_runs_at_most_once(make_runner) -> None:
    clock = FakeClock()
    runner = make_runner({"echo": EchoExecutor()}, remember_s=60, clock=clock)
    assert (await runner.start("L1", "J1", "echo", {"a": 1})).inline == {"a": 1}
    with pytest.raises(AlreadyExists) as err:
        runner.start("L1", "J1", "echo", {"a": 1})
    assert err.value.reason == "duplicate_lease"
    gate = GateExecutor()
    runner.executors["gate"] = gate
    task = runner.start("L2", "J2", "gate", {})
    with pytest.raises(AlreadyExists):  # also while it runs
        runner.start("L2", "J2", "gate", {})
    gate.release.set()
    await task
    clock.now += 30
    with pytest.raises(AlreadyExists):
        runner.start("L1", "J1", "echo", {})
    clock.now += 31  # remembered for remember_s after it ended, then forgotten
    assert (await runner.start("L1", "J1", "echo", {"b": 2})).inline == {"b": 2}
    clock.now += 59  # the second run's end counts, not the first's
    with pytest.raises(AlreadyExists):
        runner.start("L1", "J1", "echo", {})
    clock.now += 2
    assert (await runner.start("L3", "J3", "echo", {"c": 3})).inline == {"c": 3}  # prunes
    assert not runner.has_seen("L1") and not runner.has_seen("L2")


async def test_cancel_stops_the_job_and_removes_its_workdir(make_runner) -> None:
    gate = GateExecutor()
    runner = make_runner({"gate": gate, "sleep": SleepExecutor()})
    task = runner.start("L1", "J1", "gate", {})
    workdir = await gate.started.get()
    assert (workdir / "scratch").exists()
    assert runner.cancel("L1", "client canceled")
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not workdir.exists() and gate.active == 0
    assert runner.inflight() == {} and runner.has_seen("L1")
    assert not runner.cancel("L1", "again")  # nothing left to cancel
    assert not runner.cancel("nope", "unknown")
    # close() cancels whatever still runs
    long = runner.start("L2", "J2", "sleep", {"seconds": 3600})
    await asyncio.sleep(0)
    await runner.close()
    assert long.cancelled()


async def test_progress_is_rate_limited_and_the_last_update_kept(make_runner) -> None:
    clock = FakeClock()
    seen: list[tuple[str, float, str]] = []
    deferred = asyncio.Event()

    def on_progress(lease: str, fraction: float, message: str) -> None:
        seen.append((lease, fraction, message))
        if message == "deferred":
            deferred.set()

    class Chatty:
        service = "chatty"

        async def run(self, params, ctx: ExecContext) -> ExecResult:
            for i in range(50):  # the clock stands still: only the first passes at once
                ctx.progress(i / 100, f"step {i}")
            assert len(seen) == 1
            ctx.progress(0.6, "deferred")  # sent by the timer 0.25 s later, without more calls
            await deferred.wait()
            clock.now += 0.3
            ctx.progress(0.7, "after the interval")  # passes at once
            ctx.progress(2.5, "last")  # clamped, held back, flushed at the end
            return ExecResult(inline="ok")

    runner = make_runner({"chatty": Chatty()}, clock=clock, on_progress=on_progress)
    await runner.start("L1", "J1", "chatty", {})
    assert seen == [
        ("L1", 0.0, "step 0"),
        ("L1", 0.6, "deferred"),
        ("L1", 0.7, "after the interval"),
        ("L1", 1.0, "last"),
    ]


async def test_unknown_service_and_crashing_executor(make_runner) -> None:
    class Broken:
        service = "broken"

        async def run(self, params, ctx):
            raise RuntimeError("disk on fire")

    runner = make_runner({"broken": Broken()})
    with pytest.raises(ExecutionError) as err:
        await runner.start("L1", "J1", "nope", {})
    assert (err.value.code, err.value.retryable) == ("unsupported_service", True)
    with pytest.raises(ExecutionError) as err:
        await runner.start("L2", "J2", "broken", {})
    assert err.value.code == "internal" and "disk on fire" in err.value.message
    assert list((runner.work_dir).iterdir()) == []


async def test_a_job_that_needs_no_workdir_gets_none(make_runner, monkeypatch) -> None:
    made: list[str] = []
    real = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda **kw: made.append(kw["prefix"]) or real(**kw))

    class Scratch:
        service = "scratch"

        async def run(self, params, ctx):
            (ctx.workdir / "f").write_text("x")
            assert ctx.workdir == ctx.made_workdir  # made once, on first use
            return ExecResult(inline={"dir": ctx.workdir.name})

    runner = make_runner({"echo": EchoExecutor(), "scratch": Scratch()})
    assert (await runner.start("L1", "J1", "echo", {"x": 1})).inline == {"x": 1}
    assert made == []  # echo never asked for a directory: none was made
    res = await runner.start("L2", "J2", "scratch", {})
    assert made == ["J2-"] and res.inline["dir"].startswith("J2-")
    assert list(runner.work_dir.iterdir()) == []  # and it is gone when the run ends


async def test_large_inline_result_becomes_a_json_artifact(make_runner, store) -> None:
    runner = make_runner({"echo": EchoExecutor()}, inline_result_max_bytes=100)
    small = await runner.start("L1", "J1", "echo", {"x": "short"})
    assert small.inline == {"x": "short"} and small.artifact is None
    assert small.sha256() == hashlib.sha256(b'{"x":"short"}').hexdigest()
    params = {"text": "é" * 200, "n": 1.0}
    big = await runner.start("L2", "J2", "echo", params)
    assert big.inline is None and big.artifact.content_type == "application/json"
    stored = store.path_for(big.artifact.sha256).read_bytes()
    assert stored == canonical_json(params) and json.loads(stored) == params
    assert big.sha256() == hashlib.sha256(stored).hexdigest()


async def test_wait_idle_waits_for_all(make_runner) -> None:
    gate = GateExecutor()
    runner = make_runner({"gate": gate})
    tasks = [runner.start(f"L{i}", f"J{i}", "gate", {}) for i in range(2)]
    waiter = asyncio.create_task(runner.wait_idle())
    await gate.started.get()
    assert not waiter.done()
    gate.release.set()
    await waiter
    assert all(t.done() for t in tasks)
