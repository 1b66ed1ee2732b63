"""A real coordinator (gRPC + REST gateway) on loopback port 0, with keys for every role."""

from __future__ import annotations

import grpc
import httpx
import pytest
from aitbc.coordinator.v1 import admin_service_pb2_grpc as admin_grpc
from aitbc.coordinator.v1 import job_service_pb2_grpc as job_grpc
from aitbc.coordinator.v1 import miner_service_pb2_grpc as miner_grpc

from coordinator.app import CoordinatorApp
from coordinator.config import CoordinatorConfig
from coordinator.store.memory import MemoryJobStore
from core.server import ServerConfig

KEYS = {
    "client": {"alice": "alice-secret-0123456789", "bob": "bob-secret-0123456789ab"},
    "miner": {"m1": "m1-secret-0123456789abc", "m2": "m2-secret-0123456789abc"},
    "admin": {"root": "root-secret-0123456789a"},
}


def make_config(tmp_path, **overrides) -> CoordinatorConfig:
    base = CoordinatorConfig(
        server=ServerConfig(grpc_port=0, grpc_shutdown_grace_s=1.0),
        data_dir=tmp_path,
        http_port=0,
        client_keys=",".join(f"{k}={v}" for k, v in KEYS["client"].items()),
        miner_keys=",".join(f"{k}={v}" for k, v in KEYS["miner"].items()),
        admin_keys=",".join(f"{k}={v}" for k, v in KEYS["admin"].items()),
        sweep_interval_s=0.05,
    )
    return base.replace(**overrides)


class Api:
    """Stubs and an HTTP client bound to one running coordinator."""

    def __init__(self, app: CoordinatorApp, channel: grpc.aio.Channel, http: httpx.AsyncClient):
        self.app, self.channel, self.http = app, channel, http
        self.jobs = job_grpc.JobServiceStub(channel)
        self.miners = miner_grpc.MinerServiceStub(channel)
        self.admin = admin_grpc.AdminServiceStub(channel)

    @staticmethod
    def md(ident: str) -> tuple[tuple[str, str], ...]:
        for role in KEYS.values():
            if ident in role:
                return (("x-api-key", role[ident]),)
        raise KeyError(ident)

    @staticmethod
    def h(ident: str) -> dict[str, str]:
        return {"X-Api-Key": Api.md(ident)[0][1]}


@pytest.fixture
async def api(tmp_path):
    app = await CoordinatorApp(make_config(tmp_path), store=MemoryJobStore()).start()
    channel = grpc.aio.insecure_channel(app.grpc_target)
    async with httpx.AsyncClient(base_url=app.http_base, timeout=10) as http:
        yield Api(app, channel, http)
    await channel.close()
    await app.stop()
