"""The group-commit writer's statements, compiled once per dialect, and its operation type."""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Callable, Generator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from coordinator.store import codec
from coordinator.store.prepared import Merge, Prepared, Step, StepResult
from coordinator.store.tables import jobs, miners, receipts

# A write: yields statements, receives their results, returns its outcome (see groupcommit.py).
Operation = Generator[Step, StepResult, Any]


def _binds(table: sa.Table) -> dict[str, sa.BindParameter[Any]]:
    return {c.name: sa.bindparam(c.name) for c in table.c}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _rows(n: int, width: int) -> str:
    one = "(" + ",".join("?" * width) + ")"
    return ",".join([one] * n)


def _insert_merge(table: sa.Table, tail: str) -> Merge:
    """INSERT INTO t (...) VALUES (...),(...) <tail>, for SQLite."""
    cols = [c.name for c in table.c]
    head = f"INSERT INTO {_q(table.name)} ({', '.join(map(_q, cols))}) VALUES "
    pick = operator.itemgetter(*cols)
    return Merge(sql=lambda n: head + _rows(n, len(cols)) + " " + tail, row=pick)


def _cas_merge() -> Merge:
    """The compare-and-set UPDATE of many jobs: UPDATE ... FROM (VALUES ...), for SQLite."""
    keys = ("b_job_id", "b_expect", *codec.MUTABLE_JOB_COLUMNS, "version")
    sets = ", ".join(f"{_q(c)} = v.column{i}" for i, c in enumerate(keys[2:], start=3))
    head = f"UPDATE {_q(jobs.name)} SET {sets} FROM (VALUES "
    where = (
        f") AS v WHERE {_q(jobs.name)}.job_id = v.column1 AND {_q(jobs.name)}.version = v.column2"
    )
    return Merge(sql=lambda n: head + _rows(n, len(keys)) + where, row=operator.itemgetter(*keys))


def _add_up(
    counters: tuple[str, ...],
) -> Callable[[list[Mapping[str, Any]]], list[Mapping[str, Any]]]:
    """Outcome rows of one round added up per miner (new dicts; the steps' rows stay as sent)."""

    def combine(rows: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            seen = out.get(row["miner_id"])
            if seen is None:
                out[row["miner_id"]] = dict(row)
            else:
                for c in counters:
                    seen[c] += row[c]
        return list(out.values())

    return combine


class WriteStatements:
    """The writer's statements, compiled once for the dialect (see prepared.py)."""

    def __init__(self, dialect: sa.Dialect):
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        # SQLite runs the rows of one round as one statement (prepared.py: run_steps);
        # PostgreSQL pipelines them instead (merged there, measured slower: 204-262 jobs/s
        # against 263-330). Merged as INSERT/UPDATE ... FROM unnest(<one array per column>),
        # 2026-12-04, bench e2e's PostgreSQL stream row in A/B pairs: the prepared UPDATE
        # slower (985-1,065 jobs/s against 1,122-1,200); inserts only, or planned per call,
        # within the noise (899-1,283 against 891-1,188). UPDATE ... FROM needs SQLite 3.33.
        merging = dialect.name == "sqlite" and sqlite3.sqlite_version_info >= (3, 33, 0)
        # ON CONFLICT DO NOTHING + rowcount: a duplicate never aborts the shared transaction.
        self.insert_job = Prepared(
            insert(jobs).values(_binds(jobs)).on_conflict_do_nothing(),
            dialect,
            merge=_insert_merge(jobs, "ON CONFLICT DO NOTHING") if merging else None,
        )
        self.insert_receipt = Prepared(
            insert(receipts).values(_binds(receipts)).on_conflict_do_nothing(),
            dialect,
            merge=_insert_merge(receipts, "ON CONFLICT DO NOTHING") if merging else None,
        )
        cas = (
            jobs.update()
            .where(
                jobs.c.job_id == sa.bindparam("b_job_id"),
                jobs.c.version == sa.bindparam("b_expect"),
            )
            .values({c: sa.bindparam(c) for c in (*codec.MUTABLE_JOB_COLUMNS, "version")})
        )
        self.update_job = Prepared(cas, dialect, merge=_cas_merge() if merging else None)
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
        # One round's outcomes are first added up per miner (_add_up): a batch of completions
        # costs one upsert per miner, not one per job, and the miner's row is changed once.
        added = ", ".join(
            f"{_q(c)} = {_q(miners.name)}.{_q(c)} + excluded.{_q(c)}" for c in counters
        )
        self.add_outcome = Prepared(
            new.on_conflict_do_update(
                index_elements=[miners.c.miner_id],
                set_={c: miners.c[c] + new.excluded[c] for c in counters},
            ),
            dialect,
            merge=(
                _insert_merge(miners, f"ON CONFLICT (miner_id) DO UPDATE SET {added}")
                if merging
                else None
            ),
            combine=_add_up(counters),
        )
