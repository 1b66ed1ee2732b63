"""End to end through real servers: gRPC and REST clients, stream and polling miners."""

from __future__ import annotations

import asyncio
import json

from aitbc.coordinator.v1 import job_pb2 as job_pb
from aitbc.coordinator.v1 import job_service_pb2 as jobs_pb
from aitbc.coordinator.v1 import miner_service_pb2 as miner_pb
from google.protobuf import json_format

from coordinator.testing import StreamMiner, caps

from .conftest import KEYS


def submit_request(service="echo", **params) -> jobs_pb.SubmitJobRequest:
    req = jobs_pb.SubmitJobRequest(payload=job_pb.JobPayload(service=service))
    req.payload.parameters.update(params or {"text": "hi"})
    return req


async def test_grpc_client_stream_miner_happy_path(api):
    miner = await StreamMiner(api.app.grpc_target, KEYS["miner"]["m1"], caps()).start()
    assert miner.welcome.miner_id == "m1"
    resp = await api.jobs.SubmitJob(submit_request(n=3), metadata=api.md("alice"))
    # An idle miner and an empty queue: the job is stored already assigned (one write).
    assert resp.created and resp.job.state == job_pb.JOB_STATE_ASSIGNED
    assert resp.job.miner_id == "m1" and resp.job.attempt == 1
    a = (await miner.next("assignment")).assignment
    assert a.job.job_id == resp.job.job_id
    assert json_format.MessageToDict(a.job.payload.parameters) == {"n": 3}
    miner.started(a)
    miner.result(a, {"echo": "hi"})
    ack = (await miner.next("ack")).ack
    assert ack.accepted and ack.job_id == a.job.job_id
    got = await api.jobs.GetJobResult(
        jobs_pb.GetJobResultRequest(job_id=a.job.job_id), metadata=api.md("alice")
    )
    assert got.state == job_pb.JOB_STATE_COMPLETED
    assert json_format.MessageToDict(got.result.inline) == {"echo": "hi"}
    await miner.close()


async def test_rest_client_and_polling_miner(api):
    http = api.http
    r = await http.post(
        "/v1/jobs",
        json={"payload": {"service": "echo", "parameters": {"a": 1}}},
        headers=api.h("alice"),
    )
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["state"] == "JOB_STATE_QUEUED" and job["payload"]["parameters"] == {"a": 1}
    r = await http.get(f"/v1/jobs/{job['job_id']}/result", headers=api.h("alice"))
    assert r.status_code == 425 and r.json()["state"] == "JOB_STATE_QUEUED"
    assert (
        "no miner is connected"
        in (await http.get(f"/v1/jobs/{job['job_id']}", headers=api.h("alice"))).json()[
            "waiting_reason"
        ]
    )
    reg = await http.post(
        "/v1/miners/register",
        json={"capabilities": {"slots": 1, "services": [{"service": "echo", "unit_price": "0.1"}]}},
        headers=api.h("m1"),
    )
    assert reg.status_code == 200, reg.text
    token = reg.json()["session_token"]
    poll = await http.post(
        "/v1/miners/poll", json={"session_token": token, "max_wait_seconds": 5}, headers=api.h("m1")
    )
    assert poll.status_code == 200, poll.text
    a = poll.json()["assignment"]
    assert a["job"]["job_id"] == job["job_id"]
    res = await http.post(
        f"/v1/miners/{job['job_id']}/result",
        json={"lease_id": a["lease_id"], "result": {"inline": {"sum": 1}}},
        headers=api.h("m1"),
    )
    assert res.status_code == 200 and res.json()["ack"]["accepted"], res.text
    again = await http.post(
        f"/v1/miners/{job['job_id']}/result",
        json={"lease_id": a["lease_id"], "result": {"inline": {"sum": 1}}},
        headers=api.h("m1"),
    )
    assert again.status_code == 200  # a duplicate is acknowledged, nothing changes
    r = await http.get(f"/v1/jobs/{job['job_id']}/result", headers=api.h("alice"))
    assert r.status_code == 200 and r.json()["result"]["inline"] == {"sum": 1}
    empty = await http.post(
        "/v1/miners/poll", json={"session_token": token, "max_wait_seconds": 0}, headers=api.h("m1")
    )
    assert empty.status_code == 204 and empty.content == b""


