"""SqlJobStore: the JobStore on SQLAlchemy 2 (SQLite or PostgreSQL) with group commit.

Why the sync engine in threads rather than the async engine: the async drivers (aiosqlite,
psycopg async) run each statement through a thread hop or an extra event-loop round trip, while
a group-commit writer executes hundreds of statements back to back; one dedicated writer thread
on a plain connection does that with no per-statement await (pipelined on PostgreSQL, see
prepared.py), and the event loop only sees one future per write. Reads run on a small thread
pool with their own connections (WAL lets SQLite readers run beside the writer); sqlite3 and
psycopg release the GIL while they wait. Measured with bench/store/lifecycles.py (2-core box
shared with other work, insert + 3 CAS updates per job, 20-200 coroutines): one transaction per
write gives about 490 lifecycles/s on SQLite and 280-300 on PostgreSQL; group commit gives
3,200-4,900 and 1,400-2,400.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from coordinator.domain.model import Job, JobState, MinerRecord
from coordinator.store import codec, engines, migrate
from coordinator.store.base import (
    IdempotencyConflict,
    JobFilter,
    MinerOutcome,
    Page,
    ReceiptOrder,
    ReceiptRecord,
)
from coordinator.store.groupcommit import GroupCommitter, translate
from coordinator.store.statements import WriteStatements
from coordinator.store.tables import jobs, miners, receipts
from coordinator.store.writer_process import ProcessWriter
from coordinator.store.writes import Write, operation
from core.errors import InvalidArgument, Unavailable

T = TypeVar("T")
_LIVE = (JobState.QUEUED.value, JobState.ASSIGNED.value, JobState.RUNNING.value)
_LEASED = (JobState.ASSIGNED.value, JobState.RUNNING.value)
_IN_CHUNK = 500  # ids per IN (...) list: well under every backend's bind-parameter limit


# Where the group-commit writer runs: "thread" in this process, or "process", its own
# process with its own GIL (writer_process.py), which the coordinator uses.
WRITERS = ("thread", "process")


# The reads that run every second or on every job, built once: building a select() costs
# 40-120 us of SQLAlchemy coercions on the event loop per call (measured), while executing a
# built one with new bind values is served from SQLAlchemy's compiled cache either way.
_ORDER_QUEUED = (jobs.c.priority.desc(), jobs.c.created_at, jobs.c.job_id)
_GET_JOB = sa.select(jobs).where(jobs.c.job_id == sa.bindparam("job_id"))
_GET_JOBS = sa.select(jobs).where(jobs.c.job_id.in_(sa.bindparam("ids", expanding=True)))
_QUEUED_JOBS = (
    sa.select(jobs)
    .where(jobs.c.state == JobState.QUEUED.value)
    .order_by(*_ORDER_QUEUED)
    .limit(sa.bindparam("limit"))
)
_QUEUED_IDS = (
    sa.select(jobs.c.job_id)
    .where(jobs.c.state == JobState.QUEUED.value)
    .order_by(*_ORDER_QUEUED)
    .limit(sa.bindparam("limit"))
)
_LEASED_JOBS = sa.select(jobs).where(jobs.c.state.in_(_LEASED)).order_by(jobs.c.job_id)
_DUE_JOBS = (
    sa.select(jobs)
    .where(jobs.c.state.in_(_LIVE), jobs.c.deadline_at <= sa.bindparam("now"))
    .order_by(jobs.c.deadline_at, jobs.c.job_id)
    .limit(sa.bindparam("limit"))
)
_COUNT_BY_STATE = sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state)
_DONE = sa.and_(
    jobs.c.state == JobState.COMPLETED.value,
    jobs.c.finished_at.between(sa.bindparam("since"), sa.bindparam("until")),
)
_LATENCY = (jobs.c.finished_at - jobs.c.created_at).label("latency")
_COUNT_DONE = sa.select(sa.func.count()).select_from(jobs).where(_DONE)
_RANKED_DONE = (
    sa.select(_LATENCY).where(_DONE).order_by(_LATENCY).offset(sa.bindparam("rank")).limit(1)
)
_GET_MINER = sa.select(miners).where(miners.c.miner_id == sa.bindparam("miner_id"))
_LIST_MINERS = sa.select(miners).order_by(miners.c.miner_id)


def _positive(value: int, field: str) -> None:
    if value < 1:
        raise InvalidArgument.field(field, "must be at least 1")


class SqlJobStore:
    """JobStore on SQLite (`sqlite:///path/aitbc.db`) or PostgreSQL (`postgresql+psycopg://...`)."""

    def __init__(
        self, url: str, *, pool_size: int = 5, batch_max: int = 256, writer: str = "thread"
    ):
        _positive(pool_size, "pool_size")
        _positive(batch_max, "batch_max")
        if writer not in WRITERS:
            raise InvalidArgument.field("writer", f"expected one of {WRITERS}, got {writer!r}")
        self._url = engines.parse_url(url)
        self._pool_size = pool_size
        self._batch_max = batch_max
        self._writer_kind = writer
        self._writer_engine: Engine | None = None
        self._reader_engine: Engine | None = None
        self._writer: GroupCommitter | None = None
        self._process: ProcessWriter | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._sql: WriteStatements | None = None

    @property
    def commits(self) -> int:
        """Group commits so far (each acknowledges one batch of writes)."""
        writer = self._process or self._writer
        return writer.commits if writer else 0

    async def start(self) -> None:
        if self._writer_engine is not None:
            raise RuntimeError("SqlJobStore.start() called twice")
        self._writer_engine = engines.writer_engine(self._url)
        try:
            await asyncio.to_thread(self._migrate)
        except BaseException:
            self._writer_engine.dispose()
            raise
        self._reader_engine = engines.reader_engine(self._url, self._pool_size)
        self._readers = ThreadPoolExecutor(self._pool_size, thread_name_prefix="aitbc-store-read")
        if self._writer_kind == "process":
            # The migrations above ran here; the writer process only writes.
            self._writer_engine.dispose()
            process = ProcessWriter(
                self._url.render_as_string(hide_password=False), batch_max=self._batch_max
            )
            try:
                await process.start()
            except BaseException:
                await self.close()
                raise
            self._process = process
            return
        self._sql = WriteStatements(self._writer_engine.dialect)
        self._writer = GroupCommitter(
            self._writer_engine, batch_max=self._batch_max, name="aitbc-store-writer"
        )
        self._writer.start()

    def _migrate(self) -> None:
        assert self._writer_engine is not None
        with self._writer_engine.connect() as conn, conn.begin():
            migrate.upgrade(conn)

    async def close(self) -> None:
        if self._process is not None:
            await self._process.stop()
        if self._writer is not None:
            await asyncio.to_thread(self._writer.stop)
        if self._readers is not None:
            self._readers.shutdown(wait=False)
        for engine in (self._reader_engine, self._writer_engine):
            if engine is not None:
                engine.dispose()

    # -- plumbing ---------------------------------------------------------------------------

    async def _write(self, write: Write) -> Any:
        if self._process is not None:
            return await self._process.submit(write)
        if self._writer is None or self._sql is None:
            raise Unavailable("store is not started")
        return await self._writer.submit(operation(self._sql, write.kind, write.args), write.order)

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        if self._readers is None or self._reader_engine is None:
            raise Unavailable("store is not started")
        engine = self._reader_engine

        def call() -> T:
            with engine.connect() as conn:
                return fn(conn)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, call)
        except Exception as exc:
            err = translate(exc)
            if err is exc:
                raise
            raise err from exc

    async def _select_jobs(
        self, stmt: sa.Select[Any], params: dict[str, Any] | None = None
    ) -> list[Job]:
        return await self._read(
            lambda c: [codec.job_from(m) for m in c.execute(stmt, params).mappings()]
        )

    # -- writes -----------------------------------------------------------------------------

    async def insert_job(self, job: Job) -> Job:
        row = codec.job_row(job, version=1)  # encode here: a bad value fails only its caller
        key = row["idempotency_key"]

        # Same-key inserts sort together and first, so racing coordinators lock in one order.
        order = (0, job.client_id, key) if key is not None else (1, job.job_id)
        outcome = await self._write(Write("insert_job", (row,), order))
        if outcome is not None:
            _, existing = outcome  # (CONFLICT, the row holding the key)
            raise IdempotencyConflict(codec.job_from(existing))
        job.version = 1
        return job

    async def update_job(
        self,
        job: Job,
        expect_version: int,
        *,
        receipt: ReceiptRecord | ReceiptOrder | None = None,
        outcome: MinerOutcome | None = None,
    ) -> bool:
        params = codec.job_mutable_values(job)
        params.update(b_job_id=job.job_id, b_expect=expect_version, version=expect_version + 1)
        receipt_row, order = None, None
        if receipt is not None and receipt.job_id != job.job_id:
            raise InvalidArgument.field("receipt.job_id", "must be the updated job's id")
        if isinstance(receipt, ReceiptOrder):
            order = receipt  # signed by the writer (in its process: off this event loop)
        elif receipt is not None:
            receipt_row = codec.receipt_row(receipt)
        outcome_row = None if outcome is None else self._outcome_row(outcome)
        applied = await self._write(
            Write("update_job", (params, receipt_row, outcome_row, order), (1, job.job_id))
        )
        if not applied:
            return False
        if order is not None:
            order.record = applied
        job.version = expect_version + 1
        return True

    async def upsert_miner(self, miner: MinerRecord) -> None:
        row = codec.miner_row(miner)
        await self._write(Write("upsert_miner", (row,), (2, miner.miner_id)))

    @staticmethod
    def _outcome_row(outcome: MinerOutcome) -> dict[str, Any]:
        if outcome.duration_ms < 0:
            raise InvalidArgument.field("duration_ms", "must not be negative")
        # An outcome for a miner not stored yet creates its row: counts are never dropped.
        row = codec.miner_row(MinerRecord(miner_id=outcome.miner_id))
        row.update(
            completed=int(outcome.completed),
            failed=int(not outcome.completed),
            total_duration_ms=outcome.duration_ms,
        )
        return row

    async def record_miner_outcome(
        self, miner_id: str, *, completed: bool, duration_ms: int
    ) -> None:
        row = self._outcome_row(MinerOutcome(miner_id, completed, duration_ms))
        await self._write(Write("add_outcome", (row,), (2, miner_id)))

    # -- reads ------------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        found = await self._select_jobs(_GET_JOB, {"job_id": job_id})
        return found[0] if found else None

    async def get_jobs(self, job_ids: Sequence[str]) -> list[Job]:
        """The jobs that exist, in the order asked."""
        wanted = list(dict.fromkeys(job_ids))

        def fetch(conn: Connection) -> dict[str, Job]:
            out: dict[str, Job] = {}
            for i in range(0, len(wanted), _IN_CHUNK):
                chunk = {"ids": wanted[i : i + _IN_CHUNK]}
                for m in conn.execute(_GET_JOBS, chunk).mappings():
                    out[m["job_id"]] = codec.job_from(m)
            return out

        found = await self._read(fetch) if wanted else {}
        return [found[i] for i in job_ids if i in found]

    async def list_jobs(self, flt: JobFilter, *, limit: int, cursor: str = "") -> Page:
        _positive(limit, "limit")
        stmt = sa.select(jobs)
        if flt.client_id is not None:
            stmt = stmt.where(jobs.c.client_id == flt.client_id)
        if flt.state is not None:
            stmt = stmt.where(jobs.c.state == JobState(flt.state).value)
        if flt.miner_id is not None:
            stmt = stmt.where(jobs.c.miner_id == flt.miner_id)
        if cursor:
            after = codec.decode_cursor(cursor)
            stmt = stmt.where(sa.tuple_(jobs.c.created_at, jobs.c.job_id) < after)
        stmt = stmt.order_by(jobs.c.created_at.desc(), jobs.c.job_id.desc()).limit(limit + 1)
        found = await self._select_jobs(stmt)
        if len(found) <= limit:
            return Page(found, "")
        last = found[limit - 1]
        return Page(found[:limit], codec.encode_cursor(last.created_at, last.job_id))

    async def queued_jobs(self, *, limit: int) -> list[Job]:
        _positive(limit, "limit")
        return await self._select_jobs(_QUEUED_JOBS, {"limit": limit})

    async def leased_jobs(self) -> list[Job]:
        return await self._select_jobs(_LEASED_JOBS)

    async def due_jobs(self, now: float, *, limit: int) -> list[Job]:
        _positive(limit, "limit")
        return await self._select_jobs(_DUE_JOBS, {"now": now, "limit": limit})

    async def count_by_state(self) -> dict[JobState, int]:
        """Every state, zero included."""
        rows = await self._read(lambda c: c.execute(_COUNT_BY_STATE).all())
        counts = dict.fromkeys(JobState, 0)
        counts.update({JobState(state): n for state, n in rows})
        return counts

    async def queued_ids(self, *, limit: int) -> list[str]:
        _positive(limit, "limit")
        params = {"limit": limit}
        return await self._read(lambda c: list(c.execute(_QUEUED_IDS, params).scalars()))

    async def completion_window(
        self, since: float, until: float, fractions: Sequence[float]
    ) -> tuple[int, list[float]]:
        # Counting and ranking run in the database: a busy window holds many thousands of rows,
        # and decoding them all in Python on every GetStats call was most of its cost.
        window = {"since": since, "until": until}

        def fetch(conn: Connection) -> tuple[int, list[float]]:
            n = conn.execute(_COUNT_DONE, window).scalar_one()
            if n == 0:
                return 0, [0.0 for _ in fractions]
            out = []
            for f in fractions:
                rank = {**window, "rank": min(n - 1, int(f * n))}
                out.append(float(conn.execute(_RANKED_DONE, rank).scalar_one()))
            return n, out

        return await self._read(fetch)

    async def list_receipts(
        self, job_id: str, *, limit: int, cursor: str = ""
    ) -> tuple[list[ReceiptRecord], str]:
        _positive(limit, "limit")
        stmt = sa.select(receipts).where(receipts.c.job_id == job_id)
        if cursor:
            after = codec.decode_cursor(cursor)
            stmt = stmt.where(sa.tuple_(receipts.c.created_at, receipts.c.receipt_id) > after)
        stmt = stmt.order_by(receipts.c.created_at, receipts.c.receipt_id).limit(limit + 1)
        found = await self._read(
            lambda c: [codec.receipt_from(m) for m in c.execute(stmt).mappings()]
        )
        if len(found) <= limit:
            return found, ""
        last = found[limit - 1]
        return found[:limit], codec.encode_cursor(last.created_at, last.receipt_id)

    async def get_miner(self, miner_id: str) -> MinerRecord | None:
        params = {"miner_id": miner_id}
        m = await self._read(lambda c: c.execute(_GET_MINER, params).mappings().first())
        return None if m is None else codec.miner_from(m)

    async def list_miners(self) -> list[MinerRecord]:
        return await self._read(
            lambda c: [codec.miner_from(m) for m in c.execute(_LIST_MINERS).mappings()]
        )
