"""core.interceptors.ServerPipeline against a real grpc.aio server on port 0."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Callable, Mapping

import grpc
import grpc.aio
import pytest
from aitbc.coordinator.v1 import job_pb2 as job_pb
from aitbc.coordinator.v1 import job_service_pb2 as jobs_pb
from aitbc.coordinator.v1 import job_service_pb2_grpc as jobs_grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry

from core import errors
from core import logging as aitbc_logging
from core.context import (
    Principal,
    current_principal,
    current_request_id,
    optional_principal,
    send_response_headers,
    set_response_header,
)
from core.interceptors import GrpcMetrics, ServerPipeline
from core.logging import JsonFormatter
from core.server import ServerConfig, ServiceBinding, create_server

JOBS = "aitbc.coordinator.v1.JobService"
GET_JOB = f"/{JOBS}/GetJob"
WATCH_JOB = f"/{JOBS}/WatchJob"

# job_id -> the error GetJob raises; each case: (factory, expected code, detail checker)
ERROR_CASES: dict[str, tuple[Callable[[], Exception], grpc.StatusCode, type | None]] = {
    "invalid": (
        lambda: errors.InvalidArgument.field("job_id", "must not be empty"),
        grpc.StatusCode.INVALID_ARGUMENT,
        error_details_pb2.BadRequest,
    ),
    "missing": (
        lambda: errors.NotFound("job", "j-404"),
        grpc.StatusCode.NOT_FOUND,
        error_details_pb2.ResourceInfo,
    ),
    "exists": (lambda: errors.AlreadyExists("dup"), grpc.StatusCode.ALREADY_EXISTS, None),
    "aborted": (
        lambda: errors.Aborted("conflict", retry_after_s=0.5),
        grpc.StatusCode.ABORTED,
        error_details_pb2.RetryInfo,
    ),
    "precondition": (
        lambda: errors.FailedPrecondition("terminal", reason="job_terminal"),
        grpc.StatusCode.FAILED_PRECONDITION,
        error_details_pb2.ErrorInfo,
    ),
    "range": (lambda: errors.OutOfRange("page"), grpc.StatusCode.OUT_OF_RANGE, None),
    "denied": (lambda: errors.PermissionDenied("no"), grpc.StatusCode.PERMISSION_DENIED, None),
    "unauth": (lambda: errors.Unauthenticated("who"), grpc.StatusCode.UNAUTHENTICATED, None),
    "exhausted": (
        lambda: errors.ResourceExhausted("quota", retry_after_s=3),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        error_details_pb2.RetryInfo,
    ),
    "unavailable": (
        lambda: errors.Unavailable("later", retry_after_s=1),
        grpc.StatusCode.UNAVAILABLE,
        error_details_pb2.RetryInfo,
    ),
    "deadline": (lambda: errors.DeadlineExceeded("slow"), grpc.StatusCode.DEADLINE_EXCEEDED, None),
    "unimplemented": (lambda: errors.Unimplemented("later"), grpc.StatusCode.UNIMPLEMENTED, None),
    "internal": (lambda: errors.Internal("known bad"), grpc.StatusCode.INTERNAL, None),
}


class Jobs(jobs_grpc.JobServiceServicer):
    """GetJob's behaviour is chosen by job_id; WatchJob streams `n` messages then fails."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.seen: dict[str, object] = {}

    async def GetJob(self, request, context):
        job_id = request.job_id
        if job_id in ERROR_CASES:
            raise ERROR_CASES[job_id][0]()
        if job_id == "boom":
            raise RuntimeError("db password hunter2 leaked?")
        if job_id == "abort":
            await context.abort(grpc.StatusCode.DATA_LOSS, "direct abort")
        if job_id == "hang":
            self.started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if job_id == "header":
            set_response_header("x-http-code", "201")
        if job_id == "early":
            set_response_header("x-http-code", "201")
            await send_response_headers()
            try:
                set_response_header("x-late", "1")
            except RuntimeError as exc:
                self.seen["late"] = exc
        if job_id == "header-then-fail":
            set_response_header("x-http-code", "201")
            raise errors.NotFound("job", "x")
        if job_id == "conflict":
            set_response_header("x-http-code", "201")
            raise errors.FailedPrecondition("job is finished", http_status=409)
        self.seen["request_id"] = current_request_id()
        self.seen["log_request_id"] = aitbc_logging.request_id.get()
        self.seen["principal"] = optional_principal()
        client = current_principal().id if job_id == "whoami" else ""
        return jobs_pb.GetJobResponse(job=job_pb.Job(job_id=job_id, client_id=client))

    async def WatchJob(self, request, context):
        count, _, failure = request.job_id.partition(":")
        for i in range(int(count)):
            if i == 0:
                set_response_header("x-stream", "yes")
            yield jobs_pb.WatchJobResponse(event=f"e{i}")
        if i == 0 and failure == "late-header":
            set_response_header("x-late", "no")  # raises: headers went out with message 0
        if failure == "known":
            raise errors.FailedPrecondition("job went away", reason="gone")
        if failure == "boom":
            raise ValueError("secret internals")
        if failure == "hang":
            self.started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise


