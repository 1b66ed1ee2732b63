"""The store's writes as data: a kind and its rows, run by the writer thread or process.

A Write names one of the operations below and carries only plain values (dicts of column
values), so it can cross into the writer process (writer_process.py) as well as run in the
writer thread. Each operation is a generator for the group-commit writer (groupcommit.py): it
yields statements, receives their results and returns a plain outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from coordinator.store import codec
from coordinator.store.base import ReceiptOrder
from coordinator.store.statements import Operation, WriteStatements
from core.errors import AlreadyExists

# insert_job's outcome when (client_id, idempotency_key) is taken: ("conflict", existing row).
CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class Write:
    kind: str  # a key of OPERATIONS
    args: tuple[Any, ...]
    # Lock-order key: batches sort by it (stable), so two coordinators on one PostgreSQL database
    # take row locks in the same order and rarely deadlock; per-row order is kept.
    order: tuple[Any, ...]


def insert_job(sql: WriteStatements, row: dict[str, Any]) -> Operation:
    """None when inserted; (CONFLICT, row) for a taken idempotency key; AlreadyExists for an id."""
    if (yield sql.insert_job, row).rowcount == 1:
        return None
    if row["idempotency_key"] is not None:
        found = (yield sql.job_by_key, row).rows
        if found:
            return CONFLICT, found[0]
    raise AlreadyExists(f"job {row['job_id']!r} already exists")


def update_job(
    sql: WriteStatements,
    params: dict[str, Any],
    receipt_row: dict[str, Any] | None,
    outcome_row: dict[str, Any] | None,
    order: ReceiptOrder | None = None,
) -> Operation:
    """Compare-and-set of a job, with its receipt and miner outcome: True when it applied, or
    with an `order` the receipt signed for it here (in the writer, off the event loop)."""
    if (yield sql.update_job, params).rowcount != 1:
        return False
    signed = None
    if order is not None:
        signed = order.sign()  # raises: the job's update is undone with it
        receipt_row = codec.receipt_row(signed)
    if receipt_row is not None and (yield sql.insert_receipt, receipt_row).rowcount != 1:
        # Raising (not Rejected) makes the writer undo this job's update too.
        raise AlreadyExists(f"receipt {receipt_row['receipt_id']!r} already exists")
    if outcome_row is not None:
        yield sql.add_outcome, outcome_row
    return True if signed is None else signed


def upsert_miner(sql: WriteStatements, row: dict[str, Any]) -> Operation:
    yield sql.upsert_miner, row


def add_outcome(sql: WriteStatements, row: dict[str, Any]) -> Operation:
    yield sql.add_outcome, row


OPERATIONS: dict[str, Callable[..., Operation]] = {
    "insert_job": insert_job,
    "update_job": update_job,
    "upsert_miner": upsert_miner,
    "add_outcome": add_outcome,
}


def operation(sql: WriteStatements, kind: str, args: tuple[Any, ...]) -> Callable[[], Operation]:
    """The generator factory the batch runner drives for a write of `kind` with `args`."""
    op = OPERATIONS[kind]
    return lambda: op(sql, *args)
