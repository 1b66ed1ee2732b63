"""kill -9 of the coordinator with jobs in every state: nothing accepted is lost."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from aitbc.coordinator.v1 import admin_service_pb2 as admin_pb
from aitbc.coordinator.v1 import admin_service_pb2_grpc as admin_grpc
from aitbc.coordinator.v1 import job_pb2 as job_pb
from aitbc.coordinator.v1 import job_service_pb2 as jobs_pb
from aitbc.coordinator.v1 import job_service_pb2_grpc as jobs_grpc

from coordinator.testing import CoordinatorProcess, StreamMiner, caps

pytestmark = pytest.mark.e2e

KEYS = {
    "AITBC_CLIENT_KEYS": "alice=alice-secret-0123456789",
    "AITBC_MINER_KEYS": "m1=m1-secret-0123456789abc,m2=m2-secret-0123456789abc",
    "AITBC_ADMIN_KEYS": "root=root-secret-0123456789a",
}
ALICE = (("x-api-key", "alice-secret-0123456789"),)
ROOT = (("x-api-key", "root-secret-0123456789a"),)
S = job_pb.JobState


async def wait_state(jobs, job_id, state, timeout=10.0):
    async with asyncio.timeout(timeout):
        while True:
            job = (await jobs.GetJob(jobs_pb.GetJobRequest(job_id=job_id), metadata=ALICE)).job
            if job.state == state:
                return job
            await asyncio.sleep(0.05)


async def all_jobs(channel):
    admin = admin_grpc.AdminServiceStub(channel)
    out, token = {}, ""
    while True:
        page = await admin.ListJobs(
            admin_pb.AdminServiceListJobsRequest(page_size=100, page_token=token), metadata=ROOT
        )
        out.update({j.job_id: j for j in page.jobs})
        token = page.next_page_token
        if not token:
            return out


async def submit(jobs, service="echo", **kw):
    req = jobs_pb.SubmitJobRequest(payload=job_pb.JobPayload(service=service), **kw)
    return (await jobs.SubmitJob(req, metadata=ALICE)).job.job_id


async def test_kill_9_with_jobs_in_every_state_loses_nothing(tmp_path):
    env = {
        **KEYS,
        "AITBC_DATA_DIR": str(tmp_path),
        "AITBC_HEARTBEAT_INTERVAL_S": "1",
        "AITBC_SWEEP_INTERVAL_S": "0.1",
        "AITBC_LOG_LEVEL": "WARNING",
    }
    coord = await CoordinatorProcess(env).start()
    channel = grpc.aio.insecure_channel(coord.grpc_target)
    jobs = jobs_grpc.JobServiceStub(channel)
    m1 = await StreamMiner(coord.grpc_target, "m1-secret-0123456789abc", caps(slots=2)).start()
    m2 = await StreamMiner(
        coord.grpc_target, "m2-secret-0123456789abc", caps(slots=1, services={"blender": "1"})
    ).start()

    done = await submit(jobs)
    a = (await m1.next("assignment")).assignment
    m1.result(a, {"ok": 1})
    await wait_state(jobs, done, S.JOB_STATE_COMPLETED)
    failed = await submit(jobs)
    a = (await m1.next("assignment")).assignment
    m1.fail(a, "bad_params", "nope", retryable=False)
    await wait_state(jobs, failed, S.JOB_STATE_FAILED)
    canceled = await submit(jobs, service="sleep")
    await jobs.CancelJob(jobs_pb.CancelJobRequest(job_id=canceled), metadata=ALICE)
    expired = await submit(jobs, service="sleep", ttl_seconds=1)
    await wait_state(jobs, expired, S.JOB_STATE_EXPIRED)
    running = await submit(jobs)
    a_running = (await m1.next("assignment")).assignment
    m1.started(a_running)
    await wait_state(jobs, running, S.JOB_STATE_RUNNING)
    assigned = await submit(jobs)
    a_assigned = (await m1.next("assignment")).assignment
    orphan = await submit(jobs, service="blender")
    await m2.next("assignment")
    queued = await submit(jobs, service="sleep")
    before = await all_jobs(channel)
    assert len(before) == 8

    coord.kill()
    assert await coord.wait() == -9
    await m1.abort(), await m2.abort(), await channel.close()

    coord = await CoordinatorProcess(env).start()
    channel = grpc.aio.insecure_channel(coord.grpc_target)
    jobs = jobs_grpc.JobServiceStub(channel)
    after = await all_jobs(channel)
    assert set(after) == set(before)
    for job_id, job in before.items():
        assert after[job_id].state == job.state, job_id
        assert after[job_id].payload == job.payload

    # m1 comes back holding only the running lease: it keeps it and delivers; the assigned
    # lease it lost goes back to the queue at once, with attempt 2.
    m1 = await StreamMiner(
        coord.grpc_target,
        "m1-secret-0123456789abc",
        caps(slots=2),
        held=[(a_running.lease_id, running)],
    ).start()
    assert list(m1.welcome.kept_lease_ids) == [a_running.lease_id]
    m1.result(a_running, {"after": "restart"})
    assert (await m1.next("ack")).ack.accepted
    await wait_state(jobs, running, S.JOB_STATE_COMPLETED)
    requeued = (await m1.next("assignment")).assignment
    assert requeued.job.job_id == assigned and requeued.job.attempt == 2
    assert requeued.lease_id != a_assigned.lease_id
    # m2 never returns: its lease expires after 3 silent intervals and the job is queued again.
    job = await wait_state(jobs, orphan, S.JOB_STATE_QUEUED, timeout=15)
    assert job.attempt == 2 and job.attempts[0].outcome == "lease_lost"
    assert (
        await jobs.GetJob(jobs_pb.GetJobRequest(job_id=queued), metadata=ALICE)
    ).job.state == S.JOB_STATE_QUEUED
    await m1.close()
    await channel.close()
    assert await coord.terminate() == 0
