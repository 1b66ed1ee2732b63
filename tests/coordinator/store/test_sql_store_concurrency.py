"""Group commit and races: batching, failure isolation, CAS and idempotency across two stores."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from coordinator.domain.model import JobState
from coordinator.store.base import IdempotencyConflict, ReceiptRecord
from coordinator.store.prepared import Prepared
from core.errors import Aborted, AlreadyExists, Internal, Unavailable

# These reach into the batch runner (BatchRunner), which the writer thread and the writer
# process share; in-process is where a test can patch it.
THREAD_ONLY = pytest.mark.parametrize("writer", ["thread"])


async def test_concurrent_updates_share_commits(store, make_job):
    jobs = [make_job() for _ in range(200)]
    await asyncio.gather(*(store.insert_job(j) for j in jobs))
    for j in jobs:
        j.state = JobState.ASSIGNED
    before = store.commits
    results = await asyncio.gather(*(store.update_job(j, 1) for j in jobs))
    assert all(results)
    assert store.commits - before < 100  # 200 acknowledged writes, far fewer fsyncs
    stored = await store.get_jobs([j.job_id for j in jobs])
    assert {j.state for j in stored} == {JobState.ASSIGNED}


async def test_one_batch_each_caller_gets_its_own_outcome(store, make_job, writer_gate):
    taken = await store.insert_job(make_job(client_id="c", key="taken"))
    target = await store.insert_job(make_job())
    stale = await store.insert_job(make_job())
    stale.state = JobState.RUNNING
    assert await store.update_job(stale, 1)
    done = await store.insert_job(make_job())
    receipt = ReceiptRecord("rcpt-1", done.job_id, "k", 1.0, b"{}")
    done.state = JobState.COMPLETED
    assert await store.update_job(done, 1, receipt=receipt)

    good = [make_job() for _ in range(5)]
    same_key = [make_job(client_id="c", key="fresh") for _ in range(2)]
    overflow = make_job()
    overflow.ttl_s = 2**70  # the database refuses this one write
    target.state = JobState.ASSIGNED
    dup_receipt = copy.deepcopy(done)
    dup_receipt.error_message = "must not stick"

    gate = writer_gate(store)
    await gate.close()
    before = store.commits
    tasks = {
        "good": [asyncio.create_task(store.insert_job(j)) for j in good],
        "same_key": [asyncio.create_task(store.insert_job(j)) for j in same_key],
        "taken": asyncio.create_task(store.insert_job(make_job(client_id="c", key="taken"))),
        "overflow": asyncio.create_task(store.insert_job(overflow)),
        "cas_ok": asyncio.create_task(store.update_job(target, 1)),
        "cas_stale": asyncio.create_task(store.update_job(copy.deepcopy(stale), 1)),
        "dup_receipt": asyncio.create_task(
            store.update_job(
                dup_receipt, 2, receipt=ReceiptRecord("rcpt-1", done.job_id, "k", 2.0, b"x")
            )
        ),
        "miner": asyncio.create_task(
            store.record_miner_outcome("m", completed=True, duration_ms=5)
        ),
    }
    await gate.open()
    await asyncio.gather(*tasks["good"])
    outcomes = await asyncio.gather(*tasks["same_key"], return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["IdempotencyConflict", "Job"]
    winner = next(o for o in outcomes if not isinstance(o, Exception))
    assert next(o for o in outcomes if isinstance(o, Exception)).existing.job_id == winner.job_id
    with pytest.raises(IdempotencyConflict) as info:
        await tasks["taken"]
    assert info.value.existing.job_id == taken.job_id
    with pytest.raises(Internal):
        await tasks["overflow"]
    assert await tasks["cas_ok"] is True
    assert await tasks["cas_stale"] is False
    with pytest.raises(AlreadyExists):
        await tasks["dup_receipt"]
    await tasks["miner"]
    # all of the above in one batch (after the gate's own, in the writer thread)
    assert store.commits - before == 1 + gate.commits

    assert len(await store.get_jobs([j.job_id for j in good])) == 5
    assert await store.get_job(overflow.job_id) is None
    assert (await store.get_job(target.job_id)).state == JobState.ASSIGNED
    assert (await store.get_job(done.job_id)).version == 2  # the receipt failure undid it
    assert (await store.get_miner("m")).completed == 1


@THREAD_ONLY
async def test_clean_batch_is_not_isolated_and_counters_add_up(store, make_job, writer_gate):
    """The rows of one round go as one statement per kind on SQLite: a batch where every row
    applies needs no fallback, and one miner's outcomes in one statement add up in turn."""
    jobs = [make_job() for _ in range(6)]
    isolated: list[Any] = []
    store._writer._runner._run_isolated = lambda conn, op: isolated.append(op)
    gate = writer_gate(store)
    await gate.close()
    inserts = [asyncio.create_task(store.insert_job(j)) for j in jobs]
    outcomes = [
        asyncio.create_task(store.record_miner_outcome("m", completed=ok, duration_ms=ms))
        for ok, ms in ((True, 5), (True, 7), (False, 0))
    ]
    await gate.open()
    await asyncio.gather(*inserts, *outcomes)
    for j in jobs:
        j.state = JobState.COMPLETED
    receipts = [ReceiptRecord(f"rcpt-{i}", j.job_id, "k", 1.0, b"{}") for i, j in enumerate(jobs)]
    await gate.close()
    updates = [
        asyncio.create_task(store.update_job(j, 1, receipt=r))
        for j, r in zip(jobs, receipts, strict=True)
    ]
    await gate.open()
    assert await asyncio.gather(*updates) == [True] * 6
    assert isolated == []
    miner = await store.get_miner("m")
    assert (miner.completed, miner.failed, miner.total_duration_ms) == (2, 1, 12)
    stored = await store.get_jobs([j.job_id for j in jobs])
    assert {(j.state, j.version) for j in stored} == {(JobState.COMPLETED, 2)}
    for j, r in zip(jobs, receipts, strict=True):
        assert [x.receipt_id for x in (await store.list_receipts(j.job_id, limit=5))[0]] == [
            r.receipt_id
        ]


