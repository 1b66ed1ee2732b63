"""The job state machine: every transition is validated here and nowhere else.

Each function takes a Job and returns a changed copy (the caller stores it with compare-and-set),
so a refused write leaves the cached job untouched.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from coordinator.domain.model import Attempt, Job, JobState, ResultRef, copy_job
from core import errors

Q, A, R = JobState.QUEUED, JobState.ASSIGNED, JobState.RUNNING
ALLOWED: dict[JobState, frozenset[JobState]] = {
    Q: frozenset({A, JobState.CANCELED, JobState.EXPIRED, JobState.FAILED}),
    # A miner may deliver without a separate "started" (polling miners): ASSIGNED -> COMPLETED.
    A: frozenset({R, Q, JobState.COMPLETED, JobState.FAILED, JobState.CANCELED, JobState.EXPIRED}),
    R: frozenset({Q, JobState.COMPLETED, JobState.FAILED, JobState.CANCELED, JobState.EXPIRED}),
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELED: frozenset(),
    JobState.EXPIRED: frozenset(),
}


def can_transition(src: JobState, dst: JobState) -> bool:
    return dst in ALLOWED[src]


def _moved(job: Job, dst: JobState) -> Job:
    if not can_transition(job.state, dst):
        raise errors.FailedPrecondition(
            f"job {job.job_id} is {job.state.value}; it cannot become {dst.value}",
            reason="invalid_transition",
            metadata={"from": job.state.value, "to": dst.value},
        )
    new = copy_job(job)
    new.state, new.attempts = dst, list(job.attempts)
    return new


def _close_attempt(job: Job, outcome: str, reason: str, now: float) -> None:
    if job.attempts and not job.attempts[-1].outcome:
        job.attempts[-1] = replace(job.attempts[-1], outcome=outcome, reason=reason, ended_at=now)


def _release(job: Job) -> None:
    job.miner_id = ""
    job.lease_id = ""
    job.assigned_at = None
    job.started_at = None
    job.deadline_at = None


def assign(
    job: Job,
    *,
    miner_id: str,
    lease_id: str,
    now: float,
    unit_price: Decimal | None,
    unit_type: str,
    grace_s: float = 0.0,
) -> Job:
    """`grace_s`: the longest the assignment may wait at the coordinator before it is sent (a
    job kept ready for a busy miner); its run time limit starts no earlier than that."""
    new = _moved(job, A)
    new.miner_id, new.lease_id = miner_id, lease_id
    new.assigned_at, new.started_at = now, None
    new.deadline_at = now + job.run_timeout_s + grace_s
    new.unit_price, new.unit_type = unit_price, unit_type
    new.attempts.append(Attempt(attempt=job.attempt, miner_id=miner_id, assigned_at=now))
    return new


def unassign(job: Job) -> Job:
    """An assignment the miner was never sent goes back to the queue: the same attempt, and no
    record of the assignment (a job kept ready for a miner that drained, left or took too long)."""
    if job.state is not A:
        raise errors.FailedPrecondition(
            f"job {job.job_id} is {job.state.value}; only an unsent assignment goes back",
            reason="invalid_transition",
            metadata={"from": job.state.value, "to": Q.value},
        )
    new = _moved(job, Q)
    if new.attempts and not new.attempts[-1].outcome:
        new.attempts.pop()
    _release(new)
    new.deadline_at = new.created_at + new.ttl_s
    return new


def start(job: Job, *, now: float) -> Job:
    new = _moved(job, R)
    new.started_at = now
    return new


def progress(job: Job, *, fraction: float, message: str, now: float) -> Job:
    if not job.state.leased:
        raise errors.FailedPrecondition(
            f"job {job.job_id} is {job.state.value}: no progress accepted", reason="not_running"
        )
    new = copy_job(job)
    new.attempts = list(job.attempts)
    new.progress_fraction = max(job.progress_fraction, min(1.0, max(0.0, fraction)))
    new.progress_message, new.progress_at = message, now
    return new


def complete(job: Job, *, result: ResultRef, now: float) -> Job:
    new = _moved(job, JobState.COMPLETED)
    if new.started_at is None:
        new.started_at = new.assigned_at
    new.result, new.finished_at, new.deadline_at = result, now, None
    new.progress_fraction, new.progress_message, new.progress_at = 1.0, "", now
    _close_attempt(new, "completed", "", now)
    return new


def _terminal_failure(new: Job, code: str, message: str, now: float) -> Job:
    new.error_code, new.error_message = code, message
    new.finished_at, new.deadline_at = now, None
    return new


def retry_or_fail(
    job: Job,
    *,
    outcome: str,
    code: str,
    message: str,
    retryable: bool,
    now: float,
    max_attempts: int,
) -> Job:
    """A lease ended without a result: back to the queue while the retry budget lasts."""
    if retryable and job.attempt < max_attempts:
        new = _moved(job, Q)
        _close_attempt(new, outcome, f"{code}: {message}" if message else code, now)
        _release(new)
        new.attempt = job.attempt + 1
        new.progress_fraction, new.progress_message, new.progress_at = 0.0, "", None
        new.deadline_at = new.created_at + new.ttl_s
        # A requeued job keeps its queue deadline; if that has passed, the sweeper expires it.
        return new
    new = _moved(job, JobState.FAILED)
    _close_attempt(new, outcome, f"{code}: {message}" if message else code, now)
    if retryable:
        history = "; ".join(
            f"attempt {a.attempt} on {a.miner_id}: {a.outcome} ({a.reason})" for a in new.attempts
        )
        return _terminal_failure(
            new,
            "retry_budget_exhausted",
            f"gave up after {job.attempt} attempt(s) (budget {max_attempts}): {history}",
            now,
        )
    return _terminal_failure(new, code, message, now)


def cancel(job: Job, *, reason: str, now: float) -> Job:
    if job.state.terminal:
        raise errors.FailedPrecondition(
            f"job {job.job_id} is already {job.state.value} and cannot be canceled",
            reason="not_cancelable",
            metadata={"state": job.state.value},
            http_status=409,
        )
    new = _moved(job, JobState.CANCELED)
    _close_attempt(new, "canceled", reason, now)
    return _terminal_failure(new, "canceled", reason or "canceled by the client", now)


def expire(job: Job, *, now: float) -> Job:
    new = _moved(job, JobState.EXPIRED)
    if job.state is Q:
        return _terminal_failure(
            new, "queue_ttl_expired", f"no miner took the job within {job.ttl_s} s", now
        )
    _close_attempt(new, "timeout", "run timeout", now)
    return _terminal_failure(
        new,
        "run_timeout",
        f"the job did not finish within {job.run_timeout_s} s of assignment",
        now,
    )
