"""The coordinator's domain façade: what the gRPC servicers call (no grpc, no SQL here)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from coordinator.domain import lifecycle, validation
from coordinator.domain.book import JobBook
from coordinator.domain.dispatch import Dispatcher
from coordinator.domain.matching import DefaultRanker, MinerProfile, MinerRanker
from coordinator.domain.model import Job, JobState, MinerRecord, ResultRef, copy_job
from coordinator.domain.sessions import (
    AckOut,
    AssignmentOut,
    CancelOut,
    Close,
    DrainOut,
    MinerSession,
)
from coordinator.domain.settings import Settings
from coordinator.domain.validation import SubmitSpec
from coordinator.store.base import (
    IdempotencyConflict,
    JobFilter,
    JobStore,
    MinerOutcome,
    Page,
    ReceiptOrder,
    ReceiptRecord,
)
from core import errors
from core.clock import Clock, SystemClock

log = logging.getLogger(__name__)


class ReceiptSeam(Protocol):
    """Where receipts hook in (coordinator/receipts.py implements it)."""

    def check_claim(
        self,
        claim: dict[str, Any] | None,
        *,
        public_key: str,
        job: Job,
        lease_id: str,
        sha256: str,
        miner_id: str,
    ) -> None:
        """Raise when the miner's signed claim about this result is missing or wrong."""

    def order(self, job: Job, claim: dict[str, Any] | None) -> ReceiptOrder:
        """The receipt of a COMPLETED job: the store signs it and writes it in the same
        transaction as the completion."""


@dataclass(slots=True)
class _PendingStart:
    """A miner's "started" not written yet (see Settings.start_write_delay_s)."""

    job_id: str
    miner_id: str
    lease_id: str
    at: float
    timer: asyncio.TimerHandle | None = None


@dataclass(frozen=True, slots=True)
class MinerView:
    record: MinerRecord
    status: str  # "online" | "draining" | "offline"
    session: MinerSession | None


def request_hash(spec: SubmitSpec) -> str:
    c = spec.constraints
    body = {
        "service": spec.service,
        "parameters": spec.parameters,
        "constraints": [
            list(c.gpu_names),
            c.min_vram_gb,
            c.region,
            list(c.models),
            c.min_cuda,
            str(c.max_price) if c.max_price is not None else None,
            c.priority,
        ],
        "ttl_s": spec.ttl_s,
        "run_timeout_s": spec.run_timeout_s,
    }
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