def _poison(dialect: sa.Dialect) -> Callable[[], Iterator[Any]]:
    """A write that succeeds but makes COMMIT fail (a constraint checked only at commit)."""
    if dialect.name == "sqlite":
        sql = [
            "PRAGMA defer_foreign_keys = ON",
            "INSERT INTO receipts VALUES ('orphan', 'no-such-job', 'k', 1.0, x'00')",
        ]
    else:
        sql = [
            "CREATE TEMP TABLE poison (id int PRIMARY KEY, "
            "ref int REFERENCES poison (id) DEFERRABLE INITIALLY DEFERRED) ON COMMIT DROP",
            "INSERT INTO poison VALUES (1, 2)",
        ]

    def run() -> Iterator[Any]:
        for text in sql:
            yield Prepared(sa.text(text), dialect), {}

    return run


@THREAD_ONLY
async def test_failed_commit_acknowledges_nothing(store, make_job, writer_gate):
    existing = await store.insert_job(make_job())
    gate = writer_gate(store)
    await gate.close()
    fresh = make_job()
    existing.state = JobState.CANCELED
    tasks = [
        asyncio.create_task(store.insert_job(fresh)),
        asyncio.create_task(store.update_job(existing, 1)),
        store._writer.submit(_poison(store._writer_engine.dialect), (3,)),
    ]
    await gate.open()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, Internal) for r in results), results
    assert await store.get_job(fresh.job_id) is None
    assert (await store.get_job(existing.job_id)).version == 1
    # The writer carries on after a failed batch.
    assert await store.update_job(existing, 1)


