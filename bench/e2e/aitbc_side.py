"""The AITBC side of bench.e2e: coordinator process + miner process + gRPC load generator."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
from aitbc.coordinator.v1 import admin_service_pb2 as admin_pb
from aitbc.coordinator.v1 import admin_service_pb2_grpc as admin_grpc
from aitbc.coordinator.v1 import job_pb2 as job_pb
from aitbc.coordinator.v1 import job_service_pb2 as jobs_pb
from aitbc.coordinator.v1 import job_service_pb2_grpc as jobs_grpc

from bench.e2e.procs import (
    ROOT,
    CoordinatorProc,
    CpuWindow,
    ServerCpu,
    clean_env,
    key_list,
    make_keys,
)
from bench.e2e.stats import Outcome, percentile

POLL_S = 0.02


@dataclass(frozen=True)
class Workload:
    jobs: int
    miners: int
    slots: int
    concurrency: int
    warmup: int
    miner_procs: int = 1
    rtt_jobs: int = 200
    # "stream": protocol-level miners (bench.e2e.miner); "agent": real `aitbc-miner` processes
    miner_mode: str = "stream"
    # 0: one SubmitJob per job; N: SubmitJobs calls of N jobs (concurrency / N calls in flight)
    submit_batch: int = 0
    # One SubmitJobStream call, one message per job, `concurrency` awaiting their answer
    submit_stream: bool = False
    # Extra AITBC_* settings for the coordinator (--coordinator-env), e.g. for A/B runs
    coordinator_env: tuple[tuple[str, str], ...] = ()


@contextlib.contextmanager
def database(backend: str, workdir: Path, pg_url: str):
    """A fresh store: a SQLite file, or a new PostgreSQL schema dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{(workdir / 'coordinator.db').resolve()}"
        return
    schema = f"aitbc_bench_{uuid.uuid4().hex[:10]}"
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{pg_url}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def start_miners(target: str, keys: dict[str, str], slots: int, procs: int) -> list:
    """`procs` miner processes sharing the keys; returns once every stream is welcomed."""
    items = list(keys.items())
    out = []
    for i in range(procs):
        part = items[i::procs]
        if not part:
            continue
        p = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.e2e.miner",
            "--target",
            target,
            "--slots",
            str(slots),
            cwd=ROOT,
            env=clean_env({"BENCH_MINER_KEYS": key_list(dict(part))}),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        out.append(p)
    for p in out:
        line = await asyncio.wait_for(p.stdout.readline(), 60)
        if not line.startswith(b"ready"):
            raise RuntimeError(f"miner process did not start: {line!r}")
    return out


async def start_agents(target: str, keys: dict[str, str], slots: int, workdir: Path) -> list:
    """One real `aitbc-miner` process per key (echo only), as a provider would run them."""
    out = []
    for i, secret in enumerate(keys.values()):
        home = workdir / f"agent-{i}"
        home.mkdir(parents=True, exist_ok=True)
        env = clean_env(
            {
                "AITBC_MINER_COORDINATOR": target,
                "AITBC_MINER_API_KEY": secret,
                "AITBC_MINER_KEY_FILE": str(home / "miner.key"),
                "AITBC_MINER_WORK_DIR": str(home / "work"),
                "AITBC_MINER_SLOTS": str(slots),
                "AITBC_MINER_SERVICES": "echo=0.0001",
            }
        )
        log = (home / "agent.log").open("ab")
        out.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "miner.main",
                "run",
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
            )
        )
    return out


async def stop_agents(procs: list) -> list[str]:
    """SIGTERM drains each agent (it exits 0 when it holds nothing)."""
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            p.terminate()
    codes = []
    for p in procs:
        try:
            codes.append(await asyncio.wait_for(p.wait(), 20))
        except TimeoutError:
            p.kill()
            codes.append(await p.wait())
    return [f"agent exit codes {codes}"]


