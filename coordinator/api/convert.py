"""Conversions between the coordinator's protobuf messages and domain dataclasses."""

from __future__ import annotations

from typing import Any

from aitbc.coordinator.v1 import job_pb2 as job_pb
from aitbc.coordinator.v1 import miner_service_pb2 as miner_pb
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from coordinator.domain import validation
from coordinator.domain.model import Job, JobState, ResultRef
from coordinator.domain.sessions import AckOut, AssignmentOut, CancelOut
from core import errors
from core.jsonvalue import from_struct, from_value

STATE_TO_PB = {s: job_pb.JobState.Value(f"JOB_STATE_{s.value}") for s in JobState}
STATE_FROM_PB = {v: k for k, v in STATE_TO_PB.items()}


def struct_to_dict(s: struct_pb2.Struct) -> dict[str, Any]:
    return from_struct(s)


def _ts(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(round(seconds * 1e9))
    return ts


def state_filter(value: int, field: str = "state") -> JobState | None:
    if value == 0:
        return None
    try:
        return STATE_FROM_PB[value]
    except KeyError:
        raise errors.InvalidArgument.field(field, f"unknown state {value}") from None


def result_to_pb(r: ResultRef) -> job_pb.JobResult:
    out = job_pb.JobResult(sha256=r.sha256)
    if r.is_artifact:
        out.artifact.CopyFrom(
            job_pb.ArtifactRef(
                url=r.artifact_url,
                size_bytes=r.artifact_size,
                sha256=r.sha256,
                content_type=r.artifact_content_type,
            )
        )
    else:
        json_format.ParseDict(r.inline, out.inline)
    return out


def result_from_pb(r: job_pb.JobResult, *, max_inline_bytes: int) -> ResultRef:
    kind = r.WhichOneof("kind")
    return validation.result(
        inline=from_value(r.inline) if kind == "inline" else None,
        has_inline=kind == "inline",
        artifact_url=r.artifact.url,
        artifact_size=r.artifact.size_bytes,
        artifact_sha256=r.artifact.sha256,
        artifact_content_type=r.artifact.content_type,
        sha256=r.sha256,
        max_inline_bytes=max_inline_bytes,
    )


def job_to_pb(job: Job, *, waiting_reason: str = "") -> job_pb.Job:
    c = job.constraints
    params = struct_pb2.Struct()
    params.update(job.parameters)
    out = job_pb.Job(
        job_id=job.job_id,
        client_id=job.client_id,
        state=STATE_TO_PB[job.state],
        payload=job_pb.JobPayload(service=job.service, parameters=params),
        constraints=job_pb.JobConstraints(
            gpu_names=c.gpu_names,
            min_vram_gb=c.min_vram_gb,
            region=c.region,
            models=c.models,
            min_cuda=c.min_cuda,
            max_price="" if c.max_price is None else str(c.max_price),
            priority=c.priority,
        ),
        ttl_seconds=job.ttl_s,
        run_timeout_seconds=job.run_timeout_s,
        created_at=_ts(job.created_at),
        assigned_at=_ts(job.assigned_at),
        started_at=_ts(job.started_at),
        finished_at=_ts(job.finished_at),
        attempt=job.attempt,
        miner_id=job.miner_id,
        waiting_reason=waiting_reason,
        attempts=[
            job_pb.JobAttempt(
                attempt=a.attempt,
                miner_id=a.miner_id,
                outcome=a.outcome,
                reason=a.reason,
                assigned_at=_ts(a.assigned_at),
                ended_at=_ts(a.ended_at),
            )
            for a in job.attempts
        ],
    )
    if job.error_code:
        out.error.CopyFrom(job_pb.JobError(code=job.error_code, message=job.error_message))
    if job.result is not None:
        out.result.CopyFrom(result_to_pb(job.result))
    if job.progress_at is not None or job.progress_fraction:
        out.progress.CopyFrom(
            job_pb.JobProgress(
                fraction=job.progress_fraction,
                message=job.progress_message,
                updated_at=_ts(job.progress_at),
            )
        )
    return out


def caps_to_dict(caps: miner_pb.MinerCapabilities) -> dict[str, Any]:
    return json_format.MessageToDict(caps, preserving_proto_field_name=True)


def dict_to_caps(caps: dict[str, Any]) -> miner_pb.MinerCapabilities:
    return json_format.ParseDict(caps, miner_pb.MinerCapabilities(), ignore_unknown_fields=True)


def assignment_to_pb(a: AssignmentOut) -> miner_pb.Assignment:
    return miner_pb.Assignment(lease_id=a.lease_id, job=job_to_pb(a.job), deadline=_ts(a.deadline))


def cancel_to_pb(c: CancelOut) -> miner_pb.CancelNotice:
    return miner_pb.CancelNotice(lease_id=c.lease_id, job_id=c.job_id, reason=c.reason)


def ack_to_pb(a: AckOut) -> miner_pb.Ack:
    return miner_pb.Ack(
        lease_id=a.lease_id,
        job_id=a.job_id,
        accepted=a.accepted,
        code=a.code,
        message=a.message,
        receipt=a.receipt,
    )


def claim_from_pb(
    msg: miner_pb.JobResultDelivery | miner_pb.SubmitResultRequest,
) -> dict[str, Any] | None:
    """The miner's signed claim as the document core.receipts verifies, or None when absent."""
    if not msg.HasField("claim"):
        return None
    c = msg.claim
    return {
        "claim": {
            "job_id": c.job_id,
            "lease_id": c.lease_id,
            "artifact_hash": c.artifact_hash,
            "started_at": c.started_at,
            "completed_at": c.completed_at,
            "miner_id": c.miner_id,
        },
        "signature": {"alg": c.alg, "key_id": c.key_id, "sig": c.sig},
    }


def timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    return _ts(seconds)