async def count_requests(request_iterator, context):
    """A stream_unary handler (test.Echo/Count): counts requests, fails on job_id "bad"."""
    n = 0
    async for req in request_iterator:
        if req.job_id == "bad":
            raise errors.InvalidArgument.field("job_id", "bad")
        n += 1
    set_response_header("x-count", str(n))
    return jobs_pb.GetJobResponse(job=job_pb.Job(job_id=str(n)))


async def echo(request_iterator, context):
    """A stream_stream handler (test.Echo/Echo): echoes ids, fails on "bad"."""
    async for req in request_iterator:
        if req.job_id == "bad":
            raise errors.Aborted("stream conflict", retry_after_s=2)
        yield jobs_pb.GetJobResponse(job=job_pb.Job(job_id=req.job_id))


async def write_style(request, context):
    """A unary_stream handler using context.write (test.Echo/Write)."""
    set_response_header("x-write", "1")
    await context.write(jobs_pb.GetJobResponse(job=job_pb.Job(job_id=request.job_id)))
    raise errors.NotFound("job", request.job_id)


_SER = {
    "request_deserializer": jobs_pb.GetJobRequest.FromString,
    "response_serializer": jobs_pb.GetJobResponse.SerializeToString,
}
EXTRA = grpc.method_handlers_generic_handler(
    "test.Echo",
    {
        "Count": grpc.stream_unary_rpc_method_handler(count_requests, **_SER),
        "Echo": grpc.stream_stream_rpc_method_handler(echo, **_SER),
        "Write": grpc.unary_stream_rpc_method_handler(write_style, **_SER),
    },
)


