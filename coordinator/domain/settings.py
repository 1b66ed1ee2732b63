"""Domain settings (plain values; coordinator/config.py maps the AITBC_* environment onto them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from coordinator.domain.validation import Limits

DEFAULT_SERVICES = frozenset(
    {"ffmpeg", "blender", "llm", "whisper", "stable-diffusion", "echo", "sha256", "sleep"}
)


@dataclass(frozen=True, slots=True)
class Settings:
    limits: Limits = field(
        default_factory=lambda: Limits(
            services=DEFAULT_SERVICES,
            max_payload_bytes=256 * 1024,
            default_ttl_s=3600,
            max_ttl_s=7 * 86400,
            default_run_timeout_s=3600,
            max_run_timeout_s=7 * 86400,
            max_inline_result_bytes=1024 * 1024,
        )
    )
    max_attempts: int = 3
    heartbeat_interval_s: float = 5.0
    missed_heartbeats: int = 3
    sweep_interval_s: float = 1.0
    reconcile_interval_s: float = 5.0
    refill_interval_s: float = 1.0
    refill_limit: int = 5000
    # Watched jobs are read again this often: other processes' changes reach the watchers.
    watch_poll_interval_s: float = 2.0
    progress_persist_interval_s: float = 2.0
    # A miner's "started" is written this long after it arrives, unless the job's result or
    # failure comes first and carries it in the same write (short jobs: one write, not two).
    start_write_delay_s: float = 0.05
    max_poll_wait_s: int = 60
    # Jobs kept ready per slot of a streaming miner whose recent jobs took less than
    # prefetch_max_job_s (0: none): a freed slot takes the next job without waiting for a
    # commit. A kept job not sent within stage_max_wait_s goes back to the queue.
    prefetch_per_slot: int = 1
    prefetch_max_job_s: float = 1.0
    coordinator_id: str = "coordinator-1"

    @property
    def stage_max_wait_s(self) -> float:
        """How long a job kept ready for a miner may wait before it goes back to the queue."""
        return 2 * self.prefetch_max_job_s
