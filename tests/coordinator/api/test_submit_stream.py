"""SubmitJobStream: one message per job on a long-lived stream, each taken as SubmitJob takes it."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from aitbc.coordinator.v1 import job_pb2 as job_pb
from aitbc.coordinator.v1 import job_service_pb2 as jobs_pb
from google.protobuf import json_format

from coordinator.api import jobs as jobs_api
from coordinator.app import CoordinatorApp
from coordinator.store.memory import MemoryJobStore
from core.context import Principal

from .conftest import Api, make_config
from .test_flow import submit_request
from .test_submit_batch import listed
from .test_submit_wait import echo_miner


class Stream:
    """A SubmitJobStream call fed from a queue; answers are read by tag."""

    def __init__(self, api, ident: str = "alice"):
        self._out: asyncio.Queue[jobs_pb.SubmitJobStreamRequest | None] = asyncio.Queue()
        self.call = api.jobs.SubmitJobStream(self._requests(), metadata=api.md(ident))
        self._early: list[jobs_pb.SubmitJobStreamAnswer] = []

    async def _requests(self):
        while (msg := await self._out.get()) is not None:
            yield msg

    def send(self, tag: int, request: jobs_pb.SubmitJobRequest, key: str = "") -> None:
        self._out.put_nowait(
            jobs_pb.SubmitJobStreamRequest(tag=tag, request=request, idempotency_key=key)
        )

    def close(self) -> None:
        """Close the client's side: the server answers what it read, then ends the call."""
        self._out.put_nowait(None)

    async def answers(self, n: int, timeout: float = 10) -> dict[int, jobs_pb.SubmitJobsResult]:
        out: dict[int, jobs_pb.SubmitJobsResult] = {}
        async with asyncio.timeout(timeout):
            while len(out) + len(self._early) < n:
                msg = await self.call.read()
                assert msg is not grpc.aio.EOF, await self.call.code()
                assert msg.answers, "a message without answers"
                self._early.extend(msg.answers)
        # Answers that shared a message with the last one asked for wait for the next call.
        while len(out) < n:
            answer = self._early.pop(0)
            assert answer.tag not in out, answer.tag
            out[answer.tag] = answer.result
        return out

    async def end(self) -> grpc.StatusCode:
        async with asyncio.timeout(10):
            assert await self.call.read() is grpc.aio.EOF
            return await self.call.code()


def fields(result: jobs_pb.SubmitJobsResult) -> list[str]:
    return [v.field for v in result.error.field_violations]


async def test_each_message_gets_its_answer_by_tag_and_the_stream_ends_ok(api):
    s = Stream(api)
    too_long = submit_request(n=3)
    too_long.ttl_seconds = 10**8
    s.send(10, submit_request(n=0))
    s.send(11, submit_request("no-such-service"))
    s.send(12, submit_request(n=2), key="x" * 129)
    s.send(13, too_long)
    s.send(2**64 - 1, submit_request(n=4))
    got = await s.answers(5)
    assert {t: r.WhichOneof("outcome") for t, r in got.items()} == {
        10: "job",
        11: "error",
        12: "error",
        13: "error",
        2**64 - 1: "job",
    }
    assert got[10].created and got[10].job.state == job_pb.JOB_STATE_QUEUED
    assert json_format.MessageToDict(got[10].job.payload.parameters) == {"n": 0}
    assert got[11].error.code == "INVALID_ARGUMENT"
    assert fields(got[11]) == ["request.payload.service"]
    assert "request.payload.service" in got[11].error.message
    assert fields(got[12]) == ["idempotency_key"]
    assert fields(got[13]) == ["request.ttl_seconds"]
    # The refused ones created nothing; the others are stored like SubmitJob's.
    stored = {j.job_id for j in await listed(api)}
    assert stored == {got[10].job.job_id, got[2**64 - 1].job.job_id}
    # More after a while on the same stream; closing our side ends the call OK.
    s.send(14, submit_request(n=5))
    assert (await s.answers(1))[14].created
    s.close()
    assert await s.end() == grpc.StatusCode.OK
    assert len(await listed(api)) == 3


