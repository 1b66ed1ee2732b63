"""A JobStore in process memory: fast domain tests and benchmarks (not durable)."""

from __future__ import annotations

import base64
import copy
from collections.abc import Sequence

from coordinator.domain.model import Job, JobState, MinerRecord
from coordinator.store.base import (
    IdempotencyConflict,
    JobFilter,
    MinerOutcome,
    Page,
    ReceiptOrder,
    ReceiptRecord,
)
from core import errors


def _cursor(job: Job) -> str:
    return base64.urlsafe_b64encode(f"{job.created_at!r}|{job.job_id}".encode()).decode()


def _uncursor(cursor: str) -> tuple[float, str]:
    try:
        created, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return float(created), job_id
    except (ValueError, UnicodeDecodeError):
        raise errors.InvalidArgument.field("page_token", "malformed page token") from None


class MemoryJobStore:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.idem: dict[tuple[str, str], str] = {}
        self.receipts: dict[str, list[ReceiptRecord]] = {}
        self.miners: dict[str, MinerRecord] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @staticmethod
    def _copy(job: Job) -> Job:
        return copy.copy(job) if not job.attempts else copy.deepcopy(job)

    async def insert_job(self, job: Job) -> Job:
        if job.idempotency_key:
            key = (job.client_id, job.idempotency_key)
            if key in self.idem:
                raise IdempotencyConflict(self._copy(self.jobs[self.idem[key]]))
            self.idem[key] = job.job_id
        job.version = 1
        self.jobs[job.job_id] = self._copy(job)
        return job

    async def update_job(
        self,
        job: Job,
        expect_version: int,
        *,
        receipt: ReceiptRecord | ReceiptOrder | None = None,
        outcome: MinerOutcome | None = None,
    ) -> bool:
        cur = self.jobs.get(job.job_id)
        if cur is None or cur.version != expect_version:
            return False
        order = receipt if isinstance(receipt, ReceiptOrder) else None
        if order is not None:  # signed first: a refusal changes nothing
            receipt = order.record = order.sign()
        job.version = expect_version + 1
        self.jobs[job.job_id] = self._copy(job)
        if receipt is not None:
            self.receipts.setdefault(job.job_id, []).append(receipt)
        if outcome is not None:
            await self.record_miner_outcome(
                outcome.miner_id, completed=outcome.completed, duration_ms=outcome.duration_ms
            )
        return True

    async def get_job(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        return self._copy(job) if job else None

    async def get_jobs(self, job_ids: Sequence[str]) -> list[Job]:
        return [self._copy(self.jobs[j]) for j in job_ids if j in self.jobs]

    async def list_jobs(self, flt: JobFilter, *, limit: int, cursor: str = "") -> Page:
        after = _uncursor(cursor) if cursor else None
        rows = sorted(self.jobs.values(), key=lambda j: (j.created_at, j.job_id), reverse=True)
        out = []
        for j in rows:
            if flt.client_id is not None and j.client_id != flt.client_id:
                continue
            if flt.state is not None and j.state is not flt.state:
                continue
            if flt.miner_id is not None and j.miner_id != flt.miner_id:
                continue
            if after is not None and (j.created_at, j.job_id) >= after:
                continue
            out.append(self._copy(j))
            if len(out) > limit:
                break
        more = len(out) > limit
        out = out[:limit]
        return Page(out, _cursor(out[-1]) if more else "")

    async def queued_jobs(self, *, limit: int) -> list[Job]:
        q = [j for j in self.jobs.values() if j.state is JobState.QUEUED]
        q.sort(key=lambda j: (-j.constraints.priority, j.created_at, j.job_id))
        return [self._copy(j) for j in q[:limit]]

    async def leased_jobs(self) -> list[Job]:
        return [self._copy(j) for j in self.jobs.values() if j.state.leased]

    async def due_jobs(self, now: float, *, limit: int) -> list[Job]:
        due = [
            j
            for j in self.jobs.values()
            if not j.state.terminal and j.deadline_at is not None and j.deadline_at <= now
        ]
        due.sort(key=lambda j: j.deadline_at or 0)
        return [self._copy(j) for j in due[:limit]]

    async def count_by_state(self) -> dict[JobState, int]:
        out: dict[JobState, int] = {}
        for j in self.jobs.values():
            out[j.state] = out.get(j.state, 0) + 1
        return out

    async def queued_ids(self, *, limit: int) -> list[str]:
        return [j.job_id for j in await self.queued_jobs(limit=limit)]

    async def completion_window(
        self, since: float, until: float, fractions: Sequence[float]
    ) -> tuple[int, list[float]]:
        lat = sorted(
            j.finished_at - j.created_at
            for j in self.jobs.values()
            if j.state is JobState.COMPLETED
            and j.finished_at is not None
            and since <= j.finished_at <= until
        )
        n = len(lat)
        return n, [lat[min(n - 1, int(f * n))] if n else 0.0 for f in fractions]

    async def list_receipts(
        self, job_id: str, *, limit: int, cursor: str = ""
    ) -> tuple[list[ReceiptRecord], str]:
        recs = self.receipts.get(job_id, [])
        start = int(cursor) if cursor.isdigit() else 0
        page = recs[start : start + limit]
        return page, str(start + limit) if start + limit < len(recs) else ""

    async def upsert_miner(self, miner: MinerRecord) -> None:
        self.miners[miner.miner_id] = copy.deepcopy(miner)

    async def get_miner(self, miner_id: str) -> MinerRecord | None:
        rec = self.miners.get(miner_id)
        return copy.deepcopy(rec) if rec else None

    async def list_miners(self) -> list[MinerRecord]:
        return [copy.deepcopy(r) for r in self.miners.values()]

    async def record_miner_outcome(
        self, miner_id: str, *, completed: bool, duration_ms: int
    ) -> None:
        rec = self.miners.setdefault(miner_id, MinerRecord(miner_id=miner_id))
        if completed:
            rec.completed += 1
            rec.total_duration_ms += duration_ms
        else:
            rec.failed += 1
