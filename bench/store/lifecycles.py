"""Group-commit benchmark: job lifecycles/s (insert + 3 CAS updates) per backend and batch size.

    .venv/bin/python -m bench.store.lifecycles [--jobs 2000] [--concurrency 200] [--pg URL]

batch_max=1 is one transaction (one fsync) per write, the per-job-transaction baseline.
Prints a comparison table; no verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid

import sqlalchemy as sa

from coordinator.domain.model import Constraints, Job, JobState
from coordinator.store.sql import SqlJobStore
from core.testing import POSTGRES_URL, tcp_reachable


async def run(url: str, *, jobs: int, concurrency: int, batch_max: int) -> tuple[float, int]:
    store = SqlJobStore(url, batch_max=batch_max)
    await store.start()
    todo = iter(range(jobs))

    async def worker() -> None:
        for n in todo:
            job = Job(
                f"b-{uuid.uuid4().hex}",
                f"c{n % 7}",
                "whisper",
                {"n": n},
                Constraints(),
                600,
                60,
                time.time(),
            )
            await store.insert_job(job)
            for state in (JobState.ASSIGNED, JobState.RUNNING, JobState.COMPLETED):
                job.state = state
                assert await store.update_job(job, job.version)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    commits = store.commits
    await store.close()
    return jobs / elapsed, commits


def _pg_schema(base: str) -> tuple[str, sa.Engine, str]:
    schema = f"aitbc_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), admin, schema


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--pg", default=POSTGRES_URL)
    args = ap.parse_args()
    print(f"{args.jobs} lifecycles (4 writes each), {args.concurrency} concurrent coroutines")
    print(
        f"{'backend':<10} {'batch_max':>9} {'lifecycles/s':>13} {'commits':>8} {'writes/commit':>14}"
    )
    backends = ["sqlite"] + (["postgres"] if tcp_reachable("127.0.0.1", 5432) else [])
    for backend in backends:
        for batch_max in (1, 256):
            with tempfile.TemporaryDirectory() as tmp:
                if backend == "sqlite":
                    url, admin, schema = f"sqlite:///{tmp}/bench.db", None, ""
                else:
                    url, admin, schema = _pg_schema(args.pg)
                try:
                    # The unbatched runs are slow: a quarter of the jobs keeps the same per-job rate.
                    n = args.jobs if batch_max > 1 else max(args.jobs // 4, args.concurrency)
                    rate, commits = await run(
                        url, jobs=n, concurrency=args.concurrency, batch_max=batch_max
                    )
                finally:
                    if admin is not None:
                        with admin.connect() as conn:
                            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
                        admin.dispose()
            print(
                f"{backend:<10} {batch_max:>9} {rate:>13.0f} {commits:>8} {4 * n / commits:>14.1f}"
            )


if __name__ == "__main__":
    asyncio.run(main())
