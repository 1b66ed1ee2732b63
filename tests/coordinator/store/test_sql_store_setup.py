"""Store setup: migrations (head, idempotent, equal to tables.py), SQLite pragmas, URL checks."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from coordinator.store import migrate
from coordinator.store.sql import SqlJobStore
from coordinator.store.tables import metadata
from core.errors import InvalidArgument


async def test_migrations_reach_head_and_match_tables(store_url, make_store, make_job):
    first = await make_store()
    job = await first.insert_job(make_job())
    await first.close()
    again = await make_store()  # start() on an up-to-date schema is a no-op
    assert await again.get_job(job.job_id) == job
    engine = sa.create_engine(store_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            assert migrate.current_revision(conn) == migrate.head_revision()
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert diff == []


async def test_sqlite_connections_are_durable_and_wal(tmp_path, make_job):
    store = SqlJobStore(f"sqlite:///{tmp_path}/a/b/aitbc.db")
    await store.start()
    try:
        with store._writer_engine.connect() as conn:
            pragmas = {
                p: conn.exec_driver_sql(f"PRAGMA {p}").scalar()
                for p in (
                    "journal_mode",
                    "synchronous",
                    "foreign_keys",
                    "busy_timeout",
                    "temp_store",
                )
            }
        assert pragmas["journal_mode"] == "wal"
        assert pragmas["synchronous"] == 2  # FULL
        assert pragmas["foreign_keys"] == 1
        assert pragmas["busy_timeout"] > 0
        assert pragmas["temp_store"] == 2  # MEMORY: statement journals are no temp files
        with store._reader_engine.connect() as conn, pytest.raises(sa.exc.OperationalError):
            conn.exec_driver_sql("DELETE FROM jobs")  # readers are query_only
    finally:
        await store.close()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "mysql://u@h/db",
        "not a url",
        "sqlite:///x.db?mode=memory",
    ],
)
def test_bad_urls_name_the_field(url):
    with pytest.raises(InvalidArgument) as info:
        SqlJobStore(url)
    assert info.value.violations[0][0] == "url"


def test_bad_sizes_name_the_field(tmp_path):
    with pytest.raises(InvalidArgument, match="batch_max"):
        SqlJobStore(f"sqlite:///{tmp_path}/x.db", batch_max=0)
    with pytest.raises(InvalidArgument, match="pool_size"):
        SqlJobStore(f"sqlite:///{tmp_path}/x.db", pool_size=0)


def test_plain_postgresql_url_uses_psycopg():
    store = SqlJobStore("postgresql://postgres@127.0.0.1:5432/test")
    assert store._url.drivername == "postgresql+psycopg"