class Coordinator:
    def __init__(
        self,
        store: JobStore,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        ranker: MinerRanker | None = None,
        receipts: ReceiptSeam | None = None,
    ):
        self.store = store
        self.settings = settings or Settings()
        self.clock = clock or SystemClock()
        self.book = JobBook(store)
        self.sessions: dict[str, MinerSession] = {}
        self.dispatcher = Dispatcher(
            self.book,
            self.sessions,
            ranker or DefaultRanker(),
            self.clock,
            self._deliver_assignment,
            stage_grace_s=self.settings.stage_max_wait_s + self.settings.sweep_interval_s,
        )
        self.receipts = receipts
        # job id -> its watchers' queues; (event, None) tells a settle() the coordinator stops.
        self._watchers: dict[str, set[asyncio.Queue[tuple[str, Job | None]]]] = {}
        self._stop_queues: set[asyncio.Queue[tuple[str, Job | None]]] = set()  # settle()'s
        self._stopped = False
        self._watched_version: dict[str, int] = {}  # job id -> a version all its watchers heard
        self._progress: dict[
            str, tuple[float, str, float, float]
        ] = {}  # fraction, msg, at, persisted mono
        self._tasks: list[asyncio.Task[None]] = []
        self._starts: dict[str, _PendingStart] = {}  # job id -> "started" not written yet
        self._background_writes: set[asyncio.Task[Any]] = set()
        self.book.listen(self._on_change)

    # == lifecycle of the service ===========================================================
    async def start(self, *, background: bool = True) -> None:
        self._stopped = False
        await self.recover()
        if background:
            self._tasks = [
                asyncio.create_task(self.dispatcher.run(), name="dispatcher"),
                asyncio.create_task(
                    self._loop(self.sweep, self.settings.sweep_interval_s), name="sweeper"
                ),
                asyncio.create_task(
                    self._loop(self.refill, self.settings.refill_interval_s), name="refill"
                ),
                asyncio.create_task(
                    self._loop(self.reconcile, self.settings.reconcile_interval_s), name="reconcile"
                ),
                asyncio.create_task(
                    self._loop(self.poll_watched, self.settings.watch_poll_interval_s),
                    name="watch-poll",
                ),
            ]

    async def stop(self) -> None:
        self._stopped = True
        for queue in self._stop_queues:
            queue.put_nowait(("stop", None))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.flush_starts()
        for s in list(self.sessions.values()):
            self.dispatcher.give_back_staged(s, "the coordinator is stopping")
        await self.dispatcher.settle()
        for s in list(self.sessions.values()):
            if s.connected:
                s.send(Close("coordinator shutting down"))
                s.pending_event.set()

    async def _loop(self, fn: Callable[[], Any], interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await fn()
            except Exception:
                log.exception("%s failed", getattr(fn, "__name__", fn))

    async def recover(self) -> None:
        """After a restart: leased jobs wait for their miners to come back (or expire)."""
        mono = self.clock.monotonic()
        for job in await self.store.leased_jobs():
            self.book.remember(job)
            s = self.sessions.get(job.miner_id)
            if s is None:
                rec = await self.store.get_miner(job.miner_id)
                s = self.sessions[job.miner_id] = MinerSession(
                    miner_id=job.miner_id,
                    mode=rec.mode if rec else "stream",
                    profile=MinerProfile(),
                    interval_s=self.settings.heartbeat_interval_s,
                    last_seen_mono=mono,
                    connected=False,
                )
            s.leases[job.lease_id] = job.job_id
        await self.refill()

    # == clients ============================================================================
    async def submit(
        self, client_id: str, spec: SubmitSpec, idempotency_key: str = ""
    ) -> tuple[Job, bool]:
        if len(idempotency_key) > 128:
            raise errors.InvalidArgument.field("Idempotency-Key", "at most 128 characters")
        now = self.clock.now()
        job = Job(
            job_id="job_" + secrets.token_hex(16),
            client_id=client_id,
            service=spec.service,
            parameters=spec.parameters,
            constraints=spec.constraints,
            ttl_s=spec.ttl_s,
            run_timeout_s=spec.run_timeout_s,
            created_at=now,
            deadline_at=now + spec.ttl_s,
            idempotency_key=idempotency_key,
            request_hash=request_hash(spec) if idempotency_key else "",
        )
        direct = self.dispatcher.reserve_direct(job)
        try:
            if direct is None:
                return await self.book.insert(job), True
            session, lease_id, grace = direct
            try:
                assigned = self.dispatcher.assign_to(job, session, lease_id, grace)
                stored = await self.book.insert(assigned)
            except BaseException:
                self.dispatcher.unreserve(session)
                raise
            self.dispatcher.placed(session, stored)
            return stored, True
        except IdempotencyConflict as conflict:
            existing = conflict.existing
            if existing.request_hash != job.request_hash:
                raise errors.AlreadyExists(
                    "Idempotency-Key was already used with a different request body",
                    reason="idempotency_key_reused",
                    metadata={"job_id": existing.job_id},
                ) from None
            return await self.view(existing), False

    async def get(self, job_id: str, *, client_id: str | None) -> Job:
        """The job as stored (with live progress); None client_id means an admin."""
        validation.job_id(job_id)
        job = await self.store.get_job(job_id)
        if job is None or (client_id is not None and job.client_id != client_id):
            raise errors.NotFound("job", job_id)
        return await self.view(job)

    async def view(self, job: Job) -> Job:
        return self._live(job)

    def _live(self, job: Job) -> Job:
        """The job with the progress held in memory (newer than the stored one)."""
        live = self._progress.get(job.job_id)
        if live and job.state.leased and (job.progress_at or 0) < live[2]:
            job = copy_job(job)
            job.progress_fraction, job.progress_message, job.progress_at = live[:3]
        return job

    def waiting_reason(self, job: Job) -> str:
        return self.dispatcher.why_waiting(job)

    async def cancel(self, job_id: str, *, client_id: str | None, reason: str = "") -> Job:
        await self.get(job_id, client_id=client_id)  # existence and ownership (404 otherwise)
        if len(reason) > 500:
            raise errors.InvalidArgument.field("reason", "at most 500 characters")
        _, new = await self.book.mutate(
            job_id,
            lambda j: lifecycle.cancel(
                j, reason=reason or "canceled by the client", now=self.clock.now()
            ),
        )
        assert new is not None
        return new

    async def list(self, flt: JobFilter, *, page_size: int, cursor: str) -> Page:
        if page_size > 500:
            raise errors.InvalidArgument.field("page_size", f"must be at most 500, got {page_size}")
        return await self.store.list_jobs(flt, limit=page_size or 50, cursor=cursor)

    def watch(self, job_id: str, *, client_id: str | None) -> AsyncIterator[tuple[str, Job]]:
        """("snapshot", job), then ("state" | "progress", job) until the job is terminal."""
        return self._follow(job_id, client_id=client_id, ends_on_stop=False)

    async def _follow(
        self, job_id: str, *, client_id: str | None, ends_on_stop: bool
    ) -> AsyncIterator[tuple[str, Job]]:
        """watch(); with ends_on_stop the events also end when this coordinator stops."""
        validation.job_id(job_id)
        # Listen before reading: a change committed between the read and the subscription
        # would otherwise be heard only by the next poll of the store.
        queue: asyncio.Queue[tuple[str, Job | None]] = asyncio.Queue()
        self._watchers.setdefault(job_id, set()).add(queue)
        if ends_on_stop:
            self._stop_queues.add(queue)
            if self._stopped:
                queue.put_nowait(("stop", None))
        try:
            # A live job this process changed last is in memory; anything else is read.
            job = self.book.cached(job_id) or await self.store.get_job(job_id)
            if job is None or (client_id is not None and job.client_id != client_id):
                raise errors.NotFound("job", job_id)
            job = await self.view(job)
            # What every watcher of the job has heard is at least the lowest snapshot version.
            heard = self._watched_version.get(job_id)
            self._watched_version[job_id] = (
                job.version if heard is None else min(heard, job.version)
            )
            yield "snapshot", job
            version = job.version
            while not job.state.terminal:
                # Changes made here arrive through _publish; those made by other coordinator
                # processes through poll_watched.
                event, seen = await queue.get()
                if seen is None:  # "stop": the coordinator is stopping
                    return
                job = seen
                if event == "state" and job.version <= version:
                    continue
                version = max(version, job.version)
                yield event, job
        finally:
            self._stop_queues.discard(queue)
            watchers = self._watchers.get(job_id)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._watchers[job_id]
                    self._watched_version.pop(job_id, None)

    async def poll_watched(self) -> None:
        """Watched jobs that another coordinator process changed: their watchers hear it.

        One read covers every watched job (not one read per watcher and interval), and only a
        version newer than all of the job's watchers have heard is passed on."""
        if not self._watchers:
            return
        for fresh in await self.store.get_jobs(list(self._watchers)):
            if fresh.version > self._watched_version.get(fresh.job_id, -1):
                self._publish(fresh.job_id, "state", self._live(fresh))

    async def settle(self, job: Job, *, client_id: str | None, wait_s: float) -> Job:
        """The job once it is terminal, or as it is after wait_s seconds or when this
        coordinator stops, whichever is first (SubmitJob's wait: a drain answers it at once
        rather than holding the shutdown up)."""
        if wait_s <= 0 or job.state.terminal or self._stopped:
            return job
        events = self._follow(job.job_id, client_id=client_id, ends_on_stop=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s), contextlib.aclosing(events):
                async for _event, seen in events:
                    job = seen
                    if seen.state.terminal:
                        break
        return job

    # == change fan-out =====================================================================
    def _on_change(self, old: Job | None, new: Job) -> None:
        if (
            old is not None
            and old.state.leased
            and (not new.state.leased or new.lease_id != old.lease_id)
        ):
            self._progress.pop(new.job_id, None)
            self._take_start(new.job_id, old.lease_id)
            s = self.sessions.get(old.miner_id)
            if s is not None and s.drop_lease(old.lease_id):
                lost = bool(new.attempts) and new.attempts[-1].outcome == "lease_lost"
                if new.state in (JobState.CANCELED, JobState.EXPIRED) or lost:
                    s.send(CancelOut(old.lease_id, old.job_id, new.error_message or "lease ended"))
                self.dispatcher.promote(s)
                self._maybe_forget(s)
                self.dispatcher.kick()
            elif s is not None and s.unstage(old.lease_id) is not None:
                self.dispatcher.kick()  # kept ready and never sent: nothing to tell the miner
        self._publish(new.job_id, "state", new)

    def _publish(self, job_id: str, event: str, job: Job) -> None:
        watchers = self._watchers.get(job_id)
        if watchers:
            # Every watcher gets this one: they have all heard at least its version.
            heard = self._watched_version.get(job_id, -1)
            self._watched_version[job_id] = max(heard, job.version)
            for q in watchers:
                q.put_nowait((event, job))

    def _deliver_assignment(self, session: MinerSession, out: AssignmentOut) -> None:
        if self.sessions.get(session.miner_id) is not session:
            # The miner reconnected (or was swept) while the assignment was being written: its
            # current connection never heard of this lease, so the job goes back to the queue.
            session.drop_lease(out.lease_id)
            self._background(
                self._lose(
                    out.job.job_id,
                    out.lease_id,
                    session.miner_id,
                    "the miner's connection ended while the job was being assigned",
                )
            )
            return
        if session.send(out):
            session.sent_mono[out.lease_id] = self.clock.monotonic()
        else:
            log.warning("miner %s is not reading its stream; closing it", session.miner_id)
            session.connected = False

    # == miners =============================================================================
    def profile(self, caps: dict[str, Any]) -> MinerProfile:
        return validation.capabilities(caps, services=self.settings.limits.services)

    def _interval(self, interval_ms: int, field: str) -> float:
        if interval_ms == 0:
            return self.settings.heartbeat_interval_s
        if not 1000 <= interval_ms <= 60000:
            raise errors.InvalidArgument.field(
                field, f"must be between 1000 and 60000 ms, got {interval_ms}"
            )
        return interval_ms / 1000

    async def connect(
        self,
        miner_id: str,
        *,
        mode: str,
        caps: dict[str, Any],
        interval_ms: int = 0,
        held: list[tuple[str, str]] | None = None,
        public_key: str = "",
        batches: bool = False,
    ) -> tuple[MinerSession, list[str], list[str]]:
        """A miner (re)connects: returns its session, the held leases it keeps and those dropped."""
        profile = self.profile(caps)
        interval = self._interval(interval_ms, "hello.heartbeat_interval_ms")
        public_key = validation.public_key(public_key, "public_key")
        held = held or []
        for i, (lease, _job) in enumerate(held):
            validation.lease_id(lease, f"hello.held_leases[{i}].lease_id")
        session = MinerSession(
            miner_id=miner_id,
            mode=mode,
            profile=profile,
            interval_s=interval,
            last_seen_mono=self.clock.monotonic(),
            capabilities=caps,
            public_key=public_key,
            batches=batches,
            prefetch=profile.slots * self.settings.prefetch_per_slot if mode == "stream" else 0,
            prefetch_max_job_s=self.settings.prefetch_max_job_s,
        )
        old = self.sessions.get(miner_id)
        carried = dict(old.leases) if old is not None else {}
        if old is not None:
            self._end_session(old, "replaced by a newer connection")
            session.job_time_s = old.job_time_s
        held_ids = dict(held)
        kept = [lease for lease in held_ids if lease in carried]
        dropped = [lease for lease in held_ids if lease not in carried]
        # A polling miner names its leases per call, so a new registration keeps them all.
        session.leases = (
            dict(carried) if mode == "poll" else {lease: carried[lease] for lease in kept}
        )
        self.sessions[miner_id] = session
        # Leases the miner came back without are lost: their jobs go back to the queue.
        if mode == "stream":
            for lease, job_id in carried.items():
                if lease not in held_ids:
                    await self._lose(
                        job_id, lease, miner_id, "the miner reconnected without this lease"
                    )
        now = self.clock.now()
        rec = await self.store.get_miner(miner_id) or MinerRecord(
            miner_id=miner_id, first_seen_at=now
        )
        rec.capabilities, rec.mode, rec.last_seen_at = caps, mode, now
        rec.public_key = public_key or rec.public_key
        await self.store.upsert_miner(rec)
        self.dispatcher.kick()
        return session, kept, dropped

    def _end_session(self, s: MinerSession, reason: str) -> None:
        if s.connected:
            s.connected = False
            s.send(Close(reason))
        s.pending_event.set()
        self.dispatcher.give_back_staged(s, f"the miner's connection ended: {reason}")

    def _maybe_forget(self, s: MinerSession) -> None:
        if not s.connected and not s.leases and self.sessions.get(s.miner_id) is s:
            del self.sessions[s.miner_id]

    async def disconnect(self, session: MinerSession) -> None:
        """The stream ended. Leases stay with the miner for the reconnect window."""
        if self.sessions.get(session.miner_id) is not session:
            return
        session.connected = False
        self.dispatcher.give_back_staged(session, "the miner's stream ended")
        self._maybe_forget(session)
        rec = await self.store.get_miner(session.miner_id)
        if rec is not None:
            rec.last_seen_at = self.clock.now()
            await self.store.upsert_miner(rec)

    def session_for(self, miner_id: str, token: str) -> MinerSession:
        s = self.sessions.get(miner_id)
        if (
            s is None
            or not s.connected
            or s.mode != "poll"
            or not secrets.compare_digest(s.session_id, token)
        ):
            raise errors.FailedPrecondition(
                "unknown or expired polling session; register again", reason="unknown_session"
            )
        return s

    def seen(self, session: MinerSession) -> None:
        session.last_seen_mono = self.clock.monotonic()

    def heartbeat(
        self, session: MinerSession, *, interval_ms: int, lease_ids: list[str], load: float
    ) -> list[CancelOut]:
        session.interval_s = (
            self._interval(interval_ms, "heartbeat.interval_ms")
            if interval_ms
            else session.interval_s
        )
        if not 0.0 <= load <= 1.0:
            raise errors.InvalidArgument.field(
                "heartbeat.load", f"must be between 0 and 1, got {load}"
            )
        self.seen(session)
        session.load = load
        return [
            CancelOut(lease, "", "this lease is not yours (ended, canceled or never assigned)")
            for lease in lease_ids
            if lease not in session.leases
        ]

    async def poll(self, session: MinerSession, max_wait_s: int) -> AssignmentOut | None:
        if max_wait_s > self.settings.max_poll_wait_s:
            raise errors.InvalidArgument.field(
                "max_wait_seconds",
                f"must be at most {self.settings.max_poll_wait_s}, got {max_wait_s}",
            )
        self.seen(session)
        if not session.pending and max_wait_s > 0:
            session.poll_waiters += 1
            session.pending_event.clear()
            self.dispatcher.kick()
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(session.pending_event.wait(), timeout=max_wait_s)
            finally:
                session.poll_waiters -= 1
        elif not session.pending:
            session.poll_waiters += 1
            self.dispatcher.dispatch_pass()
            session.poll_waiters -= 1
            await self.dispatcher.settle()
        self.seen(session)
        return session.pending.popleft() if session.pending else None

    def drain(self, session: MinerSession) -> None:
        session.draining = True
        self.dispatcher.give_back_staged(session, "the miner is draining")
        session.send(DrainOut("draining: finish held jobs, nothing new will be assigned"))

    def _leased_to(self, job: Job, miner_id: str, lease_id: str) -> bool:
        return job.miner_id == miner_id and job.lease_id == lease_id

    def _stale(self, job: Job, lease_id: str) -> errors.FailedPrecondition:
        return errors.FailedPrecondition(
            f"lease {lease_id} is not the current lease of job {job.job_id} (job is {job.state.value})",
            reason="stale_lease",
        )

    def note_started(self, miner_id: str, lease_id: str, job_id: str) -> bool:
        """A miner's "started": checked now, written later (start_write_delay_s) unless the
        result or failure arrives first and writes it along. False when the job is not in
        memory: then call started(), which reads the store."""
        validation.job_id(job_id), validation.lease_id(lease_id)
        job = self.book.cached(job_id)
        if job is None:
            return False
        if not self._leased_to(job, miner_id, lease_id) or not job.state.leased:
            raise self._stale(job, lease_id)
        delay = self.settings.start_write_delay_s
        if job.state is not JobState.ASSIGNED or job_id in self._starts:
            return True
        pending = self._starts[job_id] = _PendingStart(job_id, miner_id, lease_id, self.clock.now())
        if delay <= 0:
            self._write_start(job_id)
        else:
            loop = asyncio.get_running_loop()
            pending.timer = loop.call_later(delay, self._write_start, job_id)
        return True

    def _take_start(self, job_id: str, lease_id: str) -> _PendingStart | None:
        pending = self._starts.get(job_id)
        if pending is None or pending.lease_id != lease_id:
            return None
        del self._starts[job_id]
        if pending.timer is not None:
            pending.timer.cancel()
        return pending

    async def flush_starts(self) -> None:
        """Write every "started" still waiting, and wait for every background write (shutdown,
        tests)."""
        for job_id in list(self._starts):
            self._write_start(job_id)
        while self._background_writes:
            await asyncio.gather(*list(self._background_writes), return_exceptions=True)

    def _restore_start(self, pending: _PendingStart | None) -> None:
        """A result or failure that would have carried "started" was refused: write it alone."""
        if pending is not None and pending.job_id not in self._starts:
            self._starts[pending.job_id] = replace(pending, timer=None)
            self._write_start(pending.job_id)

    def _background(self, coro: Any) -> None:
        """Run a write without waiting for it (flush_starts() waits for it)."""
        task = asyncio.create_task(coro)
        self._background_writes.add(task)
        task.add_done_callback(self._background_writes.discard)

    def _write_start(self, job_id: str) -> None:
        pending = self._starts.get(job_id)
        if pending is None:
            return
        self._take_start(job_id, pending.lease_id)
        self._background(self._started(pending))

    async def _started(self, pending: _PendingStart) -> None:
        def transition(job: Job) -> Job | None:
            if not self._leased_to(job, pending.miner_id, pending.lease_id):
                return None  # the lease ended meanwhile: nothing to record
            return lifecycle.start(job, now=pending.at) if job.state is JobState.ASSIGNED else None

        try:
            await self.book.mutate(pending.job_id, transition)
        except errors.AitbcError as exc:
            log.info("started of lease %s not written: %s", pending.lease_id, exc.message)
        except Exception:
            log.exception("started of lease %s not written", pending.lease_id)

    async def started(self, miner_id: str, lease_id: str, job_id: str) -> Job:
        """Record "started" now (durable on return)."""
        validation.job_id(job_id), validation.lease_id(lease_id)
        pending = self._take_start(job_id, lease_id)
        at = pending.at if pending is not None else self.clock.now()

        def transition(job: Job) -> Job | None:
            if not self._leased_to(job, miner_id, lease_id) or not job.state.leased:
                raise self._stale(job, lease_id)
            return lifecycle.start(job, now=at) if job.state is JobState.ASSIGNED else None

        before, after = await self.book.mutate(job_id, transition)
        return after or before

    def _progress_args(
        self, lease_id: str, job_id: str, fraction: float, message: str
    ) -> tuple[float, str]:
        validation.job_id(job_id), validation.lease_id(lease_id)
        if not 0.0 <= fraction <= 1.0:
            raise errors.InvalidArgument.field(
                "progress.fraction", f"must be between 0 and 1, got {fraction}"
            )
        return fraction, message[:500]

    def note_progress(
        self, miner_id: str, lease_id: str, job_id: str, fraction: float, message: str
    ) -> bool:
        """Progress without a task: the job is in memory and nothing is due to be written.
        False: call progress() (the store has to be read, or the progress is due to persist)."""
        fraction, message = self._progress_args(lease_id, job_id, fraction, message)
        job = self.book.cached(job_id)
        if job is None:
            return False
        if not self._leased_to(job, miner_id, lease_id) or not job.state.leased:
            raise self._stale(job, lease_id)
        prev = self._progress.get(job_id)
        interval = self.settings.progress_persist_interval_s
        if prev is not None and self.clock.monotonic() - prev[3] >= interval:
            return False
        self._record_progress(job, miner_id, lease_id, fraction, message)
        return True

    def _record_progress(
        self, job: Job, miner_id: str, lease_id: str, fraction: float, message: str
    ) -> tuple[float, float]:
        """Keep the progress in memory and tell the watchers; returns (now, last persisted)."""
        if job.state is JobState.ASSIGNED:
            # Progress means the job runs: recorded like a "started" message (written after the
            # start delay, or along with the result), so a short job costs no write of its own.
            # Watchers hear the progress with the state as stored, and RUNNING once written.
            self.note_started(miner_id, lease_id, job.job_id)
        now, mono = self.clock.now(), self.clock.monotonic()
        prev = self._progress.get(job.job_id)
        persisted = prev[3] if prev else mono
        best = max(fraction, prev[0] if prev else 0.0)
        self._progress[job.job_id] = (best, message, now, persisted)
        self._publish(job.job_id, "progress", self._live(job))
        return now, persisted

    async def progress(
        self, miner_id: str, lease_id: str, job_id: str, fraction: float, message: str
    ) -> None:
        fraction, message = self._progress_args(lease_id, job_id, fraction, message)
        job = await self.book.load(job_id)
        if job is None:
            raise errors.NotFound("job", job_id)
        if not self._leased_to(job, miner_id, lease_id) or not job.state.leased:
            raise self._stale(job, lease_id)
        now, persisted = self._record_progress(job, miner_id, lease_id, fraction, message)
        mono = self.clock.monotonic()
        if mono - persisted >= self.settings.progress_persist_interval_s:
            self._progress[job_id] = (*self._progress[job_id][:3], mono)

            def transition(j: Job) -> Job | None:
                if not self._leased_to(j, miner_id, lease_id) or not j.state.leased:
                    return None
                return lifecycle.progress(j, fraction=fraction, message=message, now=now)

            await self.book.mutate(job_id, transition)

    async def _public_key(self, miner_id: str) -> str:
        s = self.sessions.get(miner_id)
        if s is not None and s.connected:
            return s.public_key  # what it announced on this connection ("" = no key)
        rec = await self.store.get_miner(miner_id)
        return rec.public_key if rec is not None else ""

    @contextlib.contextmanager
    def _finishing(self, miner_id: str, lease_id: str):
        """While a miner's result or failure is written, its slot takes the next job (the
        claim joins the same group commit). A refused report keeps the slot free only while
        the lease is still held (the miner runs it no more; its heartbeats drop it)."""
        s = self.sessions.get(miner_id)
        if s is None or not s.finish(lease_id, self.clock.monotonic()):
            yield
            return
        self.dispatcher.promote(s)  # a job kept ready goes out now, before this report's commit
        self.dispatcher.kick()
        try:
            yield
        finally:
            if lease_id not in s.leases:
                s.finishing.discard(lease_id)

    async def deliver_result(
        self,
        miner_id: str,
        lease_id: str,
        job_id: str,
        result: ResultRef,
        claim: dict[str, Any] | None = None,
    ) -> tuple[Job, bool, bytes | None]:
        """Complete the job: (job, True, receipt) or (job, False, receipt) for a duplicate of an
        accepted result (acknowledged, nothing changes, no second receipt)."""
        validation.job_id(job_id), validation.lease_id(lease_id)
        seam = self.receipts
        public_key = await self._public_key(miner_id) if seam is not None else ""
        issued: list[ReceiptOrder] = []
        pending = self._take_start(job_id, lease_id)

        def transition(job: Job) -> Job | None:
            if not self._leased_to(job, miner_id, lease_id):
                raise self._stale(job, lease_id)
            if job.state is JobState.COMPLETED:
                if job.result is not None and job.result.sha256 == result.sha256:
                    return None
                raise errors.FailedPrecondition(
                    f"job {job_id} already completed with a different result",
                    reason="result_conflict",
                )
            if not job.state.leased:
                raise self._stale(job, lease_id)
            if pending is not None and job.state is JobState.ASSIGNED:
                job = lifecycle.start(job, now=pending.at)  # the same write records "started"
            if seam is not None:
                seam.check_claim(
                    claim,
                    public_key=public_key,
                    job=job,
                    lease_id=lease_id,
                    sha256=result.sha256,
                    miner_id=miner_id,
                )
            return lifecycle.complete(job, result=result, now=self.clock.now())

        def receipt(job: Job) -> ReceiptOrder | None:
            if seam is None:
                return None
            issued.append(seam.order(job, claim))
            return issued[-1]

        def outcome(job: Job) -> MinerOutcome:
            ran_s = max(0.0, (job.finished_at or 0) - (job.started_at or 0))
            return MinerOutcome(miner_id, completed=True, duration_ms=int(ran_s * 1000))

        try:
            with self._finishing(miner_id, lease_id):
                before, after = await self.book.mutate(
                    job_id, transition, receipt=receipt, outcome=outcome
                )
        except BaseException:
            self._restore_start(pending)
            raise
        if after is None:
            recs, _ = await self.store.list_receipts(job_id, limit=1000)
            return before, False, recs[-1].document if recs else None
        signed = issued[-1].record if issued else None
        return after, True, signed.document if signed is not None else None

    async def receipts_of(
        self, job_id: str, *, client_id: str | None, limit: int, cursor: str = ""
    ) -> tuple[list[ReceiptRecord], str]:
        await self.get(job_id, client_id=client_id)  # ownership: unknown or foreign -> 404
        if not 0 <= limit <= 100:
            raise errors.InvalidArgument.field("page_size", f"must be at most 100, got {limit}")
        return await self.store.list_receipts(job_id, limit=limit or 20, cursor=cursor)

    async def fail(
        self, miner_id: str, lease_id: str, job_id: str, *, code: str, message: str, retryable: bool
    ) -> Job:
        validation.job_id(job_id), validation.lease_id(lease_id)
        code = validation.failure_code(code)
        message = message[:2000]
        pending = self._take_start(job_id, lease_id)

        def transition(job: Job) -> Job | None:
            if not self._leased_to(job, miner_id, lease_id) or not job.state.leased:
                if job.state is JobState.FAILED and self._leased_to(job, miner_id, lease_id):
                    return None  # a repeated failure report changes nothing
                raise self._stale(job, lease_id)
            if pending is not None and job.state is JobState.ASSIGNED:
                job = lifecycle.start(job, now=pending.at)
            return lifecycle.retry_or_fail(
                job,
                outcome="failed",
                code=code,
                message=message,
                retryable=retryable,
                now=self.clock.now(),
                max_attempts=self.settings.max_attempts,
            )

        try:
            with self._finishing(miner_id, lease_id):
                before, after = await self.book.mutate(
                    job_id,
                    transition,
                    outcome=lambda _job: MinerOutcome(miner_id, completed=False, duration_ms=0),
                )
        except BaseException:
            self._restore_start(pending)
            raise
        return after or before

    async def _lose(self, job_id: str, lease_id: str, miner_id: str, why: str) -> None:
        def transition(job: Job) -> Job | None:
            if not self._leased_to(job, miner_id, lease_id) or not job.state.leased:
                return None
            return lifecycle.retry_or_fail(
                job,
                outcome="lease_lost",
                code="miner_lost",
                message=why,
                retryable=True,
                now=self.clock.now(),
                max_attempts=self.settings.max_attempts,
            )

        try:
            await self.book.mutate(job_id, transition)
        except errors.NotFound:
            pass

    # == background work ====================================================================
    async def sweep(self) -> None:
        """Liveness (silent miners lose their leases) and expiry (queue TTL, run timeout)."""
        mono = self.clock.monotonic()
        for s in list(self.sessions.values()):
            limit = self.settings.missed_heartbeats * s.interval_s
            if s.silent_for(mono) > limit:
                self._end_session(s, "missed heartbeats")
                if self.sessions.get(s.miner_id) is s:
                    del self.sessions[s.miner_id]
                why = f"miner {s.miner_id} silent for {s.silent_for(mono):.1f} s (> {limit:.1f} s)"
                await asyncio.gather(
                    *(self._lose(j, lease, s.miner_id, why) for lease, j in list(s.leases.items()))
                )
                s.leases.clear()
                s.finishing.clear()
                s.sent_mono.clear()
        self.dispatcher.retry_give_backs()
        waited = self.settings.stage_max_wait_s
        for s in list(self.sessions.values()):
            if s.staged:
                self.dispatcher.give_back_staged(
                    s, f"kept ready {waited:g} s without a free slot", older_than_mono=mono - waited
                )
        now = self.clock.now()
        due = await self.store.due_jobs(now, limit=1000)

        def transition(job: Job) -> Job | None:
            if job.state.terminal or job.deadline_at is None or job.deadline_at > now:
                return None
            return lifecycle.expire(job, now=now)

        await asyncio.gather(
            *(self.book.mutate(j.job_id, transition) for j in due), return_exceptions=True
        )

    async def refill(self) -> None:
        """Queued jobs in the store that this process does not know yet (other processes)."""
        # Ids first: with a deep queue this process already knows nearly all of them, and
        # loading thousands of jobs every second only to find that out was costly.
        ids = await self.store.queued_ids(limit=self.settings.refill_limit)
        unknown = [i for i in ids if not self.dispatcher.knows(i)]
        if unknown:
            for job in await self.store.get_jobs(unknown):
                self.dispatcher.offer(job)

    async def reconcile(self) -> None:
        """Leases ended elsewhere (another process canceled the job): tell the miner, free the
        slot; a job kept ready for a miner is dropped from its stage."""
        held = {
            job_id: (s, lease) for s in self.sessions.values() for lease, job_id in s.leases.items()
        }
        held.update(
            (e.job.job_id, (s, e.job.lease_id)) for s in self.sessions.values() for e in s.staged
        )
        if not held:
            return
        for job in await self.store.get_jobs(list(held)):
            s, lease = held[job.job_id]
            if self.book.busy(job.job_id):
                # A change made here may be committed and not yet applied (a result being
                # written): what the store shows is this process's own, not another's.
                continue
            if job.lease_id != lease or not job.state.leased:
                if s.drop_lease(lease):
                    s.send(CancelOut(lease, job.job_id, job.error_message or "lease ended"))
                    self.dispatcher.promote(s)
                elif s.unstage(lease) is None:
                    continue
                self.book.remember(job)
                self._maybe_forget(s)
                self.dispatcher.kick()

    # == admin ==============================================================================
    async def miners(self) -> list[MinerView]:
        out = []
        known = {r.miner_id: r for r in await self.store.list_miners()}
        for miner_id in sorted(set(known) | set(self.sessions)):
            s = self.sessions.get(miner_id)
            rec = known.get(miner_id) or MinerRecord(miner_id=miner_id)
            if s is not None and s.connected:
                status = "draining" if s.draining else "online"
            else:
                status = "offline"
            out.append(MinerView(rec, status, s))
        return out

    async def stats(self, window_s: int) -> dict[str, Any]:
        if window_s and not 10 <= window_s <= 86400:
            raise errors.InvalidArgument.field(
                "window_seconds", f"must be between 10 and 86400, got {window_s}"
            )
        window_s = window_s or 300
        now = self.clock.now()
        counts = await self.store.count_by_state()
        completed, (p50, p99) = await self.store.completion_window(now - window_s, now, (0.5, 0.99))
        views = await self.miners()
        return {
            "jobs_by_state": {f"JOB_STATE_{s.value}": counts.get(s, 0) for s in JobState},
            "miners_online": sum(v.status == "online" for v in views),
            "miners_draining": sum(v.status == "draining" for v in views),
            "miners_offline": sum(v.status == "offline" for v in views),
            "queue_depth": counts.get(JobState.QUEUED, 0),
            "window_seconds": window_s,
            "completed_in_window": completed,
            "throughput_per_second": completed / window_s,
            "latency_p50_ms": p50 * 1000,
            "latency_p99_ms": p99 * 1000,
        }

    def ack(
        self,
        session: MinerSession,
        lease_id: str,
        job_id: str,
        exc: errors.AitbcError | None,
        *,
        receipt: bytes | None = None,
    ) -> None:
        if exc is None:
            session.send(
                AckOut(lease_id, job_id, True, receipt=receipt.decode() if receipt else "")
            )
        else:
            session.send(
                AckOut(lease_id, job_id, False, exc.reason or exc.code.name.lower(), exc.message)
            )