async def test_rest_submit_to_a_waiting_polling_miner_is_placed_at_once(api):
    http = api.http
    reg = await http.post(
        "/v1/miners/register",
        json={"capabilities": {"slots": 1, "services": [{"service": "echo", "unit_price": "0.1"}]}},
        headers=api.h("m1"),
    )
    token = reg.json()["session_token"]
    coord = api.app.coordinator
    waiting = asyncio.Event()
    kick = coord.dispatcher.kick

    def kicked() -> None:  # a long poll starting kicks the dispatcher: now it has capacity
        if coord.sessions["m1"].poll_waiters:
            waiting.set()
        kick()

    coord.dispatcher.kick = kicked
    poll = asyncio.create_task(
        http.post(
            "/v1/miners/poll",
            json={"session_token": token, "max_wait_seconds": 10},
            headers=api.h("m1"),
        )
    )
    await asyncio.wait_for(waiting.wait(), 10)
    r = await http.post(
        "/v1/jobs", json={"payload": {"service": "echo", "parameters": {}}}, headers=api.h("alice")
    )
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["state"] == "JOB_STATE_ASSIGNED" and job["miner_id"] == "m1"
    assert "waiting_reason" not in job or not job["waiting_reason"]
    got = await poll
    assert got.status_code == 200 and got.json()["assignment"]["job"]["job_id"] == job["job_id"]
    assert got.json()["assignment"]["lease_id"]


async def test_idempotency_over_rest(api):
    body = {"payload": {"service": "echo", "parameters": {"a": 1}}}
    h = {**api.h("alice"), "Idempotency-Key": "k-1"}
    first = await api.http.post("/v1/jobs", json=body, headers=h)
    second = await api.http.post("/v1/jobs", json=body, headers=h)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["job_id"] == second.json()["job_id"]
    other = await api.http.post(
        "/v1/jobs", json={"payload": {"service": "echo", "parameters": {"a": 2}}}, headers=h
    )
    assert other.status_code == 409, other.text
    listed = await api.http.get("/v1/jobs", headers=api.h("alice"))
    assert len(listed.json()["jobs"]) == 1  # the rejected request created nothing


async def test_bad_input_names_the_field(api):
    cases = [
        ({"payload": {"service": "nope"}}, "payload.service"),
        ({"payload": {"service": "echo"}, "ttl_seconds": 10**8}, "ttl_seconds"),
        ({"payload": {"service": "echo"}, "waitSeconds": 61}, "wait_seconds"),
        ({"payload": {"service": "echo"}, "constraints": {"priority": 12}}, "constraints.priority"),
        (
            {"payload": {"service": "echo"}, "constraints": {"max_price": "-1"}},
            "constraints.max_price",
        ),
        (
            {"payload": {"service": "echo"}, "constraints": {"min_cuda": "twelve"}},
            "constraints.min_cuda",
        ),
        (
            {"payload": {"service": "echo", "parameters": {"x": "y" * 300_000}}},
            "payload.parameters",
        ),
    ]
    for body, field in cases:
        r = await api.http.post("/v1/jobs", json=body, headers=api.h("alice"))
        assert r.status_code == 400, (body, r.text)
        details = r.json()["details"]
        fields = [
            v["field"]
            for d in details
            if d["@type"].endswith("BadRequest")
            for v in d["field_violations"]
        ]
        assert field in fields, (field, r.json())
    r = await api.http.get("/v1/jobs/not-a-job", headers=api.h("alice"))
    assert r.status_code == 400 and "job_id" in r.text
    r = await api.http.get("/v1/jobs?state=JOB_STATE_BOGUS", headers=api.h("alice"))
    assert r.status_code == 400
    assert (await api.http.get("/v1/jobs", headers=api.h("alice"))).json()["jobs"] == []


