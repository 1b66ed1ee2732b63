"""JobService: the client-facing job API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

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
from coordinator.store.base import JobFilter
from core import errors
from core.context import current_principal, send_response_headers, set_response_header

log = logging.getLogger(__name__)


def _renamed(exc: errors.InvalidArgument, where: str) -> errors.InvalidArgument:
    """The same refusal with its fields named from the SubmitJobs request root."""

    def name(field: str) -> str:
        if field == "Idempotency-Key":  # SubmitJob's header is the item's idempotency_key
            return f"{where}.idempotency_key"
        return f"{where}.request.{field}"

    violations = [(name(f), d) for f, d in exc.violations]
    if violations:  # each names its item already
        message = "; ".join(f"{f}: {d}" for f, d in violations)
    else:
        message = f"{where}: {exc.message}"
    return errors.InvalidArgument(message, violations, reason=exc.reason)


def _item_error(exc: errors.AitbcError) -> pb.SubmitJobsError:
    out = pb.SubmitJobsError(code=exc.code.name, message=exc.message, reason=exc.reason or "")
    for field, description in getattr(exc, "violations", ()):
        out.field_violations.add(field=field, description=description)
    return out


def metadata_value(context: grpc.aio.ServicerContext, key: str) -> str:
    for k, v in context.invocation_metadata() or ():
        if k == key and isinstance(v, str):
            return v
    return ""


class JobServicer(pb_grpc.JobServiceServicer):
    def __init__(self, coordinator: Coordinator):
        self.c = coordinator

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
            return pb.SubmitJobsResult(
                error=pb.SubmitJobsError(code="INTERNAL", message="internal error")
            )

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
