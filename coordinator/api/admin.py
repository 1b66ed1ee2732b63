"""AdminService: operator views over every client and miner."""

from __future__ import annotations

from aitbc.coordinator.v1 import admin_service_pb2 as pb
from aitbc.coordinator.v1 import admin_service_pb2_grpc as pb_grpc

from coordinator.api.convert import dict_to_caps, job_to_pb, state_filter, timestamp
from coordinator.auth import ID_RE
from coordinator.domain.service import Coordinator
from coordinator.store.base import JobFilter
from core import errors

STATUS = {
    "online": pb.MINER_STATUS_ONLINE,
    "draining": pb.MINER_STATUS_DRAINING,
    "offline": pb.MINER_STATUS_OFFLINE,
}


def _id_filter(value: str, field: str) -> str | None:
    if not value:
        return None
    if not ID_RE.match(value):
        raise errors.InvalidArgument.field(field, f"malformed id {value[:64]!r}")
    return value


class AdminServicer(pb_grpc.AdminServiceServicer):
    def __init__(self, coordinator: Coordinator):
        self.c = coordinator

    async def GetStats(self, request: pb.GetStatsRequest, context) -> pb.GetStatsResponse:
        return pb.GetStatsResponse(**await self.c.stats(request.window_seconds))

    async def ListJobs(
        self, request: pb.AdminServiceListJobsRequest, context
    ) -> pb.AdminServiceListJobsResponse:
        flt = JobFilter(
            client_id=_id_filter(request.client_id, "client_id"),
            miner_id=_id_filter(request.miner_id, "miner_id"),
            state=state_filter(request.state),
        )
        page = await self.c.list(flt, page_size=request.page_size, cursor=request.page_token)
        return pb.AdminServiceListJobsResponse(
            jobs=[job_to_pb(j, waiting_reason=self.c.waiting_reason(j)) for j in page.jobs],
            next_page_token=page.next_cursor,
        )

    async def ListMiners(self, request: pb.ListMinersRequest, context) -> pb.ListMinersResponse:
        if request.status not in (0, *STATUS.values()):
            raise errors.InvalidArgument.field("status", f"unknown status {request.status}")
        out = []
        for v in await self.c.miners():
            status = STATUS[v.status]
            if request.status and request.status != status:
                continue
            rec, s = v.record, v.session
            last = rec.last_seen_at
            if s is not None:  # liveness is data: the last heartbeat, as wall time
                last = self.c.clock.now() - s.silent_for(self.c.clock.monotonic())
            out.append(
                pb.MinerInfo(
                    miner_id=rec.miner_id,
                    status=status,
                    mode=s.mode if s is not None else rec.mode,
                    slots=s.profile.slots
                    if s is not None and s.connected
                    else int(rec.capabilities.get("slots") or 0),
                    inflight=len(s.leases) if s is not None else 0,
                    last_heartbeat_at=timestamp(last) if last else None,
                    completed=rec.completed,
                    failed=rec.failed,
                    avg_duration_ms=rec.total_duration_ms / rec.completed if rec.completed else 0.0,
                    capabilities=dict_to_caps(rec.capabilities),
                )
            )
        return pb.ListMinersResponse(miners=out)
