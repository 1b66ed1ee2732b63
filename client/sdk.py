"""Typed synchronous client for the coordinator's gRPC API (jobs, receipts, keys, admin)."""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import grpc
from aitbc.coordinator.v1 import admin_service_pb2 as admin_pb
from aitbc.coordinator.v1 import admin_service_pb2_grpc as admin_grpc
from aitbc.coordinator.v1 import job_pb2 as job_pb
from aitbc.coordinator.v1 import job_service_pb2 as jobs_pb
from aitbc.coordinator.v1 import job_service_pb2_grpc as jobs_grpc
from aitbc.coordinator.v1 import receipt_service_pb2 as receipt_pb
from aitbc.coordinator.v1 import receipt_service_pb2_grpc as receipt_grpc
from google.protobuf import json_format

from client import keys as trusted
from client.errors import SdkError
from core import errors
from core.receipts import VerificationResult

T = TypeVar("T")
# The coordinator's limit of jobs per SubmitJobs call.
MAX_BATCH = 100
# The keys of one submit_jobs item (those of submit_job).
BATCH_ITEM_KEYS = frozenset(
    {
        "service",
        "parameters",
        "constraints",
        "ttl_seconds",
        "run_timeout_seconds",
        "idempotency_key",
    }
)
DEFAULT_ENDPOINT = "127.0.0.1:50051"
# The coordinator works on this many submits of one SubmitJobStream at once.
MAX_STREAM_WINDOW = 1000
TERMINAL_STATES = frozenset(
    {
        job_pb.JOB_STATE_COMPLETED,
        job_pb.JOB_STATE_FAILED,
        job_pb.JOB_STATE_CANCELED,
        job_pb.JOB_STATE_EXPIRED,
    }
)


def _enum_value(enum: Any, prefix: str, value: str | int | None, field: str) -> int:
    """An enum number from a number, "QUEUED", "queued" or "JOB_STATE_QUEUED"; 0 for None."""
    if value is None or value == "":
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        if value in enum.values():
            return value
    elif isinstance(value, str):
        name = value.strip().upper().replace("-", "_")
        name = name if name.startswith(prefix) else prefix + name
        if name in enum.keys() and not name.endswith("UNSPECIFIED"):
            return enum.Value(name)
    known = ", ".join(
        n[len(prefix) :].lower() for n in enum.keys() if not n.endswith("UNSPECIFIED")
    )
    raise errors.InvalidArgument.field(field, f"unknown value {value!r} (expected one of {known})")


def job_state(value: str | int | None) -> int:
    return _enum_value(job_pb.JobState, "JOB_STATE_", value, "state")


def miner_status(value: str | int | None) -> int:
    return _enum_value(admin_pb.MinerStatus, "MINER_STATUS_", value, "status")


def _constraints(value: Mapping[str, Any] | None) -> job_pb.JobConstraints:
    out = job_pb.JobConstraints()
    if value is None:
        return out
    if not isinstance(value, Mapping):
        raise errors.InvalidArgument.field("constraints", "must be a mapping")
    known = set(job_pb.JobConstraints.DESCRIPTOR.fields_by_name)
    unknown = [k for k in value if k not in known]
    if unknown:
        raise errors.InvalidArgument(
            f"constraints: unknown field(s) {', '.join(map(str, unknown))} "
            f"(known: {', '.join(sorted(known))})",
            [(f"constraints.{k}", "unknown field") for k in unknown],
        )
    try:
        json_format.ParseDict(dict(value), out)
    except json_format.ParseError as exc:
        raise errors.InvalidArgument.field("constraints", str(exc)) from exc
    return out


def _payload(service: str, parameters: Mapping[str, Any]) -> job_pb.JobPayload:
    if not isinstance(service, str) or not service.strip():
        raise errors.InvalidArgument.field("service", "must be a non-empty string")
    if not isinstance(parameters, Mapping):
        raise errors.InvalidArgument.field("parameters", "must be a JSON object (a mapping)")
    out = job_pb.JobPayload(service=service)
    try:
        out.parameters.update(dict(parameters))
    except (ValueError, TypeError) as exc:  # a value Struct cannot hold (bytes, objects...)
        raise errors.InvalidArgument.field("parameters", f"not JSON: {exc}") from exc
    return out


