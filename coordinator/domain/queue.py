"""In-memory index of QUEUED jobs: per service, ordered by priority (high first), then FIFO."""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from coordinator.domain.model import Constraints, Job

Key = tuple[int, float, str]


def order_key(job: Job) -> Key:
    """Dispatch order: priority (high first), then FIFO."""
    return (-job.constraints.priority, job.created_at, job.job_id)


@dataclass(frozen=True, slots=True)
class QueuedJob:
    job_id: str
    service: str
    constraints: Constraints
    key: Key


class JobQueue:
    def __init__(self) -> None:
        self._lists: dict[str, list[Key]] = {}
        self._entries: dict[str, QueuedJob] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._entries

    def add(self, job: Job) -> bool:
        if job.job_id in self._entries:
            return False
        key = order_key(job)
        self._entries[job.job_id] = QueuedJob(job.job_id, job.service, job.constraints, key)
        bisect.insort(self._lists.setdefault(job.service, []), key)
        return True

    def remove(self, job_id: str) -> QueuedJob | None:
        entry = self._entries.pop(job_id, None)
        if entry is not None:
            keys = self._lists[entry.service]
            i = bisect.bisect_left(keys, entry.key)
            if i < len(keys) and keys[i] == entry.key:
                del keys[i]
            if not keys:
                del self._lists[entry.service]
        return entry

    def get(self, job_id: str) -> QueuedJob | None:
        return self._entries.get(job_id)

    def services(self) -> set[str]:
        return set(self._lists)

    def ordered(self, services: Iterable[str]) -> Iterator[QueuedJob]:
        """Queued jobs of these services in global dispatch order (a snapshot)."""
        lists = [list(self._lists[s]) for s in services if s in self._lists]
        for key in heapq.merge(*lists):
            entry = self._entries.get(key[2])
            if entry is not None:
                yield entry

    def position(self, job_id: str) -> int:
        """1-based position among queued jobs of the same service, or 0."""
        entry = self._entries.get(job_id)
        if entry is None:
            return 0
        return bisect.bisect_left(self._lists[entry.service], entry.key) + 1
