"""SubmitJobs: many jobs in one call, each as SubmitJob alone would take it."""

from __future__ import annotations

import grpc
import pytest
from aitbc.coordinator.v1 import job_pb2 as job_pb
from aitbc.coordinator.v1 import job_service_pb2 as jobs_pb
from aitbc.coordinator.v1 import job_service_pb2_grpc as jobs_grpc
from google.protobuf import json_format

from coordinator.app import CoordinatorApp
from coordinator.store.memory import MemoryJobStore
from coordinator.testing import StreamMiner, caps

from .conftest import KEYS, make_config
from .test_flow import submit_request


def item(service="echo", key="", **params) -> jobs_pb.SubmitJobsItem:
    return jobs_pb.SubmitJobsItem(request=submit_request(service, **params), idempotency_key=key)


async def listed(api) -> list[job_pb.Job]:
    return list((await api.jobs.ListJobs(jobs_pb.ListJobsRequest(), metadata=api.md("alice"))).jobs)


async def test_each_item_gets_its_own_job_or_error_in_order(api):
    req = jobs_pb.SubmitJobsRequest(
        items=[item(n=0), item("no-such-service"), item(key="k-1", n=2), item(n=3)]
    )
    req.items[3].request.ttl_seconds = 10**8
    resp = await api.jobs.SubmitJobs(req, metadata=api.md("alice"))
    kinds = [r.WhichOneof("outcome") for r in resp.results]
    assert kinds == ["job", "error", "job", "error"]
    first, bad, keyed, ttl = resp.results
    assert first.created and first.job.state == job_pb.JOB_STATE_QUEUED
    assert json_format.MessageToDict(first.job.payload.parameters) == {"n": 0}
    assert bad.error.code == "INVALID_ARGUMENT"
    assert [v.field for v in bad.error.field_violations] == ["items[1].request.payload.service"]
    assert "items[1].request.payload.service" in bad.error.message
    assert keyed.created and keyed.job.job_id != first.job.job_id
    assert [v.field for v in ttl.error.field_violations] == ["items[3].request.ttl_seconds"]
    # The refused items created nothing; the others are stored like SubmitJob's.
    assert {j.job_id for j in await listed(api)} == {first.job.job_id, keyed.job.job_id}


async def test_idempotency_keys_per_item(api):
    one = jobs_pb.SubmitJobsRequest(items=[item(key="k-1", a=1)])
    first = (await api.jobs.SubmitJobs(one, metadata=api.md("alice"))).results[0]
    again = (await api.jobs.SubmitJobs(one, metadata=api.md("alice"))).results[0]
    assert first.created and not again.created and again.job.job_id == first.job.job_id
    # SubmitJob with the same key and body finds the same job: one key space.
    single = submit_request(a=1)
    md = (*api.md("alice"), ("idempotency-key", "k-1"))
    assert (await api.jobs.SubmitJob(single, metadata=md)).job.job_id == first.job.job_id
    other = jobs_pb.SubmitJobsRequest(items=[item(key="k-1", a=2), item(key="x" * 129)])
    reused, too_long = (await api.jobs.SubmitJobs(other, metadata=api.md("alice"))).results
    assert reused.error.code == "ALREADY_EXISTS"
    assert reused.error.reason == "idempotency_key_reused"
    assert [v.field for v in too_long.error.field_violations] == ["items[1].idempotency_key"]
    assert len(await listed(api)) == 1


async def test_the_call_itself_is_refused_for_no_items_too_many_or_a_wait(api):
    for n in (0, 101):
        req = jobs_pb.SubmitJobsRequest(items=[item(i=i) for i in range(n)])
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.jobs.SubmitJobs(req, metadata=api.md("alice"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "items" in err.value.details()
    waiting = item()
    waiting.request.wait_seconds = 5
    (result,) = (
        await api.jobs.SubmitJobs(
            jobs_pb.SubmitJobsRequest(items=[waiting]), metadata=api.md("alice")
        )
    ).results
    assert [v.field for v in result.error.field_violations] == ["items[0].request.wait_seconds"]
    assert await listed(api) == []


async def test_batch_over_rest_and_run_by_a_miner(api):
    miner = await StreamMiner(api.app.grpc_target, KEYS["miner"]["m1"], caps(slots=4)).start()
    body = {
        "items": [
            {"request": {"payload": {"service": "echo", "parameters": {"i": i}}}} for i in range(3)
        ]
    }
    r = await api.http.post("/v1/jobs:batchSubmit", json=body, headers=api.h("alice"))
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["created"] for x in results] == [True, True, True]
    ids = [x["job"]["job_id"] for x in results]
    done = set()
    for _ in ids:
        a = (await miner.next("assignment")).assignment
        miner.result(a, {"ok": True})
        done.add(a.job.job_id)
    assert done == set(ids)
    for job_id in ids:
        got = await api.http.get(f"/v1/jobs/{job_id}/result", headers=api.h("alice"))
        assert got.status_code == 200 and got.json()["state"] == "JOB_STATE_COMPLETED"
    bad = await api.http.post("/v1/jobs:batchSubmit", json={"items": []}, headers=api.h("alice"))
    assert bad.status_code == 400 and "items" in bad.text
    await miner.close()


async def test_every_item_costs_a_submit_token(tmp_path):
    app = await CoordinatorApp(
        make_config(tmp_path, rate_limits="submit=0.01/5"), store=MemoryJobStore()
    ).start()
    alice = (("x-api-key", KEYS["client"]["alice"]),)
    async with grpc.aio.insecure_channel(app.grpc_target) as ch:
        jobs = jobs_grpc.JobServiceStub(ch)
        # More jobs than the burst could ever pay for: refused, naming the field.
        six = jobs_pb.SubmitJobsRequest(items=[item(i=i) for i in range(6)])
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await jobs.SubmitJobs(six, metadata=alice)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "burst of 5" in err.value.details()
        four = jobs_pb.SubmitJobsRequest(items=[item(i=i) for i in range(4)])
        assert len((await jobs.SubmitJobs(four, metadata=alice)).results) == 4
        two = jobs_pb.SubmitJobsRequest(items=[item(i=i) for i in range(2)])
        with pytest.raises(grpc.aio.AioRpcError) as err:  # 1 token left, 2 asked
            await jobs.SubmitJobs(two, metadata=alice)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await jobs.SubmitJob(submit_request(), metadata=alice)  # the last token
        with pytest.raises(grpc.aio.AioRpcError) as err:  # one bucket for both RPCs
            await jobs.SubmitJob(submit_request(), metadata=alice)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await app.stop()
