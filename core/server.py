"""grpc.aio server factory: health, reflection, keepalive, limits, phased graceful shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal, NamedTuple

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from core.accept import AcceptAhead

log = logging.getLogger("aitbc.server")

MiB = 1024 * 1024
HEALTH_SERVICE = "grpc.health.v1.Health"


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """gRPC listener settings (keys AITBC_GRPC_*); embed it in a service's config class."""

    grpc_host: str = dataclasses.field(
        default="127.0.0.1",
        metadata={"doc": "Address the gRPC server binds (0.0.0.0 or [::] for remote miners)."},
    )
    grpc_port: int = dataclasses.field(
        default=50051,
        metadata={"doc": "gRPC port; 0 picks a free port.", "min": 0, "max": 65535},
    )
    grpc_max_message_bytes: int = dataclasses.field(
        default=16 * MiB,
        metadata={
            "doc": "Largest gRPC message sent or received, bytes.",
            "min": 1024,
            "max": 2**31 - 1,
        },
    )
    grpc_shutdown_grace_s: float = dataclasses.field(
        default=10.0,
        metadata={
            "doc": "On shutdown, how long in-flight calls may finish, seconds.",
            "min": 0,
            "max": 3600,
        },
    )
    grpc_keepalive_time_s: float = dataclasses.field(
        default=30.0,
        metadata={
            "doc": "Server pings a connection idle this long, seconds.",
            "min": 1,
            "max": 7200,
        },
    )
    grpc_keepalive_timeout_s: float = dataclasses.field(
        default=10.0,
        metadata={
            "doc": "A ping unanswered this long closes the connection, seconds.",
            "min": 1,
            "max": 600,
        },
    )
    grpc_min_client_ping_interval_s: float = dataclasses.field(
        default=10.0,
        metadata={
            "doc": "Clients may ping this often without data, seconds.",
            "min": 1,
            "max": 3600,
        },
    )
    grpc_accept_ahead: int = dataclasses.field(
        default=16,
        metadata={
            "doc": "Calls of each RPC method the server stands ready to take in one event-loop "
            "turn, beyond grpc.aio's one (core/accept.py); 0: grpc.aio's own accept only.",
            "min": 0,
            "max": 256,
        },
    )

    def channel_options(self) -> list[tuple[str, int]]:
        ms = lambda s: int(s * 1000)  # noqa: E731
        return [
            ("grpc.max_send_message_length", self.grpc_max_message_bytes),
            ("grpc.max_receive_message_length", self.grpc_max_message_bytes),
            # Two processes silently sharing a port split traffic between stale and new code.
            ("grpc.so_reuseport", 0),
            # Miners hold one bidi stream for hours, often through NATs and load balancers
            # that drop flows idle for a minute or so. The server pings idle connections so
            # that such middleboxes keep the mapping and dead peers are noticed (and their
            # leases released) within keepalive_time + keepalive_timeout...
            ("grpc.keepalive_time_ms", ms(self.grpc_keepalive_time_s)),
            ("grpc.keepalive_timeout_ms", ms(self.grpc_keepalive_timeout_s)),
            # ...even when no call is open (a miner between reconnects, an idle client),
            ("grpc.keepalive_permit_without_calls", 1),
            # ...and keeps pinging a quiet stream instead of stopping after 2 data-less pings.
            ("grpc.http2.max_pings_without_data", 0),
            # Clients (miner agents) ping too; accept one every >= N s without data or calls
            # instead of gRPC's 5 min default, which would GOAWAY them ("too_many_pings")...
            (
                "grpc.http2.min_ping_interval_without_data_ms",
                ms(self.grpc_min_client_ping_interval_s),
            ),
            # ...but keep the abuse guard: a client pinging faster still gets cut off.
            ("grpc.http2.max_ping_strikes", 2),
            # No grpc.max_connection_age_ms: it would end long-lived miner streams by design.
        ]


class ServiceBinding(NamedTuple):
    """One service to serve: full name ("aitbc.coordinator.v1.JobService"), the generated
    `add_XServicer_to_server` function and the servicer instance."""

    name: str
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any


ShutdownHook = Callable[[], Awaitable[None] | None]


