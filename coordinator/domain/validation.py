"""Validation of everything that reaches the domain from outside; errors name the API field."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from coordinator.domain.matching import MinerProfile, Offer, parse_version
from coordinator.domain.model import Constraints, ResultRef
from core import errors
from core.jsonvalue import canonical_sha256
from core.receipts.canonical import one_shot_encoder

JOB_ID_RE = re.compile(r"^job_[0-9a-f]{32}$")
LEASE_ID_RE = re.compile(r"^lease_[0-9a-f]{32}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+ -]{0,127}$")
REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_PRICE = Decimal("1000000000")
CODE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def job_id(value: str, field: str = "job_id") -> str:
    if not JOB_ID_RE.match(value):
        raise errors.InvalidArgument.field(
            field, f"malformed job id {value[:80]!r} (expected job_<32 hex>)"
        )
    return value


def lease_id(value: str, field: str = "lease_id") -> str:
    if not LEASE_ID_RE.match(value):
        raise errors.InvalidArgument.field(field, f"malformed lease id {value[:80]!r}")
    return value


def decimal(value: str, field: str, v: list[tuple[str, str]]) -> Decimal | None:
    try:
        d = Decimal(value.strip())
    except InvalidOperation:
        v.append((field, f"expected a decimal number like '0.25', got {value[:40]!r}"))
        return None
    if not d.is_finite() or d < 0 or d > MAX_PRICE:
        v.append((field, f"must be between 0 and {MAX_PRICE}, got {value[:40]!r}"))
        return None
    if d.as_tuple().exponent < -12:  # type: ignore[operator]
        v.append((field, "at most 12 decimal places"))
        return None
    return d


# json.dumps(value, separators=(",", ":"), ensure_ascii=False), built once (see
# one_shot_encoder): json.dumps with options builds an encoder on every call.
_compact_utf8 = one_shot_encoder(separators=(",", ":"), ensure_ascii=False)


def json_size(value: Any) -> int:
    """Bytes of the compact UTF-8 JSON of `value`."""
    text = _compact_utf8(value)
    return len(text) if text.isascii() else len(text.encode())


@dataclass(frozen=True, slots=True)
class Limits:
    services: frozenset[str]
    max_payload_bytes: int
    default_ttl_s: int
    max_ttl_s: int
    default_run_timeout_s: int
    max_run_timeout_s: int
    max_inline_result_bytes: int


# SubmitJob's wait_seconds: how long one call may hold its answer for the job to end.
MAX_SUBMIT_WAIT_S = 60
# SubmitJobs: jobs in one call.
MAX_SUBMIT_BATCH = 100


def submit_batch_size(n: int) -> int:
    if not 1 <= n <= MAX_SUBMIT_BATCH:
        raise errors.InvalidArgument.field(
            "items", f"must hold 1 to {MAX_SUBMIT_BATCH} jobs, got {n}"
        )
    return n


@dataclass(frozen=True, slots=True)
class SubmitSpec:
    service: str
    parameters: dict[str, Any]
    constraints: Constraints
    ttl_s: int
    run_timeout_s: int
    # Not part of the job (nor of its idempotency hash): how long the call waits for its end.
    wait_s: int = 0


def submit(
    *,
    service: str,
    parameters: dict[str, Any],
    gpu_names: list[str],
    min_vram_gb: int,
    region: str,
    models: list[str],
    min_cuda: str,
    max_price: str,
    priority: int,
    ttl_s: int,
    run_timeout_s: int,
    limits: Limits,
    wait_s: int = 0,
) -> SubmitSpec:
    v: list[tuple[str, str]] = []
    if not service:
        v.append(("payload.service", "required"))
    elif service not in limits.services:
        v.append(
            (
                "payload.service",
                f"unknown service {service[:64]!r}; known: {', '.join(sorted(limits.services))}",
            )
        )
    size = json_size(parameters)
    if size > limits.max_payload_bytes:
        v.append(
            ("payload.parameters", f"{size} bytes exceeds the limit of {limits.max_payload_bytes}")
        )
    if len(gpu_names) > 16:
        v.append(("constraints.gpu_names", "at most 16 names"))
    for i, g in enumerate(gpu_names):
        if not NAME_RE.match(g):
            v.append((f"constraints.gpu_names[{i}]", f"invalid GPU name {g[:64]!r}"))
    if min_vram_gb > 4096:
        v.append(("constraints.min_vram_gb", f"must be at most 4096, got {min_vram_gb}"))
    if region and not REGION_RE.match(region):
        v.append(
            (
                "constraints.region",
                f"invalid region {region[:64]!r} (lowercase letters, digits, '-')",
            )
        )
    if len(models) > 32:
        v.append(("constraints.models", "at most 32 models"))
    for i, m in enumerate(models):
        if not NAME_RE.match(m):
            v.append((f"constraints.models[{i}]", f"invalid model name {m[:64]!r}"))
    if min_cuda:
        try:
            parse_version(min_cuda)
        except ValueError as exc:
            v.append(("constraints.min_cuda", str(exc)))
    price = decimal(max_price, "constraints.max_price", v) if max_price.strip() else None
    if priority > 9:
        v.append(("constraints.priority", f"must be between 0 and 9, got {priority}"))
    if ttl_s > limits.max_ttl_s:
        v.append(("ttl_seconds", f"must be at most {limits.max_ttl_s}, got {ttl_s}"))
    if run_timeout_s > limits.max_run_timeout_s:
        v.append(
            (
                "run_timeout_seconds",
                f"must be at most {limits.max_run_timeout_s}, got {run_timeout_s}",
            )
        )
    if wait_s > MAX_SUBMIT_WAIT_S:
        v.append(("wait_seconds", f"must be at most {MAX_SUBMIT_WAIT_S}, got {wait_s}"))
    errors.collect(v)
    return SubmitSpec(
        service=service,
        parameters=parameters,
        constraints=Constraints(
            gpu_names=tuple(gpu_names),
            min_vram_gb=min_vram_gb,
            region=region,
            models=tuple(models),
            min_cuda=min_cuda,
            max_price=price,
            priority=priority,
        ),
        ttl_s=ttl_s or limits.default_ttl_s,
        run_timeout_s=run_timeout_s or limits.default_run_timeout_s,
        wait_s=wait_s,
    )


def capabilities(
    caps: dict[str, Any], *, services: frozenset[str], prefix: str = "capabilities"
) -> MinerProfile:
    """Validate a miner's advertised capabilities (as a plain dict of the proto fields)."""
    v: list[tuple[str, str]] = []
    slots = int(caps.get("slots") or 0)
    if not 1 <= slots <= 256:
        v.append((f"{prefix}.slots", f"must be between 1 and 256, got {slots}"))
    gpus = caps.get("gpus") or []
    if len(gpus) > 64:
        v.append((f"{prefix}.gpus", "at most 64 GPUs"))
    for i, g in enumerate(gpus):
        if not NAME_RE.match(g.get("name", "")):
            v.append((f"{prefix}.gpus[{i}].name", f"invalid GPU name {g.get('name', '')[:64]!r}"))
    cuda: tuple[int, ...] = ()
    if caps.get("cuda_version"):
        try:
            cuda = parse_version(caps["cuda_version"])
        except ValueError as exc:
            v.append((f"{prefix}.cuda_version", str(exc)))
    region = caps.get("region", "")
    if region and not REGION_RE.match(region):
        v.append(
            (f"{prefix}.region", f"invalid region {region[:64]!r} (lowercase letters, digits, '-')")
        )
    models = caps.get("models") or []
    if len(models) > 256:
        v.append((f"{prefix}.models", "at most 256 models"))
    for i, m in enumerate(models):
        if not NAME_RE.match(m):
            v.append((f"{prefix}.models[{i}]", f"invalid model name {m[:64]!r}"))
    offers: dict[str, Offer] = {}
    offered = caps.get("services") or []
    if not offered:
        v.append((f"{prefix}.services", "at least one service must be offered"))
    for i, s in enumerate(offered):
        name = s.get("service", "")
        if name not in services:
            v.append((f"{prefix}.services[{i}].service", f"unknown service {name[:64]!r}"))
            continue
        if name in offers:
            v.append((f"{prefix}.services[{i}].service", f"service {name!r} offered twice"))
            continue
        price = decimal(s.get("unit_price") or "0", f"{prefix}.services[{i}].unit_price", v)
        unit_type = s.get("unit_type") or "gpu_seconds"
        if not CODE_RE.match(unit_type):
            v.append((f"{prefix}.services[{i}].unit_type", f"invalid unit type {unit_type[:64]!r}"))
        if price is not None:
            offers[name] = Offer(unit_price=price, unit_type=unit_type)
    errors.collect(v)
    return MinerProfile(
        gpu_names=tuple(g["name"] for g in gpus),
        gpu_memory_mb=tuple(int(g.get("memory_mb") or 0) for g in gpus),
        cuda_version=cuda,
        region=region,
        models=frozenset(models),
        offers=offers,
        slots=slots,
    )


