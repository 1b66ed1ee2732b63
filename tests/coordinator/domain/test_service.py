"""Domain behaviour of the coordinator with a fake clock and the in-memory store."""

from __future__ import annotations

import asyncio

import pytest

from coordinator.domain import validation
from coordinator.domain.model import JobState, ResultRef
from coordinator.domain.service import Coordinator
from coordinator.domain.sessions import AckOut, AssignmentOut, CancelOut, Close, DrainOut
from coordinator.domain.settings import Settings
from coordinator.store.memory import MemoryJobStore
from core import errors
from core.clock import FakeClock
from core.jsonvalue import canonical_sha256

CAPS = {"slots": 1, "region": "eu-west", "services": [{"service": "echo", "unit_price": "0.5"}]}


def spec(
    coord, service="echo", *, priority=0, region="", max_price="", ttl=0, run_timeout=0, models=()
):
    return validation.submit(
        service=service,
        parameters={"x": 1},
        gpu_names=[],
        min_vram_gb=0,
        region=region,
        models=list(models),
        min_cuda="",
        max_price=max_price,
        priority=priority,
        ttl_s=ttl,
        run_timeout_s=run_timeout,
        limits=coord.settings.limits,
    )


async def pump(coord):
    coord.dispatcher.dispatch_pass()
    await coord.dispatcher.settle()


def drain_outbox(session):
    out = []
    while not session.outbox.empty():
        out.append(session.outbox.get_nowait())
    return out


def assignments(session):
    return [m for m in drain_outbox(session) if isinstance(m, AssignmentOut)]


RESULT = ResultRef(sha256=canonical_sha256({"ok": True}), inline={"ok": True})


async def test_happy_path_stream(env):
    coord, _clock, _ = env
    job, created = await coord.submit("alice", spec(coord))
    assert created and job.state is JobState.QUEUED
    s, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)
    await pump(coord)
    (a,) = assignments(s)
    assert a.job.job_id == job.job_id and a.job.state is JobState.ASSIGNED
    assert s.free_slots == 0
    await coord.started("m1", a.lease_id, job.job_id)
    await coord.progress("m1", a.lease_id, job.job_id, 0.5, "half")
    assert (await coord.get(job.job_id, client_id="alice")).progress_fraction == 0.5
    done, fresh, _ = await coord.deliver_result("m1", a.lease_id, job.job_id, RESULT)
    assert fresh and done.state is JobState.COMPLETED and done.result == RESULT
    assert s.free_slots == 1
    (rec,) = [m for m in await coord.miners()]
    assert rec.record.completed == 1 and rec.status == "online"


async def test_priority_then_fifo_and_slot_gating(env):
    coord, clock, _ = env
    low1, _ = await coord.submit("alice", spec(coord))
    await clock.advance(1)
    low2, _ = await coord.submit("alice", spec(coord))
    await clock.advance(1)
    high, _ = await coord.submit("alice", spec(coord, priority=5))
    s, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)
    order = []
    for _ in range(3):
        await pump(coord)
        (a,) = assignments(s)  # one slot: exactly one assignment at a time
        order.append(a.job.job_id)
        await pump(coord)
        assert assignments(s) == []  # nothing more until the slot frees
        await coord.deliver_result("m1", a.lease_id, a.job.job_id, RESULT)
    assert order == [high.job_id, low1.job_id, low2.job_id]


async def test_submit_to_an_idle_miner_is_stored_assigned_in_one_write(env):
    coord, _clock, store = env
    s, _, _ = await coord.connect("m1", mode="stream", caps={**CAPS, "slots": 2})
    job, created = await coord.submit("alice", spec(coord))
    # No pass of the dispatcher ran: the submit itself placed the job on the free slot.
    assert created and job.state is JobState.ASSIGNED and job.miner_id == "m1"
    assert job.version == 1 and job.attempt == 1 and job.attempts[0].miner_id == "m1"
    stored = await store.get_job(job.job_id)
    assert stored.state is JobState.ASSIGNED and stored.lease_id == job.lease_id
    (a,) = assignments(s)
    assert a.lease_id == job.lease_id and s.leases == {job.lease_id: job.job_id}
    assert s.reserved == 0 and s.free_slots == 1
    done, _, _ = await coord.deliver_result("m1", a.lease_id, job.job_id, RESULT)
    assert done.state is JobState.COMPLETED


