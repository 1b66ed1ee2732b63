"""Miner sessions: one per miner id, whether it streams or polls; liveness is derived on read."""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from coordinator.domain.matching import MinerProfile
from coordinator.domain.model import Job


@dataclass(frozen=True, slots=True)
class AssignmentOut:
    lease_id: str
    job: Job
    deadline: float


@dataclass(frozen=True, slots=True)
class CancelOut:
    lease_id: str
    job_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class DrainOut:
    reason: str


@dataclass(frozen=True, slots=True)
class AckOut:
    lease_id: str
    job_id: str
    accepted: bool
    code: str = ""
    message: str = ""
    receipt: str = ""


@dataclass(slots=True)
class Staged:
    """A job stored ASSIGNED to a miner and kept ready here: it goes out as soon as one of the
    miner's slots frees, without waiting for a commit (Dispatcher.promote)."""

    key: tuple[int, float, str]  # queue.order_key: priority (high first), then FIFO
    job: Job
    at_mono: float  # when it was staged (a job kept too long goes back to the queue)


class Close:
    """Sentinel: the coordinator ends this stream (replaced by a newer one, or silent)."""

    def __init__(self, reason: str):
        self.reason = reason


# Weight of the newest job in the moving average of a miner's job time.
_JOB_TIME_WEIGHT = 0.2

Outbound = AssignmentOut | CancelOut | DrainOut | AckOut | Close


@dataclass(eq=False, slots=True)
class MinerSession:
    miner_id: str
    mode: str  # "stream" | "poll"
    profile: MinerProfile
    interval_s: float
    last_seen_mono: float
    session_id: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    leases: dict[str, str] = field(default_factory=dict)  # lease_id -> job_id
    reserved: int = 0  # slots (or stage places) promised to claims being written
    # Jobs claimed for this miner and not sent yet, in dispatch order: at most `prefetch`, and
    # only while its recent jobs are short (stage_room). Streaming miners only.
    staged: list[Staged] = field(default_factory=list)
    prefetch: int = 0
    prefetch_max_job_s: float = 0.0
    # Moving average of assignment sent -> result or failure received; None before the first.
    job_time_s: float | None = None
    sent_mono: dict[str, float] = field(default_factory=dict)  # lease_id -> when it was sent
    # Leases whose result or failure this miner sent and the coordinator is writing: the miner
    # runs them no more, so their slots are free already (the next claim shares that write).
    finishing: set[str] = field(default_factory=set)
    draining: bool = False
    connected: bool = True
    last_assigned_mono: float = 0.0
    load: float = 0.0
    capabilities: dict[str, Any] = field(default_factory=dict)
    public_key: str = ""
    # stream mode: the miner takes several messages in one (ConnectResponse.batch)
    batches: bool = False
    # stream mode: what the coordinator sends, in order
    outbox: asyncio.Queue[Outbound] = field(default_factory=lambda: asyncio.Queue(maxsize=4096))
    # poll mode: assignments waiting for the next poll, and polls waiting for assignments
    pending: deque[AssignmentOut] = field(default_factory=deque)
    pending_event: asyncio.Event = field(default_factory=asyncio.Event)
    poll_waiters: int = 0

    @property
    def running(self) -> int:
        """Leases the miner runs: held, and no result or failure reported yet."""
        held = len(self.leases)
        if self.finishing:
            held -= len(self.finishing & self.leases.keys())
        return held

    @property
    def free_slots(self) -> int:
        if self.draining or not self.connected:
            return 0
        return max(0, self.profile.slots - self.running - self.reserved - len(self.staged))

    @property
    def stage_room(self) -> int:
        """How many jobs may be kept ready for this miner: `prefetch` while its recent jobs
        are short (for long jobs a commit's wait is nothing, and a kept job would only wait
        behind them), else none."""
        t = self.job_time_s
        if self.mode != "stream" or t is None or t >= self.prefetch_max_job_s:
            return 0
        return self.prefetch

    def finish(self, lease_id: str, mono_now: float) -> bool:
        """The miner reported this lease's end: its slot is free while the report is written.
        False when the lease is not held here (stale, or another connection's)."""
        if lease_id not in self.leases or lease_id in self.finishing:
            return False
        self.finishing.add(lease_id)
        sent = self.sent_mono.pop(lease_id, None)
        if sent is not None:
            took = max(0.0, mono_now - sent)
            t = self.job_time_s
            self.job_time_s = took if t is None else t + (took - t) * _JOB_TIME_WEIGHT
        return True

    def drop_lease(self, lease_id: str) -> bool:
        """The lease ended: False when this miner did not hold it."""
        self.sent_mono.pop(lease_id, None)
        self.finishing.discard(lease_id)
        return self.leases.pop(lease_id, None) is not None

    def unstage(self, lease_id: str) -> Staged | None:
        """Take a kept job out (its lease ended, or it goes back to the queue)."""
        for i, entry in enumerate(self.staged):
            if entry.job.lease_id == lease_id:
                return self.staged.pop(i)
        return None

    @property
    def capacity(self) -> int:
        """Assignments the dispatcher may hand out now (push with credit; for a streaming
        miner with short jobs, also places to keep jobs ready)."""
        free = self.free_slots
        if self.mode == "poll":
            return max(0, min(free, self.poll_waiters - len(self.pending)))
        if self.draining or not self.connected:
            return 0
        room = self.profile.slots + self.stage_room
        return max(0, room - self.running - self.reserved - len(self.staged))

    def silent_for(self, mono_now: float) -> float:
        return mono_now - self.last_seen_mono

    def send(self, msg: Outbound) -> bool:
        """Queue a message for the miner; False when it cannot take more (treated as gone)."""
        if self.mode == "poll":
            if isinstance(msg, AssignmentOut):
                self.pending.append(msg)
                self.pending_event.set()
            return True
        try:
            self.outbox.put_nowait(msg)
        except asyncio.QueueFull:
            return False
        return True
