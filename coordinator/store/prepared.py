"""Statements compiled once, run in rounds on the raw DBAPI connection (pipelined on PostgreSQL).

Profiling the group-commit writer showed two costs: SQLAlchemy's per-execute machinery (cache
lookup, parameter processing, result wrapping) at about 2/3 of the writer's CPU on SQLite, and on
PostgreSQL one network round trip per statement. So the writer compiles its fixed statements
once and sends a whole round of them at a time: psycopg's pipeline mode puts every statement of
the round on the wire before reading any result (one round trip per round, not per statement);
on SQLite the rows of one statement in a round run as one multi-row statement (run_steps).
Transactions, savepoints and reads stay with SQLAlchemy, and driver errors are wrapped into
SQLAlchemy's exception classes (a dropped connection is invalidated), so callers see the same
errors either way.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement


@dataclass(frozen=True, slots=True)
class Merge:
    """How one statement runs for many rows at once: `sql(n)` is the statement for n
    rows and `row(params)` the positional values of one row, in that statement's order. The
    merged statement must change exactly one row per parameter row when every row applies."""

    sql: Callable[[int], str]
    row: Callable[[Mapping[str, Any]], tuple[Any, ...]]


class Prepared:
    def __init__(
        self,
        stmt: ClauseElement,
        dialect: Dialect,
        *,
        merge: Merge | None = None,
        combine: Callable[[list[Mapping[str, Any]]], list[Mapping[str, Any]]] | None = None,
    ):
        compiled = stmt.compile(dialect=dialect)
        self.sql = str(compiled)
        self.merge = merge
        # Rows of one round folded into fewer rows with the same effect (counter additions);
        # only for statements whose steps' own results nobody reads.
        self.combine = combine
        self._merged_sql: dict[int, str] = {}
        # sqlite3 takes qmark (positional) parameters, psycopg pyformat (a dict).
        self._pick: Callable[[Mapping[str, Any]], Any] | None = None
        if dialect.paramstyle in ("qmark", "numeric", "format"):
            assert compiled.positiontup is not None
            order = tuple(compiled.positiontup)
            if len(order) >= 2:
                self._pick = operator.itemgetter(*order)  # a tuple, built in C
            else:  # itemgetter returns a bare value for one key and refuses none
                self._pick = lambda p: tuple(p[k] for k in order)

    def args(self, params: Mapping[str, Any]) -> Any:
        return params if self._pick is None else self._pick(params)

    def merged_sql(self, n: int) -> str:
        assert self.merge is not None
        sql = self._merged_sql.get(n)
        if sql is None:
            sql = self._merged_sql[n] = self.merge.sql(n)
        return sql


class Unmerged(Exception):
    """A merged statement changed fewer rows than it had: some row did not apply (a conflict
    or a lost compare-and-set). Nothing tells which, so the batch runs again one operation at
    a time (the group-commit writer's isolated mode)."""


Step = tuple[Prepared, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class StepResult:
    rowcount: int
    rows: list[dict[str, Any]]


def run_steps(conn: Connection, steps: Sequence[Step]) -> list[StepResult]:
    """Run steps in order inside conn's current transaction; one round trip on PostgreSQL.

    The rows of one statement that has a Merge (SQLite's, see statements.py) go as one
    multi-row statement per round. sqlite3 lets go of the GIL around every statement, and under
    load the event loop then holds it for up to the switch interval (5 ms) before the writer
    gets it back: measured, the writer spent most of a batch waiting there rather than in the
    database. The steps of one round are independent (one per operation), so running them
    grouped by statement keeps every operation's own order. Rows of a statement with a Combine
    (counter additions) are first added up per key: one row per key and round.
    """
    dialect = conn.dialect
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    cursors: list[Any] = []
    current: Unit | None = None
    pipelined = dialect.name == "postgresql" and len(steps) > 1
    units = _plan(steps) if len(steps) > 1 else [_single(steps[0], 0)]
    try:
        with dbapi_conn.pipeline() if pipelined else contextlib.nullcontext():
            for unit in units:
                cur = dbapi_conn.cursor()
                cursors.append(cur)
                current = unit
                cur.execute(unit.sql, unit.args)
        results: list[StepResult] = [_ONE] * len(steps)
        for unit, cur in zip(units, cursors, strict=True):
            if unit.own is not None:
                results[unit.own] = _result(cur)
            elif cur.rowcount != unit.rows:
                raise Unmerged(f"{cur.rowcount} of {unit.rows} rows applied")
        return results
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, dbapi_conn, cursors[-1] if cursors else None)
        if lost:
            conn.invalidate(exc)
        # A pipeline reports its first error only at the sync, so the statement is not known.
        sql, args = "(pipelined statements)", None
        if current is not None and not pipelined:
            sql, args = current.sql, current.args
        raise DBAPIError.instance(
            sql, args, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost, dialect=dialect
        ) from exc
    finally:
        for cur in cursors:
            cur.close()


# Rows per merged statement: far below SQLite's 32,766 bound parameters at 31 columns a row.
MERGE_ROWS = 200
_ONE = StepResult(1, [])


@dataclass(frozen=True, slots=True)
class Unit:
    """One statement to run: a single step's (`own`, whose result is returned), or the merged
    or combined rows of several, which must change exactly `rows` rows."""

    sql: str
    args: Any
    own: int | None
    rows: int = 0


def _single(step: Step, i: int) -> Unit:
    prep, params = step
    return Unit(prep.sql, prep.args(params), i)


def _plan(steps: Sequence[Step]) -> list[Unit]:
    """Statements to run, in order of first appearance of each prepared statement."""
    groups: dict[int, list[int]] = {}
    for i, (prep, _) in enumerate(steps):
        groups.setdefault(id(prep), []).append(i)
    units: list[Unit] = []
    for idxs in groups.values():
        prep = steps[idxs[0]][0]
        if len(idxs) == 1 or (prep.merge is None and prep.combine is None):
            units.extend(_single(steps[i], i) for i in idxs)
            continue
        rows = [steps[i][1] for i in idxs]
        if prep.combine is not None:
            rows = prep.combine(rows)
        if prep.merge is None:  # combined only: one statement per remaining row
            units.extend(Unit(prep.sql, prep.args(r), None, 1) for r in rows)
            continue
        pick = prep.merge.row
        for start in range(0, len(rows), MERGE_ROWS):
            chunk = rows[start : start + MERGE_ROWS]
            args: list[Any] = []
            for r in chunk:
                args.extend(pick(r))
            units.append(Unit(prep.merged_sql(len(chunk)), args, None, len(chunk)))
    return units


def _result(cur: Any) -> StepResult:
    if cur.description is None:
        return StepResult(cur.rowcount, [])
    names = [d[0] for d in cur.description]
    return StepResult(cur.rowcount, [dict(zip(names, row, strict=True)) for row in cur.fetchall()])
