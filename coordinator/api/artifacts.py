"""ArtifactService: miners upload large results; anyone holding the sha256 downloads them."""

from __future__ import annotations

from collections.abc import Callable

from aitbc.coordinator.v1 import artifact_service_pb2 as pb
from aitbc.coordinator.v1 import artifact_service_pb2_grpc as pb_grpc
from aitbc.coordinator.v1 import job_pb2 as job_pb
from google.api import httpbody_pb2

from coordinator.artifacts import ArtifactStore
from core import errors
from core.context import current_principal


class ArtifactServicer(pb_grpc.ArtifactServiceServicer):
    def __init__(self, store: ArtifactStore, public_url: Callable[[], str]):
        self.store = store
        self.public_url = public_url  # resolved per call: the REST port is known only later

    async def UploadArtifact(
        self, request: pb.UploadArtifactRequest, context
    ) -> pb.UploadArtifactResponse:
        if current_principal().role not in ("miner", "admin"):
            raise errors.PermissionDenied(
                "only miners and admins upload artifacts", reason="wrong_role"
            )
        data, content_type = request.body.data, request.body.content_type
        sha = await self.store.put(data, content_type)
        return pb.UploadArtifactResponse(
            artifact=job_pb.ArtifactRef(
                url=f"{self.public_url().rstrip('/')}/v1/artifacts/{sha}",
                size_bytes=len(data),
                sha256=sha,
                content_type=content_type or "application/octet-stream",
            )
        )

    async def GetArtifact(self, request: pb.GetArtifactRequest, context) -> pb.GetArtifactResponse:
        data, content_type = await self.store.get(request.sha256)
        return pb.GetArtifactResponse(
            body=httpbody_pb2.HttpBody(content_type=content_type, data=data)
        )