async def answered_slowly(api, requests) -> list[jobs_pb.SubmitJobStreamResponse]:
    """Run one stream straight on the servicer with a slow first write: meanwhile the other
    answers get ready, so what follows shows how they are put into messages."""

    class SlowContext:
        def __init__(self) -> None:
            self.messages: list[jobs_pb.SubmitJobStreamResponse] = []

        async def write(self, message) -> None:
            self.messages.append(message)
            if len(self.messages) == 1:
                await asyncio.sleep(0.3)

    context = SlowContext()
    principal = Principal(id="alice", role="client", key_id="alice")
    stream = jobs_api._SubmitStream(api.app.job_servicer, principal, requests, context)
    await asyncio.wait_for(stream.run(), 10)
    return context.messages


async def test_answers_ready_together_share_a_message(api):
    async def requests():
        for tag in range(50):
            yield jobs_pb.SubmitJobStreamRequest(tag=tag, request=submit_request(n=tag))

    messages = await answered_slowly(api, requests())
    sizes = [len(m.answers) for m in messages]
    assert len(sizes) <= 2 and sum(sizes) == 50, sizes
    assert sorted(a.tag for m in messages for a in m.answers) == list(range(50))
    assert all(a.result.created for m in messages for a in m.answers)


async def test_a_response_message_stays_under_its_size_budget(api, monkeypatch):
    monkeypatch.setattr(jobs_api, "ANSWERS_BYTES", 2000)

    async def requests():
        for tag in range(20):  # each answer is over 500 bytes
            yield jobs_pb.SubmitJobStreamRequest(tag=tag, request=submit_request(text="x" * 500))

    messages = await answered_slowly(api, requests())
    assert sorted(a.tag for m in messages for a in m.answers) == list(range(20))
    sizes = [len(m.answers) for m in messages]
    assert max(sizes) > 1 and all(m.ByteSize() <= 2000 + 64 for m in messages), sizes


async def test_idempotency_keys_share_submit_jobs_key_space(api):
    s = Stream(api)
    s.send(1, submit_request(a=1), key="k-1")
    first = (await s.answers(1))[1]
    s.send(2, submit_request(a=1), key="k-1")
    s.send(3, submit_request(a=2), key="k-1")
    again, reused = await _two(s, 2, 3)
    assert first.created and not again.created and again.job.job_id == first.job.job_id
    assert reused.error.code == "ALREADY_EXISTS" and reused.error.reason == "idempotency_key_reused"
    md = (*api.md("alice"), ("idempotency-key", "k-1"))
    single = await api.jobs.SubmitJob(submit_request(a=1), metadata=md)
    assert single.job.job_id == first.job.job_id and not single.created
    s.close()
    assert await s.end() == grpc.StatusCode.OK
    assert len(await listed(api)) == 1


async def _two(s: Stream, a: int, b: int):
    got = await s.answers(2)
    return got[a], got[b]


async def test_waiting_submits_answer_when_done_and_a_busy_tag_is_refused(api):
    s = Stream(api)
    waiting = submit_request(n=1)
    waiting.wait_seconds = 30
    s.send(7, waiting)  # no miner yet: it waits
    await asyncio.sleep(0.2)
    s.send(7, submit_request(n=2))  # the same tag while 7 awaits its answer
    refused = (await s.answers(1))[7]
    assert fields(refused) == ["tag"] and refused.error.code == "INVALID_ARGUMENT"
    assert len(await listed(api)) == 1
    async with echo_miner(api):
        done = (await s.answers(1))[7]
        assert done.job.state == job_pb.JOB_STATE_COMPLETED, done
        assert json_format.MessageToDict(done.job.result.inline) == {"echo": {"n": 1}}
        # Answered: the tag is free again; waits run side by side, answers come as they end.
        for tag in range(20, 30):
            req = submit_request(n=tag)
            req.wait_seconds = 30
            s.send(tag, req)
        s.send(7, submit_request(n=3))
        got = await s.answers(11)
    assert set(got) == {7, *range(20, 30)}
    for tag in range(20, 30):
        assert got[tag].job.state == job_pb.JOB_STATE_COMPLETED
        assert json_format.MessageToDict(got[tag].job.result.inline) == {"echo": {"n": tag}}
    s.close()
    assert await s.end() == grpc.StatusCode.OK