async def test_submit_waits_behind_queued_jobs_and_for_a_matching_miner(env):
    coord, _clock, _ = env
    s, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)  # one slot, eu-west
    far, _ = await coord.submit("alice", spec(coord, region="us-east"))
    assert far.state is JobState.QUEUED and assignments(s) == []  # no matching miner
    # A job is queued (even one no miner can take), so a new one does not jump it: it
    # queues and the dispatcher decides, in priority and FIFO order.
    near, _ = await coord.submit("alice", spec(coord, region="eu-west"))
    assert near.state is JobState.QUEUED
    await pump(coord)
    assert [a.job.job_id for a in assignments(s)] == [near.job_id]


async def test_submit_refused_or_duplicate_releases_the_reserved_slot(env):
    coord, _clock, store = env
    s, _, _ = await coord.connect("m1", mode="stream", caps={**CAPS, "slots": 2})
    first, _ = await coord.submit("alice", spec(coord), "key-1")
    assert first.state is JobState.ASSIGNED
    again, created = await coord.submit("alice", spec(coord), "key-1")
    assert not created and again.job_id == first.job_id
    assert s.reserved == 0 and len(s.leases) == 1 and s.free_slots == 1
    assert len(assignments(s)) == 1  # the duplicate sent nothing

    async def broken(job):
        raise errors.Unavailable("database unavailable; retry later")

    store.insert_job = broken
    with pytest.raises(errors.Unavailable):
        await coord.submit("alice", spec(coord))
    assert s.reserved == 0 and s.free_slots == 1 and assignments(s) == []


async def test_assignment_written_after_the_miner_reconnected_is_requeued(env):
    coord, _clock, store = env
    s1, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)
    gate = asyncio.Event()
    real_insert = store.insert_job

    async def slow_insert(job):
        await gate.wait()
        return await real_insert(job)

    store.insert_job = slow_insert
    submitting = asyncio.create_task(coord.submit("alice", spec(coord)))
    await asyncio.sleep(0)
    assert s1.reserved == 1
    s2, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)  # while the write is pending
    gate.set()
    job, _ = await submitting
    await coord.flush_starts()
    # The new connection never heard of the lease: the job is queued again (attempt 2).
    again = await store.get_job(job.job_id)
    assert again.state is JobState.QUEUED and again.attempt == 2
    assert again.attempts[0].outcome == "lease_lost"
    assert s1.leases == {} and assignments(s1) == []
    await pump(coord)
    (a,) = assignments(s2)
    assert a.job.job_id == job.job_id


async def test_matching_price_region_and_waiting_reason(env):
    coord, _clock, _ = env
    cheap, _ = await coord.submit("alice", spec(coord, max_price="0.1"))
    us, _ = await coord.submit("alice", spec(coord, region="us-east"))
    ok, _ = await coord.submit("alice", spec(coord, region="eu-west", max_price="1"))
    s, _, _ = await coord.connect("m1", mode="stream", caps={**CAPS, "slots": 4})
    await pump(coord)
    assert [a.job.job_id for a in assignments(s)] == [ok.job_id]
    why = coord.waiting_reason(await coord.get(cheap.job_id, client_id="alice"))
    assert "price 0.5 > max_price 0.1" in why
    assert "region 'eu-west' != 'us-east'" in coord.waiting_reason(
        await coord.get(us.job_id, client_id="alice")
    )


