"""JobService: the client-facing job API."""

from __future__ import annotations

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
from core.context import current_principal, set_response_header


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

    async def SubmitJob(self, request: pb.SubmitJobRequest, context) -> pb.SubmitJobResponse:
        p, c = request.payload, request.constraints
        spec = validation.submit(
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
        client_id = current_principal().id
        job, created = await self.c.submit(
            client_id, spec, metadata_value(context, "idempotency-key")
        )
        set_response_header("x-http-code", "201" if created else "200")
        if spec.wait_s:
            job = await self.c.settle(job, client_id=client_id, wait_s=spec.wait_s)
        return pb.SubmitJobResponse(job=self._pb(job), created=created)

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
