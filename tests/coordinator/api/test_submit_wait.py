"""SubmitJob's wait_seconds: the answer waits for the job's end (or the wait), over gRPC and REST."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest
from aitbc.coordinator.v1 import job_pb2 as job_pb
from aitbc.coordinator.v1 import job_service_pb2 as jobs_pb
from google.protobuf import json_format

from coordinator.testing import StreamMiner, caps

from .conftest import KEYS
from .test_flow import submit_request


@contextlib.asynccontextmanager
async def echo_miner(api, *, fail: bool = False):
    """A stream miner answering every assignment at once (or failing it, not retryable)."""
    miner = await StreamMiner(api.app.grpc_target, KEYS["miner"]["m1"], caps()).start()

    async def serve() -> None:
        while True:
            msg = await miner.next(timeout=30)
            if msg.WhichOneof("msg") != "assignment":
                continue
            a = msg.assignment
            params = json_format.MessageToDict(a.job.payload.parameters)
            if fail:
                miner.fail(a, code="bad_input", message="cannot echo that", retryable=False)
            else:
                miner.result(a, {"echo": params})

    task = asyncio.create_task(serve())
    try:
        yield miner
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await miner.close()


async def test_grpc_submit_waits_for_the_result(api):
    async with echo_miner(api):
        req = submit_request(n=7)
        req.wait_seconds = 10
        resp = await api.jobs.SubmitJob(req, metadata=api.md("alice"))
    assert resp.created
    job = resp.job
    assert job.state == job_pb.JOB_STATE_COMPLETED, job
    assert json_format.MessageToDict(job.result.inline) == {"echo": {"n": 7}}
    assert job.finished_at.ToMicroseconds() > 0


async def test_rest_submit_waits_and_an_idempotent_repeat_waits_too(api):
    body = {"payload": {"service": "echo", "parameters": {"a": 1}}, "waitSeconds": 10}
    h = {**api.h("alice"), "Idempotency-Key": "wait-1"}
    async with echo_miner(api):
        first = await api.http.post("/v1/jobs", json=body, headers=h)
        # Same key and body, another wait: the same job (the wait is not part of the request's
        # identity), already COMPLETED.
        second = await api.http.post("/v1/jobs", json={**body, "waitSeconds": 3}, headers=h)
    assert first.status_code == 201, first.text
    assert first.json()["state"] == "JOB_STATE_COMPLETED"
    assert first.json()["result"]["inline"] == {"echo": {"a": 1}}
    assert second.status_code == 200, second.text
    assert second.json()["job_id"] == first.json()["job_id"]
    assert second.json()["state"] == "JOB_STATE_COMPLETED"


async def test_a_failed_job_ends_the_wait_with_its_error(api):
    async with echo_miner(api, fail=True):
        req = submit_request()
        req.wait_seconds = 10
        job = (await api.jobs.SubmitJob(req, metadata=api.md("alice"))).job
    assert job.state == job_pb.JOB_STATE_FAILED
    assert job.error.code == "bad_input" and "cannot echo that" in job.error.message


async def test_the_wait_ends_with_the_job_as_it_is(api):
    # No miner: after the wait the answer is the stored, still queued job, saying why it waits.
    req = submit_request()
    req.wait_seconds = 1
    job = (await api.jobs.SubmitJob(req, metadata=api.md("alice"))).job
    assert job.state == job_pb.JOB_STATE_QUEUED
    assert "no miner is connected" in job.waiting_reason
    got = await api.jobs.GetJob(jobs_pb.GetJobRequest(job_id=job.job_id), metadata=api.md("alice"))
    assert got.job.state == job_pb.JOB_STATE_QUEUED


async def test_a_call_that_gives_up_early_loses_nothing(api):
    # The client's deadline ends the call mid-wait; the job is stored and runs to its end.
    req = submit_request(k="v")
    req.wait_seconds = 30
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.jobs.SubmitJob(req, metadata=api.md("alice"), timeout=0.5)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    listed = await api.jobs.ListJobs(jobs_pb.ListJobsRequest(), metadata=api.md("alice"))
    assert len(listed.jobs) == 1 and listed.jobs[0].state == job_pb.JOB_STATE_QUEUED
    job_id = listed.jobs[0].job_id
    async with echo_miner(api):
        watch = api.jobs.WatchJob(jobs_pb.WatchJobRequest(job_id=job_id), metadata=api.md("alice"))
        async for event in watch:
            if event.job.state == job_pb.JOB_STATE_COMPLETED:
                break
        watch.cancel()
    got = await api.jobs.GetJobResult(
        jobs_pb.GetJobResultRequest(job_id=job_id), metadata=api.md("alice")
    )
    assert json_format.MessageToDict(got.result.inline) == {"echo": {"k": "v"}}


async def test_wait_over_the_limit_is_rejected_and_creates_nothing(api):
    req = submit_request()
    req.wait_seconds = 61
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.jobs.SubmitJob(req, metadata=api.md("alice"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "wait_seconds" in err.value.details()
    listed = await api.jobs.ListJobs(jobs_pb.ListJobsRequest(), metadata=api.md("alice"))
    assert list(listed.jobs) == []


async def test_a_drain_answers_a_waiting_submit_with_the_job_as_it_is(api):
    req = submit_request()
    req.wait_seconds = 60
    call = asyncio.ensure_future(api.jobs.SubmitJob(req, metadata=api.md("alice")))
    listed = jobs_pb.ListJobsResponse()
    for _ in range(200):  # until the job is stored and the call waits
        listed = await api.jobs.ListJobs(jobs_pb.ListJobsRequest(), metadata=api.md("alice"))
        if listed.jobs:
            break
        await asyncio.sleep(0.02)
    assert len(listed.jobs) == 1
    # A graceful stop with a 10 s grace: the wait is answered during the drain, not cut off.
    stopping = asyncio.ensure_future(api.app.stop(grace_s=10))
    resp = await asyncio.wait_for(call, 5)
    assert resp.job.job_id == listed.jobs[0].job_id
    assert resp.job.state == job_pb.JOB_STATE_QUEUED
    await stopping


async def test_a_waited_answer_keeps_its_headers(api):
    # They go out when the wait starts (a unary client sees them with the answer).
    req = submit_request()
    req.wait_seconds = 1  # no miner: the answer comes when the wait ends
    call = api.jobs.SubmitJob(req, metadata=(*api.md("alice"), ("x-request-id", "wait-1")))
    assert (await call).job.state == job_pb.JOB_STATE_QUEUED
    headers = dict(await call.initial_metadata())
    assert headers["x-http-code"] == "201" and headers["x-request-id"] == "wait-1"
