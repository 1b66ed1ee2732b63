"""JobRunner: runs leased jobs in slots, each in its own workdir, cancellable, at most once."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from core.errors import AlreadyExists, InvalidArgument
from miner.executors.base import (
    ExecContext,
    ExecResult,
    ExecutionError,
    Executor,
    canonical_json,
)

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, float, str], None]


class _Throttle:
    """Passes on progress at most once per `interval_s`; the latest update is never lost."""

    def __init__(self, emit: Callable[[float, str], None], interval_s: float, clock):
        self._emit, self._interval, self._clock = emit, interval_s, clock
        self._last_sent: float | None = None
        self._pending: tuple[float, str] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def update(self, fraction: float, message: str = "") -> None:
        try:
            fraction = min(1.0, max(0.0, float(fraction)))
        except (TypeError, ValueError):
            return
        if math.isnan(fraction):
            return
        self._pending = (fraction, str(message))
        now = self._clock()
        if self._last_sent is None or now - self._last_sent >= self._interval:
            self._send()
        elif self._timer is None:
            delay = self._interval - (now - self._last_sent)
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._pending is not None:
            self._send()

    def _send(self) -> None:
        fraction, message = self._pending  # type: ignore[misc]
        self._pending = None
        self._last_sent = self._clock()
        try:
            self._emit(fraction, message)
        except Exception:  # a broken callback must not fail the job
            log.exception("progress callback failed")

    def flush(self) -> None:
        self.close(keep_pending=True)
        if self._pending is not None:
            self._send()

    def close(self, keep_pending: bool = False) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not keep_pending:
            self._pending = None


class JobRunner:
    """Runs `executor.run` for leases; `slots` bounds how many run at once.

    A lease id is accepted once: while it runs and for `remember_s` after it ended, starting
    it again raises AlreadyExists (reason "duplicate_lease"). The task returned by `start`
    yields the ExecResult, raises ExecutionError (other exceptions are wrapped as "internal"),
    or raises CancelledError after `cancel`.
    """

    def __init__(
        self,
        executors: Mapping[str, Executor],
        *,
        slots: int,
        work_dir: Path,
        artifacts: Any,
        on_progress: ProgressCallback | None = None,
        progress_interval_s: float = 0.25,
        inline_result_max_bytes: int = 256 * 1024,
        remember_s: float = 6 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not 1 <= slots <= 256:
            raise InvalidArgument.field("slots", f"must be 1..256, got {slots}")
        self.executors = dict(executors)
        self.slots = slots
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.artifacts = artifacts
        self.on_progress = on_progress
        self.progress_interval_s = progress_interval_s
        self.inline_result_max_bytes = inline_result_max_bytes
        self.remember_s = remember_s
        self.clock = clock
        self._sem = asyncio.Semaphore(slots)
        self._tasks: dict[str, tuple[str, asyncio.Task[ExecResult]]] = {}
        # lease id -> when it ended (None while it runs); pruned after remember_s, oldest end
        # first (a busy miner sees millions of leases in remember_s: no scan per job).
        self._seen: dict[str, float | None] = {}
        self._ends: deque[tuple[float, str]] = deque()

    def start(
        self, lease_id: str, job_id: str, service: str, params: Mapping[str, Any]
    ) -> asyncio.Task[ExecResult]:
        if not lease_id:
            raise InvalidArgument.field("lease_id", "must not be empty")
        self._prune()
        if lease_id in self._seen:
            raise AlreadyExists(f"lease {lease_id!r} was already started", reason="duplicate_lease")
        self._seen[lease_id] = None
        task = asyncio.get_running_loop().create_task(
            self._run(lease_id, job_id, service, params), name=f"job:{job_id}:{lease_id}"
        )
        self._tasks[lease_id] = (job_id, task)
        task.add_done_callback(lambda _t: self._ended(lease_id))
        return task

    def cancel(self, lease_id: str, reason: str = "") -> bool:
        """Cancel a running lease; False when it is not running (unknown or already done)."""
        entry = self._tasks.get(lease_id)
        if entry is None or entry[1].done():
            return False
        log.info("cancelling lease %s: %s", lease_id, reason or "no reason given")
        return entry[1].cancel(msg=reason or None)

    def inflight(self) -> dict[str, str]:
        """Leases running or waiting for a slot: lease id -> job id."""
        return {lease: job for lease, (job, _task) in self._tasks.items()}

    def free_slots(self) -> int:
        return max(0, self.slots - len(self._tasks))

    def has_seen(self, lease_id: str) -> bool:
        return lease_id in self._seen

    async def wait_idle(self) -> None:
        """Wait until every started job has ended (for drain)."""
        while self._tasks:
            await asyncio.wait([task for _job, task in self._tasks.values()])

    async def close(self, reason: str = "shutdown") -> None:
        """Cancel everything still running and wait for the cleanup."""
        for lease_id in list(self._tasks):
            self.cancel(lease_id, reason)
        await self.wait_idle()

    def _ended(self, lease_id: str) -> None:
        self._tasks.pop(lease_id, None)
        now = self.clock()
        self._seen[lease_id] = now
        self._ends.append((now, lease_id))

    def _prune(self) -> None:
        horizon = self.clock() - self.remember_s
        ends = self._ends
        while ends and ends[0][0] < horizon:
            ended, lease_id = ends.popleft()
            if self._seen.get(lease_id) == ended:
                del self._seen[lease_id]

    async def _run(
        self, lease_id: str, job_id: str, service: str, params: Mapping[str, Any]
    ) -> ExecResult:
        executor = self.executors.get(service)
        if executor is None:
            # Another miner may offer it, so the coordinator may retry elsewhere.
            raise ExecutionError(
                "unsupported_service", f"this miner does not run {service!r}", True
            )

        def emit(fraction: float, message: str) -> None:
            if self.on_progress is not None:
                self.on_progress(lease_id, fraction, message)

        async with self._sem:
            throttle = _Throttle(emit, self.progress_interval_s, self.clock)
            prefix = re.sub(r"[^A-Za-z0-9_.-]", "_", job_id)[:40] or "job"

            def make_workdir() -> Path:
                return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.work_dir))

            ctx = ExecContext(job_id, make_workdir, throttle.update, self.artifacts)
            try:
                result = await executor.run(params, ctx)
                result = await self._finish(result, ctx)
                throttle.flush()
                return result
            except (ExecutionError, asyncio.CancelledError):
                raise
            except Exception as exc:
                log.exception("executor %s failed on job %s", service, job_id)
                raise ExecutionError("internal", f"{type(exc).__name__}: {exc}", True) from exc
            finally:
                throttle.close()
                # Synchronous on purpose: the directory is gone when the task has ended. Only
                # a job that asked for one has one (making and removing an empty directory was
                # most of the agent's own work on short jobs).
                made = ctx.made_workdir
                if made is not None:
                    shutil.rmtree(made, ignore_errors=True)

    async def _finish(self, result: Any, ctx: ExecContext) -> ExecResult:
        if not isinstance(result, ExecResult):
            raise TypeError(f"executor returned {type(result).__name__}, not ExecResult")
        if result.artifact is not None:
            if result.inline is not None:
                raise TypeError("executor returned both an inline value and an artifact")
            return result
        try:
            encoded = canonical_json(result.inline)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"inline result is not JSON: {exc}") from exc
        if len(encoded) <= self.inline_result_max_bytes:
            return result
        # Too big to carry in a stream message: store the JSON as an artifact instead.
        path = ctx.workdir / "result.json"
        path.write_bytes(encoded)
        info = await self.artifacts.put(path, "application/json")
        return ExecResult(artifact=info, units_hint=result.units_hint)
