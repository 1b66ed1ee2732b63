"""Rate limits and HMAC signing through real servers (gRPC here; REST in test_security_rest)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import grpc
import pytest
from aitbc.coordinator.v1 import job_pb2 as job_pb
from aitbc.coordinator.v1 import job_service_pb2 as jobs_pb
from aitbc.coordinator.v1 import job_service_pb2_grpc as jobs_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from coordinator.app import CoordinatorApp
from coordinator.store.memory import MemoryJobStore
from coordinator.testing import CoordinatorProcess
from core.hmac_auth import sign_grpc

from .conftest import KEYS, make_config

SUBMIT = "/aitbc.coordinator.v1.JobService/SubmitJob"
HMAC_SECRET = "alice-hmac-secret-0123456789"


def submit_request(n: int = 0) -> jobs_pb.SubmitJobRequest:
    req = jobs_pb.SubmitJobRequest(payload=job_pb.JobPayload(service="echo"))
    req.payload.parameters.update({"n": n})
    return req


def details(exc: grpc.aio.AioRpcError, cls):
    status = rpc_status.from_call(exc)
    out = []
    for d in status.details if status else ():
        if d.Is(cls.DESCRIPTOR):
            msg = cls()
            d.Unpack(msg)
            out.append(msg)
    return out


async def test_rate_limit_per_key_and_class_over_grpc(tmp_path):
    app = await CoordinatorApp(
        make_config(tmp_path, rate_limits="submit=0.5/3"), store=MemoryJobStore()
    ).start()
    async with grpc.aio.insecure_channel(app.grpc_target) as ch:
        jobs = jobs_grpc.JobServiceStub(ch)
        alice = (("x-api-key", KEYS["client"]["alice"]),)
        for i in range(3):
            await jobs.SubmitJob(submit_request(i), metadata=alice)
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await jobs.SubmitJob(submit_request(9), metadata=alice)
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        (retry,) = details(exc.value, error_details_pb2.RetryInfo)
        assert 1.0 <= retry.retry_delay.ToNanoseconds() / 1e9 <= 2.1
        # another key, and another route class of the same key, have their own buckets
        await jobs.SubmitJob(submit_request(), metadata=(("x-api-key", KEYS["client"]["bob"]),))
        await jobs.ListJobs(jobs_pb.ListJobsRequest(), metadata=alice)
    await app.stop()


@pytest.mark.redis
@pytest.mark.e2e
async def test_rate_limit_shared_by_two_processes_through_redis(tmp_path, redis_url):
    prefix = f"aitbc-test-{uuid.uuid4().hex[:8]}:"
    env = {
        "AITBC_CLIENT_KEYS": f"alice={KEYS['client']['alice']}",
        "AITBC_MINER_KEYS": f"m1={KEYS['miner']['m1']}",
        "AITBC_ADMIN_KEYS": f"root={KEYS['admin']['root']}",
        "AITBC_REDIS_URL": redis_url,
        "AITBC_REDIS_KEY_PREFIX": prefix,
        "AITBC_RATE_LIMITS": "submit=0.1/6",
        "AITBC_LOG_LEVEL": "WARNING",
    }
    procs = [
        await CoordinatorProcess({**env, "AITBC_DATA_DIR": str(tmp_path / n)}).start() for n in "ab"
    ]
    channels = [grpc.aio.insecure_channel(p.grpc_target) for p in procs]
    stubs = [jobs_grpc.JobServiceStub(c) for c in channels]
    alice = (("x-api-key", KEYS["client"]["alice"]),)
    accepted = refused = 0
    for i in range(12):
        try:
            await stubs[i % 2].SubmitJob(submit_request(i), metadata=alice)
            accepted += 1
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            refused += 1
    assert (accepted, refused) == (6, 6)  # one bucket of 6 across both processes
    for c in channels:
        await c.close()
    for p in procs:
        assert await p.terminate() == 0


@pytest.fixture
async def hmac_app(tmp_path):
    cfg = make_config(
        tmp_path,
        client_keys=f"alice={KEYS['client']['alice']}:{HMAC_SECRET},bob={KEYS['client']['bob']}",
    )
    app = await CoordinatorApp(cfg, store=MemoryJobStore()).start()
    async with grpc.aio.insecure_channel(app.grpc_target) as ch:
        yield app, jobs_grpc.JobServiceStub(ch)
    await app.stop()


def signed(request, secret: str = HMAC_SECRET, **kw):
    md = sign_grpc(secret.encode(), SUBMIT, request.SerializeToString(), **kw)
    return (("x-api-key", KEYS["client"]["alice"]), *md)


async def _reason(coro) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await coro
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    (info,) = details(exc.value, error_details_pb2.ErrorInfo)
    return info.reason


async def test_hmac_over_grpc(hmac_app):
    _, jobs = hmac_app
    req = submit_request(1)
    md = signed(req)
    assert (await jobs.SubmitJob(req, metadata=md)).created
    assert await _reason(jobs.SubmitJob(req, metadata=md)) == "replayed_nonce"
    assert (
        await _reason(jobs.SubmitJob(req, metadata=signed(req, "wrong-secret-0123456789")))
        == "bad_signature"
    )
    assert (
        await _reason(jobs.SubmitJob(req, metadata=signed(req, timestamp=int(time.time()) - 301)))
        == "stale_timestamp"
    )
    # Ahead by more than the 300 s window with room to spare: int(time.time()) drops up to a
    # second, so +301 could land inside it (the exact bounds are in tests/core/test_hmac_auth.py).
    assert (
        await _reason(jobs.SubmitJob(req, metadata=signed(req, timestamp=int(time.time()) + 305)))
        == "stale_timestamp"
    )
    assert (
        await _reason(jobs.SubmitJob(submit_request(2), metadata=signed(req))) == "bad_signature"
    )  # tampered body
    assert (
        await _reason(jobs.SubmitJob(req, metadata=(("x-api-key", KEYS["client"]["alice"]),)))
        == "missing_signature"
    )
    # a key without an HMAC secret is not asked to sign
    assert (await jobs.SubmitJob(req, metadata=(("x-api-key", KEYS["client"]["bob"]),))).created


async def test_hmac_required_refuses_keys_without_secret(tmp_path):
    with pytest.raises(ValueError, match="client/bob"):
        await CoordinatorApp(
            make_config(
                tmp_path,
                hmac_required=True,
                client_keys=f"alice={KEYS['client']['alice']}:{HMAC_SECRET},bob={KEYS['client']['bob']}",
            ),
            store=MemoryJobStore(),
        ).start()


async def test_bad_rate_limit_config_names_the_key(tmp_path):
    with pytest.raises(ValueError, match="AITBC_RATE_LIMITS"):
        make_config(tmp_path, rate_limits="submit=fast")
    await asyncio.sleep(0)


@pytest.fixture
async def hmac_rest(tmp_path):
    import httpx

    cfg = make_config(
        tmp_path,
        client_keys=f"alice={KEYS['client']['alice']}:{HMAC_SECRET}",
        rate_limits="submit=0.5/2",
    )
    app = await CoordinatorApp(cfg, store=MemoryJobStore()).start()
    async with httpx.AsyncClient(base_url=app.http_base) as http:
        yield app, http
    await app.stop()


def rest_headers(
    method: str, path: str, body: bytes, *, secret: str = HMAC_SECRET, query: str = "", **kw
):
    from core.hmac_auth import sign_rest

    return {
        "X-Api-Key": KEYS["client"]["alice"],
        "Content-Type": "application/json",
        **sign_rest(secret.encode(), method, path, query, body, **kw),
    }


async def test_hmac_over_rest(hmac_rest):
    _, http = hmac_rest
    body = b'{"payload": {"service": "echo", "parameters": {"n": 1}}}'
    h = rest_headers("POST", "/v1/jobs", body)
    assert (await http.post("/v1/jobs", content=body, headers=h)).status_code == 201

    async def reason(resp) -> str:
        assert resp.status_code == 401, resp.text
        return next(d["reason"] for d in resp.json()["details"] if d["@type"].endswith("ErrorInfo"))

    assert await reason(await http.post("/v1/jobs", content=body, headers=h)) == "replayed_nonce"
    bad = rest_headers("POST", "/v1/jobs", body, secret="wrong-secret-0123456789")
    assert await reason(await http.post("/v1/jobs", content=body, headers=bad)) == "bad_signature"
    stale = rest_headers("POST", "/v1/jobs", body, timestamp=int(time.time()) - 400)
    assert (
        await reason(await http.post("/v1/jobs", content=body, headers=stale)) == "stale_timestamp"
    )
    tampered = rest_headers("POST", "/v1/jobs", body)
    other = b'{"payload": {"service": "echo", "parameters": {"n": 2}}}'
    assert (
        await reason(await http.post("/v1/jobs", content=other, headers=tampered))
        == "bad_signature"
    )
    # a signed GET with a query string
    q = rest_headers("GET", "/v1/jobs", b"", query="page_size=5&state=JOB_STATE_QUEUED")
    r = await http.get("/v1/jobs?page_size=5&state=JOB_STATE_QUEUED", headers=q)
    assert r.status_code == 200 and len(r.json()["jobs"]) == 1
    wrong_query = rest_headers("GET", "/v1/jobs", b"", query="page_size=5")
    assert (
        await reason(await http.get("/v1/jobs?page_size=6", headers=wrong_query)) == "bad_signature"
    )


async def test_rate_limit_over_rest_is_429_with_retry_after(hmac_rest):
    _, http = hmac_rest
    codes = []
    for n in range(3):
        body = f'{{"payload": {{"service": "echo", "parameters": {{"n": {n}}}}}}}'.encode()
        r = await http.post(
            "/v1/jobs", content=body, headers=rest_headers("POST", "/v1/jobs", body)
        )
        codes.append(r.status_code)
    assert codes == [201, 201, 429]
    assert r.json()["code"] == 8 and int(r.headers["Retry-After"]) >= 1


async def test_forged_gateway_metadata_over_grpc_is_ignored(hmac_app):
    """A direct gRPC caller cannot claim the REST form: the signature must cover the gRPC bytes."""
    from core.hmac_auth import sign_rest

    _, jobs = hmac_app
    req = submit_request(5)
    rest_sig = sign_rest(HMAC_SECRET.encode(), "GET", "/v1/jobs", "", b"")
    md = (
        ("x-api-key", KEYS["client"]["alice"]),
        ("x-aitbc-http-method", "GET"),
        ("x-aitbc-http-path", "/v1/jobs"),
        ("x-aitbc-gateway", "guess"),
        *((k.lower(), v) for k, v in rest_sig.items()),
    )
    assert await _reason(jobs.SubmitJob(req, metadata=md)) == "bad_signature"


async def test_hmac_signed_batch_over_rest_and_its_items_cost_tokens(hmac_rest):
    _, http = hmac_rest  # submit=0.5/2: two tokens
    item = {"request": {"payload": {"service": "echo"}}}
    body = json.dumps({"items": [item, item]}).encode()
    path = "/v1/jobs:batchSubmit"
    r = await http.post(path, content=body, headers=rest_headers("POST", path, body))
    assert r.status_code == 200, r.text
    assert [x["created"] for x in r.json()["results"]] == [True, True]
    one = json.dumps({"items": [item]}).encode()
    r = await http.post(path, content=one, headers=rest_headers("POST", path, one))
    assert r.status_code == 429, r.text  # both tokens went to the two jobs