async def test_idempotency(env):
    coord, *_ = env
    a, created_a = await coord.submit("alice", spec(coord), "key-1")
    b, created_b = await coord.submit("alice", spec(coord), "key-1")
    assert created_a and not created_b and a.job_id == b.job_id
    c, created_c = await coord.submit("bob", spec(coord), "key-1")  # keys are per client
    assert created_c and c.job_id != a.job_id
    with pytest.raises(errors.AlreadyExists):
        await coord.submit("alice", spec(coord, priority=3), "key-1")


async def test_cancel_queued_and_running_pushes_cancel(env):
    coord, *_ = env
    q, _ = await coord.submit("alice", spec(coord))
    assert (await coord.cancel(q.job_id, client_id="alice")).state is JobState.CANCELED
    r, _ = await coord.submit("alice", spec(coord))
    s, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)
    await pump(coord)
    (a,) = assignments(s)
    with pytest.raises(errors.NotFound):
        await coord.cancel(r.job_id, client_id="mallory")
    canceled = await coord.cancel(r.job_id, client_id="alice", reason="changed my mind")
    assert canceled.state is JobState.CANCELED
    (c,) = drain_outbox(s)
    assert isinstance(c, CancelOut) and c.lease_id == a.lease_id
    assert s.free_slots == 1
    with pytest.raises(errors.FailedPrecondition) as exc:
        await coord.cancel(r.job_id, client_id="alice")
    assert exc.value.reason == "not_cancelable"
    with pytest.raises(errors.FailedPrecondition) as exc:  # a late result never revives it
        await coord.deliver_result("m1", a.lease_id, r.job_id, RESULT)
    assert exc.value.reason == "stale_lease"


async def test_silent_miner_loses_lease_and_job_completes_elsewhere(env):
    coord, clock, _ = env
    job, _ = await coord.submit("alice", spec(coord))
    s1, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)
    await pump(coord)
    (a1,) = assignments(s1)
    s2, _, _ = await coord.connect("m2", mode="stream", caps=CAPS)
    await clock.advance(5 * 3 + 0.5)
    coord.seen(s2)
    await coord.sweep()
    requeued = await coord.get(job.job_id, client_id="alice")
    assert requeued.state is JobState.QUEUED and requeued.attempt == 2
    assert requeued.attempts[0].outcome == "lease_lost"
    await pump(coord)
    (a2,) = assignments(s2)
    await coord.deliver_result("m2", a2.lease_id, job.job_id, RESULT)
    with pytest.raises(errors.FailedPrecondition):
        await coord.deliver_result("m1", a1.lease_id, job.job_id, RESULT)
    done = await coord.get(job.job_id, client_id="alice")
    assert done.state is JobState.COMPLETED and done.miner_id == "m2"


async def test_retry_budget_exhausted(env):
    coord, *_ = env
    job, _ = await coord.submit("alice", spec(coord))
    s, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)
    for n in range(3):
        await pump(coord)
        (a,) = assignments(s)
        assert a.job.attempt == n + 1
        await coord.fail(
            "m1", a.lease_id, job.job_id, code="gpu_oom", message="out of memory", retryable=True
        )
    failed = await coord.get(job.job_id, client_id="alice")
    assert failed.state is JobState.FAILED and failed.error_code == "retry_budget_exhausted"
    assert failed.error_message.count("gpu_oom") == 3 and "attempt 3 on m1" in failed.error_message


async def test_non_retryable_failure_fails_at_once(env):
    coord, *_ = env
    job, _ = await coord.submit("alice", spec(coord))
    s, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)
    await pump(coord)
    (a,) = assignments(s)
    failed = await coord.fail(
        "m1", a.lease_id, job.job_id, code="bad_params", message="crf: too big", retryable=False
    )
    assert failed.state is JobState.FAILED and failed.error_code == "bad_params"


async def test_duplicate_result_is_acknowledged_and_changes_nothing(env):
    coord, *_ = env
    job, _ = await coord.submit("alice", spec(coord))
    s, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)
    await pump(coord)
    (a,) = assignments(s)
    first, fresh, _ = await coord.deliver_result("m1", a.lease_id, job.job_id, RESULT)
    again, fresh2, _ = await coord.deliver_result("m1", a.lease_id, job.job_id, RESULT)
    assert fresh and not fresh2 and again.version == first.version
    other = ResultRef(sha256=canonical_sha256(2), inline=2)
    with pytest.raises(errors.FailedPrecondition):
        await coord.deliver_result("m1", a.lease_id, job.job_id, other)
    (m,) = await coord.miners()
    assert m.record.completed == 1


