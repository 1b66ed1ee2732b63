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


class Close:
    """Sentinel: the coordinator ends this stream (replaced by a newer one, or silent)."""

    def __init__(self, reason: str):
        self.reason = reason


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
    reserved: int = 0  # slots promised to claims being written
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
    def free_slots(self) -> int:
        if self.draining or not self.connected:
            return 0
        held = len(self.leases)
        if self.finishing:
            held -= len(self.finishing & self.leases.keys())
        return max(0, self.profile.slots - held - self.reserved)

    def finish(self, lease_id: str) -> bool:
        """The miner reported this lease's end: its slot is free while the report is written.
        False when the lease is not held here (stale, or another connection's)."""
        if lease_id not in self.leases or lease_id in self.finishing:
            return False
        self.finishing.add(lease_id)
        return True

    @property
    def capacity(self) -> int:
        """Assignments the dispatcher may hand out now (push with credit)."""
        free = self.free_slots
        if self.mode == "poll":
            return max(0, min(free, self.poll_waiters - len(self.pending)))
        return free

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
