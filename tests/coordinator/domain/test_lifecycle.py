"""The state machine's transitions for assignments that were never sent (jobs kept ready)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from coordinator.domain import lifecycle
from coordinator.domain.model import Constraints, Job, JobState
from core import errors


def queued() -> Job:
    return Job("job_1", "alice", "echo", {}, Constraints(), 600, 60, 1000.0, deadline_at=1600.0)


def assigned(grace_s: float = 0.0) -> Job:
    return lifecycle.assign(
        queued(),
        miner_id="m1",
        lease_id="lease_1",
        now=1010.0,
        unit_price=Decimal("0.5"),
        unit_type="gpu_second",
        grace_s=grace_s,
    )


def test_the_run_timeout_of_a_kept_assignment_starts_after_its_grace():
    assert assigned().deadline_at == 1070.0
    assert assigned(grace_s=3.0).deadline_at == 1073.0


def test_an_unsent_assignment_goes_back_as_it_was_queued():
    job = queued()
    back = lifecycle.unassign(assigned())
    assert back.state is JobState.QUEUED
    assert (back.attempt, back.attempts) == (job.attempt, [])
    assert (back.miner_id, back.lease_id, back.assigned_at) == ("", "", None)
    assert back.deadline_at == job.deadline_at  # its queue TTL from creation again


def test_only_an_assigned_job_goes_back_unsent():
    running = lifecycle.start(assigned(), now=1011.0)
    with pytest.raises(errors.FailedPrecondition) as info:
        lifecycle.unassign(running)
    assert info.value.reason == "invalid_transition"
    with pytest.raises(errors.FailedPrecondition):
        lifecycle.unassign(queued())
