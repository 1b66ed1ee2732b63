"""SQLAlchemy Core tables of the coordinator store; the migrations under migrations/ create them."""

from __future__ import annotations

import sqlalchemy as sa

# Named constraints so later migrations (and SQLite batch mode) can refer to them.
metadata = sa.MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
    }
)

# JSON lives in TEXT columns, written with compact separators: byte-exact and identical on
# SQLite and PostgreSQL (jsonb would reorder keys), and nothing queries inside it.
# Times are float unix seconds in DOUBLE PRECISION (53-bit mantissa: microseconds for millennia).
# Money (unit_price, max_price) is a decimal string, never a float.
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("job_id", sa.String(), primary_key=True),
    sa.Column("client_id", sa.String(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("service", sa.String(), nullable=False),
    sa.Column("parameters", sa.Text(), nullable=False),
    sa.Column("constraints", sa.Text(), nullable=False),
    # Copied out of constraints so the dispatch index can order by it.
    sa.Column("priority", sa.Integer(), nullable=False),
    # uint32 on the wire: wider than PostgreSQL's int4.
    sa.Column("ttl_s", sa.BigInteger(), nullable=False),
    sa.Column("run_timeout_s", sa.BigInteger(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("assigned_at", sa.Double(), nullable=True),
    sa.Column("started_at", sa.Double(), nullable=True),
    sa.Column("finished_at", sa.Double(), nullable=True),
    sa.Column("deadline_at", sa.Double(), nullable=True),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("miner_id", sa.String(), nullable=False),
    sa.Column("lease_id", sa.String(), nullable=False),
    sa.Column("error_code", sa.String(), nullable=False),
    sa.Column("error_message", sa.Text(), nullable=False),
    sa.Column("result", sa.Text(), nullable=True),
    sa.Column("progress_fraction", sa.Double(), nullable=False),
    sa.Column("progress_message", sa.Text(), nullable=False),
    sa.Column("progress_at", sa.Double(), nullable=True),
    sa.Column("attempts", sa.Text(), nullable=False),
    # NULL when the client sent no key, so the partial unique index ignores those rows.
    sa.Column("idempotency_key", sa.String(), nullable=True),
    sa.Column("request_hash", sa.String(), nullable=False),
    sa.Column("unit_price", sa.String(), nullable=True),
    sa.Column("unit_type", sa.String(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
)

sa.Index(
    "ix_jobs_dispatch",
    jobs.c.state,
    jobs.c.priority.desc(),
    jobs.c.created_at,
    jobs.c.job_id,
)
sa.Index("ix_jobs_client_created", jobs.c.client_id, jobs.c.created_at.desc(), jobs.c.job_id.desc())
sa.Index("ix_jobs_state_deadline", jobs.c.state, jobs.c.deadline_at)
sa.Index("ix_jobs_state_finished", jobs.c.state, jobs.c.finished_at)
sa.Index("ix_jobs_miner_created", jobs.c.miner_id, jobs.c.created_at, jobs.c.job_id)
sa.Index(
    "uq_jobs_client_idempotency",
    jobs.c.client_id,
    jobs.c.idempotency_key,
    unique=True,
    sqlite_where=jobs.c.idempotency_key.is_not(None),
    postgresql_where=jobs.c.idempotency_key.is_not(None),
)

receipts = sa.Table(
    "receipts",
    metadata,
    sa.Column("receipt_id", sa.String(), primary_key=True),
    sa.Column("job_id", sa.String(), sa.ForeignKey("jobs.job_id"), nullable=False),
    sa.Column("key_id", sa.String(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    # The exact signed bytes; never re-serialized.
    sa.Column("document", sa.LargeBinary(), nullable=False),
)
sa.Index("ix_receipts_job_created", receipts.c.job_id, receipts.c.created_at, receipts.c.receipt_id)

miners = sa.Table(
    "miners",
    metadata,
    sa.Column("miner_id", sa.String(), primary_key=True),
    sa.Column("capabilities", sa.Text(), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("public_key", sa.String(), nullable=False),
    sa.Column("first_seen_at", sa.Double(), nullable=False),
    sa.Column("last_seen_at", sa.Double(), nullable=False),
    sa.Column("completed", sa.BigInteger(), nullable=False),
    sa.Column("failed", sa.BigInteger(), nullable=False),
    sa.Column("total_duration_ms", sa.BigInteger(), nullable=False),
)
