"""How the writer turns one round of steps into statements, without a database."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite

from coordinator.domain.model import MinerRecord
from coordinator.store import codec
from coordinator.store.prepared import _plan
from coordinator.store.statements import WriteStatements


def outcome(miner_id: str, *, completed: bool, ms: int) -> dict:
    row = codec.miner_row(MinerRecord(miner_id=miner_id))
    row.update(completed=int(completed), failed=int(not completed), total_duration_ms=ms)
    return row


def test_one_miners_outcomes_in_a_round_are_added_up_into_one_row():
    for dialect in (postgresql.dialect(), sqlite.dialect()):
        sql = WriteStatements(dialect)
        steps = [
            (sql.add_outcome, outcome("m1", completed=True, ms=5)),
            (sql.add_outcome, outcome("m2", completed=True, ms=3)),
            (sql.add_outcome, outcome("m1", completed=False, ms=0)),
            (sql.add_outcome, outcome("m1", completed=True, ms=7)),
        ]
        units = _plan(steps)
        # Two miners: two rows in all (a statement each on PostgreSQL, one merged on SQLite).
        assert sum(u.rows for u in units) == 2, dialect.name
        assert len(units) == (2 if dialect.name == "postgresql" else 1)
        rows = {r["miner_id"]: r for r in sql.add_outcome.combine([r for _, r in steps])}
        assert (rows["m1"]["completed"], rows["m1"]["failed"]) == (2, 1)
        assert rows["m1"]["total_duration_ms"] == 12
        assert (rows["m2"]["completed"], rows["m2"]["total_duration_ms"]) == (1, 3)
        # The steps' own rows are untouched: a batch run again one at a time sees them as sent.
        assert steps[0][1]["completed"] == 1 and steps[0][1]["total_duration_ms"] == 5


def test_other_statements_keep_one_row_per_step():
    sql = WriteStatements(postgresql.dialect())
    row = {"b_job_id": "j", "b_expect": 1}
    units = _plan([(sql.job_by_key, row), (sql.job_by_key, row)])
    assert [(u.rows, u.own) for u in units] == [(0, 0), (0, 1)]