async def test_reconnect_within_window_keeps_lease(env):
    coord, clock, _ = env
    job, _ = await coord.submit("alice", spec(coord))
    s, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)
    await pump(coord)
    (a,) = assignments(s)
    await coord.disconnect(s)
    await clock.advance(8)
    await coord.sweep()
    _s2, kept, dropped = await coord.connect(
        "m1",
        mode="stream",
        caps=CAPS,
        held=[(a.lease_id, job.job_id), ("lease_" + "0" * 32, job.job_id)],
    )
    assert kept == [a.lease_id] and dropped == ["lease_" + "0" * 32]
    done, _, _ = await coord.deliver_result("m1", a.lease_id, job.job_id, RESULT)
    assert done.state is JobState.COMPLETED and done.attempt == 1


async def test_reconnect_without_lease_requeues(env):
    coord, _clock, _ = env
    job, _ = await coord.submit("alice", spec(coord))
    s, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)
    await pump(coord)
    assignments(s)
    await coord.connect("m1", mode="stream", caps=CAPS, held=[])
    assert isinstance(s.outbox.get_nowait(), Close)  # the old stream is told to go away
    j = await coord.get(job.job_id, client_id="alice")
    assert j.state is JobState.QUEUED and j.attempt == 2


async def test_queue_ttl_and_run_timeout_by_sweeper(env):
    coord, clock, _ = env
    waiting, _ = await coord.submit("alice", spec(coord, service="sleep", ttl=10))
    running, _ = await coord.submit("alice", spec(coord, run_timeout=30))
    s, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)
    await pump(coord)
    (a,) = assignments(s)
    await coord.started("m1", a.lease_id, running.job_id)
    for _ in range(4):
        await clock.advance(4)
        coord.seen(s)
        await coord.sweep()
    assert (await coord.get(waiting.job_id, client_id="alice")).state is JobState.EXPIRED
    assert (await coord.get(running.job_id, client_id="alice")).state is JobState.RUNNING
    for _ in range(4):
        await clock.advance(4)
        coord.seen(s)
        await coord.sweep()
    expired = await coord.get(running.job_id, client_id="alice")
    assert expired.state is JobState.EXPIRED and expired.error_code == "run_timeout"
    assert any(isinstance(m, CancelOut) for m in drain_outbox(s))


async def test_drain_finishes_held_and_takes_nothing_new(env):
    coord, *_ = env
    first, _ = await coord.submit("alice", spec(coord))
    s, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)
    await pump(coord)
    (a,) = assignments(s)
    coord.drain(s)
    assert isinstance(s.outbox.get_nowait(), DrainOut)
    second, _ = await coord.submit("alice", spec(coord))
    await coord.deliver_result("m1", a.lease_id, first.job_id, RESULT)
    await pump(coord)
    assert assignments(s) == []
    assert [v.status for v in await coord.miners()] == ["draining"]
    assert (await coord.get(second.job_id, client_id="alice")).state is JobState.QUEUED


async def test_poll_miner(env):
    coord, *_ = env
    s, _, _ = await coord.connect("p1", mode="poll", caps=CAPS)
    assert await coord.poll(s, 0) is None
    job, _ = await coord.submit("alice", spec(coord))
    assert coord.session_for("p1", s.session_id) is s
    with pytest.raises(errors.FailedPrecondition):
        coord.session_for("p1", "wrong")
    a = await coord.poll(s, 0)
    assert a is not None and a.job.job_id == job.job_id
    done, _, _ = await coord.deliver_result("p1", a.lease_id, job.job_id, RESULT)
    assert done.state is JobState.COMPLETED


