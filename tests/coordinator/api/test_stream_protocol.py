"""The miner stream's framing through a real server: hello first, batches both ways, bad frames."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from aitbc.coordinator.v1 import job_pb2 as job_pb
from aitbc.coordinator.v1 import job_service_pb2 as jobs_pb
from aitbc.coordinator.v1 import miner_service_pb2 as pb

from coordinator.testing import StreamMiner, caps, inline_result

from .conftest import KEYS


async def submit(api, n: int) -> list[str]:
    ids = []
    for i in range(n):
        req = jobs_pb.SubmitJobRequest(payload=job_pb.JobPayload(service="echo"))
        req.payload.parameters.update({"i": i})
        ids.append((await api.jobs.SubmitJob(req, metadata=api.md("alice"))).job.job_id)
    return ids


async def raw_stream(api, *requests: pb.ConnectRequest) -> str:
    """Send `requests`, read until the coordinator ends the stream; returns its error."""
    call = api.miners.Connect(iter(requests), metadata=(("x-api-key", KEYS["miner"]["m1"]),))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async with asyncio.timeout(10):
            while await call.read() is not grpc.aio.EOF:
                pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value
    return err.value.details()


def hello(**kw) -> pb.ConnectRequest:
    return pb.ConnectRequest(hello=pb.Hello(capabilities=caps(), **kw))


async def test_first_message_must_be_hello(api):
    heartbeat = pb.ConnectRequest(heartbeat=pb.MinerHeartbeat())
    assert "hello" in await raw_stream(api, heartbeat)


async def test_a_second_hello_or_a_nested_batch_ends_the_stream(api):
    assert "unexpected hello" in await raw_stream(api, hello(), hello())
    nested = pb.ConnectRequest(
        batch=pb.ConnectRequestBatch(
            messages=[
                pb.ConnectRequest(heartbeat=pb.MinerHeartbeat()),
                pb.ConnectRequest(batch=pb.ConnectRequestBatch()),
            ]
        )
    )
    details = await raw_stream(api, hello(), nested)
    assert "batch.messages[1]" in details and "unexpected batch" in details


async def test_ready_messages_go_out_as_one_batch(api):
    ids = await submit(api, 20)  # queued first: one dispatch pass assigns them all
    miner = await StreamMiner(api.app.grpc_target, KEYS["miner"]["m1"], caps(slots=20)).start()
    assert miner.welcome.accepts_batches
    got = [(await miner.next("assignment")).assignment for _ in ids]
    assert sorted(a.job.job_id for a in got) == sorted(ids)
    # Claims written by one group commit are queued together and leave as fewer frames.
    assert "batch" in miner.frames and len(miner.frames) < len(ids), miner.frames
    # Results back as one batch: every one is acknowledged.
    miner.send(
        batch=pb.ConnectRequestBatch(
            messages=[
                pb.ConnectRequest(
                    result=pb.JobResultDelivery(
                        lease_id=a.lease_id, job_id=a.job.job_id, result=inline_result({"n": 1})
                    )
                )
                for a in got
            ]
        )
    )
    acks = [(await miner.next("ack")).ack for _ in got]
    assert all(a.accepted for a in acks)
    assert sorted(a.job_id for a in acks) == sorted(ids)
    await miner.close()


async def test_a_miner_without_batches_gets_one_message_per_frame(api):
    ids = await submit(api, 20)
    miner = await StreamMiner(
        api.app.grpc_target, KEYS["miner"]["m1"], caps(slots=20), batches=False
    ).start()
    for _ in ids:
        await miner.next("assignment")
    assert miner.frames == ["assignment"] * 20
    await miner.close()
