"""JobService: the client-facing job API."""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

import grpc
from aitbc.coordinator.v1 import job_service_pb2 as pb
from aitbc.coordinator.v1 import job_service_pb2_grpc as pb_grpc

from coordinator.api.convert import (
    STATE_TO_PB,
    job_to_pb,
    result_to_pb,
    state_filter,
    struct_to_dict,
)
from coordinator.domain import validation
from coordinator.domain.model import Job, JobState
from coordinator.domain.service import Coordinator
from coordinator.security import SUBMIT_ONE
from coordinator.store.base import JobFilter
from core import errors
from core.context import Principal, current_principal, send_response_headers, set_response_header
from core.interceptors import RateLimiter

log = logging.getLogger(__name__)


# SubmitJobStream: submits of one stream worked on at once (the .proto states it).
STREAM_WINDOW = 1000
# SubmitJobStream: answers share a response message up to this size (one answer may be larger).
ANSWERS_BYTES = 1 << 20


def _renamed(exc: errors.InvalidArgument, where: str) -> errors.InvalidArgument:
    """The same refusal with its fields named from the root of the message that held the
    request: a SubmitJobs item (`where` = "items[2]") or a stream message (`where` = "")."""
    prefix = f"{where}." if where else ""

    def name(field: str) -> str:
        if field == "Idempotency-Key":  # SubmitJob's header is the item's idempotency_key
            return f"{prefix}idempotency_key"
        return f"{prefix}request.{field}"

    violations = [(name(f), d) for f, d in exc.violations]
    if violations:  # each names its item already
        message = "; ".join(f"{f}: {d}" for f, d in violations)
    else:
        message = f"{where or 'request'}: {exc.message}"
    return errors.InvalidArgument(message, violations, reason=exc.reason)


def _item_error(exc: errors.AitbcError) -> pb.SubmitJobsError:
    out = pb.SubmitJobsError(code=exc.code.name, message=exc.message, reason=exc.reason or "")
    for field, description in getattr(exc, "violations", ()):
        out.field_violations.add(field=field, description=description)
    retry_after_s = getattr(exc, "retry_after_s", None)
    if isinstance(exc, errors.ResourceExhausted) and retry_after_s:
        out.retry_after_ms = min(math.ceil(retry_after_s * 1000), 2**32 - 1)
    return out


_INTERNAL_ITEM = pb.SubmitJobsError(code="INTERNAL", message="internal error")


def metadata_value(context: grpc.aio.ServicerContext, key: str) -> str:
    for k, v in context.invocation_metadata() or ():
        if k == key and isinstance(v, str):
            return v
    return ""


