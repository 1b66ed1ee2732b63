"""core.server: health + reflection with a real client, keepalive options, phased shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import grpc
import grpc.aio
import pytest
from aitbc.coordinator.v1 import job_pb2 as job_pb
from aitbc.coordinator.v1 import job_service_pb2 as jobs_pb
from aitbc.coordinator.v1 import job_service_pb2_grpc as jobs_grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from core.context import Principal, current_principal
from core.interceptors import ServerPipeline
from core.server import (
    RunningServer,
    ServerConfig,
    ServiceBinding,
    create_server,
    serve_until_signal,
)

JOBS = "aitbc.coordinator.v1.JobService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class FakeJobs(jobs_grpc.JobServiceServicer):
    """GetJob answers at once, except job "slow", which waits until released."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.seen: list[str] = []

    async def GetJob(self, request: jobs_pb.GetJobRequest, context: grpc.aio.ServicerContext):
        self.seen.append(request.job_id)
        if request.job_id == "slow":
            self.started.set()
            await self.release.wait()
        return jobs_pb.GetJobResponse(job=job_pb.Job(job_id=request.job_id))


CONFIG = ServerConfig(grpc_port=0, grpc_shutdown_grace_s=30.0)


@pytest.fixture
async def served():
    jobs = FakeJobs()
    running = await create_server(
        [ServiceBinding(JOBS, jobs_grpc.add_JobServiceServicer_to_server, jobs)],
        config=CONFIG,
        interceptor=ServerPipeline(),
    )
    yield running, jobs
    jobs.release.set()
    await running.shutdown(grace_s=0)


def _list_services(port: int) -> tuple[list[str], list[str]]:
    """Blocking reflection client (run in a thread): service names and JobService methods."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = list(db.get_services())
        pool = DescriptorPool(db)
        methods = [m.name for m in pool.FindServiceByName(JOBS).methods]
    return services, methods


async def test_reflection_lists_services_and_health_is_serving(served):
    running, _ = served
    assert running.port > 0
    services, methods = await asyncio.to_thread(_list_services, running.port)
    assert sorted(services) == sorted(
        [JOBS, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"]
    )
    assert "GetJob" in methods and "WatchJob" in methods

    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", JOBS):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        reply = await jobs_grpc.JobServiceStub(channel).GetJob(jobs_pb.GetJobRequest(job_id="j1"))
        assert reply.job.job_id == "j1"


async def test_shutdown_phases_drain_in_flight_and_refuse_new_calls(served, caplog):
    caplog.set_level(logging.INFO, logger="aitbc.server")
    running, jobs = served
    order: list[str] = []
    draining = asyncio.Event()
    running.on_shutdown(lambda: order.append("close-first-registered"))

    async def close_db() -> None:
        order.append("close-last-registered")

    running.on_shutdown(close_db)

    def boom() -> None:
        raise RuntimeError("a failing hook must not stop the others")

    running.on_shutdown(boom)
    running.on_shutdown(lambda: draining.set() or order.append("drain"), phase="drain")

    target = f"127.0.0.1:{running.port}"
    async with grpc.aio.insecure_channel(target) as channel:
        slow = asyncio.ensure_future(
            jobs_grpc.JobServiceStub(channel).GetJob(jobs_pb.GetJobRequest(job_id="slow"))
        )
        await jobs.started.wait()
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=JOBS)
        )
        assert (await watch.read()).status == SERVING

        shutdown = running.shutdown()
        assert running.shutdown() is shutdown  # idempotent
        assert (await watch.read()).status == NOT_SERVING  # phase 1 before refusing calls
        watch.cancel()
        await draining.wait()  # phase 2 started: new calls are refused

        async with grpc.aio.insecure_channel(target) as fresh:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await jobs_grpc.JobServiceStub(fresh).GetJob(
                    jobs_pb.GetJobRequest(job_id="late"), timeout=5
                )
            # Refused: normally UNAVAILABLE; CANCELLED when the connection raced the
            # listener's shutdown. Either way the handler never saw it.
            assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        assert jobs.seen == ["slow"]
        assert not slow.done()

        jobs.release.set()
        reply = await slow  # the in-flight call completes within the grace period
        assert reply.job.job_id == "slow"
        await shutdown

    assert order == ["drain", "close-last-registered", "close-first-registered"]
    phases = [
        r.phase
        for r in caplog.records
        if hasattr(r, "phase") and r.msg.startswith("shutdown phase")
    ]
    assert phases == ["not-serving", "drain", "close"]
    assert any(r.msg == "shutdown hook failed" for r in caplog.records)
    assert running.wait_closed  # closed event set
    await asyncio.wait_for(running.wait_closed(), 1)


async def test_grace_expiry_cancels_stuck_calls():
    jobs = FakeJobs()
    running = await create_server(
        [ServiceBinding(JOBS, jobs_grpc.add_JobServiceServicer_to_server, jobs)],
        config=ServerConfig(grpc_port=0, grpc_shutdown_grace_s=0.2),
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        slow = asyncio.ensure_future(
            jobs_grpc.JobServiceStub(channel).GetJob(jobs_pb.GetJobRequest(job_id="slow"))
        )
        await jobs.started.wait()
        await running.shutdown()  # never released: cut off when the grace period ends
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await slow
        assert err.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)


async def test_serve_until_signal_shuts_down_on_sigterm():
    running = await create_server([], config=ServerConfig(grpc_port=0))
    closed: list[str] = []
    running.on_shutdown(lambda: closed.append("hook"))
    served = asyncio.ensure_future(serve_until_signal(running))
    await asyncio.sleep(0)  # let it install the handlers
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(served, 10)
    assert closed == ["hook"]
    # Handlers are removed again: the default disposition is back.
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.default_int_handler)


async def test_second_signal_cuts_the_grace_period_short():
    jobs = FakeJobs()
    running = await create_server(
        [ServiceBinding(JOBS, jobs_grpc.add_JobServiceServicer_to_server, jobs)],
        config=ServerConfig(grpc_port=0, grpc_shutdown_grace_s=600),
    )
    draining = asyncio.Event()
    running.on_shutdown(draining.set, phase="drain")
    served = asyncio.ensure_future(serve_until_signal(running, signals=(signal.SIGUSR1,)))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stuck = asyncio.ensure_future(
            jobs_grpc.JobServiceStub(channel).GetJob(jobs_pb.GetJobRequest(job_id="slow"))
        )
        await jobs.started.wait()
        os.kill(os.getpid(), signal.SIGUSR1)
        await draining.wait()  # first signal: graceful, the stuck call keeps running
        assert not stuck.done()
        os.kill(os.getpid(), signal.SIGUSR1)  # second signal: in-flight calls are cancelled
        await asyncio.wait_for(served, 10)
        with pytest.raises(grpc.aio.AioRpcError):
            await stuck


async def test_bind_failure_and_duplicate_services():
    first = await create_server([], config=ServerConfig(grpc_port=0))
    try:
        with pytest.raises(OSError, match="cannot bind"):
            await create_server([], config=ServerConfig(grpc_port=first.port))
    finally:
        await first.shutdown(grace_s=0)
    binding = ServiceBinding(JOBS, jobs_grpc.add_JobServiceServicer_to_server, FakeJobs())
    with pytest.raises(ValueError, match="twice"):
        await create_server([binding, binding], config=CONFIG)


def test_channel_options_carry_keepalive_and_limits():
    opts = dict(
        ServerConfig(grpc_max_message_bytes=1 << 20, grpc_keepalive_time_s=15).channel_options()
    )
    assert (
        opts["grpc.max_send_message_length"] == opts["grpc.max_receive_message_length"] == 1 << 20
    )
    assert opts["grpc.so_reuseport"] == 0
    assert opts["grpc.keepalive_time_ms"] == 15000
    assert opts["grpc.keepalive_permit_without_calls"] == 1
    assert opts["grpc.http2.min_ping_interval_without_data_ms"] == 10000


async def test_max_message_size_is_enforced():
    jobs = FakeJobs()
    running: RunningServer = await create_server(
        [ServiceBinding(JOBS, jobs_grpc.add_JobServiceServicer_to_server, jobs)],
        config=ServerConfig(grpc_port=0, grpc_max_message_bytes=4096),
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await jobs_grpc.JobServiceStub(channel).GetJob(
                    jobs_pb.GetJobRequest(job_id="x" * 10_000)
                )
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await running.shutdown(grace_s=0)


class GatedJobs(jobs_grpc.JobServiceServicer):
    """GetJob answers once `n` calls are inside the handler together."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.inside = 0
        self.all_in = asyncio.Event()
        self.callers: list[str] = []

    async def GetJob(self, request: jobs_pb.GetJobRequest, context: grpc.aio.ServicerContext):
        self.callers.append(current_principal().id)  # the interceptor ran for this call
        self.inside += 1
        if self.inside >= self.n:
            self.all_in.set()
        await self.all_in.wait()
        return jobs_pb.GetJobResponse(job=job_pb.Job(job_id=request.job_id))


