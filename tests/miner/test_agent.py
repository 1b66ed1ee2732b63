"""The miner agent against a real coordinator: jobs, claims, cancel, drain, reconnect."""

from __future__ import annotations

import asyncio
import json
import os
import socket

import grpc
import pytest
from aitbc.coordinator.v1 import job_pb2 as job_pb
from aitbc.coordinator.v1 import job_service_pb2 as jobs_pb
from aitbc.coordinator.v1 import job_service_pb2_grpc as jobs_grpc

from coordinator.app import CoordinatorApp
from coordinator.store.memory import MemoryJobStore
from coordinator.testing import CoordinatorProcess
from core.receipts import Signer, verify_receipt
from miner.agent import MinerAgent
from miner.config import MinerConfig
from tests.coordinator.api.conftest import KEYS, make_config

ALICE = (("x-api-key", KEYS["client"]["alice"]),)
S = job_pb.JobState


def miner_config(tmp_path, target: str, **kw) -> MinerConfig:
    return MinerConfig(
        coordinator=target,
        api_key=KEYS["miner"]["m1"],
        key_file=tmp_path / "miner.key",
        work_dir=tmp_path / "work",
        services="echo=0.01,sleep=0.01,sha256=0.01",
        heartbeat_interval_s=1,
        **kw,
    )


async def submit(jobs, service: str, **params) -> str:
    req = jobs_pb.SubmitJobRequest(payload=job_pb.JobPayload(service=service))
    req.payload.parameters.update(params)
    # wait_for_ready: a channel to a restarted coordinator may share a subchannel in backoff
    return (await jobs.SubmitJob(req, metadata=ALICE, wait_for_ready=True)).job.job_id


async def wait_state(jobs, job_id: str, *states, timeout: float = 20) -> job_pb.Job:
    async with asyncio.timeout(timeout):
        watch = jobs.WatchJob(
            jobs_pb.WatchJobRequest(job_id=job_id), metadata=ALICE, wait_for_ready=True
        )
        async for ev in watch:
            if ev.job.state in states:
                return ev.job
    raise AssertionError(f"{job_id} never reached {states}")


@pytest.fixture
async def coord(tmp_path):
    app = await CoordinatorApp(make_config(tmp_path / "coord"), store=MemoryJobStore()).start()
    async with grpc.aio.insecure_channel(app.grpc_target) as ch:
        yield app, jobs_grpc.JobServiceStub(ch)
    await app.stop()


async def test_agent_runs_jobs_and_cosigns_receipts(tmp_path, coord):
    app, jobs = coord
    agent = MinerAgent(miner_config(tmp_path, app.grpc_target, slots=2))
    run = asyncio.create_task(agent.run())
    job_id = await submit(jobs, "sha256", mib=2)
    done = await wait_state(jobs, job_id, S.JOB_STATE_COMPLETED, S.JOB_STATE_FAILED)
    assert done.state == S.JOB_STATE_COMPLETED and done.miner_id == "m1", done.error
    doc = app.coordinator.store.receipts[job_id][0].document
    assert json.loads(doc)["metadata"]["miner_claim"]["claim"]["lease_id"]
    result = verify_receipt(
        doc, keys=app.receipt_keys.signing, claim_keys={"m1": agent.signer.public_key}
    )
    assert result.ok, result.problems
    agent.drain()
    await asyncio.wait_for(run, 10)  # drained with nothing held: the agent ends


async def test_cancel_stops_the_running_job(tmp_path, coord):
    app, jobs = coord
    agent = MinerAgent(miner_config(tmp_path, app.grpc_target))
    run = asyncio.create_task(agent.run())
    job_id = await submit(jobs, "sleep", seconds=60)
    await wait_state(jobs, job_id, S.JOB_STATE_RUNNING)
    await jobs.CancelJob(jobs_pb.CancelJobRequest(job_id=job_id), metadata=ALICE)
    async with asyncio.timeout(10):
        while agent.runner.inflight() or agent.leases:
            await asyncio.sleep(0.05)
    assert list((tmp_path / "work").iterdir()) == []  # the job's files are gone
    await agent.stop(cancel=False)
    await asyncio.wait_for(run, 10)