async def test_restart_recovers_leases(env):
    coord, clock, store = env
    job, _ = await coord.submit("alice", spec(coord))
    queued, _ = await coord.submit("alice", spec(coord, service="sleep"))
    s, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)
    await pump(coord)
    (a,) = assignments(s)
    # a new coordinator on the same store (the old process is gone)
    coord2 = Coordinator(store, settings=Settings(), clock=clock)
    await coord2.start(background=False)
    assert queued.job_id in coord2.dispatcher.queue
    _s2, kept, _ = await coord2.connect(
        "m1", mode="stream", caps=CAPS, held=[(a.lease_id, job.job_id)]
    )
    assert kept == [a.lease_id]
    done, _, _ = await coord2.deliver_result("m1", a.lease_id, job.job_id, RESULT)
    assert done.state is JobState.COMPLETED
    await coord2.stop()


async def test_restart_miner_never_returns_requeues(env):
    coord, clock, store = env
    job, _ = await coord.submit("alice", spec(coord))
    _s, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)
    await pump(coord)
    coord2 = Coordinator(store, settings=Settings(), clock=clock)
    await coord2.start(background=False)
    await clock.advance(16)
    await coord2.sweep()
    j = await coord2.get(job.job_id, client_id="alice")
    assert j.state is JobState.QUEUED and j.attempt == 2
    await coord2.stop()


async def test_heartbeat_reports_unknown_leases(env):
    coord, *_ = env
    s, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)
    cancels = coord.heartbeat(s, interval_ms=2000, lease_ids=["lease_" + "1" * 32], load=0.1)
    assert [c.lease_id for c in cancels] == ["lease_" + "1" * 32] and s.interval_s == 2.0
    with pytest.raises(errors.InvalidArgument):
        coord.heartbeat(s, interval_ms=10, lease_ids=[], load=0.1)


async def test_ack_codes(env):
    coord, *_ = env
    s, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)
    coord.ack(s, "l", "j", errors.FailedPrecondition("x", reason="stale_lease"))
    (ack,) = drain_outbox(s)
    assert isinstance(ack, AckOut) and not ack.accepted and ack.code == "stale_lease"


# -- "started" written late, or along with the result ------------------------------------------


async def _assigned(coord, clock):
    job, _ = await coord.submit("alice", spec(coord))
    s, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)
    await pump(coord)
    (a,) = assignments(s)
    await clock.advance(2)
    return job, s, a


async def test_started_then_result_is_one_write(env):
    coord, clock, store = env
    job, _s, a = await _assigned(coord, clock)
    assert coord.note_started("m1", a.lease_id, job.job_id)
    started_at = clock.now()
    await clock.advance(3)
    assert (await store.get_job(job.job_id)).state is JobState.ASSIGNED  # not written yet
    done, fresh, _ = await coord.deliver_result("m1", a.lease_id, job.job_id, RESULT)
    assert fresh and done.state is JobState.COMPLETED
    stored = await store.get_job(job.job_id)
    # QUEUED (1) -> ASSIGNED (2) -> COMPLETED (3): RUNNING rode along with the result.
    assert stored.version == 3
    assert stored.started_at == started_at and stored.finished_at == started_at + 3
    await coord.flush_starts()
    assert (await store.get_job(job.job_id)).version == 3  # nothing left to write


