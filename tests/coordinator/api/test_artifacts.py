"""Artifacts: miners upload over gRPC, anyone with the sha256 downloads over REST."""

from __future__ import annotations

import hashlib

import grpc
import pytest
from aitbc.coordinator.v1 import artifact_service_pb2 as pb
from aitbc.coordinator.v1 import artifact_service_pb2_grpc as pb_grpc
from google.api import httpbody_pb2


async def test_upload_then_download(api):
    stub = pb_grpc.ArtifactServiceStub(api.channel)
    data = b"\x00frame" * 5000
    req = pb.UploadArtifactRequest(body=httpbody_pb2.HttpBody(content_type="video/mp4", data=data))
    ref = (await stub.UploadArtifact(req, metadata=api.md("m1"))).artifact
    sha = hashlib.sha256(data).hexdigest()
    assert ref.sha256 == sha and ref.size_bytes == len(data)
    assert ref.url == f"{api.app.http_base}/v1/artifacts/{sha}"
    again = (await stub.UploadArtifact(req, metadata=api.md("m1"))).artifact
    assert again == ref  # content-addressed: same bytes, same reference
    r = await api.http.get(ref.url.removeprefix(api.app.http_base))  # no key needed
    assert r.status_code == 200 and r.content == data and r.headers["content-type"] == "video/mp4"


async def test_artifact_errors(api):
    stub = pb_grpc.ArtifactServiceStub(api.channel)
    req = pb.UploadArtifactRequest(body=httpbody_pb2.HttpBody(content_type="text/plain", data=b"x"))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.UploadArtifact(req, metadata=api.md("alice"))
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    bad_type = pb.UploadArtifactRequest(
        body=httpbody_pb2.HttpBody(content_type="not a type", data=b"x")
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.UploadArtifact(bad_type, metadata=api.md("m1"))
    assert (
        exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        and "body.content_type" in exc.value.details()
    )
    assert (await api.http.get("/v1/artifacts/nothex")).status_code == 400
    assert (await api.http.get(f"/v1/artifacts/{'0' * 64}")).status_code == 404