async def test_drain_finishes_held_work_then_exits(tmp_path, coord):
    app, jobs = coord
    agent = MinerAgent(miner_config(tmp_path, app.grpc_target))
    run = asyncio.create_task(agent.run())
    job_id = await submit(jobs, "sleep", seconds=1)
    await wait_state(jobs, job_id, S.JOB_STATE_RUNNING)
    agent.drain()
    later = await submit(jobs, "echo", x=1)
    await asyncio.wait_for(run, 15)
    assert (
        await jobs.GetJob(jobs_pb.GetJobRequest(job_id=job_id), metadata=ALICE)
    ).job.state == S.JOB_STATE_COMPLETED
    assert (
        await jobs.GetJob(jobs_pb.GetJobRequest(job_id=later), metadata=ALICE)
    ).job.state == S.JOB_STATE_QUEUED


async def test_stop_with_cancel_reports_jobs_for_retry(tmp_path, coord):
    app, jobs = coord
    agent = MinerAgent(miner_config(tmp_path, app.grpc_target))
    run = asyncio.create_task(agent.run())
    job_id = await submit(jobs, "sleep", seconds=60)
    await wait_state(jobs, job_id, S.JOB_STATE_RUNNING)
    await agent.stop(cancel=True)
    await asyncio.wait_for(run, 10)
    job = (await jobs.GetJob(jobs_pb.GetJobRequest(job_id=job_id), metadata=ALICE)).job
    assert job.state == S.JOB_STATE_QUEUED and job.attempts[0].reason.startswith("miner_shutdown")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.e2e
async def test_result_finished_while_away_is_delivered_after_reconnect(tmp_path):
    port = free_port()
    env = {
        "AITBC_DATA_DIR": str(tmp_path / "coord"),
        "AITBC_LOG_LEVEL": os.environ.get("AITBC_TEST_CHILD_LOG_LEVEL", "WARNING"),
        "AITBC_CLIENT_KEYS": f"alice={KEYS['client']['alice']}",
        "AITBC_MINER_KEYS": f"m1={KEYS['miner']['m1']}",
        "AITBC_ADMIN_KEYS": f"root={KEYS['admin']['root']}",
    }
    coord = await CoordinatorProcess({**env, "AITBC_GRPC_PORT": str(port)}).start()
    target = f"127.0.0.1:{port}"
    agent = MinerAgent(miner_config(tmp_path, target, reconnect_max_backoff_s=1))
    run = asyncio.create_task(agent.run())
    async with grpc.aio.insecure_channel(target) as ch:
        jobs = jobs_grpc.JobServiceStub(ch)
        job_id = await submit(jobs, "sleep", seconds=2)
        await wait_state(jobs, job_id, S.JOB_STATE_RUNNING)
    coord.kill()  # the coordinator dies while the job runs
    await coord.wait()
    async with asyncio.timeout(10):
        while not agent.pending:  # the job finishes while nobody listens
            await asyncio.sleep(0.05)
    coord = await CoordinatorProcess({**env, "AITBC_GRPC_PORT": str(port)}).start()
    async with grpc.aio.insecure_channel(target) as ch:
        jobs = jobs_grpc.JobServiceStub(ch)
        done = await wait_state(jobs, job_id, S.JOB_STATE_COMPLETED)
        assert done.attempt == 1 and done.miner_id == "m1"
    agent.drain()
    await asyncio.wait_for(run, 10)
    assert await coord.terminate() == 0
    assert Signer  # the agent signs with its own key file
    assert (tmp_path / "miner.key").stat().st_mode & 0o777 == 0o600


def test_miner_env_example_is_current():
    from pathlib import Path

    from core.config import render_env_example

    committed = Path(__file__).resolve().parents[2] / "deploy" / "miner.env.example"
    assert committed.read_text() == render_env_example(MinerConfig, prefix="AITBC_MINER_"), (
        "run: aitbc-miner --print-env-example > deploy/miner.env.example"
    )


def test_bad_miner_settings_name_the_key(tmp_path):
    from core.config import ConfigError, load_config

    for env, key in [
        ({"AITBC_MINER_SLOTS": "0"}, "AITBC_MINER_SLOTS"),
        ({"AITBC_MINER_SERVICES": "ffmpeg=cheap"}, "AITBC_MINER_SERVICES"),
        ({"AITBC_MINER_SLOTZ": "2"}, "AITBC_MINER_SLOTZ"),
    ]:
        with pytest.raises(ConfigError) as exc:
            load_config(MinerConfig, prefix="AITBC_MINER_", env=env, env_file=None)
        assert key in str(exc.value)
