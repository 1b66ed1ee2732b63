"""Dispatch: pair queued jobs (priority, then FIFO) with miners that have free credit.

One pass decides every assignment it can in memory (reserving slots), then writes the claims
concurrently so group commit batches them; a claim that loses its compare-and-set (another
process took the job, or it was canceled) releases its slot and triggers another pass.

Jobs kept ready (prefetch): a streaming miner whose recent jobs are short also gets up to
`prefetch` claims beyond its free slots. Those jobs are stored ASSIGNED to it but not sent
(MinerSession.staged); when one of its slots frees, the best of them goes out at once instead
of after another claim's commit, which on a busy store is most of a short job's turn (bench
e2e, PostgreSQL: a slot waited 1.5 group commits per job). The miner still gets work only into
free slots. A kept job goes back to the queue, with no attempt counted, when its miner drains,
disconnects or is replaced, or when it waits longer than stage_max_wait_s.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import secrets
from collections.abc import Callable, Iterable

from coordinator.domain import lifecycle
from coordinator.domain.book import JobBook
from coordinator.domain.matching import MinerRanker, mismatch
from coordinator.domain.model import Job, JobState
from coordinator.domain.queue import JobQueue, QueuedJob, order_key
from coordinator.domain.sessions import AssignmentOut, MinerSession, Staged
from core import errors
from core.clock import Clock

log = logging.getLogger(__name__)

# A pass looks at most this many queued jobs that no free miner can take before it stops.
MAX_SCAN = 2000


class Dispatcher:
    def __init__(
        self,
        book: JobBook,
        sessions: dict[str, MinerSession],
        ranker: MinerRanker,
        clock: Clock,
        on_assigned: Callable[[MinerSession, AssignmentOut], None],
        *,
        stage_grace_s: float = 0.0,
    ):
        self.book = book
        self.queue = JobQueue()
        self.sessions = sessions
        self.ranker = ranker
        self.clock = clock
        self._on_assigned = on_assigned
        # The longest a kept job waits before it is sent or goes back: its run timeout
        # starts that much later (lifecycle.assign's grace_s).
        self.stage_grace_s = stage_grace_s
        self._wake = asyncio.Event()
        self._claims: set[asyncio.Task[None]] = set()
        self._claiming: set[str] = set()
        # Give-backs whose write failed (the store was unavailable): job id -> (miner, lease).
        # retry_give_backs() (the sweeper) writes them again, so no job stays assigned to a
        # miner that never heard of it.
        self._unwritten: dict[str, tuple[str, str]] = {}
        book.listen(self._on_change)

    # -- events -----------------------------------------------------------------------------
    def kick(self) -> None:
        self._wake.set()

    def _on_change(self, old: Job | None, new: Job) -> None:
        if new.state is JobState.QUEUED:
            if new.job_id not in self._claiming and self.queue.add(new):
                self.kick()
        else:
            self.queue.remove(new.job_id)

    def knows(self, job_id: str) -> bool:
        """The job is queued here or being claimed."""
        return job_id in self.queue or job_id in self._claiming

    def offer(self, job: Job) -> None:
        """A QUEUED job seen in the store (restart, or submitted by another process)."""
        if (
            job.state is JobState.QUEUED
            and job.job_id not in self._claiming
            and self.queue.add(job)
        ):
            self.kick()

    # -- the loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                self.dispatch_pass()
            except Exception:  # a bug here must not stop dispatching for good
                log.exception("dispatch pass failed")
            await asyncio.sleep(0)

    def dispatch_pass(self) -> int:
        if not self.queue:  # cheap first: a reconnect storm with an empty queue costs nothing
            return 0
        free = [s for s in self.sessions.values() if s.capacity > 0]
        if not free:
            return 0
        offered = set().union(*(s.profile.offers.keys() for s in free))
        planned = 0
        skipped = 0
        for entry in self.queue.ordered(offered & self.queue.services()):
            candidates = [
                s
                for s in free
                if s.capacity > 0 and mismatch(entry.service, entry.constraints, s.profile) is None
            ]
            if not candidates:
                skipped += 1
                if skipped >= MAX_SCAN:
                    break
                continue
            best = self.ranker.rank(entry.service, entry.constraints, candidates)[0]
            self._plan(entry, best)  # type: ignore[arg-type]
            planned += 1
            free = [s for s in free if s.capacity > 0]
            if not free:
                break
        return planned

    # -- placing a job as it is submitted -----------------------------------------------------
    def reserve_direct(self, job: Job) -> tuple[MinerSession, str, float] | None:
        """A slot for a job being submitted, when no job queued here waits ahead of it.

        With an empty queue the new job is the only one waiting, so placing it at once keeps
        priority and FIFO order and saves the separate claim write: the job is stored already
        ASSIGNED (one durable write) and the assignment goes out after that commit (or is kept
        ready, when the chosen miner has no free slot). Returns the miner, the lease id and the
        grace for assign_to. The caller must end the reservation with `placed` or `unreserve`.
        """
        if self.queue:
            return None
        candidates = [
            s
            for s in self.sessions.values()
            if s.capacity > 0 and mismatch(job.service, job.constraints, s.profile) is None
        ]
        if not candidates:
            return None
        best = self.ranker.rank(job.service, job.constraints, candidates)[0]
        assert isinstance(best, MinerSession)
        grace = self._reserve(best)
        return best, "lease_" + secrets.token_hex(16), grace

    def _reserve(self, session: MinerSession) -> float:
        """Promise the miner's next place to a claim; its grace (nonzero for a place to keep
        the job ready in, when no slot is free)."""
        grace = 0.0 if session.free_slots > 0 else self.stage_grace_s
        session.reserved += 1
        session.last_assigned_mono = self.clock.monotonic()
        return grace

    def assign_to(self, job: Job, session: MinerSession, lease_id: str, grace_s: float) -> Job:
        """`job` (QUEUED) as ASSIGNED to `session` under `lease_id`, at that miner's price."""
        offer = session.profile.offers[job.service]
        return lifecycle.assign(
            job,
            miner_id=session.miner_id,
            lease_id=lease_id,
            now=self.clock.now(),
            unit_price=offer.unit_price,
            unit_type=offer.unit_type,
            grace_s=grace_s,
        )

    def unreserve(self, session: MinerSession) -> None:
        session.reserved -= 1
        self.kick()

    def placed(self, session: MinerSession, job: Job) -> None:
        """The ASSIGNED job is stored: hand it to the miner."""
        session.reserved -= 1
        self._handover(session, job)

    def _handover(self, session: MinerSession, job: Job) -> None:
        """The stored assignment goes to the miner: now into a free slot, or kept ready."""
        if (
            session.mode != "stream"
            or not session.connected
            or self.sessions.get(session.miner_id) is not session
        ):
            # A polling miner takes it on its next poll; a stream that ended meanwhile has
            # its job put back in the queue by the assignment callback.
            self._send(session, job)
        elif session.draining:
            if session.running < session.profile.slots:
                self._send(session, job)  # claimed for a free slot before the drain
            else:
                self.give_back(session, [job], "the miner is draining")
        else:
            bisect.insort(
                session.staged,
                Staged(order_key(job), job, self.clock.monotonic()),
                key=lambda e: e.key,
            )
            self.promote(session)

    def promote(self, session: MinerSession) -> None:
        """Send kept jobs into the miner's free slots, best first (no write: they are stored)."""
        if not session.connected or session.draining:
            return  # its kept jobs went back to the queue already
        slots = session.profile.slots
        while session.staged and session.running < slots:
            self._send(session, session.staged.pop(0).job)

    def _send(self, session: MinerSession, job: Job) -> None:
        session.leases[job.lease_id] = job.job_id
        self._on_assigned(session, AssignmentOut(job.lease_id, job, job.deadline_at or 0.0))

    def give_back(self, session: MinerSession, jobs: Iterable[Job], why: str) -> None:
        """Jobs assigned to this miner and never sent to it go back to the queue (no attempt is
        counted): it drained, left, was replaced, or they waited too long."""
        for job in jobs:
            log.info(
                "job %s goes back to the queue: %s",
                job.job_id,
                why,
                extra={"miner_id": session.miner_id},
            )
            self._track(self._unassign(session.miner_id, job.job_id, job.lease_id))

    def give_back_staged(
        self, session: MinerSession, why: str, *, older_than_mono: float | None = None
    ) -> None:
        """Every kept job of this miner (or those staged before `older_than_mono`) goes back."""
        keep = (
            []
            if older_than_mono is None
            else [e for e in session.staged if e.at_mono >= older_than_mono]
        )
        back = [e.job for e in session.staged if e not in keep]
        session.staged[:] = keep
        if back:
            self.give_back(session, back, why)
            self.kick()

    def retry_give_backs(self) -> None:
        unwritten, self._unwritten = self._unwritten, {}
        for job_id, (miner_id, lease_id) in unwritten.items():
            self._track(self._unassign(miner_id, job_id, lease_id))

    async def _unassign(self, miner_id: str, job_id: str, lease_id: str) -> None:
        def transition(job: Job) -> Job | None:
            if (
                job.state is not JobState.ASSIGNED
                or job.miner_id != miner_id
                or job.lease_id != lease_id
            ):
                return None  # the lease ended meanwhile (canceled, expired): nothing to undo
            return lifecycle.unassign(job)

        try:
            await self.book.mutate(job_id, transition)
        except errors.NotFound:
            pass
        except Exception as exc:
            log.warning("job %s could not go back to the queue yet: %r", job_id, exc)
            self._unwritten[job_id] = (miner_id, lease_id)

    def _track(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._claims.add(task)
        task.add_done_callback(self._claims.discard)

    def _plan(self, entry: QueuedJob, session: MinerSession) -> None:
        self.queue.remove(entry.job_id)
        self._claiming.add(entry.job_id)
        grace = self._reserve(session)
        self._track(self._claim(entry, session, grace))

    async def _claim(self, entry: QueuedJob, session: MinerSession, grace_s: float) -> None:
        lease_id = "lease_" + secrets.token_hex(16)

        def transition(job: Job) -> Job | None:
            if job.state is not JobState.QUEUED:
                return None
            return self.assign_to(job, session, lease_id, grace_s)

        new: Job | None = None
        try:
            _, new = await self.book.mutate(entry.job_id, transition)
        except errors.AitbcError as exc:
            log.info("claim of %s skipped: %s", entry.job_id, exc.message)
        except Exception:
            log.exception("claim of %s failed", entry.job_id)
        finally:
            session.reserved -= 1
            self._claiming.discard(entry.job_id)
        if new is None:
            # Lost the race or the job changed; if it is still queued, put it back.
            job = await self.book.load(entry.job_id)
            if job is not None:
                self.offer(job)
            self.kick()
            return
        self._handover(session, new)

    async def settle(self) -> None:
        """Wait for claims and give-backs in flight (tests, shutdown)."""
        while self._claims:
            await asyncio.gather(*list(self._claims), return_exceptions=True)

    # -- explanations -----------------------------------------------------------------------
    def why_waiting(self, job: Job) -> str:
        if job.state is not JobState.QUEUED:
            return ""
        online = [s for s in self.sessions.values() if s.connected]
        if not online:
            return "no miner is connected"
        reasons = []
        matching = []
        for s in online:
            why = mismatch(job.service, job.constraints, s.profile)
            if why is None:
                matching.append(s)
            else:
                reasons.append(f"{s.miner_id}: {why}")
        if not matching:
            shown = "; ".join(sorted(reasons)[:3])
            more = f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else ""
            return f"no connected miner can run it: {shown}{more}"
        draining = sum(1 for s in matching if s.draining)
        pos = self.queue.position(job.job_id)
        text = f"waiting for a free slot on {len(matching)} matching miner(s)"
        if draining:
            text += f", {draining} of them draining"
        return text + (f"; position {pos} in the '{job.service}' queue" if pos else "")
