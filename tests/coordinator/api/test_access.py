"""The access matrix: every RPC x (no key, client, miner, admin), and ownership."""

from __future__ import annotations

import grpc
import pytest
from aitbc.coordinator.v1 import admin_service_pb2 as admin_pb
from aitbc.coordinator.v1 import job_service_pb2 as jobs_pb
from aitbc.coordinator.v1 import miner_service_pb2 as miner_pb

from coordinator.testing import StreamMiner, caps

from .conftest import KEYS

# (stub attribute, rpc, request, kind) for every RPC of the three services.
RPCS = [
    ("jobs", "SubmitJob", jobs_pb.SubmitJobRequest(payload={"service": "echo"}), "unary"),
    (
        "jobs",
        "SubmitJobs",
        jobs_pb.SubmitJobsRequest(items=[{"request": {"payload": {"service": "echo"}}}]),
        "unary",
    ),
    ("jobs", "GetJob", jobs_pb.GetJobRequest(job_id="job_" + "0" * 32), "unary"),
    ("jobs", "GetJobResult", jobs_pb.GetJobResultRequest(job_id="job_" + "0" * 32), "unary"),
    ("jobs", "CancelJob", jobs_pb.CancelJobRequest(job_id="job_" + "0" * 32), "unary"),
    ("jobs", "ListJobs", jobs_pb.ListJobsRequest(), "unary"),
    ("jobs", "WatchJob", jobs_pb.WatchJobRequest(job_id="job_" + "0" * 32), "stream"),
    (
        "jobs",
        "SubmitJobStream",
        jobs_pb.SubmitJobStreamRequest(tag=1, request={"payload": {"service": "echo"}}),
        "bidi",
    ),
    ("miners", "Connect", None, "bidi"),
    ("miners", "Register", miner_pb.RegisterRequest(capabilities=caps()), "unary"),
    ("miners", "Heartbeat", miner_pb.HeartbeatRequest(session_token="x"), "unary"),
    ("miners", "Poll", miner_pb.PollRequest(session_token="x"), "unary"),
    (
        "miners",
        "SubmitResult",
        miner_pb.SubmitResultRequest(job_id="job_" + "0" * 32, lease_id="lease_" + "0" * 32),
        "unary",
    ),
    (
        "miners",
        "Fail",
        miner_pb.FailRequest(job_id="job_" + "0" * 32, lease_id="lease_" + "0" * 32),
        "unary",
    ),
    ("miners", "Drain", miner_pb.DrainRequest(session_token="x"), "unary"),
    ("admin", "GetStats", admin_pb.GetStatsRequest(), "unary"),
    ("admin", "ListJobs", admin_pb.AdminServiceListJobsRequest(), "unary"),
    ("admin", "ListMiners", admin_pb.ListMinersRequest(), "unary"),
]
OWNER = {"jobs": "client", "miners": "miner", "admin": "admin"}
CALLERS = {"none": None, "client": "alice", "miner": "m1", "admin": "root"}


async def _call(api, stub_name, rpc, request, kind, md):
    stub = getattr(api, stub_name)
    if kind == "unary":
        await getattr(stub, rpc)(request, metadata=md, timeout=5)
        return grpc.StatusCode.OK
    if kind == "stream":
        call = getattr(stub, rpc)(request, metadata=md, timeout=5)
        async for _ in call:
            break
        return grpc.StatusCode.OK

    async def hello():
        yield miner_pb.ConnectRequest(hello=miner_pb.Hello(capabilities=caps()))

    async def one():
        yield request

    call = (
        stub.Connect(hello(), metadata=md, timeout=5)
        if request is None
        else getattr(stub, rpc)(one(), metadata=md, timeout=5)
    )
    first = await call.read()
    if first is grpc.aio.EOF:  # the server ended the call: its status says why
        return await call.code()
    call.cancel()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("caller", list(CALLERS))
async def test_access_matrix(api, caller):
    ident = CALLERS[caller]
    md = api.md(ident) if ident else ()
    for stub_name, rpc, request, kind in RPCS:
        try:
            code = await _call(api, stub_name, rpc, request, kind, md)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
        if ident is None:
            assert code == grpc.StatusCode.UNAUTHENTICATED, (rpc, caller, code)
        elif OWNER[stub_name] == caller:
            assert code not in (
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.PERMISSION_DENIED,
            ), (rpc, caller, code)
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED, (rpc, caller, code)


async def test_wrong_key_is_unauthenticated_over_rest(api):
    r = await api.http.get("/v1/jobs", headers={"X-Api-Key": "nope-nope-nope-nope"})
    assert r.status_code == 401 and r.json()["code"] == 16 and "WWW-Authenticate" in r.headers
    assert (await api.http.get("/v1/admin/stats", headers=api.h("alice"))).status_code == 403
    assert (await api.http.get("/v1/admin/stats", headers=api.h("root"))).status_code == 200


async def test_other_clients_jobs_are_not_found(api):
    r = await api.http.post(
        "/v1/jobs", json={"payload": {"service": "echo"}}, headers=api.h("alice")
    )
    job_id = r.json()["job_id"]
    for method, path in [
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/result"),
        ("POST", f"/v1/jobs/{job_id}/cancel"),
        ("GET", f"/v1/jobs/{job_id}/watch"),
    ]:
        resp = await api.http.request(
            method, path, headers=api.h("bob"), json={} if method == "POST" else None
        )
        assert resp.status_code == 404, (path, resp.text)
    assert (await api.http.get("/v1/jobs", headers=api.h("bob"))).json()["jobs"] == []
    admin = await api.http.get("/v1/admin/jobs?client_id=alice", headers=api.h("root"))
    assert [j["job_id"] for j in admin.json()["jobs"]] == [job_id]


async def test_miner_acts_only_on_its_own_leases(api):
    m1 = await StreamMiner(api.app.grpc_target, KEYS["miner"]["m1"], caps()).start()
    r = await api.http.post(
        "/v1/jobs", json={"payload": {"service": "echo"}}, headers=api.h("alice")
    )
    a = (await m1.next("assignment")).assignment
    body = {"lease_id": a.lease_id, "result": {"inline": {"stolen": True}}}
    stolen = await api.http.post(
        f"/v1/miners/{r.json()['job_id']}/result", json=body, headers=api.h("m2")
    )
    assert stolen.status_code == 400 and "stale_lease" in stolen.text
    failed = await api.http.post(
        f"/v1/miners/{a.job.job_id}/fail",
        json={"lease_id": a.lease_id, "code": "x"},
        headers=api.h("m2"),
    )
    assert failed.status_code == 400
    m1.result(a, {"mine": True})
    assert (await m1.next("ack")).ack.accepted
    await m1.close()