async def test_progress_then_result_is_one_write(env):
    coord, clock, store = env
    job, _s, a = await _assigned(coord, clock)
    seen = []
    coord.book.listen(lambda _old, new: seen.append(new.state))
    started_at = clock.now()
    # A miner that reports progress without "started" (the agent's echo does): the job counts
    # as started, written later like a "started" message, never as a write of its own.
    assert coord.note_progress("m1", a.lease_id, job.job_id, 0.5, "half")
    assert (await store.get_job(job.job_id)).version == 2  # nothing written yet
    live = await coord.get(job.job_id, client_id="alice")
    assert live.state is JobState.ASSIGNED and live.progress_fraction == 0.5  # as stored
    await clock.advance(1)
    await coord.progress("m1", a.lease_id, job.job_id, 0.25, "late")  # the slow path agrees
    assert (await coord.get(job.job_id, client_id="alice")).progress_fraction == 0.5
    done, fresh, _ = await coord.deliver_result("m1", a.lease_id, job.job_id, RESULT)
    assert fresh and done.state is JobState.COMPLETED
    stored = await store.get_job(job.job_id)
    assert stored.version == 3 and stored.started_at == started_at  # RUNNING rode along
    # A finished job is no longer in memory: the slow path reads it and refuses.
    assert not coord.note_progress("m1", a.lease_id, job.job_id, 0.9, "after the end")
    with pytest.raises(errors.FailedPrecondition):
        await coord.progress("m1", a.lease_id, job.job_id, 0.9, "after the end")
    assert seen == [JobState.COMPLETED]


async def test_watchers_hear_progress_then_running_once_written(env):
    coord, clock, store = env
    job, _s, a = await _assigned(coord, clock)
    watch = coord.watch(job.job_id, client_id="alice")
    assert (await anext(watch))[0] == "snapshot"
    started_at = clock.now()
    assert coord.note_progress("m1", a.lease_id, job.job_id, 0.5, "half")
    event, seen = await anext(watch)  # at once, with the state as stored
    assert (event, seen.state, seen.progress_fraction) == ("progress", JobState.ASSIGNED, 0.5)
    # No result within the start delay (50 ms by default): RUNNING is written, then heard.
    event, running = await asyncio.wait_for(anext(watch), 5)
    assert (event, running.state, running.started_at) == ("state", JobState.RUNNING, started_at)
    assert (await store.get_job(job.job_id)).state is JobState.RUNNING
    await watch.aclose()


async def test_started_alone_is_written_after_the_delay(env):
    coord, clock, store = env
    job, _s, a = await _assigned(coord, clock)
    started_at = clock.now()
    running = asyncio.Event()
    coord.book.listen(lambda _old, new: new.state is JobState.RUNNING and running.set())
    assert coord.note_started("m1", a.lease_id, job.job_id)
    assert coord.note_started("m1", a.lease_id, job.job_id)  # a repeat changes nothing
    assert (await store.get_job(job.job_id)).state is JobState.ASSIGNED
    await asyncio.wait_for(running.wait(), 5)  # the timer (50 ms by default) writes it
    stored = await store.get_job(job.job_id)
    assert stored.state is JobState.RUNNING and stored.started_at == started_at
    assert stored.version == 3


async def test_started_with_no_delay_is_written_at_once():
    clock = FakeClock()
    store = MemoryJobStore()
    coord = Coordinator(store, settings=Settings(start_write_delay_s=0), clock=clock)
    await coord.start(background=False)
    try:
        job, _s, a = await _assigned(coord, clock)
        assert coord.note_started("m1", a.lease_id, job.job_id)
        assert coord._starts == {} and coord._background_writes  # not held back: written now
        await coord.flush_starts()  # waits for that write
        assert (await store.get_job(job.job_id)).state is JobState.RUNNING
    finally:
        await coord.stop()


async def test_started_survives_a_refused_result(env):
    coord, clock, store = env
    job, _s, a = await _assigned(coord, clock)
    coord.note_started("m1", a.lease_id, job.job_id)
    with pytest.raises(errors.FailedPrecondition):  # another miner's result: refused
        await coord.deliver_result("m2", a.lease_id, job.job_id, RESULT)
    await coord.flush_starts()
    assert (await store.get_job(job.job_id)).state is JobState.RUNNING


async def test_started_then_failure_records_start_and_requeues(env):
    coord, clock, store = env
    job, _s, a = await _assigned(coord, clock)
    coord.note_started("m1", a.lease_id, job.job_id)
    after = await coord.fail("m1", a.lease_id, job.job_id, code="oom", message="x", retryable=True)
    assert after.state is JobState.QUEUED and after.attempt == 2
    await coord.flush_starts()
    assert (await store.get_job(job.job_id)).state is JobState.QUEUED


