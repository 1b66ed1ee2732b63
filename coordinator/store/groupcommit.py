"""Group commit: one writer runs queued writes in shared transactions, acking after commit.

Callers enqueue an operation and await a future. The writer takes everything queued (up to
batch_max), runs it in one transaction, commits, and only then resolves each future with that
operation's own outcome. While one batch commits, the next one fills up, so the commit rate stays
flat as concurrency grows and throughput follows it. BatchRunner runs the batches; it serves the
writer thread here (GroupCommitter) and the writer process (writer_process.py).

An operation is a generator: it yields statements (prepared.Step) and receives their results, so
the writer can run every operation's next statement in one round (one round trip to PostgreSQL)
instead of one statement at a time; most batches take one or two rounds.

Failures stay with their operation without a savepoint per operation: statements are written to
be conflict-free (INSERT ... ON CONFLICT DO NOTHING, compare-and-set UPDATEs) and operations
report expected refusals by returning Rejected(exc). An operation that raises, or a statement
that errors, makes the writer roll the batch back and run it again one operation at a time, each
inside a SAVEPOINT, so only that operation fails. A connection found dropped before COMMIT (a
PostgreSQL restart) makes the writer run the batch again on a new connection.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from coordinator.store.prepared import Step, StepResult, run_steps
from core.errors import Aborted, AitbcError, Internal, Unavailable

log = logging.getLogger(__name__)

Operation = Callable[[], Generator[Step, StepResult, Any]]
# PostgreSQL deadlock_detected / serialization_failure: the batch rolled back, retry it whole.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
_STOP = object()


@dataclass(frozen=True, slots=True)
class Rejected:
    """An operation's expected refusal: raised to its caller, the batch carries on."""

    exc: BaseException


@dataclass(slots=True)
class WriteOp:
    run: Operation
    order: tuple[Any, ...]  # the lock-order key (see writes.Write.order)
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


def translate(exc: BaseException) -> BaseException:
    """Map a database-layer exception onto core.errors (core errors pass through)."""
    if isinstance(exc, AitbcError) or not isinstance(exc, Exception):
        return exc
    # Clients see a generic message (driver text may quote values or schema); the log has it all.
    if isinstance(exc, OperationalError):  # connection lost, database locked, disk full...
        err: AitbcError = Unavailable("database unavailable; retry later", retry_after_s=1.0)
        log.warning("database unavailable: %s", exc.orig)
    elif isinstance(exc, DBAPIError):
        err = Internal("the database rejected the operation")
        log.error("database rejected the operation: %s", exc.orig)
    else:  # e.g. the driver refusing a value (OverflowError from sqlite3)
        err = Internal("database operation failed")
        log.error("database operation failed: %s: %s", type(exc).__name__, exc)
    err.__cause__ = exc
    return err


def _retryable(exc: BaseException) -> bool:
    return (
        isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES
    )


def _lost(exc: BaseException) -> bool:
    """The connection dropped (server restart, idle timeout): it has been invalidated."""
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class _Isolate(Exception):
    """Something failed in a shared round: rerun the batch one savepoint per operation."""