async def test_two_stores_race_cas_exactly_one_wins(store, make_store, make_job):
    other = await make_store()
    jobs = [make_job() for _ in range(20)]
    await asyncio.gather(*(store.insert_job(j) for j in jobs))
    for rnd in range(15):
        mine = [copy.deepcopy(j) for j in jobs]
        theirs = [copy.deepcopy(j) for j in jobs]
        for a, b in zip(mine, theirs, strict=True):
            a.miner_id, b.miner_id = f"A{rnd}", f"B{rnd}"
        version = rnd + 1
        won_a, won_b = await asyncio.gather(
            asyncio.gather(*(store.update_job(j, version) for j in mine)),
            asyncio.gather(*(other.update_job(j, version) for j in theirs)),
        )
        stored = await other.get_jobs([j.job_id for j in jobs])
        for a, b, s in zip(won_a, won_b, stored, strict=True):
            assert a != b, f"round {rnd}: both or neither applied"
            assert s.version == version + 1
            assert s.miner_id == (f"A{rnd}" if a else f"B{rnd}")


async def test_two_stores_race_idempotent_insert(store, make_store, make_job):
    other = await make_store()
    for rnd in range(5):
        mine = [make_job(client_id="c", key=f"k{rnd}-{i}") for i in range(15)]
        theirs = [make_job(client_id="c", key=f"k{rnd}-{i}") for i in range(15)]
        res_a, res_b = await asyncio.gather(
            asyncio.gather(*(store.insert_job(j) for j in mine), return_exceptions=True),
            asyncio.gather(*(other.insert_job(j) for j in theirs), return_exceptions=True),
        )
        for a, b in zip(res_a, res_b, strict=True):
            conflicts = [r for r in (a, b) if isinstance(r, IdempotencyConflict)]
            inserted = [r for r in (a, b) if not isinstance(r, BaseException)]
            assert len(conflicts) == 1 and len(inserted) == 1, (a, b)
            assert conflicts[0].existing.job_id == inserted[0].job_id
    assert (await store.count_by_state())[JobState.QUEUED] == 5 * 15


async def test_closed_store_refuses_writes(make_store, make_job):
    s = await make_store()
    await s.close()
    with pytest.raises(Unavailable):
        await s.insert_job(make_job())


class _FakeDeadlock(Exception):
    sqlstate = "40P01"


@THREAD_ONLY
async def test_deadlocked_batch_is_retried_whole(store, make_job, writer_gate):
    calls = []

    def deadlock_once() -> Iterator[Any]:
        calls.append(1)
        if len(calls) == 1:
            raise sa.exc.DBAPIError("UPDATE ...", None, _FakeDeadlock("deadlock detected"))
        yield from ()
        return "ok"

    gate = writer_gate(store)
    await gate.close()
    before = store.commits
    job = make_job()
    tasks = [
        asyncio.create_task(store.insert_job(job)),
        store._writer.submit(deadlock_once, (5,)),
    ]
    await gate.open()
    inserted, second = await asyncio.gather(*tasks)
    assert (inserted.version, second, len(calls)) == (1, "ok", 2)
    assert store.commits - before == 2
    assert await store.get_job(job.job_id) == job


@THREAD_ONLY
async def test_persistent_deadlock_aborts_the_batch(store, make_job):
    def always() -> Iterator[Any]:
        raise sa.exc.DBAPIError("UPDATE ...", None, _FakeDeadlock("deadlock detected"))
        yield

    with pytest.raises(Aborted):
        await store._writer.submit(always, (5,))
    assert await store.insert_job(make_job())  # the writer carries on


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
@THREAD_ONLY
async def test_writer_survives_a_dropped_connection(store, store_url, make_job):
    def backend_pid() -> Iterator[Any]:
        result = yield Prepared(sa.text("SELECT pg_backend_pid() AS pid"), dialect), {}
        return result.rows[0]["pid"]

    dialect = store._writer_engine.dialect
    pid = await store._writer.submit(backend_pid, (5,))
    admin = sa.create_engine(store_url, poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    admin.dispose()
    isolated = []
    store._writer._runner._run_isolated = lambda conn, op: isolated.append(op)
    # The batch meets the dead connection before COMMIT: it runs again, whole, on a new one.
    jobs = await asyncio.gather(*(store.insert_job(make_job()) for _ in range(3)))
    for job in jobs:
        assert await store.get_job(job.job_id) == job
    assert isolated == []  # not mistaken for a failing write (one savepoint per operation)
    assert await store._writer.submit(backend_pid, (5,)) != pid
