"""The job book: every change to a stored job goes through `mutate` (lock, transition, CAS).

Per-job asyncio locks order the changes made by this process; compare-and-set on the stored
version orders them across processes. Listeners (dispatcher, watchers) hear every change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from coordinator.domain.model import Job
from coordinator.store.base import JobStore, MinerOutcome, ReceiptOrder, ReceiptRecord
from core import errors

Transition = Callable[[Job], Job | None]
Listener = Callable[[Job | None, Job], None]


@dataclass(slots=True)
class _LockEntry:
    lock: asyncio.Lock
    users: int = 0


class JobBook:
    def __init__(self, store: JobStore, *, cas_retries: int = 5):
        self.store = store
        self._locks: dict[str, _LockEntry] = {}
        self._cache: dict[str, Job] = {}
        self._listeners: list[Listener] = []
        self._cas_retries = cas_retries

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def notify(self, old: Job | None, new: Job) -> None:
        for listener in self._listeners:
            listener(old, new)

    def busy(self, job_id: str) -> bool:
        """A change of this job is under way in this process (it may be committed already)."""
        return job_id in self._locks

    def remember(self, job: Job) -> None:
        if job.state.terminal:
            self._cache.pop(job.job_id, None)
        else:
            self._cache[job.job_id] = job

    async def insert(self, job: Job) -> Job:
        stored = await self.store.insert_job(job)
        self.remember(stored)
        self.notify(None, stored)
        return stored

    def cached(self, job_id: str) -> Job | None:
        """The job as last stored by this process, if it is live and in memory."""
        return self._cache.get(job_id)

    async def load(self, job_id: str, *, fresh: bool = False) -> Job | None:
        job = None if fresh else self._cache.get(job_id)
        if job is None:
            job = await self.store.get_job(job_id)
            if job is not None:
                self.remember(job)
        return job

    async def mutate(
        self,
        job_id: str,
        transition: Transition,
        *,
        receipt: Callable[[Job], ReceiptRecord | ReceiptOrder | None] | None = None,
        outcome: Callable[[Job], MinerOutcome | None] | None = None,
    ) -> tuple[Job, Job | None]:
        """Apply `transition` to the current job and store it; returns (before, after).

        `after` is None when the transition decided nothing changes. Domain errors raised by
        the transition propagate unchanged (nothing is written).
        """
        # The per-job lock is taken here rather than through an @asynccontextmanager: that
        # one cost a generator and two more coroutine steps on every change of every job.
        entry = self._locks.get(job_id)
        if entry is None:
            entry = self._locks[job_id] = _LockEntry(asyncio.Lock())
        entry.users += 1
        try:
            async with entry.lock:
                fresh = False
                for _ in range(self._cas_retries):
                    # The cache is looked at here: load() is a coroutine call even on a hit.
                    job = None if fresh else self._cache.get(job_id)
                    if job is None:
                        job = await self.load(job_id, fresh=True)
                    if job is None:
                        raise errors.NotFound("job", job_id)
                    new = transition(job)
                    if new is None:
                        return job, None
                    rec = receipt(new) if receipt is not None else None
                    done = outcome(new) if outcome is not None else None
                    if await self.store.update_job(new, job.version, receipt=rec, outcome=done):
                        self.remember(new)
                        self.notify(job, new)
                        return job, new
                    fresh = True  # another process changed it: reload and decide again
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[job_id]
        raise errors.Aborted(
            f"job {job_id} changed concurrently; try again",
            retry_after_s=0.1,
            reason="concurrent_update",
        )