class BatchRunner:
    """Runs batches of operations in shared transactions on one held connection.

    Used by the writer thread (GroupCommitter) and by the writer process (writer_process.py).
    """

    def __init__(self, engine: Engine, *, retries: int = 5):
        self._engine = engine
        self._retries = retries
        # Held across batches: a pool checkout and reset per batch cost more than the batch's
        # own statements on SQLite. Replaced when it is invalidated (see _connection).
        self._conn: Connection | None = None
        self.commits = 0  # successful batch commits (tests and metrics read it)

    def run(self, ops: list[Operation]) -> list[Any]:
        """Each operation's outcome, or Rejected(...) for every one when nothing committed.

        `ops` must already be in lock order. Only non-Exception BaseExceptions propagate.
        """
        try:
            outcomes = self._commit(ops)
        except BaseException as exc:  # nothing was committed: nobody is acknowledged
            log.warning("group commit of %d writes failed: %r", len(ops), exc)
            if not isinstance(exc, Exception):
                raise
            return [Rejected(translate(exc))] * len(ops)
        self.commits += 1
        return outcomes

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # an invalidated or broken connection: nothing to keep
                log.debug("closing the writer's connection failed", exc_info=True)

    def _connection(self) -> Connection:
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            self.close()
            conn = self._conn = self._engine.connect()
        return conn

    def _commit(self, ops: list[Operation]) -> list[Any]:
        isolated = False
        attempt = 0
        while True:
            committing = False
            try:
                conn = self._connection()
                with conn.begin():
                    if isolated:
                        outcomes = [self._run_isolated(conn, op) for op in ops]
                    else:
                        outcomes = self._run_shared(conn, ops)
                    committing = True  # leaving the block commits
                return outcomes
            except _Isolate:
                isolated = True
            except DBAPIError as exc:
                # A failed COMMIT can leave the transaction open: start from a clean connection.
                self.close()
                attempt += 1
                # A connection lost before COMMIT was sent committed nothing: run the batch
                # again on a new one. (Lost during COMMIT, the outcome is unknown: it fails.)
                # This replaces a ping before every batch, one round trip each.
                if _lost(exc) and not committing and attempt < self._retries:
                    continue
                if not _retryable(exc):
                    raise
                if attempt >= self._retries:
                    raise Aborted("write conflict persisted; retry", retry_after_s=0.05) from exc
            except BaseException:
                self.close()
                raise

    @staticmethod
    def _run_shared(conn: Connection, ops: list[Operation]) -> list[Any]:
        """Drive every operation a statement per round; any failure means _Isolate."""
        outcomes: list[Any] = [None] * len(ops)
        gens = [op() for op in ops]
        try:
            pending: list[tuple[int, Step]] = []
            for i, gen in enumerate(gens):
                try:
                    pending.append((i, next(gen)))
                except StopIteration as done:
                    outcomes[i] = done.value
            while pending:
                results = run_steps(conn, [step for _, step in pending])
                advanced: list[tuple[int, Step]] = []
                for (i, _), result in zip(pending, results, strict=True):
                    try:
                        advanced.append((i, gens[i].send(result)))
                    except StopIteration as done:
                        outcomes[i] = done.value
                pending = advanced
        except Exception as exc:
            if _retryable(exc) or _lost(exc):
                raise
            raise _Isolate() from exc
        finally:
            for gen in gens:
                gen.close()
        return outcomes

    @staticmethod
    def _run_isolated(conn: Connection, op: Operation) -> Any:
        savepoint = conn.begin_nested()
        gen = op()
        try:
            step = next(gen)
            while True:
                step = gen.send(run_steps(conn, [step])[0])
        except StopIteration as done:
            savepoint.commit()
            return done.value
        except Exception as exc:
            if _retryable(exc) or _lost(exc):
                raise
            savepoint.rollback()
            return Rejected(translate(exc))
        finally:
            gen.close()


class GroupCommitter:
    """The writer thread: queued operations run in shared transactions (see BatchRunner)."""

    def __init__(self, engine: Engine, *, batch_max: int, name: str, retries: int = 5):
        if batch_max < 1:
            raise ValueError("batch_max must be >= 1")
        self._runner = BatchRunner(engine, retries=retries)
        self._batch_max = batch_max
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._closed = False

    @property
    def commits(self) -> int:
        return self._runner.commits

    def start(self) -> None:
        self._thread.start()

    def submit(self, run: Operation, order: tuple[Any, ...]) -> asyncio.Future[Any]:
        if self._closed:
            raise Unavailable("store is closed")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put(WriteOp(run, order, loop, fut))
        return fut

    def stop(self) -> None:
        """Finish what is queued, then end the writer thread (blocking; call from a thread)."""
        self._closed = True
        self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join()

    def _main(self) -> None:
        try:
            self._serve()
        finally:
            self._runner.close()

    def _serve(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            batch = [item]
            while len(batch) < self._batch_max:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            ordered = sorted(batch, key=lambda op: op.order)
            try:
                outcomes = self._runner.run([op.run for op in ordered])
            except BaseException as exc:  # KeyboardInterrupt, SystemExit: nothing committed
                self._deliver(ordered, [Rejected(translate(exc))] * len(ordered))
                raise
            self._deliver(ordered, outcomes)
        # Anything a caller raced in after stop(): refuse it rather than leave it hanging.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self._deliver([item], [Rejected(Unavailable("store is closed"))])

    @staticmethod
    def _deliver(ops: list[WriteOp], outcomes: list[Any]) -> None:
        # One wake-up per event loop per batch, not one per operation.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        for op, outcome in zip(ops, outcomes, strict=True):
            by_loop.setdefault(op.loop, []).append((op.future, outcome))
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(resolve, pairs)
            except RuntimeError:  # the caller's loop is closed; nobody is waiting
                pass


def resolve(pairs: Iterable[tuple[asyncio.Future[Any], Any]]) -> None:
    for fut, outcome in pairs:
        if fut.done():  # the caller was cancelled; the write still happened
            continue
        if isinstance(outcome, Rejected):
            fut.set_exception(outcome.exc)
        else:
            fut.set_result(outcome)