class JobServicer(pb_grpc.JobServiceServicer):
    """`rate_limiter` is the pipeline's: SubmitJobStream charges each of its jobs as one
    SubmitJob call (the pipeline charges only the opening of a stream)."""

    def __init__(self, coordinator: Coordinator, *, rate_limiter: RateLimiter | None = None):
        self.c = coordinator
        self._limiter = rate_limiter
        self._streams: set[_SubmitStream] = set()
        self._stopping = False
        # Submits of streams that ended early (client gone) finish on their own: kept here.
        self.orphans: set[asyncio.Task[Any]] = set()

    def stop_streams(self) -> None:
        """Shutdown: every SubmitJobStream stops reading, answers what it read and ends."""
        self._stopping = True
        for stream in list(self._streams):
            stream.stop()

    def _pb(self, job: Job):
        return job_to_pb(job, waiting_reason=self.c.waiting_reason(job))

    def _spec(self, request: pb.SubmitJobRequest) -> validation.SubmitSpec:
        p, c = request.payload, request.constraints
        return validation.submit(
            service=p.service,
            parameters=struct_to_dict(p.parameters),
            gpu_names=list(c.gpu_names),
            min_vram_gb=c.min_vram_gb,
            region=c.region,
            models=list(c.models),
            min_cuda=c.min_cuda,
            max_price=c.max_price,
            priority=c.priority,
            ttl_s=request.ttl_seconds,
            run_timeout_s=request.run_timeout_seconds,
            limits=self.c.settings.limits,
            wait_s=request.wait_seconds,
        )

    async def SubmitJob(self, request: pb.SubmitJobRequest, context) -> pb.SubmitJobResponse:
        spec = self._spec(request)
        client_id = current_principal().id
        job, created = await self.c.submit(
            client_id, spec, metadata_value(context, "idempotency-key")
        )
        set_response_header("x-http-code", "201" if created else "200")
        if spec.wait_s:
            # The headers go out while the job runs, so the answer waits for nothing else.
            await send_response_headers()
            job = await self.c.settle(job, client_id=client_id, wait_s=spec.wait_s)
        return pb.SubmitJobResponse(job=self._pb(job), created=created)

    async def SubmitJobs(self, request: pb.SubmitJobsRequest, context) -> pb.SubmitJobsResponse:
        validation.submit_batch_size(len(request.items))
        client_id = current_principal().id
        # Concurrently: the jobs' inserts share group commits, as concurrent SubmitJob calls do.
        results = await asyncio.gather(
            *(self._submit_item(client_id, i, item) for i, item in enumerate(request.items))
        )
        return pb.SubmitJobsResponse(results=results)

    async def _submit_item(
        self, client_id: str, i: int, item: pb.SubmitJobsItem
    ) -> pb.SubmitJobsResult:
        where = f"items[{i}]"
        try:
            try:
                spec = self._spec(item.request)
                if spec.wait_s:
                    raise errors.InvalidArgument.field("wait_seconds", "must be 0 in SubmitJobs")
                job, created = await self.c.submit(client_id, spec, item.idempotency_key)
            except errors.InvalidArgument as exc:
                raise _renamed(exc, where) from None
            return pb.SubmitJobsResult(job=self._pb(job), created=created)
        except errors.AitbcError as exc:
            return pb.SubmitJobsResult(error=_item_error(exc))
        except Exception:
            # This item alone fails (the others may be stored already): never the whole call.
            log.exception("SubmitJobs item %d failed", i)
            return pb.SubmitJobsResult(error=_INTERNAL_ITEM)

    async def SubmitJobStream(self, requests: AsyncIterator[Any], context) -> None:
        if self._stopping:
            raise errors.Unavailable("the coordinator is shutting down", reason="shutting_down")
        stream = _SubmitStream(self, current_principal(), requests, context)
        self._streams.add(stream)
        try:
            await stream.run()
        finally:
            self._streams.discard(stream)

    async def stream_result(
        self, principal: Principal, msg: pb.SubmitJobStreamRequest, waiting: set[asyncio.Task[Any]]
    ) -> pb.SubmitJobsResult:
        """One stream message, as SubmitJob would take it; the task is in `waiting` while it
        waits for the stored job to end (the only part a closing stream may cut short)."""
        try:
            try:
                if self._limiter is not None:
                    await self._limiter.check(principal, SUBMIT_ONE, msg.request)
                spec = self._spec(msg.request)
                job, created = await self.c.submit(principal.id, spec, msg.idempotency_key)
            except errors.InvalidArgument as exc:
                raise _renamed(exc, "") from None
            if spec.wait_s:
                task = asyncio.current_task()
                assert task is not None
                waiting.add(task)
                try:
                    job = await self.c.settle(job, client_id=principal.id, wait_s=spec.wait_s)
                finally:
                    waiting.discard(task)
            return pb.SubmitJobsResult(job=self._pb(job), created=created)
        except errors.AitbcError as exc:
            return pb.SubmitJobsResult(error=_item_error(exc))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("SubmitJobStream message (tag %d) failed", msg.tag)
            return pb.SubmitJobsResult(error=_INTERNAL_ITEM)

    async def GetJob(self, request: pb.GetJobRequest, context) -> pb.GetJobResponse:
        job = await self.c.get(request.job_id, client_id=current_principal().id)
        return pb.GetJobResponse(job=self._pb(job))

    async def GetJobResult(
        self, request: pb.GetJobResultRequest, context
    ) -> pb.GetJobResultResponse:
        job = await self.c.get(request.job_id, client_id=current_principal().id)
        out = pb.GetJobResultResponse(job_id=job.job_id, state=STATE_TO_PB[job.state])
        if not job.state.terminal:
            set_response_header("x-http-code", "425")  # Too Early: ask again later
        elif job.state is JobState.COMPLETED and job.result is not None:
            out.result.CopyFrom(result_to_pb(job.result))
        else:
            out.error.code, out.error.message = job.error_code, job.error_message
        return out

    async def CancelJob(self, request: pb.CancelJobRequest, context) -> pb.CancelJobResponse:
        job = await self.c.cancel(
            request.job_id, client_id=current_principal().id, reason=request.reason
        )
        return pb.CancelJobResponse(job=self._pb(job))

    async def ListJobs(self, request: pb.ListJobsRequest, context) -> pb.ListJobsResponse:
        flt = JobFilter(client_id=current_principal().id, state=state_filter(request.state))
        page = await self.c.list(flt, page_size=request.page_size, cursor=request.page_token)
        return pb.ListJobsResponse(
            jobs=[self._pb(j) for j in page.jobs], next_page_token=page.next_cursor
        )

    async def WatchJob(
        self, request: pb.WatchJobRequest, context
    ) -> AsyncIterator[pb.WatchJobResponse]:
        async for event, job in self.c.watch(request.job_id, client_id=current_principal().id):
            yield pb.WatchJobResponse(event=event, job=self._pb(job))