async def test_started_dropped_when_the_lease_ends_first(env):
    coord, clock, store = env
    job, _s, a = await _assigned(coord, clock)
    coord.note_started("m1", a.lease_id, job.job_id)
    await coord.cancel(job.job_id, client_id="alice")
    assert coord._starts == {}
    await coord.flush_starts()
    assert (await store.get_job(job.job_id)).state is JobState.CANCELED


async def test_started_for_a_stale_lease_is_refused(env):
    coord, clock, _ = env
    job, _s, a = await _assigned(coord, clock)
    with pytest.raises(errors.FailedPrecondition) as exc:
        coord.note_started("m1", "lease_" + "0" * 32, job.job_id)
    assert exc.value.reason == "stale_lease"
    with pytest.raises(errors.FailedPrecondition):
        coord.note_started("m2", a.lease_id, job.job_id)
    with pytest.raises(errors.InvalidArgument):
        coord.note_started("m1", a.lease_id, "not-a-job-id")
    assert not coord.note_started("m1", a.lease_id, "job_" + "1" * 32)  # not in memory


async def test_watchers_hear_changes_made_by_another_process(env):
    coord, clock, store = env
    queued, _ = await coord.submit("alice", spec(coord))
    other, _ = await coord.submit("alice", spec(coord))
    # Two watchers of one job, one of another; their snapshots come from this process.
    watches = [coord.watch(j.job_id, client_id="alice") for j in (queued, queued, other)]
    for w in watches:
        assert (await anext(w))[0] == "snapshot"
    # A second coordinator process on the same store cancels both jobs.
    coord2 = Coordinator(store, settings=Settings(), clock=clock)
    await coord2.start(background=False)
    await coord2.cancel(queued.job_id, client_id="alice")
    await coord2.cancel(other.job_id, client_id="alice")
    await coord.poll_watched()  # one read of every watched job (the background loop's step)
    for w in watches:
        event, seen = await asyncio.wait_for(anext(w), 5)
        assert (event, seen.state) == ("state", JobState.CANCELED)
        with pytest.raises(StopAsyncIteration):  # terminal: the watch ends
            await anext(w)
    assert coord._watchers == {} and coord._watched_version == {}
    await coord2.stop()


async def test_a_poll_passes_on_only_what_the_watchers_have_not_heard(env):
    coord, clock, store = env
    job, _ = await coord.submit("alice", spec(coord))
    w = coord.watch(job.job_id, client_id="alice")
    assert (await anext(w))[0] == "snapshot"
    (queue,) = coord._watchers[job.job_id]
    await coord.poll_watched()
    assert queue.empty()  # nothing changed: nobody is woken
    # Another process on the same store assigns the job to its miner.
    coord2 = Coordinator(store, settings=Settings(), clock=clock)
    await coord2.start(background=False)
    await coord2.connect("m1", mode="stream", caps=CAPS)
    await pump(coord2)
    assert (await store.get_job(job.job_id)).state is JobState.ASSIGNED
    await coord.poll_watched()
    event, seen = await asyncio.wait_for(anext(w), 5)
    assert (event, seen.state, seen.miner_id) == ("state", JobState.ASSIGNED, "m1")
    await coord.poll_watched()
    assert queue.empty()  # heard already: not passed on twice
    await w.aclose()
    assert coord._watchers == {} and coord._watched_version == {}
    await coord2.stop()


async def test_a_wait_is_answered_when_the_coordinator_stops(env):
    coord, *_ = env
    job, _ = await coord.submit("alice", spec(coord))
    waiting = asyncio.create_task(coord.settle(job, client_id="alice", wait_s=60))
    for _ in range(10):  # a few loop turns: the wait reads its snapshot and listens
        await asyncio.sleep(0)
    assert coord._stop_queues and not waiting.done()
    await coord.stop()  # the drain: the wait answers with the job as it is, at once
    seen = await asyncio.wait_for(waiting, 5)
    assert seen.job_id == job.job_id and seen.state is JobState.QUEUED
    assert coord._watchers == {}
    # A wait that starts while stopped answers at once too.
    assert (await coord.settle(job, client_id="alice", wait_s=60)).state is JobState.QUEUED


