"""Assembles the coordinator: store -> domain -> gRPC server (+ pipeline) -> REST gateway."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field

import uvicorn
from aitbc.coordinator.v1 import admin_service_pb2 as admin_pb
from aitbc.coordinator.v1 import admin_service_pb2_grpc as admin_grpc
from aitbc.coordinator.v1 import artifact_service_pb2 as artifact_pb
from aitbc.coordinator.v1 import artifact_service_pb2_grpc as artifact_grpc
from aitbc.coordinator.v1 import job_service_pb2 as job_svc_pb
from aitbc.coordinator.v1 import job_service_pb2_grpc as job_grpc
from aitbc.coordinator.v1 import miner_service_pb2 as miner_pb
from aitbc.coordinator.v1 import miner_service_pb2_grpc as miner_grpc
from aitbc.coordinator.v1 import receipt_service_pb2 as receipt_pb
from aitbc.coordinator.v1 import receipt_service_pb2_grpc as receipt_grpc
from prometheus_client import CollectorRegistry

from coordinator import devkeys
from coordinator.api.admin import AdminServicer
from coordinator.api.artifacts import ArtifactServicer
from coordinator.api.jobs import JobServicer
from coordinator.api.miners import MinerServicer
from coordinator.api.receipts import KeyServicer, ReceiptServicer
from coordinator.artifacts import ArtifactStore
from coordinator.auth import PUBLIC_SERVICES, KeyAuthenticator, parse_keys
from coordinator.config import CoordinatorConfig
from coordinator.domain.service import Coordinator
from coordinator.receipts import ReceiptIssuer, ReceiptKeys
from coordinator.security import GATEWAY_TOKEN_KEY, HmacRequestVerifier, MethodRateLimiter
from coordinator.store.base import JobStore
from coordinator.store.sql import SqlJobStore
from core.clock import Clock
from core.gateway import GatewayConfig, create_gateway_app
from core.hmac_auth import HmacVerifier
from core.interceptors import DEFAULT_EXEMPT_SERVICES, GrpcMetrics, ServerPipeline
from core.nonces import MemoryNonceStore, RedisNonceStore
from core.ratelimit import MemoryRateLimiter, RedisRateLimiter, parse_rules
from core.server import RunningServer, ServiceBinding, create_server

log = logging.getLogger(__name__)

SERVICES = (
    job_svc_pb.DESCRIPTOR.services_by_name["JobService"],
    miner_pb.DESCRIPTOR.services_by_name["MinerService"],
    admin_pb.DESCRIPTOR.services_by_name["AdminService"],
    receipt_pb.DESCRIPTOR.services_by_name["ReceiptService"],
    receipt_pb.DESCRIPTOR.services_by_name["KeyService"],
    artifact_pb.DESCRIPTOR.services_by_name["ArtifactService"],
)


def key_entries(config: CoordinatorConfig) -> tuple[list, dict[str, str]]:
    """Parse the configured keys; with none configured, use (or create) the dev key file."""
    values = {
        "AITBC_CLIENT_KEYS": config.client_keys,
        "AITBC_MINER_KEYS": config.miner_keys,
        "AITBC_ADMIN_KEYS": config.admin_keys,
    }
    if not any(values.values()):
        values, path, created = devkeys.load_or_create(config.data_dir)
        log.warning(
            "no API keys configured: using development keys from %s%s",
            path,
            " (just created)" if created else "",
        )
    entries = []
    for role in ("client", "miner", "admin"):
        name = f"AITBC_{role.upper()}_KEYS"
        entries += parse_keys(values.get(name, ""), role, name=name)
    return entries, values


@dataclass
class CoordinatorApp:
    config: CoordinatorConfig
    clock: Clock | None = None
    store: JobStore | None = None
    coordinator: Coordinator = field(init=False)
    receipt_keys: ReceiptKeys = field(init=False)
    grpc: RunningServer = field(init=False)
    http_port: int = 0
    keys: dict[str, str] = field(default_factory=dict)
    gateway_token: str = ""
    _closers: list = field(default_factory=list)
    _uvicorn: uvicorn.Server | None = None
    _http_task: asyncio.Task[None] | None = None

    async def start(self) -> CoordinatorApp:
        cfg = self.config
        entries, self.keys = key_entries(cfg)
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.receipt_keys = ReceiptKeys.load(
            cfg.data_dir,
            signing_hex=cfg.receipt_signing_key_hex,
            attestation_hex=cfg.receipt_attestation_key_hex,
            now=int(self.clock.now()) if self.clock is not None else None,
        )
        if self.store is None:
            self.store = SqlJobStore(cfg.sqlalchemy_url, writer=cfg.store_writer)
        await self.store.start()
        self.coordinator = Coordinator(
            self.store,
            settings=cfg.settings(),
            clock=self.clock,
            receipts=ReceiptIssuer(
                self.receipt_keys, coordinator_id=cfg.coordinator_id, chain_id=cfg.chain_id
            ),
        )
        await self.coordinator.start()
        limiter, nonces = await self._shared_state()
        self.gateway_token = secrets.token_urlsafe(24)
        verifier = HmacRequestVerifier(
            entries,
            HmacVerifier(nonces, skew_s=cfg.hmac_skew_s),
            gateway_token=self.gateway_token,
            required=cfg.hmac_required,
        )
        rate_limiter = MethodRateLimiter(limiter) if limiter is not None else None
        pipeline = ServerPipeline(
            authenticator=KeyAuthenticator(entries),
            rate_limiter=rate_limiter,
            request_verifier=verifier if verifier.active else None,
            metrics=GrpcMetrics(CollectorRegistry()),
            exempt_services=DEFAULT_EXEMPT_SERVICES | PUBLIC_SERVICES,
        )
        c = self.coordinator
        self.artifacts = ArtifactStore(cfg.data_dir / "artifacts", max_bytes=cfg.artifact_max_bytes)
        self.job_servicer = JobServicer(c, rate_limiter=rate_limiter)
        servicers = [
            (job_grpc.add_JobServiceServicer_to_server, self.job_servicer),
            (miner_grpc.add_MinerServiceServicer_to_server, MinerServicer(c)),
            (admin_grpc.add_AdminServiceServicer_to_server, AdminServicer(c)),
            (receipt_grpc.add_ReceiptServiceServicer_to_server, ReceiptServicer(c)),
            (
                receipt_grpc.add_KeyServiceServicer_to_server,
                KeyServicer(self.receipt_keys, cfg.coordinator_id),
            ),
            (
                artifact_grpc.add_ArtifactServiceServicer_to_server,
                ArtifactServicer(self.artifacts, lambda: self.public_url),
            ),
        ]
        self.grpc = await create_server(
            [
                ServiceBinding(d.full_name, add, servicer)
                for d, (add, servicer) in zip(SERVICES, servicers, strict=True)
            ],
            config=cfg.server,
            interceptor=pipeline,
        )
        # Submit streams stop reading first; then the coordinator stops, which ends their
        # waits and closes the miner streams, so the drain is not held up by either.
        self.grpc.on_shutdown(self.job_servicer.stop_streams, phase="drain")
        self.grpc.on_shutdown(self.coordinator.stop, phase="drain")
        self.grpc.on_shutdown(self.store.close)
        for closer in self._closers:
            self.grpc.on_shutdown(closer)
        self.grpc.on_shutdown(self._stop_http)
        if cfg.http_port >= 0:
            await self._start_http()
        return self

    async def _shared_state(self):
        """Rate limiter and nonce store: in Redis when configured, else in process memory."""
        cfg = self.config
        rules = parse_rules(cfg.rate_limits) if cfg.rate_limits else {}
        if cfg.redis_url:
            import redis.asyncio as aioredis

            client = aioredis.from_url(cfg.redis_url)
            self._closers.append(client.aclose)
            prefix = cfg.redis_key_prefix
            limiter = RedisRateLimiter(client, rules, prefix=f"{prefix}rl:") if rules else None
            return limiter, RedisNonceStore(client, prefix=f"{prefix}nonce:")
        return (MemoryRateLimiter(rules) if rules else None), MemoryNonceStore()

    async def _start_http(self) -> None:
        cfg = self.config
        app = create_gateway_app(
            SERVICES,
            target=f"127.0.0.1:{self.grpc.port}",
            config=GatewayConfig(
                max_body_bytes=cfg.http_max_body_bytes,
                # proves to the HMAC verifier that the x-aitbc-http-* metadata is ours
                call_metadata=((GATEWAY_TOKEN_KEY, self.gateway_token),),
            ),
            title="AITBC coordinator",
        )
        self._uvicorn = uvicorn.Server(
            uvicorn.Config(
                app,
                host=cfg.http_host,
                port=cfg.http_port,
                log_config=None,
                access_log=False,
                lifespan="on",
            )
        )
        self._http_task = asyncio.create_task(self._uvicorn.serve())
        while not self._uvicorn.started:
            if self._http_task.done():
                self._http_task.result()
                raise OSError(f"REST gateway could not bind {cfg.http_host}:{cfg.http_port}")
            await asyncio.sleep(0.01)
        self.http_port = self._uvicorn.servers[0].sockets[0].getsockname()[1]
        log.info("rest gateway listening", extra={"address": f"{cfg.http_host}:{self.http_port}"})

    async def _stop_http(self) -> None:
        if self._uvicorn is not None and self._http_task is not None:
            self._uvicorn.should_exit = True
            with contextlib.suppress(Exception):
                await self._http_task

    @property
    def public_url(self) -> str:
        """Where artifact links point: AITBC_PUBLIC_URL, else the gateway's own address."""
        cfg = self.config
        return cfg.public_url or f"http://{cfg.http_host}:{cfg.http_port or self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc.port}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def stop(self, grace_s: float = 1.0) -> None:
        await self.grpc.shutdown(grace_s)
