"""Initial schema: jobs, receipts, miners.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(), nullable=False),
        sa.Column("client_id", sa.String(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("service", sa.String(), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("constraints", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
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
        sa.Column("idempotency_key", sa.String(), nullable=True),
        sa.Column("request_hash", sa.String(), nullable=False),
        sa.Column("unit_price", sa.String(), nullable=True),
        sa.Column("unit_type", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", name="pk_jobs"),
    )
    op.create_index(
        "ix_jobs_dispatch",
        "jobs",
        ["state", sa.text("priority DESC"), "created_at", "job_id"],
    )
    op.create_index(
        "ix_jobs_client_created",
        "jobs",
        ["client_id", sa.text("created_at DESC"), sa.text("job_id DESC")],
    )
    op.create_index("ix_jobs_state_deadline", "jobs", ["state", "deadline_at"])
    op.create_index("ix_jobs_state_finished", "jobs", ["state", "finished_at"])
    op.create_index("ix_jobs_miner_created", "jobs", ["miner_id", "created_at", "job_id"])
    op.create_index(
        "uq_jobs_client_idempotency",
        "jobs",
        ["client_id", "idempotency_key"],
        unique=True,
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )

    op.create_table(
        "receipts",
        sa.Column("receipt_id", sa.String(), nullable=False),
        sa.Column("job_id", sa.String(), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("receipt_id", name="pk_receipts"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], name="fk_receipts_job_id_jobs"),
    )
    op.create_index("ix_receipts_job_created", "receipts", ["job_id", "created_at", "receipt_id"])

    op.create_table(
        "miners",
        sa.Column("miner_id", sa.String(), nullable=False),
        sa.Column("capabilities", sa.Text(), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("public_key", sa.String(), nullable=False),
        sa.Column("first_seen_at", sa.Double(), nullable=False),
        sa.Column("last_seen_at", sa.Double(), nullable=False),
        sa.Column("completed", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.Column("total_duration_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("miner_id", name="pk_miners"),
    )


def downgrade() -> None:
    op.drop_table("miners")
    op.drop_index("ix_receipts_job_created", table_name="receipts")
    op.drop_table("receipts")
    op.drop_index("uq_jobs_client_idempotency", table_name="jobs")
    op.drop_index("ix_jobs_miner_created", table_name="jobs")
    op.drop_index("ix_jobs_state_finished", table_name="jobs")
    op.drop_index("ix_jobs_state_deadline", table_name="jobs")
    op.drop_index("ix_jobs_client_created", table_name="jobs")
    op.drop_index("ix_jobs_dispatch", table_name="jobs")
    op.drop_table("jobs")
