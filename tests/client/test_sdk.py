"""The typed SDK against a real coordinator: jobs, watch, errors decoded from rich details."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from aitbc.coordinator.v1 import job_pb2 as job_pb
from google.protobuf import json_format

from client.errors import SdkError
from client.sdk import MAX_BATCH, MAX_STREAM_WINDOW, Client, job_state, miner_status
from coordinator.api.jobs import STREAM_WINDOW
from coordinator.domain.validation import MAX_SUBMIT_BATCH
from core import errors

from .conftest import KEYS


def test_submit_get_list_cancel(coord):
    with coord.client() as c:
        job = c.submit_job(
            "echo",
            {"text": "hi", "n": 3},
            constraints={"region": "eu-west", "priority": 4},
            ttl_seconds=60,
        )
        assert job.job_id.startswith("job_") and job.state == job_pb.JOB_STATE_QUEUED
        assert job.constraints.region == "eu-west" and job.constraints.priority == 4
        assert dict(job.payload.parameters) == {"text": "hi", "n": 3}
        assert c.get_job(job.job_id).job_id == job.job_id
        other = c.submit_job("echo", {})
        canceled = c.cancel_job(other.job_id, "not needed")
        assert canceled.state == job_pb.JOB_STATE_CANCELED
        page, token = c.list_jobs(page_size=1)
        assert [j.job_id for j in page] == [other.job_id] and token  # newest first
        assert [j.job_id for j in c.iter_jobs(page_size=1)] == [other.job_id, job.job_id]
        assert [j.job_id for j in c.list_jobs("canceled")[0]] == [other.job_id]
        assert [j.job_id for j in c.list_jobs(job_pb.JOB_STATE_QUEUED)[0]] == [job.job_id]
        result = c.get_result(job.job_id)
        assert result.state == job_pb.JOB_STATE_QUEUED and not result.HasField("result")
    with coord.client("bob") as c, pytest.raises(SdkError) as info:
        c.get_job(job.job_id)  # another client's job is invisible
    assert info.value.code is grpc.StatusCode.NOT_FOUND


def test_idempotency_key_returns_the_same_job(coord):
    with coord.client() as c:
        first = c.submit_job("echo", {"a": 1}, idempotency_key="k-1")
        again = c.submit_job("echo", {"a": 1}, idempotency_key="k-1")
        assert again.job_id == first.job_id
        with pytest.raises(SdkError) as info:
            c.submit_job("echo", {"a": 2}, idempotency_key="k-1")
    assert info.value.code is grpc.StatusCode.ALREADY_EXISTS


def test_watch_and_wait_follow_a_job_to_completion(coord):
    miner = coord.miner()
    with coord.client() as c:
        job = c.submit_job("echo", {"x": 1})
        a = coord.assignment(miner)
        events = c.watch_job(job.job_id)
        first = next(events)
        assert first[0] == "snapshot" and first[1].state == job_pb.JOB_STATE_ASSIGNED
        coord.call(miner.started, a)
        # "started" alone is written after a short delay; the watch shows it before the result.
        assert next(events)[1].state == job_pb.JOB_STATE_RUNNING
        coord.call(miner.result, a, {"y": 2})
        rest = list(events)
        assert rest[-1][1].state == job_pb.JOB_STATE_COMPLETED
        done = c.wait_job(job.job_id)
        assert done.state == job_pb.JOB_STATE_COMPLETED
        result = c.get_result(job.job_id)
        assert result.result.WhichOneof("kind") == "inline"


def test_submit_with_wait_answers_with_the_finished_job(coord):
    miner = coord.miner()
    with coord.client() as c, ThreadPoolExecutor(1) as pool:
        call = pool.submit(c.submit_job, "echo", {"x": 1}, wait_seconds=20)
        a = coord.assignment(miner)
        coord.call(miner.result, a, {"y": 2})
        job = call.result(timeout=30)
        assert job.state == job_pb.JOB_STATE_COMPLETED
        assert json_format.MessageToDict(job.result.inline) == {"y": 2}
        with pytest.raises(SdkError) as info:
            c.submit_job("echo", {}, wait_seconds=61)
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "wait_seconds" in str(info.value)


def test_the_sdk_batch_limit_is_the_coordinators():
    assert MAX_BATCH == MAX_SUBMIT_BATCH


def test_submit_jobs_answers_each_item(coord):
    with coord.client() as c:
        results = c.submit_jobs(
            [
                {"service": "echo", "parameters": {"i": 0}, "idempotency_key": "b-1"},
                {"service": "nope"},
                {"service": "echo", "constraints": {"priority": 3}, "ttl_seconds": 60},
            ]
        )
        (first, none0), (none1, err), (third, none2) = results
        assert none0 is none1 is none2 is None
        assert first.state == job_pb.JOB_STATE_QUEUED and third.constraints.priority == 3
        assert err.code is grpc.StatusCode.INVALID_ARGUMENT
        assert [f for f, _ in err.field_violations] == ["items[1].request.payload.service"]
        again = c.submit_jobs(
            [{"service": "echo", "parameters": {"i": 0}, "idempotency_key": "b-1"}]
        )
        assert again[0][0].job_id == first.job_id
        with pytest.raises(errors.InvalidArgument, match=r"jobs\[0\]: unknown keys ttl"):
            c.submit_jobs([{"service": "echo", "ttl": 5}])
        with pytest.raises(errors.InvalidArgument, match=r"jobs\[1\]: constraints: unknown"):
            c.submit_jobs([{"service": "echo"}, {"service": "echo", "constraints": {"regoin": 1}}])
        with pytest.raises(SdkError) as info:
            c.submit_jobs([])
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT


def test_the_sdk_stream_window_is_the_coordinators():
    assert MAX_STREAM_WINDOW == STREAM_WINDOW


def test_job_stream_answers_each_submit_through_its_future(coord):
    with coord.client() as c:
        with c.job_stream(window=4) as stream:
            futures = [stream.submit("echo", {"i": i}, idempotency_key=f"s-{i}") for i in range(10)]
            bad = stream.submit("nope", {})
            again = stream.submit("echo", {"i": 3}, idempotency_key="s-3")
            jobs = [f.result(10) for f in futures]
            with pytest.raises(SdkError) as info:
                bad.result(10)
            assert again.result(10).job_id == jobs[3].job_id
        assert [dict(j.payload.parameters) for j in jobs] == [{"i": i} for i in range(10)]
        assert all(j.state == job_pb.JOB_STATE_QUEUED for j in jobs)
        assert len({j.job_id for j in jobs}) == 10
        assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.fields == ["request.payload.service"]
        with pytest.raises(errors.FailedPrecondition, match="closed"):
            stream.submit("echo", {})
        assert len(list(c.iter_jobs())) == 10
        with pytest.raises(errors.InvalidArgument, match="window"):
            c.job_stream(window=MAX_STREAM_WINDOW + 1)


def test_job_stream_waits_for_results_from_threads(coord):
    miner = coord.miner(slots=4)

    def serve(n: int) -> None:
        for _ in range(n):
            a = coord.assignment(miner)
            coord.call(miner.result, a, {"done": a.job.job_id})

    with coord.client() as c, c.job_stream() as stream, ThreadPoolExecutor(4) as pool:
        server = pool.submit(serve, 8)
        futures = list(
            pool.map(lambda i: stream.submit("echo", {"i": i}, wait_seconds=20), range(8))
        )
        jobs = [f.result(20) for f in futures]
        server.result(20)
    assert all(j.state == job_pb.JOB_STATE_COMPLETED for j in jobs)
    assert all(json_format.MessageToDict(j.result.inline) == {"done": j.job_id} for j in jobs)


def test_job_stream_failure_fails_the_unanswered_futures(coord):
    with Client(coord.target, "not-a-key", timeout_s=5) as c:
        stream = c.job_stream()
        # The refusal may come before the submit (which then raises it) or after (its future).
        with pytest.raises(SdkError) as info:
            stream.submit("echo", {}).result(10)
        assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(SdkError):
            stream.submit("echo", {})
        stream.close()


def test_errors_carry_code_reason_and_fields(coord):
    with Client(coord.target, "not-a-key", timeout_s=5) as c, pytest.raises(SdkError) as info:
        c.list_jobs()
    e = info.value
    assert e.code is grpc.StatusCode.UNAUTHENTICATED and e.reason == "unknown_api_key"
    assert str(e) == "unknown API key"
    assert isinstance(e, errors.AitbcError)  # one hierarchy
    with coord.client() as c, pytest.raises(SdkError) as info:
        c.submit_job("no-such-service", {})
    e = info.value
    assert e.code is grpc.StatusCode.INVALID_ARGUMENT
    assert e.fields == ["payload.service"] and "payload.service" in str(e)
    assert "\n" not in str(e)


def test_unreachable_endpoint_is_one_clear_error():
    with Client("127.0.0.1:1", "k", timeout_s=5) as c, pytest.raises(SdkError) as info:
        c.get_job("job_" + "0" * 32)
    assert info.value.code is grpc.StatusCode.UNAVAILABLE
    assert str(info.value).startswith("cannot reach the coordinator at 127.0.0.1:1")


def test_bad_input_is_refused_before_sending():
    c = Client("127.0.0.1:1", "k")
    with pytest.raises(errors.InvalidArgument) as info:
        c.submit_job("echo", {}, constraints={"regoin": "x"})
    assert info.value.violations == [("constraints.regoin", "unknown field")]
    with pytest.raises(errors.InvalidArgument, match="constraints"):
        c.submit_job("echo", {}, constraints={"priority": "high"})
    with pytest.raises(errors.InvalidArgument, match="parameters"):
        c.submit_job("echo", {"blob": b"\x00"})
    with pytest.raises(errors.InvalidArgument, match="service"):
        c.submit_job("", {})
    with pytest.raises(errors.InvalidArgument, match="state: unknown value 'done'"):
        c.list_jobs("done")
    with pytest.raises(errors.InvalidArgument, match="endpoint"):
        Client("")
    c.close()
    assert job_state("JOB_STATE_RUNNING") == job_state("running") == job_pb.JOB_STATE_RUNNING
    assert miner_status("Online") == 1 and job_state(None) == 0


def test_admin_calls_need_the_admin_key(coord):
    coord.miner("m1", slots=2)
    with Client(coord.target, KEYS["root"], timeout_s=10) as admin:
        assert [m.miner_id for m in admin.list_miners("online")] == ["m1"]
        assert admin.list_miners("offline") == []
        assert admin.admin_stats().miners_online == 1
        with coord.client() as c:
            c.submit_job("echo", {})
        jobs, _ = admin.admin_list_jobs(client_id="alice")
        assert len(jobs) == 1
    with coord.client() as c, pytest.raises(SdkError) as info:
        c.admin_stats()
    assert info.value.code is grpc.StatusCode.PERMISSION_DENIED


def test_receipt_of_a_completed_job_verifies_against_published_keys(coord):
    miner = coord.miner()
    with coord.client() as c:
        job = c.submit_job("echo", {"v": 1})
        with pytest.raises(SdkError) as info:
            c.get_receipt(job.job_id)
        assert info.value.code is grpc.StatusCode.NOT_FOUND
        job_id, ack = coord.complete(miner, {"v": 1})
        assert job_id == job.job_id and ack.accepted
        document = c.get_receipt(job_id)
        assert document == ack.receipt.encode()  # the exact signed bytes
        receipts, token = c.list_receipts(job_id)
        assert [r.document.encode() for r in receipts] == [document] and token == ""
        published = c.list_keys()
        assert {k.purpose for k in published.keys} == {"signing", "attestation"}
        result = c.verify_receipt(document)
        assert result.ok, result.problems
        tampered = document.replace(b'"provider":"m1"', b'"provider":"m2"')
        assert "signature: does not verify" in c.verify_receipt(tampered).problems
