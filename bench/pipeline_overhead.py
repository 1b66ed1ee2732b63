"""Per-call cost of core.interceptors.ServerPipeline: in-process and over a loopback channel.

Run: .venv/bin/python bench/pipeline_overhead.py [calls]
Prints a comparison (bare handler vs. pipeline), not a verdict.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path[:0] = [
    str(Path(__file__).resolve().parent.parent),
    str(Path(__file__).resolve().parent.parent / "gen"),
]

import grpc  # noqa: E402
import grpc.aio  # noqa: E402
from aitbc.coordinator.v1 import job_service_pb2 as jobs_pb  # noqa: E402
from aitbc.coordinator.v1 import job_service_pb2_grpc as jobs_grpc  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from core.context import Principal  # noqa: E402
from core.interceptors import GrpcMetrics, ServerPipeline  # noqa: E402
from core.server import ServerConfig, ServiceBinding, create_server  # noqa: E402

METHOD = "/aitbc.coordinator.v1.JobService/GetJob"
PRINCIPAL = Principal("c1", "client", "k1")


class Jobs(jobs_grpc.JobServiceServicer):
    async def GetJob(self, request, context):
        return jobs_pb.GetJobResponse()


class Auth:
    async def authenticate(self, method, metadata):
        return PRINCIPAL


class Limiter:
    async def check(self, principal, method):
        return None


class FakeContext:
    """Just enough of grpc.aio.ServicerContext for the pipeline's happy path."""

    def invocation_metadata(self):
        return (("user-agent", "bench"), ("x-api-key", "k"))

    async def send_initial_metadata(self, md):
        return None

    def code(self):
        return None


def _full_pipeline() -> ServerPipeline:
    return ServerPipeline(
        authenticator=Auth(), rate_limiter=Limiter(), metrics=GrpcMetrics(CollectorRegistry())
    )


async def in_process(calls: int) -> None:
    servicer, ctx, req = Jobs(), FakeContext(), jobs_pb.GetJobRequest()
    handler = grpc.unary_unary_rpc_method_handler(servicer.GetJob)

    async def cont(_):
        return handler

    class Details:
        method, invocation_metadata = METHOD, ()

    variants = {
        "bare handler": servicer.GetJob,
        "pipeline (ids+errors)": (
            await ServerPipeline().intercept_service(cont, Details)
        ).unary_unary,
        "pipeline (+auth+limit+metrics)": (
            await _full_pipeline().intercept_service(cont, Details)
        ).unary_unary,
    }
    base = None
    for name, fn in variants.items():
        for _ in range(1000):
            await fn(req, ctx)
        start = time.perf_counter()
        for _ in range(calls):
            await fn(req, ctx)
        per_call = (time.perf_counter() - start) / calls * 1e6
        base = per_call if base is None else base
        print(f"  in-process  {name:<32} {per_call:7.2f} us/call  (+{per_call - base:5.2f})")


async def loopback(calls: int, concurrency: int = 32) -> None:
    base = None
    for name, pipeline in (("no interceptor", None), ("full pipeline", _full_pipeline())):
        running = await create_server(
            [
                ServiceBinding(
                    "aitbc.coordinator.v1.JobService",
                    jobs_grpc.add_JobServiceServicer_to_server,
                    Jobs(),
                )
            ],
            config=ServerConfig(grpc_port=0),
            interceptor=pipeline,
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = jobs_grpc.JobServiceStub(channel)

            async def worker(n: int, stub=stub) -> None:
                for _ in range(n):
                    await stub.GetJob(jobs_pb.GetJobRequest(), metadata=(("x-api-key", "k"),))

            await worker(200)
            start = time.perf_counter()
            await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
            elapsed = time.perf_counter() - start
        await running.shutdown(grace_s=0)
        rate = (calls // concurrency * concurrency) / elapsed
        per_call = 1e6 / rate
        base = per_call if base is None else base
        print(
            f"  loopback    {name:<32} {rate:7.0f} calls/s {per_call:6.1f} us/call (+{per_call - base:5.1f})"
        )


async def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    print(f"ServerPipeline overhead, {calls} unary calls (client and server share one core here)")
    await in_process(calls)
    await loopback(calls)


if __name__ == "__main__":
    asyncio.run(main())
