"""Field rules of a receipt document, shared by signing (raise) and verifying (report)."""

from __future__ import annotations

import math
from collections.abc import Mapping

VERSION = "1.0"
STRING_FIELDS = (
    "receipt_id",
    "job_id",
    "provider",
    "client",
    "unit_type",
    "model",
    "coordinator_id",
    "nonce",
)
HASH_FIELDS = ("prompt_hash", "artifact_hash")
# A receipt is evidence about a job, never a copy of it: these metadata keys are refused.
FORBIDDEN_METADATA_KEYS = frozenset({"payload", "result", "prompt", "output"})


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def check_fields(doc: Mapping) -> list[str]:
    """Every rule `doc` breaks, as "<field>: <what>" (empty when it is well formed).

    Hash fields are checked for their "sha256:" prefix only: the original AITBC vector uses
    abbreviated digests. build_receipt() is strict about the 64 hex digits it writes.
    """
    problems: list[str] = []
    version = doc.get("version")
    if version != VERSION:
        problems.append(f"version: unsupported {version!r} (expected {VERSION!r})")
    for name in STRING_FIELDS:
        value = doc.get(name)
        if not isinstance(value, str) or not value:
            problems.append(
                f"{name}: {'missing' if value is None else 'must be a non-empty string'}"
            )
    for name in HASH_FIELDS:
        value = doc.get(name)
        if not isinstance(value, str) or not value.startswith("sha256:") or len(value) <= 7:
            problems.append(f'{name}: must be "sha256:<hex digest>"')
    for name in ("units", "price"):
        value = doc.get(name)
        if not is_number(value):
            problems.append(f"{name}: must be a finite number")
        elif value < 0:
            problems.append(f"{name} < 0")
    times_ok = True
    for name in ("started_at", "completed_at"):
        value = doc.get(name)
        if not is_int(value) or value < 0:
            problems.append(f"{name}: must be a non-negative integer (unix seconds)")
            times_ok = False
    if times_ok and doc["completed_at"] < doc["started_at"]:
        problems.append("completed_at < started_at")
    duration = doc.get("duration_ms")
    if duration is not None and (not is_int(duration) or duration < 0):
        problems.append("duration_ms: must be a non-negative integer")
    chain_id = doc.get("chain_id")
    if not ((is_int(chain_id) and chain_id >= 0) or (isinstance(chain_id, str) and chain_id)):
        problems.append("chain_id: must be a non-negative integer or a non-empty string")
    metadata = doc.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            problems.append("metadata: must be an object")
        else:
            problems.extend(
                f"metadata.{key}: a receipt never carries the job's {key}"
                for key in sorted(FORBIDDEN_METADATA_KEYS.intersection(metadata))
            )
    return problems
