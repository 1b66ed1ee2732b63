"""Statements compiled once, run in rounds on the raw DBAPI connection (pipelined on PostgreSQL).

Profiling the group-commit writer showed two costs: SQLAlchemy's per-execute machinery (cache
lookup, parameter processing, result wrapping) at about 2/3 of the writer's CPU on SQLite, and on
PostgreSQL one network round trip per statement. So the writer compiles its fixed statements
once and sends a whole round of them at a time: psycopg's pipeline mode puts every statement of
the round on the wire before reading any result (one round trip per round, not per statement);
sqlite3 simply runs them in order. Transactions, savepoints and reads stay with SQLAlchemy, and
driver errors are wrapped into SQLAlchemy's exception classes (a dropped connection is
invalidated), so callers see the same errors either way.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement


class Prepared:
    def __init__(self, stmt: ClauseElement, dialect: Dialect):
        compiled = stmt.compile(dialect=dialect)
        self.sql = str(compiled)
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


Step = tuple[Prepared, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class StepResult:
    rowcount: int
    rows: list[dict[str, Any]]


def run_steps(conn: Connection, steps: Sequence[Step]) -> list[StepResult]:
    """Run steps in order inside conn's current transaction; one round trip on PostgreSQL."""
    dialect = conn.dialect
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    cursors: list[Any] = []
    current: Step | None = None
    pipelined = dialect.name == "postgresql" and len(steps) > 1
    try:
        if pipelined:
            with dbapi_conn.pipeline():
                for current in steps:
                    cursors.append(dbapi_conn.cursor())
                    cursors[-1].execute(current[0].sql, current[0].args(current[1]))
        else:
            for current in steps:
                cursors.append(dbapi_conn.cursor())
                cursors[-1].execute(current[0].sql, current[0].args(current[1]))
        return [_result(cur) for cur in cursors]
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, dbapi_conn, cursors[-1] if cursors else None)
        if lost:
            conn.invalidate(exc)
        # A pipeline reports its first error only at the sync, so the statement is not known.
        sql, args = "(pipelined statements)", None
        if current is not None and not pipelined:
            sql, args = current[0].sql, current[0].args(current[1])
        raise DBAPIError.instance(
            sql, args, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost, dialect=dialect
        ) from exc
    finally:
        for cur in cursors:
            cur.close()


def _result(cur: Any) -> StepResult:
    if cur.description is None:
        return StepResult(cur.rowcount, [])
    names = [d[0] for d in cur.description]
    return StepResult(cur.rowcount, [dict(zip(names, row, strict=True)) for row in cur.fetchall()])