async def stop_miners(procs: list) -> list[str]:
    lines = []
    for p in procs:
        p.stdin.close()
        with contextlib.suppress(TimeoutError):
            lines.append((await asyncio.wait_for(p.stdout.readline(), 20)).decode().strip())
        with contextlib.suppress(ProcessLookupError):
            p.terminate()
        await p.wait()
    return lines


class Client:
    def __init__(self, target: str, client_key: str, admin_key: str):
        self.channel = grpc.aio.insecure_channel(target)
        self.jobs = jobs_grpc.JobServiceStub(self.channel)
        self.admin = admin_grpc.AdminServiceStub(self.channel)
        self.client_md = (("x-api-key", client_key),)
        self.admin_md = (("x-api-key", admin_key),)

    async def online_miners(self) -> int:
        resp = await self.admin.ListMiners(admin_pb.ListMinersRequest(), metadata=self.admin_md)
        return sum(1 for m in resp.miners if m.status == admin_pb.MINER_STATUS_ONLINE)

    async def completed(self) -> int:
        stats = await self.admin.GetStats(admin_pb.GetStatsRequest(), metadata=self.admin_md)
        return stats.jobs_by_state.get("JOB_STATE_COMPLETED", 0)

    async def submit_all(
        self, n: int, concurrency: int, tag: str, batch: int = 0, stream: bool = False
    ) -> dict[str, float]:
        """n jobs, at most `concurrency` in flight: SubmitJob calls, SubmitJobs calls of
        `batch` jobs, or messages on one SubmitJobStream; job id -> client send time."""
        sent: dict[str, float] = {}

        def request(i: int) -> jobs_pb.SubmitJobRequest:
            req = jobs_pb.SubmitJobRequest(
                payload=job_pb.JobPayload(service="echo"), ttl_seconds=600
            )
            req.payload.parameters.update({"n": i, "run": tag})
            return req

        if stream:
            call = self.jobs.SubmitJobStream(metadata=self.client_md)
            window = asyncio.Semaphore(concurrency)
            times: dict[int, float] = {}

            async def send() -> None:
                for i in range(n):
                    await window.acquire()
                    times[i] = time.time()
                    await call.write(jobs_pb.SubmitJobStreamRequest(tag=i, request=request(i)))
                await call.done_writing()

            async def receive() -> None:
                left = n
                while left:
                    message = await call.read()
                    if message is grpc.aio.EOF:
                        raise RuntimeError(f"SubmitJobStream ended early: {await call.code()}")
                    for answer in message.answers:
                        r = answer.result
                        if r.WhichOneof("outcome") != "job":
                            raise RuntimeError(f"a streamed submit was refused: {r.error.message}")
                        sent[r.job.job_id] = times.pop(answer.tag)
                        window.release()
                        left -= 1

            await asyncio.gather(send(), receive())
            if await call.code() != grpc.StatusCode.OK:
                raise RuntimeError(f"SubmitJobStream ended {await call.code()}")
            return sent
        if batch:
            starts = iter(range(0, n, batch))

            async def batches() -> None:
                for start in starts:
                    items = [
                        jobs_pb.SubmitJobsItem(request=request(i))
                        for i in range(start, min(n, start + batch))
                    ]
                    t = time.time()
                    resp = await self.jobs.SubmitJobs(
                        jobs_pb.SubmitJobsRequest(items=items), metadata=self.client_md
                    )
                    for r in resp.results:
                        if r.WhichOneof("outcome") != "job":
                            raise RuntimeError(f"a batch item was refused: {r.error.message}")
                        sent[r.job.job_id] = t

            await asyncio.gather(*(batches() for _ in range(max(1, concurrency // batch))))
            return sent
        todo = iter(range(n))

        async def worker() -> None:
            for i in todo:
                req = request(i)
                t = time.time()
                resp = await self.jobs.SubmitJob(req, metadata=self.client_md)
                sent[resp.job.job_id] = t

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return sent

    async def wait_completed(self, total: int, timeout: float) -> float:
        """Poll GetStats every POLL_S until `total` jobs are COMPLETED; returns that time."""
        deadline = time.perf_counter() + timeout
        while (done := await self.completed()) < total:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"only {done} of {total} jobs completed after {timeout} s")
            await asyncio.sleep(POLL_S)
        return time.perf_counter()

    async def finished(self, ids: set[str]) -> dict[str, tuple[float, float]]:
        """job id -> (created_at, finished_at) of the given COMPLETED jobs (paged ListJobs)."""
        out, token = {}, ""
        while True:
            page = await self.admin.ListJobs(
                admin_pb.AdminServiceListJobsRequest(
                    state=job_pb.JOB_STATE_COMPLETED, page_size=500, page_token=token
                ),
                metadata=self.admin_md,
            )
            for j in page.jobs:
                if j.job_id in ids:
                    out[j.job_id] = (
                        j.created_at.ToMicroseconds() / 1e6,
                        j.finished_at.ToMicroseconds() / 1e6,
                    )
            token = page.next_page_token
            if not token:
                return out

    async def round_trips(self, n: int, stream: bool = False) -> tuple[list[float], list[float]]:
        """n jobs one at a time, each way in turn; ms each, sorted. Watch: SubmitJob, then
        WatchJob until COMPLETED. One call: SubmitJob with wait_seconds, answered COMPLETED.
        With `stream`, each submit is a message on one open SubmitJobStream instead."""
        watched, one_call = [], []
        call = self.jobs.SubmitJobStream(metadata=self.client_md) if stream else None

        async def submit(req: jobs_pb.SubmitJobRequest, tag: int) -> job_pb.Job:
            if call is None:
                return (await self.jobs.SubmitJob(req, metadata=self.client_md)).job
            await call.write(jobs_pb.SubmitJobStreamRequest(tag=tag, request=req))
            message = await call.read()
            if message is grpc.aio.EOF or [
                a.result.WhichOneof("outcome") for a in message.answers
            ] != ["job"]:
                raise RuntimeError(f"SubmitJobStream refused a round trip: {message}")
            return message.answers[0].result.job

        for i in range(n):
            req = jobs_pb.SubmitJobRequest(
                payload=job_pb.JobPayload(service="echo"), ttl_seconds=600
            )
            req.payload.parameters.update({"n": i, "run": "rtt"})
            t = time.perf_counter()
            job = await submit(req, 2 * i)
            watch = self.jobs.WatchJob(
                jobs_pb.WatchJobRequest(job_id=job.job_id), metadata=self.client_md
            )
            async for event in watch:
                if event.job.state == job_pb.JOB_STATE_COMPLETED:
                    break
            watched.append((time.perf_counter() - t) * 1000)
            watch.cancel()
            req.wait_seconds = 30
            t = time.perf_counter()
            job = await submit(req, 2 * i + 1)
            if job.state != job_pb.JOB_STATE_COMPLETED:
                raise RuntimeError(f"SubmitJob with a wait answered {job.state}, not COMPLETED")
            one_call.append((time.perf_counter() - t) * 1000)
        if call is not None:
            await call.done_writing()
            if await call.code() != grpc.StatusCode.OK:
                raise RuntimeError(f"SubmitJobStream ended {await call.code()}")
        return sorted(watched), sorted(one_call)

    async def close(self) -> None:
        await self.channel.close()


async def run(backend: str, w: Workload, *, pg_url: str, profile_dir: Path | None) -> Outcome:
    client_keys, admin_keys = make_keys("bench-client", 1), make_keys("bench-admin", 1)
    miner_keys = make_keys("bench-miner", w.miners)
    with (
        tempfile.TemporaryDirectory(prefix="aitbc-bench-e2e-") as tmp,
        database(backend, Path(tmp), pg_url) as url,
    ):
        coord = CoordinatorProc(
            {
                "AITBC_DATA_DIR": str(Path(tmp) / "data"),
                "AITBC_DATABASE_URL": url,
                "AITBC_CLIENT_KEYS": key_list(client_keys),
                "AITBC_MINER_KEYS": key_list(miner_keys),
                "AITBC_ADMIN_KEYS": key_list(admin_keys),
                "AITBC_LOG_LEVEL": "WARNING",
                # The default per-key limits (submit=100/s) would be the bottleneck measured.
                "AITBC_RATE_LIMITS": "",
                **dict(w.coordinator_env),
            },
            Path(tmp),
            label=backend,
            profile_dir=profile_dir,
        )
        await coord.start()
        miners: list = []
        client = Client(coord.target, *client_keys.values(), *admin_keys.values())
        try:
            if w.miner_mode == "agent":
                miners = await start_agents(coord.target, miner_keys, w.slots, Path(tmp))
                async with asyncio.timeout(60):
                    while await client.online_miners() < w.miners:
                        await asyncio.sleep(POLL_S)
            else:
                miners = await start_miners(coord.target, miner_keys, w.slots, w.miner_procs)
            if w.warmup:
                await client.submit_all(w.warmup, w.concurrency, "warmup")
                await client.wait_completed(w.warmup, timeout=120)
            base = await client.completed()
            coord.profile_on()
            cpu = CpuWindow(coord.pid, tree=True).start()  # with its writer process
            db_cpu = ServerCpu("postgres").start() if backend == "postgres" else None
            others = [CpuWindow(os.getpid()).start(), *(CpuWindow(m.pid).start() for m in miners)]
            t0 = time.perf_counter()
            sent = await client.submit_all(
                w.jobs, w.concurrency, "measured", w.submit_batch, w.submit_stream
            )
            t_submitted = time.perf_counter()
            t_done = await client.wait_completed(base + w.jobs, timeout=600)
            cpu.stop()
            if db_cpu is not None:
                db_cpu.stop()
            coord.profile_off()
            client_cpu, *miner_cpu = (c.stop().percent for c in others)
            times = await client.finished(set(sent))
            rtt, rtt1 = await client.round_trips(w.rtt_jobs, w.submit_stream)
        finally:
            await client.close()
            miner_lines = await (
                stop_agents(miners) if w.miner_mode == "agent" else stop_miners(miners)
            )
            rc = await coord.stop()
        if rc != 0:
            print(f"[{backend}] coordinator exit code {rc}:\n{coord.stderr_tail()}", flush=True)
    if len(times) != w.jobs:
        raise RuntimeError(f"[{backend}] read back {len(times)} of {w.jobs} completed jobs")
    lat = sorted((f - c) * 1000 for c, f in times.values())
    lat_send = sorted((times[j][1] - sent[j]) * 1000 for j in times)
    elapsed = t_done - t0
    return Outcome(
        name=f"aitbc-{backend}"
        + ("-agent" if w.miner_mode == "agent" else "")
        + (f"-batch{w.submit_batch}" if w.submit_batch else "")
        + ("-stream" if w.submit_stream else ""),
        jobs=w.jobs,
        seconds=elapsed,
        jobs_per_s=w.jobs / elapsed,
        p50_ms=percentile(lat, 50),
        p99_ms=percentile(lat, 99),
        send_p50_ms=percentile(lat_send, 50),
        send_p99_ms=percentile(lat_send, 99),
        server_cpu_pct=cpu.percent,
        server_cpu_ms_per_job=1000 * cpu.cpu / w.jobs,
        db_cpu_ms_per_job=1000 * db_cpu.cpu / w.jobs if db_cpu is not None else 0.0,
        rtt_p50_ms=percentile(rtt, 50),
        rtt_p99_ms=percentile(rtt, 99),
        rtt1_p50_ms=percentile(rtt1, 50),
        rtt1_p99_ms=percentile(rtt1, 99),
        extra={
            "submit_s": round(t_submitted - t0, 3),
            "threads": cpu.top_threads(),
            "client_cpu_pct": round(client_cpu),
            "miner_cpu_pct": round(sum(miner_cpu)),
            "miners": miner_lines,
            "profile": str(coord.profile_path) if coord.profile_path else "",
        },
    )
