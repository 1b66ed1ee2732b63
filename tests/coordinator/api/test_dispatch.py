"""Dispatch through real servers: priority then FIFO, slot gating, matching, sweeper expiry, drain."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from aitbc.coordinator.v1 import job_pb2 as job_pb
from aitbc.coordinator.v1 import job_service_pb2 as jobs_pb
from aitbc.coordinator.v1 import miner_service_pb2 as miner_pb

from coordinator.testing import StreamMiner, caps

from .conftest import KEYS


async def submit(api, service="echo", **kw) -> str:
    constraints = kw.pop("constraints", None)
    req = jobs_pb.SubmitJobRequest(payload=job_pb.JobPayload(service=service), **kw)
    if constraints:
        req.constraints.CopyFrom(job_pb.JobConstraints(**constraints))
    return (await api.jobs.SubmitJob(req, metadata=api.md("alice"))).job.job_id


async def state(api, job_id: str) -> job_pb.Job:
    return (
        await api.jobs.GetJob(jobs_pb.GetJobRequest(job_id=job_id), metadata=api.md("alice"))
    ).job


async def no_assignment(miner: StreamMiner, within: float = 0.3) -> bool:
    with pytest.raises(TimeoutError):
        await miner.next("assignment", timeout=within)
    return True


async def test_priority_then_fifo_one_slot_at_a_time(api):
    low1 = await submit(api)
    low2 = await submit(api)
    high = await submit(api, constraints={"priority": 7})
    miner = await StreamMiner(api.app.grpc_target, KEYS["miner"]["m1"], caps(slots=1)).start()
    order = []
    for _ in range(3):
        a = (await miner.next("assignment")).assignment
        order.append(a.job.job_id)
        assert await no_assignment(miner)  # credit: nothing more until the slot frees
        miner.result(a, {"done": a.job.job_id})
        assert (await miner.next("ack")).ack.accepted
    assert order == [high, low1, low2]
    await miner.close()


async def test_matching_by_capabilities_price_and_region(api):
    gpu = await submit(
        api, constraints={"gpu_names": ["A100"], "min_vram_gb": 40, "region": "eu-west"}
    )
    cheap = await submit(api, constraints={"max_price": "0.1"})
    cpu = await StreamMiner(
        api.app.grpc_target,
        KEYS["miner"]["m1"],
        caps(slots=4, services={"echo": "0.5"}, region="us-east"),
    ).start()
    assert await no_assignment(cpu)
    why = (await state(api, gpu)).waiting_reason
    assert "no connected miner can run it" in why and "m1" in why
    big = await StreamMiner(
        api.app.grpc_target,
        KEYS["miner"]["m2"],
        caps(
            slots=4,
            services={"echo": "0.05"},
            region="eu-west",
            gpus=[miner_pb.Gpu(name="NVIDIA A100-SXM4-80GB", memory_mb=81920)],
        ),
    ).start()
    got = {(await big.next("assignment")).assignment.job.job_id for _ in range(2)}
    assert got == {gpu, cheap}  # both only fit m2 (GPU/region, and price 0.05 <= 0.1)
    await cpu.close()
    await big.close()


async def test_sweeper_expires_queued_and_running_jobs(api):
    waiting = await submit(api, service="sleep", ttl_seconds=1)
    running = await submit(api, run_timeout_seconds=1)
    miner = await StreamMiner(api.app.grpc_target, KEYS["miner"]["m1"], caps(slots=1)).start()
    a = (await miner.next("assignment")).assignment
    miner.started(a)
    cancel = (
        await miner.next("cancel", timeout=10)
    ).cancel  # the run timeout is pushed to the miner
    assert cancel.lease_id == a.lease_id
    assert (await state(api, running)).error.code == "run_timeout"
    async with asyncio.timeout(10):
        while (await state(api, waiting)).state != job_pb.JOB_STATE_EXPIRED:
            await asyncio.sleep(0.05)
    assert (await state(api, waiting)).error.code == "queue_ttl_expired"
    await miner.close()


async def test_drain_over_the_stream_and_rest(api):
    miner = await StreamMiner(api.app.grpc_target, KEYS["miner"]["m1"], caps(slots=2)).start()
    first = await submit(api)
    a = (await miner.next("assignment")).assignment
    miner.send(drain=miner_pb.DrainNotice(reason="maintenance"))
    await miner.next("drain")
    later = await submit(api)
    assert await no_assignment(miner)  # draining: nothing new
    miners = (await api.http.get("/v1/admin/miners", headers=api.h("root"))).json()["miners"]
    assert [(m["miner_id"], m["status"], m["inflight"]) for m in miners] == [
        ("m1", "MINER_STATUS_DRAINING", 1)
    ]
    miner.result(a, {"ok": 1})
    assert (await miner.next("ack")).ack.accepted
    assert (await state(api, first)).state == job_pb.JOB_STATE_COMPLETED
    assert (await state(api, later)).state == job_pb.JOB_STATE_QUEUED
    stats = (await api.http.get("/v1/admin/stats", headers=api.h("root"))).json()
    assert stats["jobs_by_state"]["JOB_STATE_COMPLETED"] == 1 and stats["queue_depth"] == 1
    assert stats["miners_draining"] == 1 and stats["completed_in_window"] == 1
    await miner.close()


async def test_cancel_queued_over_grpc(api):
    job_id = await submit(api, service="sleep")
    job = (
        await api.jobs.CancelJob(
            jobs_pb.CancelJobRequest(job_id=job_id, reason="no"), metadata=api.md("alice")
        )
    ).job
    assert job.state == job_pb.JOB_STATE_CANCELED
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await api.jobs.CancelJob(jobs_pb.CancelJobRequest(job_id=job_id), metadata=api.md("alice"))
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    r = await api.http.post(f"/v1/jobs/{job_id}/cancel", json={}, headers=api.h("alice"))
    assert r.status_code == 409


async def test_a_miner_with_short_jobs_has_the_next_one_kept_ready(api):
    """Once a miner's jobs prove short, one more per slot is claimed for it and kept here
    (ASSIGNED, not sent): it goes out when the slot frees. Never more than the slots are sent,
    and a drain gives the kept job back to the queue."""
    miner = await StreamMiner(api.app.grpc_target, KEYS["miner"]["m1"], caps(slots=1)).start()
    first = await submit(api)
    a = (await miner.next("assignment")).assignment
    miner.result(a, {"n": 1})
    assert (await miner.next("ack")).ack.accepted
    second, third = await submit(api), await submit(api)
    b = (await miner.next("assignment")).assignment
    assert b.job.job_id == second
    assert await no_assignment(miner)  # one slot: nothing more is sent...
    kept = await state(api, third)  # ...but the next job is claimed for this miner
    assert kept.state == job_pb.JOB_STATE_ASSIGNED and kept.miner_id == "m1"
    miner.result(b, {"n": 2})
    c = (await miner.next("assignment")).assignment
    assert c.job.job_id == third
    fourth = await submit(api)  # the slot is busy: kept ready at once (stored ASSIGNED)
    watch = api.jobs.WatchJob(jobs_pb.WatchJobRequest(job_id=fourth), metadata=api.md("alice"))
    assert (await watch.read()).job.state == job_pb.JOB_STATE_ASSIGNED
    # Draining: the miner finishes what it holds; the kept job goes back, no attempt counted.
    miner.send(drain=miner_pb.DrainNotice(reason="maintenance"))
    await miner.next("drain")
    async with asyncio.timeout(10):
        assert (await watch.read()).job.state == job_pb.JOB_STATE_QUEUED
    watch.cancel()
    back = await state(api, fourth)
    assert back.attempt == 1 and back.miner_id == "" and list(back.attempts) == []
    miner.result(c, {"n": 3})
    assert (await miner.next("ack")).ack.accepted
    assert await no_assignment(miner)
    assert (await state(api, first)).state == job_pb.JOB_STATE_COMPLETED
    await miner.close()
