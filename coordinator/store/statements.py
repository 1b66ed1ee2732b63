"""The group-commit writer's statements, compiled once per dialect, and its operation type."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from coordinator.store import codec
from coordinator.store.prepared import Prepared, Step, StepResult
from coordinator.store.tables import jobs, miners, receipts

# A write: yields statements, receives their results, returns its outcome (see groupcommit.py).
Operation = Generator[Step, StepResult, Any]


def _binds(table: sa.Table) -> dict[str, sa.BindParameter[Any]]:
    return {c.name: sa.bindparam(c.name) for c in table.c}


class WriteStatements:
    """The writer's statements, compiled once for the dialect (see prepared.py)."""

    def __init__(self, dialect: sa.Dialect):
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        # ON CONFLICT DO NOTHING + rowcount: a duplicate never aborts the shared transaction.
        self.insert_job = Prepared(
            insert(jobs).values(_binds(jobs)).on_conflict_do_nothing(), dialect
        )
        self.insert_receipt = Prepared(
            insert(receipts).values(_binds(receipts)).on_conflict_do_nothing(), dialect
        )
        cas = (
            jobs.update()
            .where(
                jobs.c.job_id == sa.bindparam("b_job_id"),
                jobs.c.version == sa.bindparam("b_expect"),
            )
            .values({c: sa.bindparam(c) for c in (*codec.MUTABLE_JOB_COLUMNS, "version")})
        )
        self.update_job = Prepared(cas, dialect)
        self.job_by_key = Prepared(
            sa.select(jobs).where(
                jobs.c.client_id == sa.bindparam("client_id"),
                jobs.c.idempotency_key == sa.bindparam("idempotency_key"),
            ),
            dialect,
        )
        new = insert(miners).values(_binds(miners))
        # Counters belong to record_miner_outcome and first_seen_at to the first sighting.
        refreshed = ("capabilities", "mode", "public_key", "last_seen_at")
        self.upsert_miner = Prepared(
            new.on_conflict_do_update(
                index_elements=[miners.c.miner_id], set_={c: new.excluded[c] for c in refreshed}
            ),
            dialect,
        )
        counters = ("completed", "failed", "total_duration_ms")
        self.add_outcome = Prepared(
            new.on_conflict_do_update(
                index_elements=[miners.c.miner_id],
                set_={c: miners.c[c] + new.excluded[c] for c in counters},
            ),
            dialect,
        )


def single(stmt: Prepared, params: dict[str, Any]) -> Operation:
    yield stmt, params
