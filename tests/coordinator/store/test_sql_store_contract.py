"""JobStore contract on SqlJobStore, run against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from decimal import Decimal

import pytest

from coordinator.domain.model import Attempt, JobState, MinerRecord, ResultRef
from coordinator.store import base
from coordinator.store.base import (
    IdempotencyConflict,
    JobFilter,
    MinerOutcome,
    ReceiptOrder,
    ReceiptRecord,
)
from core.errors import AlreadyExists, Internal, InvalidArgument
from core.receipts import Signer, verify_receipt


async def test_insert_get_round_trip_every_field(store, make_full_job):
    job = make_full_job()
    expected = copy.deepcopy(job)
    returned = await store.insert_job(job)
    assert returned is job and job.version == 1
    got = await store.get_job(job.job_id)
    assert got == dataclasses.replace(expected, version=1)
    assert isinstance(got.constraints.gpu_names, tuple) and isinstance(got.state, JobState)
    assert str(got.unit_price) == "0.0100" and str(got.constraints.max_price) == "0.000120"


async def test_update_round_trip_every_mutable_field(store, make_job):
    job = make_job(key="k")
    await store.insert_job(job)
    job.state = JobState.COMPLETED
    job.attempt = 3
    job.assigned_at, job.started_at, job.finished_at = 10.1, 11.2, 12.300000001
    job.miner_id, job.lease_id, job.deadline_at = "m9", "lease-9", None
    job.error_code, job.error_message = "E_X", "über failure"
    job.result = ResultRef(
        sha256="ef" * 32,
        artifact_url="s3://bucket/out.png",
        artifact_size=2**40,
        artifact_content_type="image/png",
    )
    job.progress_fraction, job.progress_message, job.progress_at = 1.0, "done", 12.3
    job.attempts = [Attempt(3, "m9", 10.1, "completed", "", 12.3)]
    job.unit_price, job.unit_type = Decimal("1E-8"), "token"
    assert await store.update_job(job, 1)
    assert job.version == 2
    assert await store.get_job(job.job_id) == job
    # Nothing else moved: the creation fields are as inserted.
    got = await store.get_job(job.job_id)
    assert got.idempotency_key == "k" and got.result.is_artifact


async def test_get_missing_and_get_jobs_in_order(store, make_job):
    assert await store.get_job("nope") is None
    jobs = [make_job() for _ in range(3)]
    for j in jobs:
        await store.insert_job(j)
    ids = [jobs[2].job_id, "missing", jobs[0].job_id, jobs[2].job_id]
    got = await store.get_jobs(ids)
    assert [j.job_id for j in got] == [jobs[2].job_id, jobs[0].job_id, jobs[2].job_id]
    assert await store.get_jobs([]) == []


async def test_idempotency_conflict_returns_existing_and_inserts_nothing(store, make_job):
    first = await store.insert_job(make_job(client_id="c1", key="k1"))
    dup = make_job(client_id="c1", key="k1")
    with pytest.raises(IdempotencyConflict) as info:
        await store.insert_job(dup)
    assert info.value.existing == first
    assert await store.get_job(dup.job_id) is None
    # The key is per client, and jobs without a key never conflict.
    await store.insert_job(make_job(client_id="c2", key="k1"))
    await store.insert_job(make_job(client_id="c1"))
    await store.insert_job(make_job(client_id="c1"))
    assert (await store.count_by_state())[JobState.QUEUED] == 4


async def test_duplicate_job_id_is_already_exists(store, make_job):
    job = await store.insert_job(make_job())
    with pytest.raises(AlreadyExists):
        await store.insert_job(make_job(job_id=job.job_id, client_id="other"))
    assert (await store.get_job(job.job_id)).client_id == "client-a"


async def test_cas_success_and_failure(store, make_job):
    job = await store.insert_job(make_job())
    stale = copy.deepcopy(job)
    job.state, job.miner_id = JobState.ASSIGNED, "m1"
    assert await store.update_job(job, 1) is True
    assert job.version == 2
    stale.state, stale.miner_id = JobState.CANCELED, "m2"
    assert await store.update_job(stale, 1) is False
    assert stale.version == 1  # unchanged on failure
    got = await store.get_job(job.job_id)
    assert (got.state, got.miner_id, got.version) == (JobState.ASSIGNED, "m1", 2)
    assert await store.update_job(make_job(), 0) is False  # a job that does not exist


async def test_queued_jobs_in_dispatch_order(store, make_job):
    t = 1_800_000_000.0
    low_old = make_job(priority=0, created_at=t)
    high_new = make_job(priority=5, created_at=t + 9)
    high_old = make_job(priority=5, created_at=t + 1)
    tie_b = make_job(priority=1, created_at=t + 2, job_id="job-b")
    tie_a = make_job(priority=1, created_at=t + 2, job_id="job-a")
    running = make_job(priority=9, created_at=t, state=JobState.RUNNING)
    for j in (low_old, high_new, high_old, tie_b, tie_a, running):
        await store.insert_job(j)
    got = [j.job_id for j in await store.queued_jobs(limit=10)]
    expected = [high_old, high_new, tie_a, tie_b, low_old]
    assert got == [j.job_id for j in expected]
    assert [j.job_id for j in await store.queued_jobs(limit=2)] == got[:2]
    assert await store.queued_ids(limit=10) == got
    assert await store.queued_ids(limit=3) == got[:3]


async def test_leased_jobs(store, make_job):
    states = [JobState.QUEUED, JobState.ASSIGNED, JobState.RUNNING, JobState.COMPLETED]
    jobs = [make_job(state=s) for s in states]
    for j in jobs:
        await store.insert_job(j)
    got = {j.job_id for j in await store.leased_jobs()}
    assert got == {jobs[1].job_id, jobs[2].job_id}


async def test_due_jobs(store, make_job):
    now = 1_000.0
    due_late = make_job(state=JobState.RUNNING, deadline_at=now)
    due_early = make_job(state=JobState.QUEUED, deadline_at=now - 50)
    due_mid = make_job(state=JobState.ASSIGNED, deadline_at=now - 10)
    future = make_job(state=JobState.QUEUED, deadline_at=now + 0.001)
    terminal = make_job(state=JobState.FAILED, deadline_at=now - 100)
    no_deadline = make_job(state=JobState.QUEUED)
    for j in (due_late, due_early, due_mid, future, terminal, no_deadline):
        await store.insert_job(j)
    got = [j.job_id for j in await store.due_jobs(now, limit=10)]
    assert got == [due_early.job_id, due_mid.job_id, due_late.job_id]
    assert [j.job_id for j in await store.due_jobs(now, limit=1)] == [due_early.job_id]


async def test_count_by_state_and_completion_window(store, make_job):
    done = [
        make_job(state=JobState.COMPLETED, created_at=100.0 + i, finished_at=200.0 + i)
        for i in range(4)
    ]
    failed = make_job(state=JobState.FAILED, created_at=1.0, finished_at=201.0)
    for j in (*done, failed, make_job(), make_job(state=JobState.RUNNING)):
        await store.insert_job(j)
    counts = await store.count_by_state()
    assert counts == {
        **dict.fromkeys(JobState, 0),
        JobState.COMPLETED: 4,
        JobState.FAILED: 1,
        JobState.QUEUED: 1,
        JobState.RUNNING: 1,
    }
    # Latencies 100 s each except the one made 150 s: ranks are nearest-rank, ascending.
    slow = make_job(state=JobState.COMPLETED, created_at=52.0, finished_at=202.5)
    await store.insert_job(slow)
    assert await store.completion_window(201.0, 203.0, (0.0, 0.5, 0.99)) == (
        4,
        [100.0, 100.0, 150.5],
    )
    assert await store.completion_window(200.0, 200.0, (0.5,)) == (1, [100.0])
    assert await store.completion_window(500.0, 600.0, (0.5, 0.99)) == (0, [0.0, 0.0])


async def test_list_jobs_filters(store, make_job):
    a1 = make_job(client_id="a", miner_id="m1", state=JobState.RUNNING)
    a2 = make_job(client_id="a")
    b1 = make_job(client_id="b", miner_id="m1", state=JobState.COMPLETED)
    for j in (a1, a2, b1):
        await store.insert_job(j)

    async def ids(**flt):
        page = await store.list_jobs(JobFilter(**flt), limit=10)
        assert page.next_cursor == ""
        return [j.job_id for j in page.jobs]

    assert await ids() == [b1.job_id, a2.job_id, a1.job_id]  # newest first
    assert await ids(client_id="a") == [a2.job_id, a1.job_id]
    assert await ids(miner_id="m1") == [b1.job_id, a1.job_id]
    assert await ids(state=JobState.RUNNING) == [a1.job_id]
    assert await ids(client_id="a", state=JobState.COMPLETED) == []
    assert await ids(client_id="b", miner_id="m1", state=JobState.COMPLETED) == [b1.job_id]


async def test_list_jobs_pages_through_everything_while_inserting(store, make_job):
    # Ties on created_at cross page boundaries on purpose: job_id breaks them.
    originals = [make_job(client_id="p", created_at=5_000.0 + i // 3) for i in range(23)]
    for j in originals:
        await store.insert_job(j)
    seen: list[str] = []
    cursor = ""
    for page_no in range(20):
        page = await store.list_jobs(JobFilter(client_id="p"), limit=4, cursor=cursor)
        seen += [j.job_id for j in page.jobs]
        # Newer jobs arriving meanwhile land before the cursor and never shift the pages.
        await store.insert_job(make_job(client_id="p", created_at=9_000.0 + page_no))
        cursor = page.next_cursor
        if not cursor:
            break
    expected = sorted(originals, key=lambda j: (j.created_at, j.job_id), reverse=True)
    assert seen == [j.job_id for j in expected]


@pytest.mark.parametrize(
    "token", ["!!!", "bm90IGpzb24", "WzEsMl0", "WyJ4IiwiaiJd", "e30", "WzEuMCwiIl0=", "a"]
)
async def test_malformed_cursor(store, token):
    with pytest.raises(InvalidArgument) as info:
        await store.list_jobs(JobFilter(), limit=5, cursor=token)
    assert info.value.violations == [("page_token", "malformed page token")]
    with pytest.raises(InvalidArgument):
        await store.list_receipts("job", limit=5, cursor=token)


async def test_limits_must_be_positive(store):
    for call in (
        store.list_jobs(JobFilter(), limit=0),
        store.queued_jobs(limit=0),
        store.due_jobs(1.0, limit=-1),
        store.list_receipts("j", limit=0),
    ):
        with pytest.raises(InvalidArgument):
            await call


def _receipt(job_id: str, n: int, created_at: float) -> ReceiptRecord:
    doc = b'{"job_id":"%s","n":%d}\x00\xff' % (job_id.encode(), n)  # exact bytes, even binary
    return ReceiptRecord(f"rcpt-{job_id}-{n}", job_id, "key-1", created_at, doc)


async def test_receipt_written_with_the_update_only(store, make_job):
    job = await store.insert_job(make_job())
    stale = copy.deepcopy(job)
    job.state = JobState.COMPLETED
    r1 = _receipt(job.job_id, 1, 50.0)
    assert await store.update_job(job, 1, receipt=r1)
    assert await store.list_receipts(job.job_id, limit=10) == ([r1], "")
    # CAS fails: the receipt is not stored.
    assert not await store.update_job(stale, 1, receipt=_receipt(job.job_id, 2, 51.0))
    assert await store.list_receipts(job.job_id, limit=10) == ([r1], "")
    # The receipt fails (duplicate id): the job update is undone with it.
    job.error_message = "must not stick"
    with pytest.raises(AlreadyExists):
        await store.update_job(job, 2, receipt=r1)
    got = await store.get_job(job.job_id)
    assert got.version == 2 and got.error_message == ""
    with pytest.raises(InvalidArgument):
        await store.update_job(job, 2, receipt=_receipt("other-job", 3, 1.0))


def _order(job_id: str, signer: Signer, attester: Signer, **changes: object) -> ReceiptOrder:
    fields = dict(
        job_id=job_id,
        provider="m9",
        client="client-a",
        units=1.5,
        unit_type="gpu_seconds",
        price=0.015,
        model="whisper",
        payload={"service": "whisper", "parameters": {"audio_url": "https://x/a.wav"}},
        started_at=100,
        completed_at=102,
        duration_ms=1500,
        artifact_hash="sha256:" + "ab" * 32,
        coordinator_id="coord-test",
        chain_id=7,
        metadata={"attempt": 1},
    )
    fields.update(changes)
    seeds = (bytes.fromhex(signer.seed_hex()), bytes.fromhex(attester.seed_hex()))
    return ReceiptOrder(job_id, 102.5, fields, *seeds)


async def test_receipt_order_signed_and_written_with_the_update_only(store, make_job):
    signer, attester = Signer.generate(), Signer.generate()
    job = await store.insert_job(make_job())
    stale = copy.deepcopy(job)
    job.state = JobState.COMPLETED
    order = _order(job.job_id, signer, attester)
    assert await store.update_job(job, 1, receipt=order) and job.version == 2
    rec = order.record
    assert rec is not None and rec.job_id == job.job_id and rec.key_id == signer.key_id
    assert rec.created_at == 102.5 and rec.receipt_id.startswith("rcpt-")
    assert await store.list_receipts(job.job_id, limit=10) == ([rec], "")
    result = verify_receipt(
        rec.document,
        keys={signer.key_id: signer.public_key},
        attestation_keys={attester.key_id: attester.public_key},
        require_attestation=True,
    )
    assert result.ok, result.problems
    assert result.receipt["receipt_id"] == rec.receipt_id and result.receipt["chain_id"] == 7
    # CAS fails: nothing is signed or stored.
    lost = _order(job.job_id, signer, attester)
    assert not await store.update_job(stale, 1, receipt=lost)
    assert lost.record is None and await store.list_receipts(job.job_id, limit=10) == ([rec], "")
    # A receipt that cannot be issued undoes the job's update and says why.
    job.error_message = "must not stick"
    bad = _order(job.job_id, signer, attester, artifact_hash="md5:00")
    with pytest.raises(Internal, match=r"receipt could not be issued.*artifact_hash"):
        await store.update_job(job, 2, receipt=bad)
    got = await store.get_job(job.job_id)
    assert got.version == 2 and got.error_message == "" and bad.record is None
    with pytest.raises(InvalidArgument):
        await store.update_job(job, 2, receipt=_order("other-job", signer, attester))


@pytest.mark.parametrize("writer", ["process"])
async def test_receipt_order_is_signed_in_the_writer_process(store, make_job, monkeypatch):
    """The signing (canonical JSON, Ed25519) is off this process and its event loop."""

    def not_here(*args: object, **kwargs: object) -> None:
        raise AssertionError("signed in the coordinator's process")

    monkeypatch.setattr(base, "issue_receipt", not_here)
    signer, attester = Signer.generate(), Signer.generate()
    job = await store.insert_job(make_job())
    job.state = JobState.COMPLETED
    order = _order(job.job_id, signer, attester)
    assert await store.update_job(job, 1, receipt=order)
    assert verify_receipt(order.record.document, keys={signer.key_id: signer.public_key}).ok
    assert "seed" not in repr(order) and signer.seed_hex() not in repr(order)


async def test_receipts_oldest_first_with_pages(store, make_job):
    job = await store.insert_job(make_job())
    other = await store.insert_job(make_job())
    recs = [_receipt(job.job_id, n, 10.0 + n // 2) for n in range(7)]
    for n, r in enumerate(recs):
        job.progress_message = str(n)
        assert await store.update_job(job, job.version, receipt=r)
    other.state = JobState.CANCELED
    assert await store.update_job(other, 1, receipt=_receipt(other.job_id, 0, 1.0))
    seen, cursor = [], ""
    while True:
        page, cursor = await store.list_receipts(job.job_id, limit=3, cursor=cursor)
        seen += page
        if not cursor:
            break
    assert seen == sorted(recs, key=lambda r: (r.created_at, r.receipt_id))
    assert await store.list_receipts("no-such-job", limit=3) == ([], "")


async def test_miners_upsert_list_and_outcomes(store):
    assert await store.get_miner("m1") is None
    m1 = MinerRecord(
        "m1", {"gpus": [{"name": "A100", "vram_gb": 80}]}, "stream", "aa" * 32, 10.0, 11.0
    )
    await store.upsert_miner(m1)
    await store.upsert_miner(MinerRecord("m0", mode="poll", first_seen_at=5.0, last_seen_at=5.0))
    assert await store.get_miner("m1") == m1
    await asyncio.gather(
        store.record_miner_outcome("m1", completed=True, duration_ms=1500),
        store.record_miner_outcome("m1", completed=True, duration_ms=2500),
        store.record_miner_outcome("m1", completed=False, duration_ms=10),
    )
    # A later sighting refreshes what the miner says, keeps first_seen_at and the counters.
    await store.upsert_miner(
        MinerRecord("m1", {"gpus": []}, "poll", "bb" * 32, first_seen_at=99.0, last_seen_at=20.0)
    )
    got = await store.get_miner("m1")
    assert got == MinerRecord("m1", {"gpus": []}, "poll", "bb" * 32, 10.0, 20.0, 2, 1, 4010)
    assert [m.miner_id for m in await store.list_miners()] == ["m0", "m1"]
    # An outcome for a miner never upserted is kept, not dropped.
    await store.record_miner_outcome("m2", completed=False, duration_ms=7)
    got2 = await store.get_miner("m2")
    assert (got2.completed, got2.failed, got2.total_duration_ms) == (0, 1, 7)
    with pytest.raises(InvalidArgument):
        await store.record_miner_outcome("m2", completed=True, duration_ms=-1)


async def test_outcome_is_counted_with_the_update_that_applies(store, make_job):
    job = make_job(state=JobState.RUNNING, miner_id="m9")
    await store.insert_job(job)
    done = dataclasses.replace(job, state=JobState.COMPLETED)
    stale = dataclasses.replace(job, state=JobState.FAILED)
    assert await store.update_job(done, 1, outcome=MinerOutcome("m9", True, 1200))
    # A refused compare-and-set counts nothing.
    assert not await store.update_job(stale, 1, outcome=MinerOutcome("m9", False, 0))
    got = await store.get_miner("m9")
    assert (got.completed, got.failed, got.total_duration_ms) == (1, 0, 1200)
    # A refused receipt undoes the update and the count with it.
    other = make_job(state=JobState.RUNNING)
    await store.insert_job(other)
    r = _receipt(other.job_id, 0, 1.0)
    assert await store.update_job(other, 1, receipt=r)
    with pytest.raises(AlreadyExists):
        await store.update_job(other, 2, receipt=r, outcome=MinerOutcome("m9", True, 5))
    got = await store.get_miner("m9")
    assert (got.completed, got.total_duration_ms) == (1, 1200)
    with pytest.raises(InvalidArgument):
        await store.update_job(other, 2, outcome=MinerOutcome("m9", True, -1))


async def test_unstorable_values_fail_only_their_caller(store, make_job):
    bad = make_job()
    bad.parameters = {"x": float("nan")}
    with pytest.raises(InvalidArgument) as info:
        await store.insert_job(bad)
    assert info.value.violations[0][0] == "parameters"
    assert await store.get_job(bad.job_id) is None
