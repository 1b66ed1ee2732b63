"""Jobs kept ready for a streaming miner with short jobs (prefetch), with a fake clock."""

from __future__ import annotations

import pytest

from coordinator.domain.model import JobState
from coordinator.domain.service import Coordinator
from coordinator.domain.sessions import AssignmentOut, CancelOut, Close
from coordinator.domain.settings import Settings
from coordinator.store.memory import MemoryJobStore
from core import errors
from core.clock import FakeClock

from .test_service import CAPS, RESULT, assignments, drain_outbox, pump, spec


async def warm(coord, clock, *, slots=1, took_s=0.01):
    """A streaming miner that has run one job, taking `took_s`."""
    s, _, _ = await coord.connect("m1", mode="stream", caps={**CAPS, "slots": slots})
    job, _ = await coord.submit("alice", spec(coord))
    (a,) = assignments(s)
    await clock.advance(took_s)
    await coord.deliver_result("m1", a.lease_id, job.job_id, RESULT)
    return s


async def queue_jobs(coord, clock, n, **kw):
    jobs = []
    for _ in range(n):
        job, _ = await coord.submit("alice", spec(coord, **kw))
        jobs.append(job)
        await clock.advance(0.001)  # FIFO by creation time
    return jobs


async def test_a_freed_slot_takes_the_kept_job_without_another_claim(env):
    coord, clock, store = env
    s = await warm(coord, clock)
    j1, j2, j3 = await queue_jobs(coord, clock, 3)
    await pump(coord)
    (a1,) = assignments(s)  # one slot: one job sent...
    assert a1.job.job_id == j1.job_id
    # ...and one more claimed for it and kept ready: stored ASSIGNED, not sent.
    kept = await store.get_job(j2.job_id)
    assert kept.state is JobState.ASSIGNED and kept.miner_id == "m1"
    assert [e.job.job_id for e in s.staged] == [j2.job_id]
    assert (await store.get_job(j3.job_id)).state is JobState.QUEUED
    assert s.free_slots == 0 and s.capacity == 0
    # The result frees the slot: the kept job goes out at once, before any dispatch pass.
    await coord.deliver_result("m1", a1.lease_id, j1.job_id, RESULT)
    (a2,) = assignments(s)
    assert a2.lease_id == kept.lease_id and a2.job.job_id == j2.job_id
    assert list(s.leases) == [a2.lease_id] and s.staged == []
    await pump(coord)  # the next one is claimed into the place kept free
    assert assignments(s) == [] and [e.job.job_id for e in s.staged] == [j3.job_id]
    await coord.deliver_result("m1", a2.lease_id, j2.job_id, RESULT)
    (a3,) = assignments(s)
    done, _, _ = await coord.deliver_result("m1", a3.lease_id, j3.job_id, RESULT)
    assert done.state is JobState.COMPLETED and done.attempt == 1
    assert len(done.attempts) == 1


async def test_nothing_is_kept_for_a_new_miner_or_one_with_long_jobs(env):
    coord, clock, store = env
    s, _, _ = await coord.connect("m1", mode="stream", caps=CAPS)
    jobs = await queue_jobs(coord, clock, 3)
    await pump(coord)
    (a,) = assignments(s)
    assert s.staged == [] and s.job_time_s is None  # no job finished yet: nothing kept
    await clock.advance(1.5)  # a job longer than prefetch_max_job_s (1 s)
    await coord.deliver_result("m1", a.lease_id, a.job.job_id, RESULT)
    assert s.job_time_s == pytest.approx(1.5, abs=0.01)
    await pump(coord)
    (b,) = assignments(s)
    assert s.staged == [] and s.stage_room == 0
    assert [(await store.get_job(j.job_id)).state for j in jobs[1:]] == [
        JobState.ASSIGNED,
        JobState.QUEUED,
    ]
    # Short jobs bring the moving average down again, and with it the kept jobs back.
    for _ in range(10):
        await coord.deliver_result("m1", b.lease_id, b.job.job_id, RESULT)
        await queue_jobs(coord, clock, 1)
        await pump(coord)
        (b,) = assignments(s)
        if s.stage_room:
            break
    assert s.job_time_s < 1.0 and s.stage_room == 1 and len(s.staged) == 1


