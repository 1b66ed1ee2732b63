"""REST -> gRPC transcoding gateway (grpc-gateway v2 behaviour) with OpenAPI 3.1 and /docs."""

from core.gateway.app import create_gateway_app
from core.gateway.config import GatewayConfig
from core.gateway.handler import Gateway
from core.gateway.openapi import build_openapi
from core.gateway.routes import Route, RouteError, RouteTable, compile_routes

__all__ = [
    "Gateway",
    "GatewayConfig",
    "Route",
    "RouteError",
    "RouteTable",
    "build_openapi",
    "compile_routes",
    "create_gateway_app",
]