async def test_cancel_running_job_is_pushed_to_the_miner(api):
    miner = await StreamMiner(api.app.grpc_target, KEYS["miner"]["m1"], caps()).start()
    r = await api.http.post(
        "/v1/jobs", json={"payload": {"service": "echo"}}, headers=api.h("alice")
    )
    job_id = r.json()["job_id"]
    a = (await miner.next("assignment")).assignment
    miner.started(a)
    c = await api.http.post(
        f"/v1/jobs/{job_id}/cancel", json={"reason": "stop"}, headers=api.h("alice")
    )
    assert c.status_code == 200 and c.json()["state"] == "JOB_STATE_CANCELED"
    cancel = (await miner.next("cancel")).cancel
    assert cancel.lease_id == a.lease_id
    again = await api.http.post(f"/v1/jobs/{job_id}/cancel", json={}, headers=api.h("alice"))
    assert again.status_code == 409 and "not_cancelable" in again.text
    miner.result(a, {"late": True})
    ack = (await miner.next("ack")).ack
    assert not ack.accepted and ack.code == "stale_lease"
    await miner.close()


async def test_watch_streams_ndjson_until_terminal(api):
    miner = await StreamMiner(api.app.grpc_target, KEYS["miner"]["m1"], caps()).start()
    r = await api.http.post(
        "/v1/jobs", json={"payload": {"service": "echo"}}, headers=api.h("alice")
    )
    job_id = r.json()["job_id"]
    events = []
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def watch():
        async with api.http.stream(
            "GET", f"/v1/jobs/{job_id}/watch", headers=api.h("alice")
        ) as resp:
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line:
                    events.append(json.loads(line)["result"])
                    seen.put_nowait(events[-1]["event"])

    watcher = asyncio.create_task(watch())
    assert await asyncio.wait_for(seen.get(), 10) == "snapshot"
    a = (await miner.next("assignment")).assignment
    miner.started(a)
    miner.send(
        progress=miner_pb.JobProgressUpdate(
            lease_id=a.lease_id, job_id=job_id, fraction=0.5, message="half"
        )
    )
    while await asyncio.wait_for(seen.get(), 10) != "progress":
        pass
    miner.result(a, {"ok": 1})
    await asyncio.wait_for(watcher, 10)
    assert events[0]["event"] == "snapshot"
    assert events[-1]["job"]["state"] == "JOB_STATE_COMPLETED"
    assert any(e["event"] == "progress" and e["job"]["progress"]["fraction"] == 0.5 for e in events)
    await miner.close()


async def test_started_over_the_stream_shows_running_then_rides_with_the_result(api):
    miner = await StreamMiner(api.app.grpc_target, KEYS["miner"]["m1"], caps()).start()
    first = (await api.jobs.SubmitJob(submit_request(), metadata=api.md("alice"))).job
    a = (await miner.next("assignment")).assignment
    miner.started(a)  # alone: written after the short delay, then watchers and GetJob see it
    watch = api.jobs.WatchJob(
        jobs_pb.WatchJobRequest(job_id=first.job_id), metadata=api.md("alice")
    )
    states = []
    async with asyncio.timeout(5):
        async for event in watch:
            states.append(event.job.state)
            if event.job.state == job_pb.JOB_STATE_RUNNING:
                break
    watch.cancel()
    assert states[-1] == job_pb.JOB_STATE_RUNNING
    got = (
        await api.jobs.GetJob(jobs_pb.GetJobRequest(job_id=first.job_id), metadata=api.md("alice"))
    ).job
    assert got.state == job_pb.JOB_STATE_RUNNING and got.HasField("started_at")
    miner.result(a, {"ok": 1})
    assert (await miner.next("ack")).ack.accepted

    second = (await api.jobs.SubmitJob(submit_request(), metadata=api.md("alice"))).job
    b = (await miner.next("assignment")).assignment
    miner.started(b)
    miner.result(b, {"ok": 2})  # at once: "started" is written by the result's own write
    assert (await miner.next("ack")).ack.accepted
    done = (
        await api.jobs.GetJob(jobs_pb.GetJobRequest(job_id=second.job_id), metadata=api.md("alice"))
    ).job
    assert done.state == job_pb.JOB_STATE_COMPLETED
    assert done.assigned_at.ToNanoseconds() <= done.started_at.ToNanoseconds()
    assert done.started_at.ToNanoseconds() <= done.finished_at.ToNanoseconds()
    await miner.close()