async def test_prefetch_off_keeps_nothing():
    clock = FakeClock()
    coord = Coordinator(MemoryJobStore(), settings=Settings(prefetch_per_slot=0), clock=clock)
    await coord.start(background=False)
    s = await warm(coord, clock)
    await queue_jobs(coord, clock, 3)
    await pump(coord)
    assert len(assignments(s)) == 1 and s.staged == [] and s.stage_room == 0
    await coord.stop()


async def test_kept_jobs_go_out_in_priority_then_fifo_order(env):
    coord, clock, _ = env
    s = await warm(coord, clock, slots=2)
    first = await queue_jobs(coord, clock, 2)
    await pump(coord)
    assert {a.job.job_id for a in assignments(s)} == {j.job_id for j in first}
    low = await queue_jobs(coord, clock, 1)
    await pump(coord)
    high = await queue_jobs(coord, clock, 1, priority=5)
    await pump(coord)
    assert [e.job.job_id for e in s.staged] == [high[0].job_id, low[0].job_id]
    held = list(s.leases.items())
    await coord.deliver_result("m1", held[0][0], held[0][1], RESULT)
    (a,) = assignments(s)
    assert a.job.job_id == high[0].job_id  # kept later, sent first
    # Never more sent than the miner has slots.
    assert len(s.leases) - len(s.finishing) <= 2


async def test_drain_gives_kept_jobs_back_with_no_attempt_counted(env):
    coord, clock, store = env
    s = await warm(coord, clock)
    j1, j2 = await queue_jobs(coord, clock, 2)
    await pump(coord)
    (a1,) = assignments(s)
    assert [e.job.job_id for e in s.staged] == [j2.job_id]
    coord.drain(s)
    await coord.dispatcher.settle()
    back = await store.get_job(j2.job_id)
    assert back.state is JobState.QUEUED and back.attempt == 1 and back.attempts == []
    assert back.miner_id == back.lease_id == "" and back.deadline_at == back.created_at + back.ttl_s
    assert s.staged == [] and j2.job_id in coord.dispatcher.queue
    await coord.deliver_result("m1", a1.lease_id, j1.job_id, RESULT)
    await pump(coord)
    assert [m for m in drain_outbox(s) if isinstance(m, AssignmentOut)] == []


@pytest.mark.parametrize("how", ["disconnect", "reconnect", "silent", "stop"])
async def test_kept_jobs_go_back_when_the_miner_leaves(env, how):
    coord, clock, store = env
    s = await warm(coord, clock)
    _j1, j2 = await queue_jobs(coord, clock, 2)
    await pump(coord)
    assert [e.job.job_id for e in s.staged] == [j2.job_id]
    if how == "disconnect":
        await coord.disconnect(s)
    elif how == "reconnect":
        await coord.connect("m1", mode="stream", caps=CAPS)
    elif how == "silent":
        await clock.advance(16)
        await coord.sweep()
    else:
        await coord.stop()
    await coord.dispatcher.settle()
    back = await store.get_job(j2.job_id)
    assert (back.state, back.attempt, back.attempts) == (JobState.QUEUED, 1, [])
    assert s.staged == []


async def test_a_kept_job_that_waits_too_long_goes_back_to_the_queue(env):
    coord, clock, store = env
    s = await warm(coord, clock)
    _j1, j2 = await queue_jobs(coord, clock, 2)
    await pump(coord)
    (a1,) = assignments(s)
    kept = await store.get_job(j2.job_id)
    # Its run timeout starts no earlier than the longest it may be kept.
    grace = coord.settings.stage_max_wait_s + coord.settings.sweep_interval_s
    assert kept.deadline_at == pytest.approx(kept.assigned_at + kept.run_timeout_s + grace)
    await clock.advance(coord.settings.stage_max_wait_s / 2)
    coord.seen(s)
    await coord.sweep()
    assert [e.job.job_id for e in s.staged] == [j2.job_id]
    await clock.advance(coord.settings.stage_max_wait_s)
    coord.seen(s)
    await coord.sweep()
    await coord.dispatcher.settle()
    assert s.staged == []
    assert (await store.get_job(j2.job_id)).state is JobState.QUEUED
    assert j2.job_id in coord.dispatcher.queue
    # A job sent into a free slot has no grace.
    assert a1.job.deadline_at == pytest.approx(a1.job.assigned_at + a1.job.run_timeout_s)