def batch_item(job: Mapping[str, Any], where: str = "job") -> jobs_pb.SubmitJobsItem:
    """One SubmitJobs item from a mapping (see Client.submit_jobs); raises InvalidArgument
    (prefixed with `where`) for what can be told before sending."""
    unknown = sorted(set(job) - BATCH_ITEM_KEYS)
    if unknown:
        raise errors.InvalidArgument.field(where, f"unknown keys {', '.join(map(str, unknown))}")
    try:
        return jobs_pb.SubmitJobsItem(
            request=jobs_pb.SubmitJobRequest(
                payload=_payload(job.get("service", ""), job.get("parameters", {})),
                constraints=_constraints(job.get("constraints")),
                ttl_seconds=job.get("ttl_seconds", 0),
                run_timeout_seconds=job.get("run_timeout_seconds", 0),
            ),
            idempotency_key=job.get("idempotency_key") or "",
        )
    except errors.InvalidArgument as exc:
        violations = [(f"{where}.{f}", d) for f, d in exc.violations]
        raise errors.InvalidArgument(f"{where}: {exc.message}", violations) from None
    except (TypeError, ValueError) as exc:  # e.g. ttl_seconds given as a string
        raise errors.InvalidArgument.field(where, str(exc)) from None


def _submit_request(
    service: str,
    parameters: Mapping[str, Any],
    constraints: Mapping[str, Any] | None,
    ttl_seconds: int,
    run_timeout_seconds: int,
    wait_seconds: int,
) -> jobs_pb.SubmitJobRequest:
    return jobs_pb.SubmitJobRequest(
        payload=_payload(service, parameters),
        constraints=_constraints(constraints),
        ttl_seconds=ttl_seconds,
        run_timeout_seconds=run_timeout_seconds,
        wait_seconds=wait_seconds,
    )


def _item_outcome(r: jobs_pb.SubmitJobsResult) -> tuple[job_pb.Job | None, SdkError | None]:
    if r.WhichOneof("outcome") == "job":
        return r.job, None
    e = r.error
    code = getattr(grpc.StatusCode, e.code, grpc.StatusCode.UNKNOWN)
    fields = [(v.field, v.description) for v in e.field_violations]
    err = SdkError(code, e.message, e.reason, fields)
    err.retry_after_s = e.retry_after_ms / 1000 if e.retry_after_ms else None
    return None, err