class RunningServer:
    """A started server: `port`, `health`, shutdown hooks and the phased `shutdown()`."""

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        health_servicer: health.aio.HealthServicer,
        services: Sequence[str],
        config: ServerConfig,
        accept: AcceptAhead | None = None,
    ) -> None:
        self.server = server
        self.accept = accept
        self.port = port
        self.health = health_servicer
        self.services = tuple(services)
        self.config = config
        self._hooks: dict[str, list[ShutdownHook]] = {"drain": [], "close": []}
        self._shutdown: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()

    @property
    def address(self) -> str:
        return f"{self.config.grpc_host}:{self.port}"

    def on_shutdown(
        self, hook: ShutdownHook, *, phase: Literal["drain", "close"] = "close"
    ) -> None:
        """Register a callback (sync or async). "close" hooks run after in-flight calls ended,
        in reverse registration order (close what was opened last first). "drain" hooks run as
        soon as new calls are refused, while in-flight calls still run: the place to end
        long-lived streams (e.g. tell miners to reconnect elsewhere)."""
        self._hooks[phase].append(hook)

    def shutdown(self, grace_s: float | None = None) -> asyncio.Task[None]:
        """Start the shutdown once (later calls return the same task); await it to wait."""
        if self._shutdown is None:
            grace = self.config.grpc_shutdown_grace_s if grace_s is None else grace_s
            self._shutdown = asyncio.ensure_future(self._run_shutdown(grace))
        return self._shutdown

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def _run_shutdown(self, grace_s: float) -> None:
        try:
            log.info("shutdown phase not-serving", extra={"phase": "not-serving"})
            # Load balancers and health-watching clients move away before calls are refused.
            await self.health.enter_graceful_shutdown()
            log.info("shutdown phase drain", extra={"phase": "drain", "grace_s": grace_s})
            stopping = asyncio.ensure_future(self.server.stop(grace_s))
            await asyncio.sleep(0)  # let stop() refuse new calls before the drain hooks run
            await _run_hooks(self._hooks["drain"], "drain", reverse=False)
            await stopping
            if self.accept is not None:
                await self.accept.stop()
            log.info("shutdown phase close", extra={"phase": "close"})
            await _run_hooks(self._hooks["close"], "close", reverse=True)
            log.info("shutdown complete")
        finally:
            self._closed.set()


async def _run_hooks(hooks: Iterable[ShutdownHook], phase: str, *, reverse: bool) -> None:
    for hook in reversed(list(hooks)) if reverse else list(hooks):
        try:
            result = hook()
            if inspect.isawaitable(result):
                await result
        except Exception:
            # One failing hook must not keep the others (closing the DB, ...) from running.
            log.exception("shutdown hook failed", extra={"phase": phase, "hook": repr(hook)})


async def create_server(
    services: Sequence[ServiceBinding],
    *,
    config: ServerConfig,
    interceptor: grpc.aio.ServerInterceptor | None = None,
) -> RunningServer:
    """Build, bind and start a grpc.aio server serving `services` + health + reflection."""
    names = [s.name for s in services]
    if len(set(names)) != len(names):
        raise ValueError(f"service registered twice: {names}")
    interceptors = [interceptor] if interceptor is not None else []
    server = grpc.aio.server(interceptors=interceptors or None, options=config.channel_options())
    accept = AcceptAhead(server, interceptors, ahead=config.grpc_accept_ahead)
    for binding in services:
        binding.add_to_server(binding.servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*names, HEALTH_SERVICE, reflection.SERVICE_NAME), server)

    address = f"{config.grpc_host}:{config.grpc_port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc raises when the address cannot be bound
        raise OSError(f"cannot bind gRPC server to {address}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot bind gRPC server to {address}")
    await server.start()
    accept.start()
    for name in ("", *names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "grpc server listening", extra={"address": f"{config.grpc_host}:{port}", "services": names}
    )
    return RunningServer(server, port, health_servicer, names, config, accept)


async def serve_until_signal(
    running: RunningServer, signals: Iterable[signal.Signals] = (signal.SIGINT, signal.SIGTERM)
) -> None:
    """Entry points: serve until SIGINT/SIGTERM, then shut down gracefully. A second signal
    during the drain cuts the grace period short (in-flight calls are cancelled)."""
    loop = asyncio.get_running_loop()
    sigs = tuple(signals)
    forced: set[asyncio.Future[None]] = set()

    def on_signal(sig: signal.Signals) -> None:
        if running._shutdown is None:
            log.info("signal received, shutting down", extra={"signal": sig.name})
            running.shutdown()
        else:
            log.warning("second signal, cancelling in-flight calls", extra={"signal": sig.name})
            task = asyncio.ensure_future(running.server.stop(0))
            forced.add(task)
            task.add_done_callback(forced.discard)

    for sig in sigs:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await running.wait_closed()
    finally:
        for sig in sigs:
            loop.remove_signal_handler(sig)
