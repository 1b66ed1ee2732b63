"""REST gateway vs direct gRPC: the same unary RPC, same run, loopback only.

Run: .venv/bin/python -m bench.gateway.run [--requests N] [--concurrency 1,16] [--max-seconds S]

Three processes: a grpc.aio server (JobService.GetJob returning a populated Job), the gateway
under uvicorn, and this load generator. Each mode does `--requests` calls (after a warm-up)
with C concurrent workers, stopping early at `--max-seconds`. Prints throughput and p50/p99
latency per mode and the ratio gateway p50 / gRPC p50 (goal <= 1.5). A comparison, not a
verdict. The "raw HTTP" row uses a minimal keep-alive HTTP/1.1 client over asyncio streams:
it shows the gateway's own cost without httpx's client-side CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for p in (ROOT, ROOT / "gen"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

HOST = "127.0.0.1"
JOB_ID = "job-0123456789abcdef"


def _job():
    from aitbc.coordinator.v1 import job_pb2 as job_pb
    from google.protobuf import struct_pb2, timestamp_pb2

    params = struct_pb2.Struct()
    params.update({"model": "whisper-large-v3", "language": "en", "beam_size": 5})
    now = timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=123_000_000)
    return job_pb.Job(
        job_id=JOB_ID,
        client_id="client-1",
        state=job_pb.JOB_STATE_RUNNING,
        payload=job_pb.JobPayload(service="whisper", parameters=params),
        constraints=job_pb.JobConstraints(gpu_names=["RTX 4090"], min_vram_gb=16, region="eu"),
        ttl_seconds=600,
        run_timeout_seconds=1800,
        created_at=now,
        assigned_at=now,
        started_at=now,
        attempt=1,
        miner_id="miner-7",
        progress=job_pb.JobProgress(fraction=0.5, message="halfway", updated_at=now),
    )


def serve_grpc(port_out: mp.Queue) -> None:
    """Child process: the gRPC server."""
    import grpc
    from aitbc.coordinator.v1 import job_service_pb2 as jobs_pb
    from aitbc.coordinator.v1 import job_service_pb2_grpc as jobs_grpc

    reply = jobs_pb.GetJobResponse(job=_job())

    class Jobs(jobs_grpc.JobServiceServicer):
        async def GetJob(self, request, context):
            return reply

    async def main() -> None:
        server = grpc.aio.server()
        jobs_grpc.add_JobServiceServicer_to_server(Jobs(), server)
        port = server.add_insecure_port(f"{HOST}:0")
        await server.start()
        port_out.put(port)
        await server.wait_for_termination()

    asyncio.run(main())


def serve_gateway(grpc_port: int, port_out: mp.Queue) -> None:
    """Child process: the gateway under uvicorn."""
    import uvicorn
    from aitbc.coordinator.v1 import job_service_pb2 as jobs_pb

    from core.gateway import GatewayConfig, create_gateway_app

    app = create_gateway_app(
        [jobs_pb.DESCRIPTOR.services_by_name["JobService"]],
        target=f"{HOST}:{grpc_port}",
        config=GatewayConfig(),
    )
    config = uvicorn.Config(app, host=HOST, port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        port_out.put(server.servers[0].sockets[0].getsockname()[1])
        await task

    asyncio.run(main())


async def measure(
    call: Callable[[], Awaitable[None]], requests: int, concurrency: int, max_s: float
) -> dict:
    warmup = min(200, requests // 10 + 1)
    for _ in range(warmup):
        await call()
    latencies: list[float] = []
    remaining = requests
    deadline = time.perf_counter() + max_s

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            t0 = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "n": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": statistics.median(latencies) * 1e3,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e3,
    }


class RawHttp:
    """The smallest keep-alive HTTP/1.1 GET client: one connection per worker, no parsing
    beyond status line, headers and Content-Length."""

    def __init__(self, port: int, path: str) -> None:
        self.port = port
        self.request = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
        self.pool: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def __call__(self) -> None:
        conn = self.pool.pop() if self.pool else await asyncio.open_connection(HOST, self.port)
        reader, writer = conn
        writer.write(self.request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode(errors="replace"))
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        self.pool.append(conn)

    def close(self) -> None:
        for _, writer in self.pool:
            writer.close()


def cpu_s(pid: int) -> float:
    """User+system CPU seconds of a process (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


async def run(grpc_port: int, http_port: int, args: argparse.Namespace, pids: dict) -> None:
    import grpc
    import httpx
    from aitbc.coordinator.v1 import job_service_pb2 as jobs_pb
    from aitbc.coordinator.v1 import job_service_pb2_grpc as jobs_grpc

    path = f"/v1/jobs/{JOB_ID}"
    print(f"GetJob, {args.requests} calls per row (cap {args.max_seconds:.0f} s), loopback")
    print("ratio = p50 / gRPC-direct p50 at the same concurrency (goal for the gateway <= 1.5)")
    print(
        f"{'mode':<22}{'conc':>5}{'calls':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}"
        f"{'srv cpu':>9}{'gw cpu':>8}{'client':>8}"
    )
    print(f"{'(cpu: ms per call)':<72}{'':>9}{'':>8}{'cpu':>8}")
    async with grpc.aio.insecure_channel(f"{HOST}:{grpc_port}") as channel:
        stub = jobs_grpc.JobServiceStub(channel)
        limits = httpx.Limits(max_keepalive_connections=256, max_connections=256)
        async with httpx.AsyncClient(
            base_url=f"http://{HOST}:{http_port}", limits=limits, trust_env=False
        ) as http:

            async def via_grpc() -> None:
                await stub.GetJob(jobs_pb.GetJobRequest(job_id=JOB_ID))

            async def via_httpx() -> None:
                r = await http.get(path)
                if r.status_code != 200:
                    raise RuntimeError(r.text)

            async def timed(call: Callable[[], Awaitable[None]], c: int) -> dict:
                before = {k: cpu_s(pid) for k, pid in pids.items()}
                own = os.times()
                m = await measure(call, args.requests, c, args.max_seconds)
                for k, pid in pids.items():  # includes the warm-up calls: an upper bound
                    m[k] = (cpu_s(pid) - before[k]) * 1e3 / m["n"]
                now = os.times()
                m["client"] = (now.user + now.system - own.user - own.system) * 1e3 / m["n"]
                return m

            for c in args.concurrency:
                base = await timed(via_grpc, c)
                rows = [("gRPC direct", base), ("gateway (httpx)", await timed(via_httpx, c))]
                raw = RawHttp(http_port, path)  # fresh: uvicorn drops idle keep-alives after 5 s
                rows.append(("gateway (raw HTTP)", await timed(raw, c)))
                raw.close()
                for name, m in rows:
                    ratio = m["p50"] / base["p50"]
                    print(
                        f"{name:<22}{c:>5}{m['n']:>8}{m['rps']:>9.0f}{m['p50']:>9.3f}"
                        f"{m['p99']:>9.3f}{ratio:>7.2f}x{m['server']:>9.3f}{m['gateway']:>8.3f}"
                        f"{m['client']:>8.3f}"
                    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--max-seconds", type=float, default=20.0)
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if args.requests < 1 or any(c < 1 for c in args.concurrency):
        parser.error("--requests and --concurrency must be positive")
    ctx = mp.get_context("spawn")
    ports: mp.Queue = ctx.Queue()
    grpc_proc = ctx.Process(target=serve_grpc, args=(ports,), daemon=True)
    grpc_proc.start()
    grpc_port = ports.get(timeout=30)
    gw_proc = ctx.Process(target=serve_gateway, args=(grpc_port, ports), daemon=True)
    gw_proc.start()
    try:
        http_port = ports.get(timeout=30)
        pids = {"server": grpc_proc.pid, "gateway": gw_proc.pid}
        asyncio.run(run(grpc_port, http_port, args, pids))
    finally:
        for proc in (gw_proc, grpc_proc):
            proc.terminate()
            proc.join(timeout=10)


if __name__ == "__main__":
    main()
