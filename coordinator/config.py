"""The coordinator's configuration: AITBC_* environment (and .env), loaded once at start-up."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from coordinator.domain.settings import DEFAULT_SERVICES, Settings
from coordinator.domain.validation import Limits
from core.eventloop import LOOPS
from core.server import ServerConfig

KiB, MiB = 1024, 1024 * 1024
SERVICE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def _f(default, doc: str, **meta):
    return field(default=default, metadata={"doc": doc, **meta})


@dataclass(frozen=True)
class CoordinatorConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    data_dir: Path = _f(Path("data"), "Directory for the SQLite database, keys and artifacts.")
    database_url: str = _f(
        "",
        "SQLAlchemy URL; empty means SQLite at <data_dir>/coordinator.db. "
        "PostgreSQL: postgresql+psycopg://user@host:5432/db",
    )
    store_writer: str = _f(
        "process",
        "Where the group-commit writer runs: 'process' (its own process, so it never waits for "
        "the event loop's GIL) or 'thread' (in the coordinator process).",
        choices=("process", "thread"),
    )
    http_host: str = _f("127.0.0.1", "Address the REST gateway binds.")
    http_port: int = _f(8080, "REST gateway port; 0 picks a free port.", min=0, max=65535)
    http_max_body_bytes: int = _f(
        1 * MiB, "Largest REST request body, bytes (413 above).", min=1024, max=256 * MiB
    )
    client_keys: str = _f(
        "",
        "Client API keys, comma-separated id=secret pairs (empty: dev keys are generated).",
        secret=True,
    )
    miner_keys: str = _f("", "Miner API keys, comma-separated id=secret pairs.", secret=True)
    admin_keys: str = _f("", "Admin API keys, comma-separated id=secret pairs.", secret=True)
    services: tuple[str, ...] = _f(
        tuple(sorted(DEFAULT_SERVICES)), "Registry services jobs may name."
    )
    max_payload_bytes: int = _f(
        256 * KiB, "Largest job parameters object (JSON), bytes.", min=1024, max=64 * MiB
    )
    max_inline_result_bytes: int = _f(
        1 * MiB,
        "Largest inline result (JSON), bytes; larger ones are artifacts.",
        min=1024,
        max=64 * MiB,
    )
    default_ttl_s: int = _f(
        3600, "Queue wait limit when a job names none, seconds.", min=1, max=30 * 86400
    )
    max_ttl_s: int = _f(
        7 * 86400, "Largest queue wait limit a job may ask for, seconds.", min=1, max=365 * 86400
    )
    default_run_timeout_s: int = _f(
        3600, "Run time limit when a job names none, seconds.", min=1, max=30 * 86400
    )
    max_run_timeout_s: int = _f(
        7 * 86400, "Largest run time limit a job may ask for, seconds.", min=1, max=365 * 86400
    )
    max_attempts: int = _f(
        3, "Tries per job (disconnects and failures count) before it fails.", min=1, max=100
    )
    heartbeat_interval_s: float = _f(
        5.0,
        "Heartbeat interval miners keep unless they announce their own, seconds.",
        min=1,
        max=60,
    )
    missed_heartbeats: int = _f(
        3, "Silent intervals after which a miner loses its leases.", min=2, max=100
    )
    sweep_interval_s: float = _f(
        1.0, "How often expiry and liveness are checked, seconds.", min=0.05, max=60
    )
    queue_refill_interval_s: float = _f(
        1.0,
        "How often queued jobs submitted to other coordinator processes are picked up, seconds.",
        min=0.05,
        max=60,
    )
    watch_poll_interval_s: float = _f(
        2.0,
        "How often watched jobs are read again for changes made by other coordinator processes, "
        "seconds (one read covers every watcher).",
        min=0.05,
        max=60,
    )
    start_write_delay_ms: int = _f(
        50,
        "How long a miner's 'started' report may wait to share the write of the job's result "
        "or failure, milliseconds (0: write it at once). RUNNING shows that much later.",
        min=0,
        max=5000,
    )
    max_poll_wait_s: int = _f(
        60, "Longest long-poll a polling miner may ask for, seconds.", min=1, max=300
    )
    prefetch_per_slot: int = _f(
        1,
        "Jobs kept ready per slot of a streaming miner whose recent jobs are short (see "
        "AITBC_PREFETCH_MAX_JOB_MS): stored as assigned to it, sent the moment a slot frees "
        "instead of after another commit; 0: none.",
        min=0,
        max=16,
    )
    prefetch_max_job_ms: int = _f(
        1000,
        "Jobs are kept ready only for miners whose recent jobs took less than this "
        "(moving average), milliseconds; a kept job not sent within twice this goes back "
        "to the queue.",
        min=10,
        max=60000,
    )
    public_url: str = _f(
        "",
        "Base URL clients and miners reach the REST gateway at (artifact links); empty: http://<http_host>:<http_port>.",
    )
    artifact_max_bytes: int = _f(
        15 * MiB,
        "Largest artifact a miner may upload, bytes (below the gRPC message limit).",
        min=1024,
        max=2**31 - 1,
    )
    coordinator_id: str = _f("coordinator-1", "This coordinator's id (in receipts and logs).")
    chain_id: int = _f(1, "Chain id written into receipts.", min=0, max=2**53)
    receipt_signing_key_hex: str = field(
        default="",
        metadata={
            "env": "RECEIPT_SIGNING_KEY_HEX",
            "secret": True,
            "doc": "32-byte Ed25519 seed (hex) signing receipts; empty: one is created under the data dir.",
        },
    )
    receipt_attestation_key_hex: str = field(
        default="",
        metadata={
            "env": "RECEIPT_ATTESTATION_KEY_HEX",
            "secret": True,
            "doc": "32-byte Ed25519 seed (hex) attesting receipts; empty: receipts carry no attestation.",
        },
    )
    rate_limits: str = _f(
        "submit=100/200,read=500/1000,miner=2000/4000,admin=50/100",
        "Per API key limits by route class as class=rate_per_s/burst (classes: submit, read, miner, admin; '*' for the rest); empty: no limits.",
    )
    redis_url: str = _f(
        "",
        "Redis URL (redis://host:6379/0); when set, rate limits and HMAC nonces are shared by every coordinator process.",
    )
    redis_key_prefix: str = _f("aitbc:", "Prefix of every Redis key this coordinator writes.")
    hmac_required: bool = _f(
        False, "Every client key must carry an HMAC secret and sign every request."
    )
    hmac_skew_s: int = _f(
        300, "Accepted clock difference of signed requests, seconds.", min=1, max=3600
    )
    event_loop: str = _f(
        "uvloop", "Event loop the coordinator runs on (uvloop is faster).", choices=LOOPS
    )
    log_level: str = _f("INFO", "Log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    log_format: str = _f("json", "Log line format.", choices=("json", "text"))

    def __post_init__(self) -> None:
        if self.rate_limits:
            from core.ratelimit import parse_rules

            try:
                parse_rules(self.rate_limits)
            except ValueError as exc:
                raise ValueError(f"AITBC_RATE_LIMITS: {exc}") from None
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "AITBC_REDIS_URL: expected redis://host:port/db, rediss://... or unix://..."
            )
        bad = [s for s in self.services if not SERVICE_RE.match(s)]
        if bad or not self.services:
            raise ValueError(
                f"AITBC_SERVICES: expected lowercase service names like 'ffmpeg', got {bad or 'none'}"
            )

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'coordinator.db').resolve()}"

    def settings(self) -> Settings:
        return Settings(
            limits=Limits(
                services=frozenset(self.services),
                max_payload_bytes=self.max_payload_bytes,
                default_ttl_s=self.default_ttl_s,
                max_ttl_s=self.max_ttl_s,
                default_run_timeout_s=self.default_run_timeout_s,
                max_run_timeout_s=self.max_run_timeout_s,
                max_inline_result_bytes=self.max_inline_result_bytes,
            ),
            max_attempts=self.max_attempts,
            heartbeat_interval_s=self.heartbeat_interval_s,
            missed_heartbeats=self.missed_heartbeats,
            sweep_interval_s=self.sweep_interval_s,
            refill_interval_s=self.queue_refill_interval_s,
            watch_poll_interval_s=self.watch_poll_interval_s,
            start_write_delay_s=self.start_write_delay_ms / 1000,
            max_poll_wait_s=self.max_poll_wait_s,
            prefetch_per_slot=self.prefetch_per_slot,
            prefetch_max_job_s=self.prefetch_max_job_ms / 1000,
            coordinator_id=self.coordinator_id,
        )

    def replace(self, **changes) -> CoordinatorConfig:
        return dataclasses.replace(self, **changes)