async def test_a_canceled_kept_job_is_dropped_and_the_miner_told_nothing(env):
    coord, clock, _ = env
    s = await warm(coord, clock)
    j1, j2, j3 = await queue_jobs(coord, clock, 3)
    await pump(coord)
    (a1,) = assignments(s)
    canceled = await coord.cancel(j2.job_id, client_id="alice")
    assert canceled.state is JobState.CANCELED and s.staged == []
    assert [m for m in drain_outbox(s) if isinstance(m, CancelOut | AssignmentOut)] == []
    await pump(coord)  # its place is taken by the next job
    assert [e.job.job_id for e in s.staged] == [j3.job_id]
    await coord.deliver_result("m1", a1.lease_id, j1.job_id, RESULT)
    (a3,) = assignments(s)
    assert a3.job.job_id == j3.job_id


async def test_reconcile_drops_a_kept_job_another_process_canceled(env):
    coord, clock, store = env
    s = await warm(coord, clock)
    _j1, j2 = await queue_jobs(coord, clock, 2)
    await pump(coord)
    assert [e.job.job_id for e in s.staged] == [j2.job_id]
    other = Coordinator(store, settings=Settings(), clock=clock)
    await other.start(background=False)
    await other.cancel(j2.job_id, client_id="alice")
    await coord.reconcile()
    assert s.staged == []
    assert not [m for m in drain_outbox(s) if isinstance(m, CancelOut)]
    await other.stop()


async def test_a_job_submitted_to_a_busy_miner_with_room_is_kept_in_one_write(env):
    coord, clock, _ = env
    s = await warm(coord, clock)
    running, _ = await coord.submit("alice", spec(coord))
    (a,) = assignments(s)
    kept, _ = await coord.submit("alice", spec(coord))
    # No job queued: stored ASSIGNED at once (no claim write), kept ready, not sent.
    assert kept.state is JobState.ASSIGNED and kept.version == 1
    assert [e.job.job_id for e in s.staged] == [kept.job_id] and assignments(s) == []
    queued, _ = await coord.submit("alice", spec(coord))
    assert queued.state is JobState.QUEUED  # no room left: it waits in the queue
    await coord.deliver_result("m1", a.lease_id, running.job_id, RESULT)
    (b,) = assignments(s)
    assert b.job.job_id == kept.job_id


async def test_a_closed_session_is_not_sent_kept_jobs(env):
    coord, clock, _ = env
    s = await warm(coord, clock)
    await queue_jobs(coord, clock, 2)
    await pump(coord)
    await coord.connect("m1", mode="stream", caps=CAPS)  # replaced
    sent = drain_outbox(s)
    assert isinstance(sent[-1], Close)
    assert len([m for m in sent if isinstance(m, AssignmentOut)]) == 1


async def test_a_give_back_the_store_refused_is_written_by_the_next_sweep(env):
    coord, clock, store = env
    s = await warm(coord, clock)
    _j1, j2 = await queue_jobs(coord, clock, 2)
    await pump(coord)
    assert [e.job.job_id for e in s.staged] == [j2.job_id]
    real_update = store.update_job

    async def unavailable(job, expect_version, **kw):
        raise errors.Unavailable("database unavailable; retry later")

    store.update_job = unavailable
    coord.drain(s)
    await coord.dispatcher.settle()
    assert (await store.get_job(j2.job_id)).state is JobState.ASSIGNED  # not written yet
    store.update_job = real_update
    coord.seen(s)
    await coord.sweep()
    await coord.dispatcher.settle()
    back = await store.get_job(j2.job_id)
    assert (back.state, back.attempt, back.attempts) == (JobState.QUEUED, 1, [])