def result(
    *,
    inline: Any,
    has_inline: bool,
    artifact_url: str,
    artifact_size: int,
    artifact_sha256: str,
    artifact_content_type: str,
    sha256: str,
    max_inline_bytes: int,
) -> ResultRef:
    v: list[tuple[str, str]] = []
    if has_inline == bool(artifact_url):
        raise errors.InvalidArgument.field(
            "result", "exactly one of result.inline or result.artifact is required"
        )
    if sha256 and not SHA256_RE.match(sha256):
        v.append(("result.sha256", "expected 64 lowercase hex characters"))
    if has_inline:
        size = json_size(inline)
        if size > max_inline_bytes:
            v.append(
                (
                    "result.inline",
                    f"{size} bytes exceeds the inline limit of {max_inline_bytes}; upload an artifact",
                )
            )
        errors.collect(v)
        digest = canonical_sha256(inline)
        if sha256 and sha256 != digest:
            raise errors.InvalidArgument.field(
                "result.sha256", "does not match the sha256 of the canonical JSON of result.inline"
            )
        return ResultRef(sha256=digest, inline=inline)
    if not artifact_url.startswith(("http://", "https://")) or len(artifact_url) > 2048:
        v.append(("result.artifact.url", "expected an http(s) URL of at most 2048 characters"))
    if not SHA256_RE.match(artifact_sha256):
        v.append(("result.artifact.sha256", "expected 64 lowercase hex characters"))
    if sha256 and sha256 != artifact_sha256:
        v.append(("result.sha256", "differs from result.artifact.sha256"))
    if len(artifact_content_type) > 128:
        v.append(("result.artifact.content_type", "at most 128 characters"))
    errors.collect(v)
    return ResultRef(
        sha256=artifact_sha256,
        artifact_url=artifact_url,
        artifact_size=artifact_size,
        artifact_content_type=artifact_content_type,
    )


def failure_code(code: str) -> str:
    code = code or "miner_failed"
    if not CODE_RE.match(code):
        raise errors.InvalidArgument.field(
            "code", f"expected a lowercase identifier, got {code[:64]!r}"
        )
    return code


def public_key(value: str, field: str) -> str:
    """A miner's Ed25519 public key as base64url (unpadded) 32 bytes; "" when not given."""
    if not value:
        return ""
    import base64

    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        raw = b""
    if len(raw) != 32 or len(value) != 43:
        raise errors.InvalidArgument.field(
            field, "expected a base64url (unpadded) 32-byte Ed25519 public key"
        )
    return value
