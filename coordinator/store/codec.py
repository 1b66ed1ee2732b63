"""Exact Job/MinerRecord/ReceiptRecord <-> row mapping and opaque page cursors."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from coordinator.domain.model import Attempt, Constraints, Job, JobState, MinerRecord, ResultRef
from coordinator.store.base import ReceiptRecord
from core.errors import InvalidArgument
from core.receipts.canonical import one_shot_encoder

# Columns update_job writes: everything but what a job is created with.
MUTABLE_JOB_COLUMNS = (
    "state",
    "attempt",
    "assigned_at",
    "started_at",
    "finished_at",
    "miner_id",
    "lease_id",
    "deadline_at",
    "error_code",
    "error_message",
    "result",
    "progress_fraction",
    "progress_message",
    "progress_at",
    "attempts",
    "unit_price",
    "unit_type",
)


# Built once: json.dumps with non-default options constructs an encoder on every call, and
# one_shot_encoder skips JSONEncoder.encode's Python layers too (same text, same errors).
_encode = one_shot_encoder(separators=(",", ":"), allow_nan=False)


def dumps(value: Any, field: str) -> str:
    try:
        return _encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument.field(field, f"not storable as JSON: {exc}") from exc


def _decimal_str(value: Decimal | None, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Decimal) or not value.is_finite():
        raise InvalidArgument.field(field, f"must be a finite Decimal, got {value!r}")
    return str(value)


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def constraints_json(c: Constraints) -> str:
    return dumps(
        {
            "gpu_names": list(c.gpu_names),
            "min_vram_gb": c.min_vram_gb,
            "region": c.region,
            "models": list(c.models),
            "min_cuda": c.min_cuda,
            "max_price": _decimal_str(c.max_price, "constraints.max_price"),
            "priority": c.priority,
        },
        "constraints",
    )


def constraints_from(text: str) -> Constraints:
    d = json.loads(text)
    return Constraints(
        gpu_names=tuple(d["gpu_names"]),
        min_vram_gb=d["min_vram_gb"],
        region=d["region"],
        models=tuple(d["models"]),
        min_cuda=d["min_cuda"],
        max_price=_decimal(d["max_price"]),
        priority=d["priority"],
    )


def result_json(r: ResultRef | None) -> str | None:
    if r is None:
        return None
    return dumps(
        {
            "sha256": r.sha256,
            "inline": r.inline,
            "artifact_url": r.artifact_url,
            "artifact_size": r.artifact_size,
            "artifact_content_type": r.artifact_content_type,
        },
        "result",
    )


def result_from(text: str | None) -> ResultRef | None:
    return None if text is None else ResultRef(**json.loads(text))


def attempts_json(attempts: list[Attempt]) -> str:
    return dumps(
        [
            {
                "attempt": a.attempt,
                "miner_id": a.miner_id,
                "assigned_at": a.assigned_at,
                "outcome": a.outcome,
                "reason": a.reason,
                "ended_at": a.ended_at,
            }
            for a in attempts
        ],
        "attempts",
    )


def attempts_from(text: str) -> list[Attempt]:
    return [Attempt(**a) for a in json.loads(text)]


def job_mutable_values(job: Job) -> dict[str, Any]:
    return {
        "state": JobState(job.state).value,
        "attempt": job.attempt,
        "assigned_at": job.assigned_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "miner_id": job.miner_id,
        "lease_id": job.lease_id,
        "deadline_at": job.deadline_at,
        "error_code": job.error_code,
        "error_message": job.error_message,
        "result": result_json(job.result),
        "progress_fraction": job.progress_fraction,
        "progress_message": job.progress_message,
        "progress_at": job.progress_at,
        "attempts": attempts_json(job.attempts),
        "unit_price": _decimal_str(job.unit_price, "unit_price"),
        "unit_type": job.unit_type,
    }


def job_row(job: Job, version: int) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "client_id": job.client_id,
        "service": job.service,
        "parameters": dumps(job.parameters, "parameters"),
        "constraints": constraints_json(job.constraints),
        "priority": job.constraints.priority,
        "ttl_s": job.ttl_s,
        "run_timeout_s": job.run_timeout_s,
        "created_at": job.created_at,
        "idempotency_key": job.idempotency_key or None,
        "request_hash": job.request_hash,
        **job_mutable_values(job),
        "version": version,
    }


def job_from(m: Mapping[str, Any]) -> Job:
    return Job(
        job_id=m["job_id"],
        client_id=m["client_id"],
        service=m["service"],
        parameters=json.loads(m["parameters"]),
        constraints=constraints_from(m["constraints"]),
        ttl_s=m["ttl_s"],
        run_timeout_s=m["run_timeout_s"],
        created_at=m["created_at"],
        state=JobState(m["state"]),
        attempt=m["attempt"],
        assigned_at=m["assigned_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        miner_id=m["miner_id"],
        lease_id=m["lease_id"],
        deadline_at=m["deadline_at"],
        error_code=m["error_code"],
        error_message=m["error_message"],
        result=result_from(m["result"]),
        progress_fraction=m["progress_fraction"],
        progress_message=m["progress_message"],
        progress_at=m["progress_at"],
        attempts=attempts_from(m["attempts"]),
        idempotency_key=m["idempotency_key"] or "",
        request_hash=m["request_hash"],
        unit_price=_decimal(m["unit_price"]),
        unit_type=m["unit_type"],
        version=m["version"],
    )


def miner_row(m: MinerRecord) -> dict[str, Any]:
    return {
        "miner_id": m.miner_id,
        "capabilities": dumps(m.capabilities, "capabilities"),
        "mode": m.mode,
        "public_key": m.public_key,
        "first_seen_at": m.first_seen_at,
        "last_seen_at": m.last_seen_at,
        "completed": m.completed,
        "failed": m.failed,
        "total_duration_ms": m.total_duration_ms,
    }


def miner_from(m: Mapping[str, Any]) -> MinerRecord:
    return MinerRecord(**{**m, "capabilities": json.loads(m["capabilities"])})


def receipt_row(r: ReceiptRecord) -> dict[str, Any]:
    return {
        "receipt_id": r.receipt_id,
        "job_id": r.job_id,
        "key_id": r.key_id,
        "created_at": r.created_at,
        "document": bytes(r.document),
    }


def receipt_from(m: Mapping[str, Any]) -> ReceiptRecord:
    return ReceiptRecord(
        receipt_id=m["receipt_id"],
        job_id=m["job_id"],
        key_id=m["key_id"],
        created_at=m["created_at"],
        document=bytes(m["document"]),
    )


def encode_cursor(created_at: float, key: str) -> str:
    raw = json.dumps([created_at, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(token: str) -> tuple[float, str]:
    """(created_at, id) of the last row of the previous page; InvalidArgument when malformed."""
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        created_at, key = json.loads(raw)
        if isinstance(created_at, bool) or not isinstance(created_at, int | float):
            raise ValueError("created_at")
        if not isinstance(key, str) or not key or not math.isfinite(created_at):
            raise ValueError("key")
        return float(created_at), key
    except (ValueError, TypeError, binascii.Error, InvalidOperation) as exc:
        raise InvalidArgument.field("page_token", "malformed page token") from exc
