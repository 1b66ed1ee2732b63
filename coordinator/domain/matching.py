"""Matching a job's constraints and service against a miner's capabilities, and ranking."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from coordinator.domain.model import Constraints


@dataclass(frozen=True, slots=True)
class Offer:
    unit_price: Decimal
    unit_type: str = "gpu_seconds"


@dataclass(frozen=True, slots=True)
class MinerProfile:
    """What a miner can do, validated from its hello/registration."""

    gpu_names: tuple[str, ...] = ()
    gpu_memory_mb: tuple[int, ...] = ()
    cuda_version: tuple[int, ...] = ()
    region: str = ""
    models: frozenset[str] = frozenset()
    offers: dict[str, Offer] = field(default_factory=dict)
    slots: int = 1


def parse_version(text: str) -> tuple[int, ...]:
    """'12.4' -> (12, 4); raises ValueError on anything else."""
    parts = text.strip().split(".")
    if not text.strip() or len(parts) > 4 or not all(p.isdigit() and len(p) <= 4 for p in parts):
        raise ValueError(f"expected a version like '12.4', got {text!r}")
    return tuple(int(p) for p in parts)


def mismatch(service: str, c: Constraints, m: MinerProfile) -> str | None:
    """None when the miner can take the job, else the first reason it cannot."""
    offer = m.offers.get(service)
    if offer is None:
        return f"does not offer service '{service}'"
    if c.max_price is not None and offer.unit_price > c.max_price:
        return f"price {offer.unit_price} > max_price {c.max_price}"
    if c.region and c.region.lower() != m.region.lower():
        return f"region '{m.region}' != '{c.region}'"
    if c.gpu_names:
        wanted = [g.lower() for g in c.gpu_names]
        if not any(w in name.lower() for name in m.gpu_names for w in wanted):
            return f"no GPU among {list(c.gpu_names)}"
    if c.min_vram_gb and max(m.gpu_memory_mb, default=0) < c.min_vram_gb * 1024:
        return f"less than {c.min_vram_gb} GiB of GPU memory"
    if c.min_cuda:
        if not m.cuda_version or m.cuda_version < parse_version(c.min_cuda):
            return f"CUDA below {c.min_cuda}"
    missing = [x for x in c.models if x not in m.models]
    if missing:
        return f"missing models {missing}"
    return None


class Candidate(Protocol):
    miner_id: str

    @property
    def free_slots(self) -> int: ...

    @property
    def last_assigned_mono(self) -> float: ...


class MinerRanker(Protocol):
    """Orders the miners that can take a job, best first (the pool hub plugs in here)."""

    def rank(
        self, service: str, constraints: Constraints, candidates: Sequence[Candidate]
    ) -> list[Candidate]: ...


class DefaultRanker:
    """Most free slots first, then the least recently assigned."""

    def rank(
        self, service: str, constraints: Constraints, candidates: Sequence[Candidate]
    ) -> list[Candidate]:
        return sorted(candidates, key=lambda c: (-c.free_slots, c.last_assigned_mono, c.miner_id))
