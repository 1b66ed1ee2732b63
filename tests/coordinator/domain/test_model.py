"""Domain dataclasses: copying a job."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from coordinator.domain.model import Attempt, Constraints, Job, JobState, ResultRef, copy_job


def a_job_with_every_field_set() -> Job:
    values = {
        "job_id": "job_" + "a" * 32,
        "client_id": "alice",
        "service": "echo",
        "parameters": {"text": "hi"},
        "constraints": Constraints(region="eu-west", priority=3),
        "ttl_s": 60,
        "run_timeout_s": 30,
        "created_at": 1.0,
        "state": JobState.COMPLETED,
        "attempt": 2,
        "assigned_at": 2.0,
        "started_at": 3.0,
        "finished_at": 4.0,
        "miner_id": "m1",
        "lease_id": "lease_" + "b" * 32,
        "deadline_at": 5.0,
        "error_code": "e",
        "error_message": "m",
        "result": ResultRef(sha256="c" * 64, inline={"ok": True}),
        "progress_fraction": 0.5,
        "progress_message": "half",
        "progress_at": 3.5,
        "attempts": [Attempt(attempt=1, miner_id="m0", assigned_at=1.5, outcome="lease_lost")],
        "idempotency_key": "k",
        "request_hash": "d" * 64,
        "unit_price": Decimal("0.25"),
        "unit_type": "gpu_seconds",
        "version": 7,
    }
    # Every field is set here, so a field added to Job without a value here fails this test.
    assert set(values) == {f.name for f in dataclasses.fields(Job)}
    return Job(**values)


def test_copy_job_equals_replace_and_is_a_new_object():
    job = a_job_with_every_field_set()
    copied = copy_job(job)
    assert copied == job == dataclasses.replace(job)
    assert copied is not job
    copied.state, copied.version = JobState.FAILED, 8
    assert (job.state, job.version) == (JobState.COMPLETED, 7)  # the original is untouched
    # Shallow, as replace(): containers are shared until the caller copies them.
    assert copied.attempts is job.attempts