_EOF = object()  # the client closed its side of the stream
_STOP = object()  # the coordinator is shutting down


class _SubmitStream:
    """One SubmitJobStream call: a reader takes messages while fewer than STREAM_WINDOW await
    their answer, a task per message does the submit, and run() writes the answers (gRPC
    allows one write at a time; the answers ready by then share it) until every message read
    is answered."""

    def __init__(
        self, servicer: JobServicer, principal: Principal, requests: AsyncIterator[Any], context
    ):
        self.s, self.principal, self.requests, self.context = servicer, principal, requests, context
        self.answers: asyncio.Queue[Any] = asyncio.Queue()
        self.window = asyncio.Semaphore(STREAM_WINDOW)
        self.tags: set[int] = set()  # tags read and not answered yet
        self.tasks: set[asyncio.Task[Any]] = set()
        self.waiting: set[asyncio.Task[Any]] = set()
        self.reader: asyncio.Task[None] | None = None
        self.outstanding = 0  # messages read and not answered yet

    def stop(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        self.answers.put_nowait(_STOP)

    async def run(self) -> None:
        self.reader = asyncio.create_task(self._read())
        reading, stopping = True, False
        ready: collections.deque[Any] = collections.deque()
        try:
            while reading or self.outstanding:
                if not ready:
                    ready.append(await self.answers.get())
                # Whatever else is ready goes in the same message: one write per message is
                # the cost, and a busy coordinator has many answers ready at once. A message
                # stays under ANSWERS_BYTES (clients receive 4 MiB by default).
                while not self.answers.empty():
                    ready.append(self.answers.get_nowait())
                out, size = pb.SubmitJobStreamResponse(), 0
                while ready:
                    answer = ready[0]
                    if answer is _EOF or answer is _STOP:
                        reading, stopping = False, stopping or answer is _STOP
                        ready.popleft()
                        continue
                    n = answer.ByteSize()
                    if out.answers and size + n > ANSWERS_BYTES:
                        break
                    out.answers.append(ready.popleft())
                    size += n
                if out.answers:
                    await self.context.write(out)
                    self.outstanding -= len(out.answers)
                    for _ in out.answers:
                        self.window.release()
        finally:
            self.reader.cancel()
            self._abandon()
        if stopping:
            raise errors.Unavailable(
                "the coordinator is shutting down: every message it read was answered; "
                "send the others again",
                reason="shutting_down",
            )

    async def _read(self) -> None:
        try:
            while True:
                await self.window.acquire()
                msg = await anext(self.requests, None)
                if msg is None:
                    break
                self.outstanding += 1
                if msg.tag in self.tags:
                    refusal = errors.InvalidArgument.field(
                        "tag", f"{msg.tag} already awaits its answer on this stream"
                    )
                    self._answer(msg.tag, pb.SubmitJobsResult(error=_item_error(refusal)))
                    continue
                self.tags.add(msg.tag)
                task = asyncio.create_task(self._one(msg))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        except asyncio.CancelledError:
            return  # stopped: run() knows why
        except Exception as exc:  # the client's side broke off, or a malformed message
            log.debug("SubmitJobStream reader ended: %r", exc)
        self.answers.put_nowait(_EOF)

    async def _one(self, msg: pb.SubmitJobStreamRequest) -> None:
        result = await self.s.stream_result(self.principal, msg, self.waiting)
        self.tags.discard(msg.tag)
        self._answer(msg.tag, result)

    def _answer(self, tag: int, result: pb.SubmitJobsResult) -> None:
        self.answers.put_nowait(pb.SubmitJobStreamAnswer(tag=tag, result=result))

    def _abandon(self) -> None:
        """The call is over (normally nothing is left): waits are cut, submits finish."""
        for task in self.waiting:
            task.cancel()
        for task in self.tasks:
            self.s.orphans.add(task)
            task.add_done_callback(self.s.orphans.discard)
