"""Gateway fixtures: the test proto compiled at test time, a real grpc.aio server, the gateway."""

from __future__ import annotations

import asyncio
import base64
import importlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import grpc
import grpc_tools
import httpx
import pytest
from google.api import httpbody_pb2
from google.protobuf.descriptor_pb2 import FileDescriptorSet
from google.rpc import status_pb2
from grpc_status import rpc_status
from grpc_tools import protoc

from core import errors
from core.gateway import GatewayConfig, create_gateway_app

ROOT = Path(__file__).resolve().parents[2]
PROTOS = Path(__file__).resolve().parent / "protos"
MAX_BODY = 4096


@pytest.fixture(scope="session")
def gw(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """gwtest.v1 generated into a temp dir on sys.path (nothing generated is committed)."""
    out = tmp_path_factory.mktemp("gwtest_gen")
    descriptor_set = out / "gwtest.binpb"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{ROOT / 'third_party' / 'googleapis'}",
        f"-I{Path(grpc_tools.__file__).parent / '_proto'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--descriptor_set_out={descriptor_set}",
        "--include_source_info",
        "gwtest/v1/gwtest.proto",
    ]
    assert protoc.main(args) == 0, "protoc failed on the gateway test proto"
    sys.path.insert(0, str(out))
    try:
        pb = importlib.import_module("gwtest.v1.gwtest_pb2")
        pb_grpc = importlib.import_module("gwtest.v1.gwtest_pb2_grpc")
    finally:
        sys.path.remove(str(out))
    return SimpleNamespace(
        pb=pb,
        pb_grpc=pb_grpc,
        service=pb.DESCRIPTOR.services_by_name["EchoService"],
        source_info=FileDescriptorSet.FromString(descriptor_set.read_bytes()),
    )


# Codes the shared hierarchy has a class for; the others are built as plain statuses.
ERROR_CLASSES: dict[int, type[errors.AitbcError]] = {
    3: errors.InvalidArgument,
    4: errors.DeadlineExceeded,
    6: errors.AlreadyExists,
    7: errors.PermissionDenied,
    8: errors.ResourceExhausted,
    9: errors.FailedPrecondition,
    10: errors.Aborted,
    11: errors.OutOfRange,
    12: errors.Unimplemented,
    13: errors.Internal,
    14: errors.Unavailable,
    16: errors.Unauthenticated,
}


def error_status(code: int, message: str, retry_after_s: float = 0.0) -> status_pb2.Status:
    if code == 5:
        return errors.NotFound("gwtest.v1.Thing", message).to_status()
    cls = ERROR_CLASSES.get(code)
    if cls is None:
        return status_pb2.Status(code=code, message=message)
    if issubclass(cls, errors._Retryable) and retry_after_s:
        return cls(message, retry_after_s=retry_after_s).to_status()
    if cls is errors.InvalidArgument:
        return errors.InvalidArgument.field("thing.size", message).to_status()
    return cls(message, reason="test_reason").to_status()


def make_servicer(gw: SimpleNamespace) -> object:
    pb, pb_grpc = gw.pb, gw.pb_grpc

    class Servicer(pb_grpc.EchoServiceServicer):
        def __init__(self) -> None:
            self.stream_cancelled = asyncio.Event()
            self.stream_hanging = asyncio.Event()
            self.sleep_started = asyncio.Event()
            self.sleep_cancelled = asyncio.Event()

        async def Echo(self, request, context):
            seen = {}
            for key, value in context.invocation_metadata():
                if isinstance(value, bytes):
                    value = "b64:" + base64.b64encode(value).decode()
                seen[key] = value
            return pb.EchoResponse(
                request=request, metadata=seen, has_deadline=context.time_remaining() is not None
            )

        async def Fail(self, request, context):
            if request.http_status:
                await context.send_initial_metadata((("x-http-code", str(request.http_status)),))
            status = error_status(request.code, request.message, request.retry_after_s)
            await context.abort_with_status(rpc_status.to_status(status))

        async def SetStatus(self, request, context):
            await context.send_initial_metadata(
                (
                    ("x-http-code", str(request.http_code)),
                    ("x-extra", "yes"),
                    ("trace-bin", b"\x00\x01"),
                )
            )
            return pb.SetStatusResponse(note="status set")

        async def Ticks(self, request, context):
            await context.send_initial_metadata((("x-stream", "ticks"),))
            try:
                for i in range(request.count):
                    if request.fail_code and i == request.fail_after:
                        status = error_status(request.fail_code, f"failed at {i}")
                        await context.abort_with_status(rpc_status.to_status(status))
                    if request.hang_after and i == request.hang_after:
                        self.stream_hanging.set()
                        await asyncio.Event().wait()
                    tick = pb.Tick(n=i, note=f"tick {i}")
                    if request.unprintable_at == i + 1:
                        tick.extra.number_value = float("inf")
                    yield tick
            except asyncio.CancelledError:
                self.stream_cancelled.set()
                raise

        async def Upload(self, request, context):
            data = request.name.encode() + b":" + request.blob.data
            return httpbody_pb2.HttpBody(content_type=request.blob.content_type, data=data)

        async def Mirror(self, request, context):
            return httpbody_pb2.HttpBody(
                content_type=request.content_type or "application/octet-stream",
                data=request.data[::-1],
            )

        async def Download(self, request, context):
            for i in range(request.chunks):
                if request.fail_code and i == request.fail_after:
                    status = error_status(request.fail_code, f"failed at chunk {i}")
                    await context.abort_with_status(rpc_status.to_status(status))
                yield httpbody_pb2.HttpBody(
                    content_type="text/csv", data=f"{request.name},{i}\n".encode()
                )

        async def Sleep(self, request, context):
            self.sleep_started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.sleep_cancelled.set()
                raise
            return pb.SleepResponse()

        async def Chat(self, request_iterator, context):
            async for request in request_iterator:
                yield pb.EchoResponse(request=request)

        async def Hidden(self, request, context):
            return pb.EchoResponse(request=request)

    return Servicer()


@pytest.fixture
async def grpc_server(gw: SimpleNamespace) -> AsyncIterator[SimpleNamespace]:
    """A real grpc.aio server on 127.0.0.1, port 0."""
    server = grpc.aio.server()
    servicer = make_servicer(gw)
    gw.pb_grpc.add_EchoServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield SimpleNamespace(target=f"127.0.0.1:{port}", servicer=servicer)
    finally:
        await server.stop(None)


def make_app(gw: SimpleNamespace, target: str, **config):
    config.setdefault("max_body_bytes", MAX_BODY)
    return create_gateway_app(
        [gw.service],
        target=target,
        config=GatewayConfig(**config),
        title="gwtest",
        version="1.2.3",
        source_info=gw.source_info,
    )


@pytest.fixture
async def client(
    gw: SimpleNamespace, grpc_server: SimpleNamespace
) -> AsyncIterator[httpx.AsyncClient]:
    """httpx over ASGITransport, with the app's lifespan (channel open/close) running."""
    app = make_app(gw, grpc_server.target)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as c:
            yield c
