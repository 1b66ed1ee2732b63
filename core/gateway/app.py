"""create_gateway_app: the Starlette app serving the transcoded routes, /openapi.json and /docs."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.descriptor_pb2 import FileDescriptorSet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from core.gateway.config import GatewayConfig
from core.gateway.docs import docs_routes
from core.gateway.handler import Gateway
from core.gateway.openapi import build_openapi
from core.gateway.routes import RouteError, compile_routes


def create_gateway_app(
    services: Sequence[ServiceDescriptor],
    target: str = "127.0.0.1:50051",
    config: GatewayConfig | None = None,
    *,
    title: str = "AITBC API",
    version: str = "0.1.0",
    channel_options: Sequence[tuple[str, Any]] = (),
    channel_factory: Callable[[], grpc.aio.Channel] | None = None,
    source_info: FileDescriptorSet | None = None,
) -> Starlette:
    """A Starlette app serving every http-annotated RPC of `services`, /openapi.json and /docs.

    Raises RouteError at once for an invalid or conflicting rule. The channel to `target` is
    opened in the app's lifespan (same event loop as the requests) and closed on shutdown;
    `channel_factory` replaces it (tests, in-process transports).
    """
    config = config or GatewayConfig()
    table = compile_routes(services)
    gateway = Gateway(table, target, config, channel_options, channel_factory)
    routes: list[BaseRoute] = []
    reserved: list[str] = []
    if config.openapi_path:
        doc = build_openapi(table, title=title, version=version, source_info=source_info)
        payload = json.dumps(doc, indent=2, sort_keys=True).encode()

        async def openapi(_: Request) -> Response:
            return Response(payload, media_type="application/json")

        routes.append(Route(config.openapi_path, openapi, methods=["GET"]))
        reserved.append(config.openapi_path)
    if config.docs_path:
        routes.extend(docs_routes(config.docs_path, config.openapi_path, title))
        reserved += [config.docs_path, config.docs_path + "/static/swagger-ui.css"]
    for path in reserved:
        found = table.match("GET", path[1:].split("/"))
        if found is not None:
            raise RouteError(
                f"route {found[0].describe()} is shadowed by the gateway's own {path}; "
                "move it or change GatewayConfig.openapi_path/docs_path"
            )
    routes.append(Route("/{path:path}", gateway))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gateway
    return app