class JobStream:
    """Many submits on one SubmitJobStream call (Client.job_stream()); thread-safe.

    submit() returns a Future of the job (or of the SdkError that job got: a refused job
    fails only itself). At most `window` submits await their answer; submit() blocks for the
    next free place. close() (or leaving the `with` block) sends the end of the stream and
    waits for every answer; if the stream itself fails (auth, the coordinator shuts down or
    goes away), the futures still unanswered fail with that error: those jobs may or may not
    be stored (use idempotency keys to send them again safely).
    """

    _END = object()

    def __init__(self, client: Client, window: int):
        if not 1 <= window <= MAX_STREAM_WINDOW:
            raise errors.InvalidArgument.field(
                "window", f"must be between 1 and {MAX_STREAM_WINDOW}, got {window}"
            )
        self._client = client
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._window = threading.BoundedSemaphore(window)
        self._tags = itertools.count()
        self._lock = threading.Lock()
        self._pending: dict[int, Future[job_pb.Job]] = {}
        self._failure: SdkError | None = None
        self._closed = False
        self._call = client._jobs.SubmitJobStream(
            iter(self._outbox.get, self._END), metadata=client._metadata()
        )
        self._reader = threading.Thread(target=self._read, name="aitbc-job-stream", daemon=True)
        self._reader.start()

    def submit(
        self,
        service: str,
        parameters: Mapping[str, Any],
        *,
        constraints: Mapping[str, Any] | None = None,
        ttl_seconds: int = 0,
        run_timeout_seconds: int = 0,
        idempotency_key: str | None = None,
        wait_seconds: int = 0,
    ) -> Future[job_pb.Job]:
        """As Client.submit_job, answered through the Future; with `wait_seconds` the job
        comes once it is terminal (or the wait ends)."""
        request = _submit_request(
            service, parameters, constraints, ttl_seconds, run_timeout_seconds, wait_seconds
        )
        self._window.acquire()
        future: Future[job_pb.Job] = Future()
        with self._lock:
            if self._failure is not None or self._closed:
                self._window.release()
                raise self._failure or errors.FailedPrecondition("the job stream is closed")
            tag = next(self._tags)
            self._pending[tag] = future
        self._outbox.put(
            jobs_pb.SubmitJobStreamRequest(
                tag=tag, request=request, idempotency_key=idempotency_key or ""
            )
        )
        return future

    def _read(self) -> None:
        failure: SdkError | None = None
        try:
            for message in self._call:
                for answer in message.answers:
                    with self._lock:
                        future = self._pending.pop(answer.tag, None)
                    if future is None:
                        continue  # not ours: a coordinator bug; nothing waits for it
                    self._window.release()
                    job, err = _item_outcome(answer.result)
                    if err is None:
                        future.set_result(job)
                    else:
                        future.set_exception(err)
        except grpc.RpcError as exc:
            failure = self._client._error(exc, None)
        finally:
            with self._lock:
                left, self._pending = self._pending, {}
                if failure is None and (left or not self._closed):
                    failure = SdkError(
                        grpc.StatusCode.UNAVAILABLE, "the job stream ended before answering"
                    )
                self._failure = failure
                if not self._closed:  # free gRPC's thread that reads the outbox
                    self._closed = True
                    self._outbox.put(self._END)
            for future in left.values():
                self._window.release()
                future.set_exception(failure)

    def close(self, timeout_s: float | None = None) -> None:
        """End the stream once every submit is answered (waits up to `timeout_s`)."""
        with self._lock:
            already, self._closed = self._closed, True
        if not already:
            self._outbox.put(self._END)
        self._reader.join(timeout_s)
        if self._reader.is_alive():
            self._call.cancel()
            self._reader.join()

    def __enter__(self) -> JobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    """One channel to a coordinator; every call sends `x-api-key` and raises SdkError.

    `endpoint` is "host:port"; an "https://" prefix (or tls=True) makes a TLS channel,
    "http://" is stripped. `timeout_s` bounds each unary call.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        api_key: str | None = None,
        *,
        timeout_s: float = 30,
        tls: bool = False,
        root_certificates: bytes | None = None,
    ):
        target = (endpoint or "").strip()
        for scheme, secure in (("https://", True), ("http://", False), ("grpc://", False)):
            if target.startswith(scheme):
                target, tls = target[len(scheme) :].rstrip("/"), tls or secure
        if not target:
            raise errors.InvalidArgument.field("endpoint", "must be host:port")
        if timeout_s <= 0:
            raise errors.InvalidArgument.field("timeout_s", "must be positive")
        self.endpoint, self.api_key, self.timeout_s = target, api_key or None, timeout_s
        if tls:
            creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(target, creds)
        else:
            self._channel = grpc.insecure_channel(target)
        self._jobs = jobs_grpc.JobServiceStub(self._channel)
        self._admin = admin_grpc.AdminServiceStub(self._channel)
        self._receipts = receipt_grpc.ReceiptServiceStub(self._channel)
        self._keys = receipt_grpc.KeyServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _metadata(self, **extra: str) -> tuple[tuple[str, str], ...]:
        md = [("x-api-key", self.api_key)] if self.api_key else []
        md += [(k.replace("_", "-"), v) for k, v in extra.items() if v]
        return tuple(md)

    def _error(self, exc: grpc.RpcError, timeout_s: float | None) -> SdkError:
        return SdkError.from_rpc_error(exc, endpoint=self.endpoint, timeout_s=timeout_s)

    def _call(
        self,
        method: Callable[..., T],
        request: Any,
        *,
        timeout_s: float | None = None,
        **metadata: str,
    ) -> T:
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        try:
            return method(request, metadata=self._metadata(**metadata), timeout=timeout_s)
        except grpc.RpcError as exc:
            raise self._error(exc, timeout_s) from exc

    # == jobs ===============================================================================
    def submit_job(
        self,
        service: str,
        parameters: Mapping[str, Any],
        *,
        constraints: Mapping[str, Any] | None = None,
        ttl_seconds: int = 0,
        run_timeout_seconds: int = 0,
        idempotency_key: str | None = None,
        wait_seconds: int = 0,
    ) -> job_pb.Job:
        """Submit a job; with `idempotency_key` a repeat of the same request returns the same
        job (the same key with another request is ALREADY_EXISTS).

        With `wait_seconds` (at most 60) the coordinator answers once the job is terminal or
        the wait is over, whichever is first: one call for a short job's result. The call's
        deadline is stretched to cover the wait.
        """
        request = _submit_request(
            service, parameters, constraints, ttl_seconds, run_timeout_seconds, wait_seconds
        )
        timeout_s = self.timeout_s
        if wait_seconds and timeout_s is not None:
            timeout_s += wait_seconds  # the usual deadline, after the wait
        resp = self._call(
            self._jobs.SubmitJob,
            request,
            timeout_s=timeout_s,
            idempotency_key=idempotency_key or "",
        )
        return resp.job

    def submit_jobs(
        self, jobs: Sequence[Mapping[str, Any] | jobs_pb.SubmitJobsItem]
    ) -> list[tuple[job_pb.Job | None, SdkError | None]]:
        """Submit up to MAX_BATCH jobs in one call: for each, in order, (job, None) or
        (None, error).

        Each job is a mapping with `service`, and optionally `parameters`, `constraints`,
        `ttl_seconds`, `run_timeout_seconds` and `idempotency_key` (as for submit_job), or an
        item made by batch_item(). A bad item fails alone; an error of the whole call (auth,
        rate limit) raises SdkError.
        """
        request = jobs_pb.SubmitJobsRequest(
            items=[
                job if isinstance(job, jobs_pb.SubmitJobsItem) else batch_item(job, f"jobs[{i}]")
                for i, job in enumerate(jobs)
            ]
        )
        return [_item_outcome(r) for r in self._call(self._jobs.SubmitJobs, request).results]

    def job_stream(self, *, window: int = 256) -> JobStream:
        """Many jobs on one open SubmitJobStream: `with client.job_stream() as s:` then
        `s.submit(...)` per job (a Future each); see JobStream. Each job is validated,
        stored and rate-limited as by submit_job."""
        return JobStream(self, window)

    def get_job(self, job_id: str) -> job_pb.Job:
        return self._call(self._jobs.GetJob, jobs_pb.GetJobRequest(job_id=job_id)).job

    def get_result(self, job_id: str) -> jobs_pb.GetJobResultResponse:
        """State plus result (COMPLETED) or error (FAILED/CANCELED/EXPIRED); neither before."""
        return self._call(self._jobs.GetJobResult, jobs_pb.GetJobResultRequest(job_id=job_id))

    def cancel_job(self, job_id: str, reason: str = "") -> job_pb.Job:
        req = jobs_pb.CancelJobRequest(job_id=job_id, reason=reason)
        return self._call(self._jobs.CancelJob, req).job

    def list_jobs(
        self, state: str | int | None = None, page_size: int = 50, page_token: str = ""
    ) -> tuple[list[job_pb.Job], str]:
        """One page of the caller's jobs, newest first, and the next page token ("" at end)."""
        req = jobs_pb.ListJobsRequest(
            state=job_state(state), page_size=page_size, page_token=page_token
        )
        resp = self._call(self._jobs.ListJobs, req)
        return list(resp.jobs), resp.next_page_token

    def iter_jobs(
        self, state: str | int | None = None, page_size: int = 50
    ) -> Iterator[job_pb.Job]:
        """Every job of the caller, fetching pages as needed."""
        token = ""
        while True:
            jobs, token = self.list_jobs(state, page_size, token)
            yield from jobs
            if not token:
                return

    def watch_job(
        self, job_id: str, *, timeout_s: float | None = None
    ) -> Iterator[tuple[str, job_pb.Job]]:
        """("snapshot", job) first, then ("state" | "progress", job) until the job is terminal.

        No deadline unless `timeout_s` is given: jobs may run for hours.
        """
        call = self._jobs.WatchJob(
            jobs_pb.WatchJobRequest(job_id=job_id), metadata=self._metadata(), timeout=timeout_s
        )
        try:
            for resp in call:
                yield resp.event, resp.job
        except grpc.RpcError as exc:
            raise self._error(exc, timeout_s) from exc
        finally:
            call.cancel()  # the consumer stopped early: end the stream server-side too

    def wait_job(self, job_id: str, *, timeout_s: float | None = None) -> job_pb.Job:
        """Block until the job is terminal; returns it."""
        job = None
        for _, job in self.watch_job(job_id, timeout_s=timeout_s):
            if job.state in TERMINAL_STATES:
                return job
        if job is None:
            raise SdkError(grpc.StatusCode.UNKNOWN, f"watch of {job_id} ended without an event")
        return self.get_job(job_id)

    # == receipts and keys ==================================================================
    def get_receipt(self, job_id: str) -> bytes:
        """The latest receipt of a job, the exact signed bytes."""
        req = receipt_pb.GetJobReceiptRequest(job_id=job_id)
        return self._call(self._receipts.GetJobReceipt, req).body.data

    def list_receipts(
        self, job_id: str, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[receipt_pb.Receipt], str]:
        req = receipt_pb.ListJobReceiptsRequest(
            job_id=job_id, page_size=page_size, page_token=page_token
        )
        resp = self._call(self._receipts.ListJobReceipts, req)
        return list(resp.receipts), resp.next_page_token

    def list_keys(self) -> receipt_pb.ListKeysResponse:
        """The coordinator's published receipt keys (public: no API key needed)."""
        return self._call(self._keys.ListKeys, receipt_pb.ListKeysRequest())

    def trusted_keys(self) -> trusted.TrustedKeys:
        return trusted.from_response(self.list_keys(), source=f"published by {self.endpoint}")

    def verify_receipt(
        self, document: bytes, keys: trusted.TrustedKeys | None = None
    ) -> VerificationResult:
        """Check a receipt's fields, signature, attestations and miner claim.

        Without `keys`, against the keys this coordinator publishes (KeyService.ListKeys).
        """
        return (keys or self.trusted_keys()).verify(document)

    # == admin ==============================================================================
    def admin_stats(self, window_seconds: int = 0) -> admin_pb.GetStatsResponse:
        req = admin_pb.GetStatsRequest(window_seconds=window_seconds)
        return self._call(self._admin.GetStats, req)

    def admin_list_jobs(
        self,
        state: str | int | None = None,
        *,
        client_id: str = "",
        miner_id: str = "",
        page_size: int = 50,
        page_token: str = "",
    ) -> tuple[list[job_pb.Job], str]:
        req = admin_pb.AdminServiceListJobsRequest(
            state=job_state(state),
            client_id=client_id,
            miner_id=miner_id,
            page_size=page_size,
            page_token=page_token,
        )
        resp = self._call(self._admin.ListJobs, req)
        return list(resp.jobs), resp.next_page_token

    def list_miners(self, status: str | int | None = None) -> list[admin_pb.MinerInfo]:
        req = admin_pb.ListMinersRequest(status=miner_status(status))
        return list(self._call(self._admin.ListMiners, req).miners)