class KeyAuth:
    """Accepts x-api-key "good"; CancelJob needs role admin."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def authenticate(self, method: str, metadata: Mapping[str, str]) -> Principal:
        self.calls.append(method)
        if metadata.get("x-api-key") != "good":
            raise errors.Unauthenticated("missing or bad api key", reason="bad_api_key")
        if method.endswith("/CancelJob"):
            raise errors.PermissionDenied("admin only")
        return Principal(id="client-1", role="client", key_id="k1", attributes={"tier": "gold"})


class Limiter:
    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.seen: list[tuple[str | None, str]] = []

    async def check(self, principal: Principal | None, method: str, request=None) -> None:
        self.seen.append((principal.id if principal else None, method))
        self.budget -= 1
        if self.budget < 0:
            raise errors.ResourceExhausted("rate limit exceeded", retry_after_s=2.5)


class Harness:
    def __init__(self, pipeline: ServerPipeline, registry: CollectorRegistry) -> None:
        self.pipeline, self.registry, self.jobs = pipeline, registry, Jobs()
        self.running = None
        self.channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> Harness:
        self.running = await create_server(
            [ServiceBinding(JOBS, jobs_grpc.add_JobServiceServicer_to_server, self.jobs)],
            config=ServerConfig(grpc_port=0),
            interceptor=self.pipeline,
        )
        self.running.server.add_generic_rpc_handlers((EXTRA,))
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.running.port}")
        self.stub = jobs_grpc.JobServiceStub(self.channel)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.close()
        await self.running.shutdown(grace_s=0)

    def count(self, method: str, code: str) -> float:
        value = self.registry.get_sample_value(
            "aitbc_grpc_requests_total", {"method": method, "code": code}
        )
        return value or 0.0

    async def expect(self, method: str, code: str, n: int) -> None:
        """Wait until `n` calls of `method` ended with `code`: an aborted call is counted
        right after its status went out, so the client may see the error first."""
        await _until(lambda: self.count(method, code) >= n)
        assert self.count(method, code) == n

    def generic(self, kind: str, name: str):
        make = getattr(self.channel, kind)
        return make(
            f"/test.Echo/{name}",
            request_serializer=jobs_pb.GetJobRequest.SerializeToString,
            response_deserializer=jobs_pb.GetJobResponse.FromString,
        )


def _pipeline(**kw) -> tuple[ServerPipeline, CollectorRegistry]:
    registry = CollectorRegistry()
    return ServerPipeline(metrics=GrpcMetrics(registry), **kw), registry


@pytest.fixture
async def h():
    async with Harness(*_pipeline()) as harness:
        yield harness


async def _until(predicate: Callable[[], bool]) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached within 5 s")


def _details(status) -> dict[str, object]:
    out = {}
    for any_msg in status.details:
        for cls in (
            error_details_pb2.BadRequest,
            error_details_pb2.ResourceInfo,
            error_details_pb2.RetryInfo,
            error_details_pb2.ErrorInfo,
        ):
            if any_msg.Is(cls.DESCRIPTOR):
                msg = cls()
                any_msg.Unpack(msg)
                out[cls.__name__] = msg
    return out


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
async def test_each_error_class_maps_to_its_code_with_details(h, case):
    make, code, detail = ERROR_CASES[case]
    call = h.stub.GetJob(jobs_pb.GetJobRequest(job_id=case), metadata=(("x-request-id", "rid-1"),))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code
    assert err.value.details() == make().message
    status = rpc_status.from_call(err.value)
    assert status is not None and status.code == code.value[0]
    details = _details(status)
    if detail is not None:
        assert detail.__name__ in details
    if case == "invalid":
        violation = details["BadRequest"].field_violations[0]
        assert (violation.field, violation.description) == ("job_id", "must not be empty")
    if case == "missing":
        assert details["ResourceInfo"].resource_name == "j-404"
    if case == "exhausted":
        assert details["RetryInfo"].retry_delay.seconds == 3
    if case == "precondition":
        assert details["ErrorInfo"].reason == "job_terminal"
    # The request id travels on errors too.
    assert ("x-request-id", "rid-1") in tuple(await call.initial_metadata())
    await h.expect(GET_JOB, code.name, 1)


async def test_unexpected_exception_is_internal_without_leaking(h):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("aitbc.grpc")
    logger.addHandler(handler)
    try:
        call = h.stub.GetJob(
            jobs_pb.GetJobRequest(job_id="boom"), metadata=(("x-request-id", "r-9"),)
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
    finally:
        logger.removeHandler(handler)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert err.value.details() == "internal error"
    assert "hunter2" not in repr(err.value.trailing_metadata()) + err.value.debug_error_string()
    assert rpc_status.from_call(err.value) is None
    line = json.loads(stream.getvalue().splitlines()[0])
    assert line["request_id"] == "r-9" and line["method"] == GET_JOB
    assert "RuntimeError: db password hunter2" in line["exc"]  # the server log keeps it
    await h.expect(GET_JOB, "INTERNAL", 1)


async def test_direct_abort_and_unimplemented_default_pass_through(h):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await h.stub.GetJob(jobs_pb.GetJobRequest(job_id="abort"))
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.DATA_LOSS, "direct abort")
    await h.expect(GET_JOB, "DATA_LOSS", 1)
    # SubmitJob is not overridden: the generated sync default raises NotImplementedError.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await h.stub.SubmitJob(jobs_pb.SubmitJobRequest())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # Unknown methods never reach the pipeline.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await h.generic("unary_unary", "Nope")(jobs_pb.GetJobRequest())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_request_id_echoed_or_generated(h):
    call = h.stub.GetJob(
        jobs_pb.GetJobRequest(job_id="ok"), metadata=(("x-request-id", "abc-123"),)
    )
    await call
    assert dict(await call.initial_metadata())["x-request-id"] == "abc-123"
    assert h.jobs.seen["request_id"] == h.jobs.seen["log_request_id"] == "abc-123"

    for sent in ((), (("x-request-id", "bad id with spaces"),), (("x-request-id", "x" * 200),)):
        call = h.stub.GetJob(jobs_pb.GetJobRequest(job_id="ok"), metadata=sent)
        await call
        rid = dict(await call.initial_metadata())["x-request-id"]
        assert len(rid) == 16 and int(rid, 16) >= 0
        assert h.jobs.seen["request_id"] == rid
    assert aitbc_logging.request_id.get() is None  # nothing leaks into the test's context


async def test_response_header_arrives_in_initial_metadata(h):
    call = h.stub.GetJob(jobs_pb.GetJobRequest(job_id="header"), metadata=(("x-request-id", "r1"),))
    await call
    md = tuple(await call.initial_metadata())
    assert ("x-http-code", "201") in md and ("x-request-id", "r1") in md
    # A failed call sends only the request id: x-http-code=201 must not describe an error.
    call = h.stub.GetJob(jobs_pb.GetJobRequest(job_id="header-then-fail"))
    with pytest.raises(grpc.aio.AioRpcError):
        await call
    keys = [k for k, _ in await call.initial_metadata()]
    assert "x-request-id" in keys and "x-http-code" not in keys
    # ...unless the error itself names the REST status the API documents.
    call = h.stub.GetJob(jobs_pb.GetJobRequest(job_id="conflict"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    codes = [v for k, v in await call.initial_metadata() if k == "x-http-code"]
    assert codes == ["409"]


async def test_headers_sent_early_arrive_once_and_close_the_list(h):
    call = h.stub.GetJob(jobs_pb.GetJobRequest(job_id="early"), metadata=(("x-request-id", "r2"),))
    await call
    md = tuple(await call.initial_metadata())
    assert ("x-http-code", "201") in md and ("x-request-id", "r2") in md
    assert "x-late" not in dict(md)
    assert "already sent" in str(h.jobs.seen["late"])
    with pytest.raises(RuntimeError, match="not inside an RPC"):
        await send_response_headers()


async def test_server_stream_error_after_messages(h):
    call = h.stub.WatchJob(jobs_pb.WatchJobRequest(job_id="3:known"))
    got = []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for msg in call:
            got.append(msg.event)
    assert got == ["e0", "e1", "e2"]
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _details(rpc_status.from_call(err.value))["ErrorInfo"].reason == "gone"
    md = dict(await call.initial_metadata())
    assert md["x-stream"] == "yes" and "x-request-id" in md

    call = h.stub.WatchJob(jobs_pb.WatchJobRequest(job_id="2:boom"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in call:
            pass
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.INTERNAL, "internal error")

    # Setting a header after the first message is a programming error -> INTERNAL.
    call = h.stub.WatchJob(jobs_pb.WatchJobRequest(job_id="1:late-header"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in call:
            pass
    assert err.value.code() == grpc.StatusCode.INTERNAL

    events = [m.event async for m in h.stub.WatchJob(jobs_pb.WatchJobRequest(job_id="2"))]
    assert events == ["e0", "e1"]
    await h.expect(WATCH_JOB, "OK", 1)
    await h.expect(WATCH_JOB, "FAILED_PRECONDITION", 1)


async def test_client_and_bidi_streams_and_write_style(h):
    call = h.generic("stream_unary", "Count")(
        iter([jobs_pb.GetJobRequest(job_id="a"), jobs_pb.GetJobRequest(job_id="b")])
    )
    assert (await call).job.job_id == "2"
    assert dict(await call.initial_metadata())["x-count"] == "2"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await h.generic("stream_unary", "Count")(iter([jobs_pb.GetJobRequest(job_id="bad")]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    bidi = h.generic("stream_stream", "Echo")(
        iter([jobs_pb.GetJobRequest(job_id=x) for x in ("a", "b", "bad", "c")])
    )
    got = []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for msg in bidi:
            got.append(msg.job.job_id)
    assert got == ["a", "b"]
    assert err.value.code() == grpc.StatusCode.ABORTED
    assert _details(rpc_status.from_call(err.value))["RetryInfo"].retry_delay.seconds == 2

    call = h.generic("unary_stream", "Write")(jobs_pb.GetJobRequest(job_id="w"))
    got = []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for msg in call:
            got.append(msg.job.job_id)
    assert got == ["w"] and err.value.code() == grpc.StatusCode.NOT_FOUND
    assert dict(await call.initial_metadata())["x-write"] == "1"
    await h.expect("/test.Echo/Write", "NOT_FOUND", 1)


@pytest.mark.parametrize("kind", ["unary", "stream"])
async def test_client_cancel_propagates_cancelled_error(h, kind):
    if kind == "unary":
        call, method = h.stub.GetJob(jobs_pb.GetJobRequest(job_id="hang")), GET_JOB
        waiter = asyncio.ensure_future(call)
    else:
        call, method = h.stub.WatchJob(jobs_pb.WatchJobRequest(job_id="1:hang")), WATCH_JOB
        assert (await call.read()).event == "e0"
        waiter = asyncio.ensure_future(call.read())
    await h.jobs.started.wait()
    call.cancel()
    await h.jobs.cancelled.wait()  # the handler saw CancelledError (not swallowed)
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await h.expect(method, "CANCELLED", 1)
    assert h.count(method, "INTERNAL") == 0


async def test_auth_rejects_and_accepts_and_sets_principal():
    auth = KeyAuth()
    pipeline, registry = _pipeline(authenticator=auth)
    async with Harness(pipeline, registry) as h:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await h.stub.GetJob(jobs_pb.GetJobRequest(job_id="whoami"))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert _details(rpc_status.from_call(err.value))["ErrorInfo"].reason == "bad_api_key"

        reply = await h.stub.GetJob(
            jobs_pb.GetJobRequest(job_id="whoami"), metadata=(("x-api-key", "good"),)
        )
        assert reply.job.client_id == "client-1"
        principal = h.jobs.seen["principal"]
        assert principal == Principal("client-1", "client", "k1", {"tier": "gold"})
        assert principal.attributes["tier"] == "gold"
        with pytest.raises(TypeError):
            principal.attributes["tier"] = "x"  # type: ignore[index]

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await h.stub.CancelJob(
                jobs_pb.CancelJobRequest(job_id="1"), metadata=(("x-api-key", "good"),)
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

        # Health stays reachable without credentials and never reaches the authenticator.
        health = health_pb2_grpc.HealthStub(h.channel)
        assert (await health.Check(health_pb2.HealthCheckRequest())).status == 1
        assert all("Health" not in m for m in auth.calls)
        await h.expect(GET_JOB, "UNAUTHENTICATED", 1)
        await h.expect(GET_JOB, "OK", 1)


async def test_no_authenticator_means_no_principal(h):
    await h.stub.GetJob(jobs_pb.GetJobRequest(job_id="ok"))
    assert h.jobs.seen["principal"] is None
    with pytest.raises(grpc.aio.AioRpcError) as err:  # current_principal() fails closed
        await h.stub.GetJob(jobs_pb.GetJobRequest(job_id="whoami"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_rate_limiter_rejects_with_retry_info():
    limiter = Limiter(budget=2)
    pipeline, registry = _pipeline(authenticator=KeyAuth(), rate_limiter=limiter)
    async with Harness(pipeline, registry) as h:
        md = (("x-api-key", "good"),)
        for _ in range(2):
            await h.stub.GetJob(jobs_pb.GetJobRequest(job_id="ok"), metadata=md)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await h.stub.GetJob(jobs_pb.GetJobRequest(job_id="ok"), metadata=md)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        delay = _details(rpc_status.from_call(err.value))["RetryInfo"].retry_delay
        assert delay.ToNanoseconds() == 2_500_000_000
        # The limiter runs after authentication and sees the principal.
        assert limiter.seen == [("client-1", GET_JOB)] * 3
        # Rejected by auth first: the limiter is not consulted.
        with pytest.raises(grpc.aio.AioRpcError):
            await h.stub.GetJob(jobs_pb.GetJobRequest(job_id="ok"))
        assert len(limiter.seen) == 3
        await h.expect(GET_JOB, "OK", 2)
        await h.expect(GET_JOB, "RESOURCE_EXHAUSTED", 1)


async def test_metrics_histogram_and_handler_cache(h):
    for _ in range(3):
        await h.stub.GetJob(jobs_pb.GetJobRequest(job_id="ok"))
    await h.expect(GET_JOB, "OK", 3)
    observed = h.registry.get_sample_value("aitbc_grpc_request_seconds_count", {"method": GET_JOB})
    assert observed == 3
    assert len(h.pipeline._cache) >= 1  # wrapped once per method, reused


async def test_authenticator_returning_garbage_is_internal():
    class Broken:
        async def authenticate(self, method, metadata):
            return {"id": "x"}

    pipeline, registry = _pipeline(authenticator=Broken())
    async with Harness(pipeline, registry) as h:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await h.stub.GetJob(jobs_pb.GetJobRequest(job_id="ok"))
        assert err.value.code() == grpc.StatusCode.INTERNAL


def test_set_response_header_validation():
    with pytest.raises(RuntimeError, match="not inside an RPC"):
        set_response_header("x-http-code", "201")
    with pytest.raises(errors.Unauthenticated):
        current_principal()
