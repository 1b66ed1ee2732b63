"""The Celery side of bench.e2e: one prefork worker node + apply_async load, Redis for both.

run_durable: the same against a Redis server of the benchmark's own that appends every write to
its AOF and fsyncs it before answering (appendfsync always): a broker as durable as the
coordinator's store, whose commits are fsync'd before anyone is told.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import redis
from celery.result import ResultSet

from bench.e2e.aitbc_side import Workload
from bench.e2e.procs import BIN, ROOT, CpuWindow, ServerCpu, clean_env
from bench.e2e.stats import Outcome, percentile


def _done_at(result) -> float:
    when = result.date_done
    if when.tzinfo is None:  # Celery writes UTC; older configs write it naive
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _wait_file(path: Path, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"celery worker did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)


def run(
    w: Workload, *, redis_url: str, name: str = "celery-redis", redis_pid: int | None = None
) -> Outcome:
    """One run; `redis_pid`: the Redis server whose CPU is counted (default: every local
    process named redis-server). Every run has its own keys and deletes them afterwards."""
    from bench.e2e import celery_app

    tag = uuid.uuid4().hex[:10]
    prefix, queue = f"aitbc-bench-{tag}:", f"bench-{tag}"
    app = celery_app.make_app(redis_url, prefix)
    echo = app.tasks[celery_app.ECHO]
    with tempfile.TemporaryDirectory(prefix="aitbc-bench-celery-") as tmp:
        ready, log = Path(tmp) / "ready", Path(tmp) / "worker.log"
        env = clean_env(
            {
                "BENCH_CELERY_REDIS": redis_url,
                "BENCH_CELERY_PREFIX": prefix,
                "BENCH_CELERY_READY": str(ready),
            }
        )
        argv = [
            str(BIN / "celery"),
            "-A",
            "bench.e2e.celery_app",
            "worker",
            "--concurrency",
            str(w.miners),
            "--pool",
            "prefork",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-Q",
            queue,
            "-n",
            f"bench-{tag}@%h",
            "--loglevel",
            "WARNING",
        ]
        with open(log, "wb") as out:
            worker = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=out)
        try:
            _wait_file(ready, worker, 60, log)
            if w.warmup:
                warm = [echo.apply_async(({"n": i},), queue=queue) for i in range(w.warmup)]
                ResultSet(warm, app=app).join_native(timeout=120)
            cpu = CpuWindow(worker.pid, tree=True).start()
            redis_cpu = ServerCpu("redis-server", pids=[redis_pid] if redis_pid else None).start()
            client_cpu = CpuWindow(os.getpid()).start()
            t0 = time.perf_counter()
            sent, results = [], []
            for i in range(w.jobs):
                sent.append(time.time())
                results.append(echo.apply_async(({"n": i, "run": "measured"},), queue=queue))
            t_submitted = time.perf_counter()
            ResultSet(results, app=app).join_native(timeout=600)
            t_done = time.perf_counter()
            cpu.stop()
            redis_cpu.stop()
            client_cpu.stop()
            rtt = []
            for i in range(w.rtt_jobs):
                t = time.perf_counter()
                echo.apply_async(({"n": i, "run": "rtt"},), queue=queue).get(timeout=60)
                rtt.append((time.perf_counter() - t) * 1000)
            rtt.sort()
            lat = sorted((_done_at(r) - s) * 1000 for r, s in zip(results, sent, strict=True))
        finally:
            _stop(worker, 30)
            _cleanup(redis_url, prefix)
            app.close()
    elapsed = t_done - t0
    return Outcome(
        name=name,
        jobs=w.jobs,
        seconds=elapsed,
        jobs_per_s=w.jobs / elapsed,
        p50_ms=percentile(lat, 50),
        p99_ms=percentile(lat, 99),
        send_p50_ms=percentile(lat, 50),
        send_p99_ms=percentile(lat, 99),
        server_cpu_pct=cpu.percent,
        server_cpu_ms_per_job=1000 * cpu.cpu / w.jobs,
        db_cpu_ms_per_job=1000 * redis_cpu.cpu / w.jobs,
        rtt_p50_ms=percentile(rtt, 50),
        rtt_p99_ms=percentile(rtt, 99),
        extra={"submit_s": round(t_submitted - t0, 3), "client_cpu_pct": round(client_cpu.percent)},
    )


def _cleanup(redis_url: str, prefix: str) -> None:
    """Delete every key this run created (queue, bindings, results)."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
    finally:
        client.close()


def run_durable(w: Workload) -> Outcome:
    """run() against a Redis server of its own with appendfsync always."""
    with (
        tempfile.TemporaryDirectory(prefix="aitbc-bench-redis-") as tmp,
        _durable_redis(Path(tmp)) as (url, pid),
    ):
        return run(w, redis_url=url, name="celery-redis-fsync", redis_pid=pid)


@contextlib.contextmanager
def _durable_redis(workdir: Path) -> Iterator[tuple[str, int]]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise FileNotFoundError("redis-server is not installed")
    with socket.socket() as s:  # a free port (released again just before Redis takes it)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [exe, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir)]
    argv += ["--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile", ""]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping() and client.config_get("appendfsync") == {"appendfsync": "always"}:
                    break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {port} did not start") from None
                time.sleep(0.05)
        client.close()
        yield url, proc.pid
    finally:
        _stop(proc, 10)


def _stop(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout_s`."""
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