class _Anyone:
    async def authenticate(self, method, metadata):
        return Principal(id=metadata.get("x-api-key", "anonymous"), role="client", key_id="k")


async def test_extra_accept_loops_take_calls_through_the_interceptors():
    ahead, n = 8, 9
    jobs = GatedJobs(n)
    running = await create_server(
        [ServiceBinding(JOBS, jobs_grpc.add_JobServiceServicer_to_server, jobs)],
        config=ServerConfig(grpc_port=0, grpc_accept_ahead=ahead),
        interceptor=ServerPipeline(authenticator=_Anyone()),
    )
    try:
        accept = running.accept
        assert accept is not None
        # Every registered method (the JobService's, health's) has `ahead` more requests out.
        methods = len(jobs_pb.DESCRIPTOR.services_by_name["JobService"].methods)
        assert accept.loops >= ahead * methods > 0 and accept.loops % ahead == 0
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = jobs_grpc.JobServiceStub(channel)
            calls = [
                stub.GetJob(jobs_pb.GetJobRequest(job_id=f"j{i}"), metadata=(("x-api-key", "c"),))
                for i in range(n)
            ]
            await asyncio.wait_for(jobs.all_in.wait(), 10)
            # Taken by the extra loops (grpc's own loop holds one request per method).
            assert len(accept._calls) >= n - 1
            replies = await asyncio.gather(*calls)
        assert sorted(r.job.job_id for r in replies) == sorted(f"j{i}" for i in range(n))
        assert jobs.callers == ["c"] * n
    finally:
        await running.shutdown(grace_s=0)
    assert running.accept.loops == 0  # ended with the server


async def test_no_extra_accept_loops_when_turned_off():
    jobs = GatedJobs(3)
    running = await create_server(
        [ServiceBinding(JOBS, jobs_grpc.add_JobServiceServicer_to_server, jobs)],
        config=ServerConfig(grpc_port=0, grpc_accept_ahead=0),
        interceptor=ServerPipeline(authenticator=_Anyone()),
    )
    try:
        assert running.accept is not None and running.accept.loops == 0
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = jobs_grpc.JobServiceStub(channel)
            replies = await asyncio.gather(
                *(stub.GetJob(jobs_pb.GetJobRequest(job_id=f"j{i}")) for i in range(3))
            )
        assert len(replies) == 3
    finally:
        await running.shutdown(grace_s=0)