async def test_window_bounds_the_submits_worked_on_at_once(api, monkeypatch):
    monkeypatch.setattr(jobs_api, "STREAM_WINDOW", 2)
    s = Stream(api)
    for tag in (1, 2, 3):
        req = submit_request(n=tag)
        req.wait_seconds = 30
        s.send(tag, req)
    await asyncio.sleep(0.3)
    # Two wait; the third message is not read yet, so nothing was stored for it.
    assert len(await listed(api)) == 2
    async with echo_miner(api):
        got = await s.answers(3)
    assert all(r.job.state == job_pb.JOB_STATE_COMPLETED for r in got.values())
    s.close()
    assert await s.end() == grpc.StatusCode.OK


async def test_each_job_costs_a_submit_token(tmp_path):
    cfg = make_config(tmp_path, rate_limits="submit=0.5/2")
    app = await CoordinatorApp(cfg, store=MemoryJobStore()).start()
    channel = grpc.aio.insecure_channel(app.grpc_target)
    try:
        api = Api(app, channel, None)
        s = Stream(api)
        for tag in (1, 2, 3):
            s.send(tag, submit_request(n=tag))
        got = await s.answers(3)
        assert [got[t].WhichOneof("outcome") for t in (1, 2, 3)] == ["job", "job", "error"]
        limited = got[3].error
        assert limited.code == "RESOURCE_EXHAUSTED" and limited.reason == "rate_limited"
        assert 0 < limited.retry_after_ms <= 2000
        # The stream goes on, and SubmitJob draws from the same bucket.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.jobs.SubmitJob(submit_request(), metadata=api.md("alice"))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await asyncio.sleep(limited.retry_after_ms / 1000 + 0.05)
        s.send(4, submit_request(n=4))
        assert (await s.answers(1))[4].created
        s.close()
        assert await s.end() == grpc.StatusCode.OK
    finally:
        await channel.close()
        await app.stop()


async def test_shutdown_answers_what_was_read_and_ends_unavailable(tmp_path):
    store = MemoryJobStore()
    app = await CoordinatorApp(make_config(tmp_path), store=store).start()
    channel = grpc.aio.insecure_channel(app.grpc_target)
    try:
        api = Api(app, channel, None)
        s = Stream(api)
        waiting = submit_request(n=1)
        waiting.wait_seconds = 60
        s.send(1, waiting)
        s.send(2, submit_request(n=2))
        assert (await s.answers(1))[2].created
        stopping = asyncio.create_task(app.stop(grace_s=30))
        # The waiting submit is answered at once with the job as it is, then the call ends.
        answer = (await s.answers(1, timeout=5))[1]
        assert answer.created and answer.job.state == job_pb.JOB_STATE_QUEUED
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async with asyncio.timeout(5):
                await s.call.read()
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in err.value.details()
        await asyncio.wait_for(stopping, 10)  # not held up for the 30 s grace
        jobs = [await store.get_job(r.job.job_id) for r in (answer,)]
        assert all(j is not None for j in jobs)
    finally:
        await channel.close()
        await app.stop()


async def test_a_client_that_goes_away_loses_nothing_it_was_answered_for(api):
    s = Stream(api)
    waiting = submit_request(n=1)
    waiting.wait_seconds = 60
    s.send(1, waiting)
    s.send(2, submit_request(n=2))
    assert (await s.answers(1))[2].created
    await asyncio.sleep(0.1)
    s.call.cancel()
    await asyncio.sleep(0.2)
    # Both jobs are stored; the cut wait left no task behind in the servicer, and the job
    # that was waiting still runs once a miner comes.
    jobs = {json_format.MessageToDict(j.payload.parameters)["n"]: j for j in await listed(api)}
    assert set(jobs) == {1, 2}
    assert not api.app.job_servicer.orphans
    async with echo_miner(api):
        async with asyncio.timeout(10):
            while True:
                got = await api.jobs.GetJob(
                    jobs_pb.GetJobRequest(job_id=jobs[1].job_id), metadata=api.md("alice")
                )
                if got.job.state == job_pb.JOB_STATE_COMPLETED:
                    break
                await asyncio.sleep(0.05)
