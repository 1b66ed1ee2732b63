"""The JobStore contract the domain depends on; SQL lives behind it (coordinator/store/sql.py)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from coordinator.domain.model import Job, JobState, MinerRecord
from core.errors import Internal
from core.receipts import ReceiptError, Signer, issue_receipt


class IdempotencyConflict(Exception):
    """Raised by insert_job when (client_id, idempotency_key) exists: carries the existing job."""

    def __init__(self, existing: Job):
        super().__init__(existing.job_id)
        self.existing = existing


@dataclass(frozen=True, slots=True)
class Page:
    jobs: list[Job]
    # Opaque cursor for the next page; "" when this is the last page.
    next_cursor: str


@dataclass(frozen=True, slots=True)
class JobFilter:
    client_id: str | None = None
    state: JobState | None = None
    miner_id: str | None = None


@dataclass(frozen=True, slots=True)
class MinerOutcome:
    """One finished job added to a miner's counters (written with the job's last change)."""

    miner_id: str
    completed: bool
    duration_ms: int


@dataclass(frozen=True, slots=True)
class ReceiptRecord:
    """A signed receipt: `document` holds the exact signed JSON bytes, never re-serialized."""

    receipt_id: str
    job_id: str
    key_id: str
    created_at: float
    document: bytes


@dataclass(slots=True)
class ReceiptOrder:
    """A receipt to sign where the job's completion is written, in the same transaction.

    Building and signing a receipt (canonical JSON, Ed25519) was the largest piece of event-loop
    work per completed job; SqlJobStore does it in its writer process instead. `fields` are
    core.receipts.issue_receipt's keyword arguments (plain values), the seeds the keys that
    sign them. The store sets `record` when the update applies.
    """

    job_id: str
    created_at: float
    fields: dict[str, Any]
    signing_seed: bytes = field(repr=False)
    attestation_seed: bytes | None = field(default=None, repr=False)
    record: ReceiptRecord | None = None

    def sign(self) -> ReceiptRecord:
        """The signed receipt (a new receipt id on every call). Internal, naming the field, when
        it cannot be issued: raised inside the write, it undoes the job's update too."""
        signer, attester = _signers(self.signing_seed, self.attestation_seed)
        try:
            receipt_id, document = issue_receipt(signer, attester, **self.fields)
        except ReceiptError as exc:
            raise Internal(f"the receipt could not be issued: {exc}") from exc
        return ReceiptRecord(receipt_id, self.job_id, signer.key_id, self.created_at, document)


@functools.lru_cache(maxsize=8)
def _signers(signing: bytes, attestation: bytes | None) -> tuple[Signer, Signer | None]:
    return Signer.from_seed(signing), Signer.from_seed(attestation) if attestation else None


class JobStore(Protocol):
    """Durable jobs and miners. Every awaited write is committed before it returns.

    Concurrent writes from many coroutines are grouped into shared transactions (group commit);
    each call still gets its own outcome. Nothing blocks the event loop.
    """

    async def start(self) -> None:
        """Open connections and run migrations to head."""

    async def close(self) -> None: ...

    async def insert_job(self, job: Job) -> Job:
        """Insert a new job (version becomes 1). When job.idempotency_key is set and the same
        client already has a job with that key, raise IdempotencyConflict(existing)."""

    async def update_job(
        self,
        job: Job,
        expect_version: int,
        *,
        receipt: ReceiptRecord | ReceiptOrder | None = None,
        outcome: MinerOutcome | None = None,
    ) -> bool:
        """Compare-and-set: write every mutable field of `job` if the stored version equals
        `expect_version`, then set job.version = expect_version + 1 and return True; otherwise
        change nothing and return False. This is the atomic claim across processes.
        A `receipt` is inserted and an `outcome` added to its miner's counters in the same
        transaction, only when the update applies; a ReceiptOrder is signed for it then, and
        the signed record set as its `record`."""

    async def get_job(self, job_id: str) -> Job | None: ...

    async def get_jobs(self, job_ids: Sequence[str]) -> list[Job]: ...

    async def list_jobs(self, flt: JobFilter, *, limit: int, cursor: str = "") -> Page:
        """Newest first (created_at desc, job_id desc); cursor from a previous Page."""

    async def queued_jobs(self, *, limit: int) -> list[Job]:
        """QUEUED jobs in dispatch order: priority desc, created_at asc, job_id asc."""

    async def leased_jobs(self) -> list[Job]:
        """Every ASSIGNED or RUNNING job (restart recovery)."""

    async def due_jobs(self, now: float, *, limit: int) -> list[Job]:
        """QUEUED/ASSIGNED/RUNNING jobs whose deadline_at <= now (the expiry sweeper)."""

    async def count_by_state(self) -> dict[JobState, int]: ...

    async def queued_ids(self, *, limit: int) -> list[str]:
        """The ids of queued_jobs(limit), without loading the jobs."""

    async def completion_window(
        self, since: float, until: float, fractions: Sequence[float]
    ) -> tuple[int, list[float]]:
        """Jobs COMPLETED with finished_at in [since, until]: their count, and for each fraction
        f the latency (finished_at - created_at, seconds) at rank min(n - 1, int(f * n)) in
        ascending order (0.0 when there are none)."""

    async def list_receipts(
        self, job_id: str, *, limit: int, cursor: str = ""
    ) -> tuple[list[ReceiptRecord], str]:
        """Receipts of a job, oldest first; returns (records, next_cursor)."""

    async def upsert_miner(self, miner: MinerRecord) -> None: ...

    async def get_miner(self, miner_id: str) -> MinerRecord | None: ...

    async def list_miners(self) -> list[MinerRecord]: ...

    async def record_miner_outcome(
        self, miner_id: str, *, completed: bool, duration_ms: int
    ) -> None:
        """Add one completed (or failed) job and its duration to the miner's counters."""
