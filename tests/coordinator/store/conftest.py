"""Store fixtures: every contract test runs on SQLite (a temp file) and the real PostgreSQL,
each with the writer in a thread and in its own process."""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from coordinator.domain.model import Attempt, Constraints, Job, JobState, ResultRef
from coordinator.store.sql import WRITERS, SqlJobStore

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
_clock = itertools.count()


@pytest.fixture(scope="module")
def pg_schema_url(postgres_url: str) -> Iterator[str]:
    """A fresh schema for this test module, reached through search_path in the URL."""
    schema = f"aitbc_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = sa.make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def _truncate_pg(url: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.exec_driver_sql(
            "DO $$ BEGIN IF to_regclass('jobs') IS NOT NULL THEN "
            "TRUNCATE receipts, jobs, miners; END IF; END $$"
        )
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/data/aitbc.db"  # the parent dir does not exist yet
    url = request.getfixturevalue("pg_schema_url")
    _truncate_pg(url)  # the module shares one schema; each test starts empty
    return url


@pytest.fixture(params=WRITERS)
def writer(request: pytest.FixtureRequest) -> str:
    """Where the group-commit writer runs; a test that needs one parametrizes `writer` itself."""
    return request.param


@pytest.fixture
async def make_store(
    store_url: str, writer: str
) -> AsyncIterator[Callable[..., Awaitable[SqlJobStore]]]:
    """Open (more) stores on the test's database: several stores act as several coordinators."""
    opened: list[SqlJobStore] = []

    async def make(**kw: Any) -> SqlJobStore:
        kw.setdefault("writer", writer)
        s = SqlJobStore(store_url, **kw)
        await s.start()
        opened.append(s)
        return s

    yield make
    for s in opened:
        await s.close()


@pytest.fixture
async def store(make_store: Callable[..., Awaitable[SqlJobStore]]) -> SqlJobStore:
    return await make_store()


def new_job(
    *,
    client_id: str = "client-a",
    created_at: float | None = None,
    priority: int = 0,
    key: str = "",
    state: JobState = JobState.QUEUED,
    **kw: Any,
) -> Job:
    """A minimal job; created_at increases per call unless given."""
    created = created_at if created_at is not None else 1_700_000_000.0 + next(_clock) / 8
    return Job(
        job_id=kw.pop("job_id", f"job-{uuid.uuid4().hex}"),
        client_id=client_id,
        service="whisper",
        parameters={"audio_url": "https://example.com/a.wav"},
        constraints=Constraints(priority=priority),
        ttl_s=600,
        run_timeout_s=60,
        created_at=created,
        state=state,
        idempotency_key=key,
        **kw,
    )


def full_job() -> Job:
    """A job with every field away from its default, values chosen to catch lossy mapping."""
    return Job(
        job_id=f"job-{uuid.uuid4().hex}",
        client_id="client-ü",
        service="stable-diffusion",
        parameters={
            "prompt": "a lighthouse, ünïcødé ✓",
            "steps": 30,
            "cfg": 7.5,
            "tiny": 1e-300,
            "nested": {"list": [1, 2.25, None, True, "x"], "empty": {}},
        },
        constraints=Constraints(
            gpu_names=("A100", "H100"),
            min_vram_gb=40,
            region="eu-west",
            models=("sdxl", "sd15"),
            min_cuda="12.1",
            max_price=Decimal("0.000120"),
            priority=7,
        ),
        ttl_s=4_000_000_000,  # uint32 range: wider than int4
        run_timeout_s=3600,
        created_at=1_700_000_000.123456789,
        state=JobState.RUNNING,
        attempt=2,
        assigned_at=1_700_000_010.1 / 3,
        started_at=1_700_000_011.000001,
        finished_at=None,
        miner_id="miner-1",
        lease_id="lease-2",
        deadline_at=1_700_003_611.7,
        error_code="",
        error_message="",
        result=ResultRef(sha256="ab" * 32, inline={"text": "hi", "n": [1, 2]}),
        progress_fraction=1 / 3,
        progress_message="step 10/30",
        progress_at=1_700_000_020.25,
        attempts=[
            Attempt(1, "miner-0", 1_700_000_001.5, "lease_lost", "heartbeat timeout", 1.7e9 + 0.3),
            Attempt(2, "miner-1", 1_700_000_010.1 / 3),
        ],
        idempotency_key="idem-1",
        request_hash="cd" * 32,
        unit_price=Decimal("0.0100"),
        unit_type="gpu_second",
    )


class WriterGate:
    """Holds a store's writes back, so the next writes pile up into one batch: the writer thread
    is kept inside a batch; the writer process is sent nothing until open()."""

    def __init__(self, store: SqlJobStore):
        self._store = store
        self._entered = threading.Event()
        self._release = threading.Event()
        self.done: asyncio.Future[Any] | None = None
        self.commits = 0 if store._process is not None else 1  # the gate's own batch

    def _run(self) -> Iterator[Any]:
        self._entered.set()
        self._release.wait(30)
        yield from ()  # an operation that runs no statement

    async def close(self) -> None:
        if self._store._process is not None:
            self._store._process.hold()
            return
        assert self._store._writer is not None
        self.done = self._store._writer.submit(self._run, (-1,))
        assert await asyncio.to_thread(self._entered.wait, 30)

    async def open(self) -> None:
        await asyncio.sleep(0)  # let every created task enqueue its write first
        if self._store._process is not None:
            self._store._process.release()
            return
        self._release.set()
        assert self.done is not None
        await self.done


@pytest.fixture
def make_job() -> Callable[..., Job]:
    return new_job


@pytest.fixture
def make_full_job() -> Callable[[], Job]:
    return full_job


@pytest.fixture
def writer_gate() -> Callable[[SqlJobStore], WriterGate]:
    return WriterGate
