"""Engines for the store: URL checks, SQLite pragmas (WAL, synchronous=FULL), writer vs readers."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError

from core.errors import InvalidArgument

SQLITE_BUSY_TIMEOUT_MS = 10_000


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidArgument.field("url", f"not a database URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        # psycopg 3 is the only PostgreSQL driver we ship; accept plain postgresql:// too.
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        db = parsed.database or ""
        if db in ("", ":memory:") or parsed.query.get("mode") == "memory":
            raise InvalidArgument.field(
                "url", "in-memory SQLite cannot be shared by the writer and readers; use a file"
            )
        if not parsed.query.get("uri"):
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return parsed
    raise InvalidArgument.field("url", f"unsupported database {backend!r} (sqlite or postgresql)")


def writer_engine(url: URL) -> Engine:
    """The group-commit writer's engine: one connection, explicit transactions."""
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, pool_size=1, max_overflow=0)
        _sqlite_pragmas(engine, writer=True)
        return engine
    # No ping before each batch: the writer runs a batch again on a new connection when the
    # old one turns out to be dropped before COMMIT (see groupcommit.py), so a PostgreSQL
    # restart does not fail the first batch after it.
    return create_engine(url, pool_size=1, max_overflow=0)


def reader_engine(url: URL, pool_size: int) -> Engine:
    """Readers run single statements in autocommit: one round trip, the latest committed data."""
    engine = create_engine(url, pool_size=pool_size, max_overflow=0, isolation_level="AUTOCOMMIT")
    if url.get_backend_name() == "sqlite":
        _sqlite_pragmas(engine, writer=False)
    return engine


def _sqlite_pragmas(engine: Engine, *, writer: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # Take transaction control away from the sqlite3 module (it would BEGIN lazily, and
        # SAVEPOINT would misbehave); SQLAlchemy's "begin" event below emits our BEGIN.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            if writer:
                # WAL: readers never block the writer and vice versa; persistent in the file.
                cur.execute("PRAGMA journal_mode = WAL")
                # Statement journals (a multi-row statement inside a transaction, as every
                # merged statement of a batch is) in memory, not in temp files created,
                # written and unlinked per batch; they never serve crash recovery. bench.store
                # .lifecycles: 3,062-3,752 -> 3,407-4,411 lifecycles/s in three pairs.
                cur.execute("PRAGMA temp_store = MEMORY")
            # FULL: a commit fsyncs the WAL, so an acknowledged write survives power loss.
            cur.execute("PRAGMA synchronous = FULL")
            cur.execute("PRAGMA foreign_keys = ON")
            if not writer:
                cur.execute("PRAGMA query_only = ON")
        finally:
            cur.close()

    if writer:

        @event.listens_for(engine, "begin")
        def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
            # IMMEDIATE takes the write lock up front: a deferred transaction that reads first
            # gets SQLITE_BUSY on upgrade without waiting when another process writes.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