async def test_reconcile_tells_the_miner_of_a_lease_another_process_ended(env):
    coord, clock, store = env
    job, s, a = await _assigned(coord, clock)
    coord2 = Coordinator(store, settings=Settings(), clock=clock)
    await coord2.start(background=False)
    await coord2.cancel(job.job_id, client_id="alice", reason="elsewhere")
    await coord.reconcile()
    (cancel,) = [m for m in drain_outbox(s) if isinstance(m, CancelOut)]
    assert (cancel.lease_id, cancel.job_id) == (a.lease_id, job.job_id)
    assert a.lease_id not in s.leases  # the slot is free again
    await coord2.stop()


class _HeldStore(MemoryJobStore):
    """Commits a job update at once but answers only once `release` is set (a write that is
    durable while its caller has not heard back yet)."""

    def __init__(self):
        super().__init__()
        self.hold = False
        self.committed = asyncio.Event()
        self.release = asyncio.Event()

    async def update_job(self, job, expect_version, **kw):
        ok = await super().update_job(job, expect_version, **kw)
        if self.hold:
            self.committed.set()
            await self.release.wait()
        return ok


async def test_reconcile_leaves_a_lease_whose_result_is_being_written_here():
    clock = FakeClock()
    store = _HeldStore()
    coord = Coordinator(store, settings=Settings(), clock=clock)
    await coord.start(background=False)
    job, s, a = await _assigned(coord, clock)
    store.hold = True
    delivering = asyncio.create_task(coord.deliver_result("m1", a.lease_id, job.job_id, RESULT))
    await asyncio.wait_for(store.committed.wait(), 5)
    assert (await store.get_job(job.job_id)).state is JobState.COMPLETED
    await coord.reconcile()  # the store already says COMPLETED: this process's own change
    assert not [m for m in drain_outbox(s) if isinstance(m, CancelOut)]
    store.release.set()
    done, _, _ = await asyncio.wait_for(delivering, 5)
    assert done.state is JobState.COMPLETED and a.lease_id not in s.leases
    assert not [m for m in drain_outbox(s) if isinstance(m, CancelOut)]
    await coord.stop()


async def test_the_slot_of_a_result_being_written_takes_the_next_job():
    """The miner runs the job no more once it sent the result: its slot takes the next queued
    job while the completion is written (that claim can share the commit)."""
    clock = FakeClock()
    store = _HeldStore()
    coord = Coordinator(store, settings=Settings(), clock=clock)
    await coord.start(background=False)
    s, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)  # one slot
    first, _ = await coord.submit("alice", spec(coord))
    second, _ = await coord.submit("alice", spec(coord))
    (a,) = assignments(s)
    assert a.job.job_id == first.job_id and s.free_slots == 0
    store.hold = True
    delivering = asyncio.create_task(coord.deliver_result("m1", a.lease_id, first.job_id, RESULT))
    await asyncio.wait_for(store.committed.wait(), 5)
    store.hold = False  # only the completion waits to be answered
    assert s.free_slots == 1
    await pump(coord)
    (b,) = assignments(s)
    assert b.job.job_id == second.job_id and not delivering.done()
    assert s.free_slots == 0
    store.release.set()
    done, _, _ = await asyncio.wait_for(delivering, 5)
    assert done.state is JobState.COMPLETED
    assert list(s.leases) == [b.lease_id] and not s.finishing and s.free_slots == 0
    # A refused report frees nothing for good: a stale lease is not this miner's slot.
    with pytest.raises(errors.FailedPrecondition):
        await coord.deliver_result("m1", a.lease_id, second.job_id, RESULT)
    assert s.free_slots == 0 and not s.finishing
    await coord.stop()
