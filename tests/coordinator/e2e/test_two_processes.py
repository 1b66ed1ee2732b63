"""Two coordinator processes on one PostgreSQL database never lease a job twice."""

from __future__ import annotations

import asyncio
import collections
import uuid

import grpc
import psycopg
import pytest
from aitbc.coordinator.v1 import job_pb2 as job_pb
from aitbc.coordinator.v1 import job_service_pb2 as jobs_pb
from aitbc.coordinator.v1 import job_service_pb2_grpc as jobs_grpc

from coordinator.testing import CoordinatorProcess, StreamMiner, caps

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

MINERS = {f"m{i}": f"m{i}-secret-0123456789abcdef" for i in range(6)}
KEYS = {
    "AITBC_CLIENT_KEYS": "alice=alice-secret-0123456789",
    "AITBC_MINER_KEYS": ",".join(f"{k}={v}" for k, v in MINERS.items()),
    "AITBC_ADMIN_KEYS": "root=root-secret-0123456789a",
}
ALICE = (("x-api-key", "alice-secret-0123456789"),)


@pytest.fixture
def pg_schema_url(postgres_url):
    schema = f"aitbc_two_{uuid.uuid4().hex[:10]}"
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{postgres_url}?options=-csearch_path%3D{schema}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def start_two(tmp_path, url: str, **extra: str) -> list[CoordinatorProcess]:
    """Coordinator processes "a" and "b" on one database, picking up each other's jobs fast."""
    procs: list[CoordinatorProcess] = []
    try:
        for name in ("a", "b"):
            env = {
                **KEYS,
                "AITBC_DATA_DIR": str(tmp_path / name),
                "AITBC_DATABASE_URL": url,
                "AITBC_LOG_LEVEL": "WARNING",
                "AITBC_QUEUE_REFILL_INTERVAL_S": "0.1",
                **extra,
            }
            procs.append(await CoordinatorProcess(env).start())
    except BaseException:
        for p in procs:  # the one that did start is not left running
            await p.terminate()
        raise
    return procs


async def test_two_processes_never_double_assign(tmp_path, pg_schema_url):
    procs = await start_two(tmp_path, pg_schema_url)
    assignments: collections.Counter[str] = collections.Counter()
    completed: set[str] = set()
    all_done = asyncio.Event()
    served_by: dict[str, int] = {}  # job id -> index of the process whose miner ran it

    async def run_miner(ident: str, target: str) -> StreamMiner:
        m = await StreamMiner(target, MINERS[ident], caps(slots=3)).start()

        async def loop():
            while True:
                a = (await m.next("assignment", timeout=60)).assignment
                assignments[a.job.job_id] += 1
                served_by[a.job.job_id] = [p.grpc_target for p in procs].index(target)
                await asyncio.sleep(0.02)  # long enough that queued jobs wait for both processes
                m.result(a, {"by": ident})
                completed.add(a.job.job_id)
                if len(completed) == n:
                    all_done.set()

        m.task = asyncio.create_task(loop())  # type: ignore[attr-defined]
        return m

    n = 240
    miners = [await run_miner(ident, procs[i % 2].grpc_target) for i, ident in enumerate(MINERS)]
    channels = [grpc.aio.insecure_channel(p.grpc_target) for p in procs]
    stubs = [jobs_grpc.JobServiceStub(c) for c in channels]
    sem = asyncio.Semaphore(32)

    async def submit(i: int) -> str:
        async with sem:
            req = jobs_pb.SubmitJobRequest(payload=job_pb.JobPayload(service="echo"))
            # Two thirds go to process 0, so its queue is longer than its miners drain at once.
            return (await stubs[0 if i % 3 else 1].SubmitJob(req, metadata=ALICE)).job.job_id

    ids = await asyncio.gather(*(submit(i) for i in range(n)))
    origin = {job_id: 0 if i % 3 else 1 for i, job_id in enumerate(ids)}
    await asyncio.wait_for(all_done.wait(), 60)
    assert set(ids) == completed
    assert max(assignments.values()) == 1, [j for j, c in assignments.items() if c > 1][:5]
    # The processes really competed: jobs submitted to one ran on the other's miners.
    assert any(served_by[j] != origin[j] for j in ids)
    for stub in stubs:  # both processes see every job completed
        for job_id in ids[:20]:
            job = (await stub.GetJob(jobs_pb.GetJobRequest(job_id=job_id), metadata=ALICE)).job
            assert job.state == job_pb.JOB_STATE_COMPLETED and job.attempt == 1
    for m in miners:
        m.task.cancel()
        await m.abort()
    for c in channels:
        await c.close()
    for p in procs:
        assert await p.terminate() == 0


async def test_watch_and_wait_on_one_process_hear_a_job_the_other_ran(tmp_path, pg_schema_url):
    procs = await start_two(tmp_path, pg_schema_url, AITBC_WATCH_POLL_INTERVAL_S="0.1")
    # The only miner is on process b; the client talks to process a.
    miner = await StreamMiner(procs[1].grpc_target, MINERS["m0"], caps(slots=2)).start()

    async def serve() -> None:
        while True:
            a = (await miner.next("assignment", timeout=60)).assignment
            miner.result(a, {"ran_on": "b"})

    task = asyncio.create_task(serve())
    async with grpc.aio.insecure_channel(procs[0].grpc_target) as channel:
        stub = jobs_grpc.JobServiceStub(channel)
        job = (
            await stub.SubmitJob(
                jobs_pb.SubmitJobRequest(payload=job_pb.JobPayload(service="echo")), metadata=ALICE
            )
        ).job
        states = []
        watch = stub.WatchJob(jobs_pb.WatchJobRequest(job_id=job.job_id), metadata=ALICE)
        async for event in watch:
            states.append(event.job.state)
        assert states[0] == job_pb.JOB_STATE_QUEUED and states[-1] == job_pb.JOB_STATE_COMPLETED
        # One call: process a answers with the result process b's miner delivered.
        waited = await stub.SubmitJob(
            jobs_pb.SubmitJobRequest(payload=job_pb.JobPayload(service="echo"), wait_seconds=30),
            metadata=ALICE,
        )
        assert waited.job.state == job_pb.JOB_STATE_COMPLETED
        assert waited.job.miner_id == "m0" and waited.job.result.inline.struct_value
    task.cancel()
    await miner.abort()
    for p in procs:
        assert await p.terminate() == 0
