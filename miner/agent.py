"""The miner agent: one resumable bidi stream to the coordinator, jobs run by the JobRunner.

* Reconnects with full-jitter exponential backoff; on reconnect it re-announces the leases it
  holds and re-sends results finished while away (kept until the coordinator acknowledges).
* Never runs one lease twice (the runner refuses a lease id it has seen).
* Cancel kills the job's process and removes its files; drain finishes what is held, takes
  nothing new, and ends the agent; `stop(cancel=True)` cancels everything and reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from pathlib import Path
from typing import Any

import grpc
from aitbc.coordinator.v1 import artifact_service_pb2 as artifact_pb
from aitbc.coordinator.v1 import artifact_service_pb2_grpc as artifact_grpc
from aitbc.coordinator.v1 import job_pb2 as job_pb
from aitbc.coordinator.v1 import miner_service_pb2 as pb
from aitbc.coordinator.v1 import miner_service_pb2_grpc as pb_grpc
from google.api import httpbody_pb2
from google.protobuf import json_format

from core.batching import take_ready
from core.jsonvalue import as_transmitted, canonical_sha256, plain
from core.receipts import Signer, load_or_create_signing_key, sign_claim
from miner.artifacts import ArtifactInfo
from miner.config import MinerConfig, offers
from miner.executors import ExecResult, ExecutionError, Executor, JobRunner, build_registry
from miner.probe import Capabilities, probe

log = logging.getLogger("aitbc.miner")
_END = object()


def _is_end(msg: object) -> bool:
    return msg is _END


# Refusals after which retrying the same connection cannot help.
FATAL = (
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
)


class FatalError(Exception):
    """The coordinator refused this miner for good (bad key, bad capabilities)."""


class GrpcArtifactStore:
    """Uploads outputs to the coordinator's ArtifactService over the agent's channel."""

    def __init__(self, agent: MinerAgent):
        self.agent = agent

    async def put(self, path: Path, content_type: str) -> ArtifactInfo:
        data = await asyncio.to_thread(Path(path).read_bytes)
        stub = artifact_grpc.ArtifactServiceStub(self.agent.channel)
        req = artifact_pb.UploadArtifactRequest(
            body=httpbody_pb2.HttpBody(content_type=content_type, data=data)
        )
        try:
            ref = (
                await stub.UploadArtifact(req, metadata=self.agent.metadata, timeout=300)
            ).artifact
        except grpc.aio.AioRpcError as exc:
            raise ExecutionError(
                "artifact_upload_failed", f"{exc.code().name}: {exc.details()}", True
            ) from exc
        return ArtifactInfo(ref.url, ref.size_bytes, ref.sha256, ref.content_type)


def capabilities(
    cfg: MinerConfig, caps: Capabilities, executors: dict[str, Executor]
) -> pb.MinerCapabilities:
    # What the probe found runnable (model services only with a configured backend).
    runnable = set(caps.services) & set(executors)
    wanted = offers(cfg.services) or {name: "0" for name in sorted(runnable)}
    missing = sorted(set(wanted) - runnable)
    if missing:
        raise FatalError(
            f"AITBC_MINER_SERVICES names services this miner cannot run: {', '.join(missing)}"
        )
    return pb.MinerCapabilities(
        gpus=[pb.Gpu(name=g.name, memory_mb=g.memory_mb) for g in caps.gpus],
        cuda_version=caps.cuda_version,
        region=cfg.region,
        models=sorted(set(cfg.models) | set(caps.models)),
        services=[pb.ServiceOffer(service=s, unit_price=p) for s, p in wanted.items()],
        slots=cfg.slots,
        cpu_cores=caps.cpu_cores,
        memory_mb=caps.memory_mb,
        agent_version="0.1.0",
    )


class MinerAgent:
    def __init__(
        self,
        cfg: MinerConfig,
        *,
        executors: dict[str, Executor] | None = None,
        signer: Signer | None = None,
        caps: pb.MinerCapabilities | None = None,
    ):
        self.cfg = cfg
        self.executors = (
            executors if executors is not None else build_registry(cfg.executor_config())
        )
        self.signer = signer or load_or_create_signing_key(cfg.key_file)[0]
        self.caps = caps or capabilities(
            cfg, probe(cfg.executor_config(), check_backends=False), self.executors
        )
        self.metadata = (("x-api-key", cfg.api_key),)
        self.runner = JobRunner(
            self.executors,
            slots=cfg.slots,
            work_dir=cfg.work_dir.resolve(),  # absolute: executors run tools with the job workdir as cwd
            artifacts=GrpcArtifactStore(self),
            on_progress=self._on_progress,
            inline_result_max_bytes=cfg.inline_result_max_bytes,
        )
        self.channel: grpc.aio.Channel | None = None
        self.miner_id = ""
        self.leases: dict[str, str] = {}  # lease id -> job id, from assignment until acknowledged
        self.pending: dict[str, pb.ConnectRequest] = {}  # results/failures not yet acknowledged
        self.draining = False
        self._stopping = False
        self._outbox: asyncio.Queue[Any] | None = None
        self._wake = asyncio.Event()
        self.connected = asyncio.Event()
        self.completed = 0

    # -- lifecycle ----------------------------------------------------------------------------
    def _open_channel(self) -> grpc.aio.Channel:
        if self.cfg.tls:
            roots = self.cfg.tls_ca_file.read_bytes() if self.cfg.tls_ca_file else None
            return grpc.aio.secure_channel(
                self.cfg.coordinator, grpc.ssl_channel_credentials(roots)
            )
        return grpc.aio.insecure_channel(self.cfg.coordinator)

    def finished(self) -> bool:
        return self._stopping or (self.draining and not self.leases and not self.pending)

    async def run(self) -> None:
        """Serve until drained or stopped; raises FatalError when the coordinator refuses us."""
        self.channel = self._open_channel()
        backoff = 0.5
        try:
            while not self.finished():
                began = time.monotonic()
                try:
                    await self._session()
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in FATAL:
                        raise FatalError(
                            f"the coordinator refused this miner: {exc.code().name}: {exc.details()}"
                        ) from None
                    log.warning(
                        "stream to %s ended: %s %s",
                        self.cfg.coordinator,
                        exc.code().name,
                        exc.details(),
                    )
                if self.finished():
                    break
                if time.monotonic() - began > 10:
                    backoff = 0.5  # a session that lasted resets the backoff
                delay = random.uniform(0, backoff)
                backoff = min(self.cfg.reconnect_max_backoff_s, backoff * 2)
                log.info("reconnecting in %.1f s", delay)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
        finally:
            await self.runner.close("agent stopped")
            await self.channel.close()

    def drain(self) -> None:
        """Finish held jobs, take nothing new, then end (the coordinator is told)."""
        self.draining = True
        self._send(pb.ConnectRequest(drain=pb.DrainNotice(reason="miner draining")))
        self._check_done()

    async def stop(self, *, cancel: bool) -> None:
        """cancel=True: kill running jobs and report them failed (retryable) before ending."""
        if cancel:
            self.drain()  # first, so the coordinator assigns nothing new while jobs are failed back
            await self.runner.close("miner shutting down")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked(), 5)
        self._stopping = True
        self._check_done()

    async def _acked(self) -> None:
        while self.pending:
            await asyncio.sleep(0.05)

    def _check_done(self) -> None:
        if self.finished():
            self._wake.set()
            if self._outbox is not None:
                self._outbox.put_nowait(_END)

    # -- one connection -----------------------------------------------------------------------
    def _send(self, msg: pb.ConnectRequest) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(msg)

    async def _session(self) -> None:
        outbox: asyncio.Queue[Any] = asyncio.Queue()
        hello = pb.ConnectRequest(
            hello=pb.Hello(
                capabilities=self.caps,
                held_leases=[
                    pb.HeldLease(lease_id=lease, job_id=job) for lease, job in self.leases.items()
                ],
                heartbeat_interval_ms=int(self.cfg.heartbeat_interval_s * 1000),
                public_key=self.signer.key_id,
                accepts_batches=True,
            )
        )
        batches = False  # the coordinator takes batches (its welcome says so)

        async def requests():
            yield hello
            held = None
            while True:
                msg = held if held is not None else await outbox.get()
                held = None
                if msg is _END:
                    return
                if not batches:
                    yield msg
                    continue
                # Messages ready together (results of jobs finishing at once) go as one.
                out, held = take_ready(outbox, msg, convert=lambda m: m, is_stop=_is_end)
                yield (
                    out[0]
                    if len(out) == 1
                    else pb.ConnectRequest(batch=pb.ConnectRequestBatch(messages=out))
                )

        stub = pb_grpc.MinerServiceStub(self.channel)
        call = stub.Connect(requests(), metadata=self.metadata)
        heartbeats: asyncio.Task[None] | None = None
        try:
            first = await call.read()
            if first is grpc.aio.EOF:
                await call.wait_for_connection()
                return
            welcome = first.welcome
            batches = welcome.accepts_batches
            self.miner_id = welcome.miner_id
            for lease in welcome.dropped_lease_ids:
                log.warning("lease %s is no longer ours: stopping it", lease)
                self.runner.cancel(lease, "the coordinator dropped this lease")
                self.leases.pop(lease, None)
                self.pending.pop(lease, None)
            self._outbox = outbox
            self.connected.set()
            log.info(
                "connected as %s, holding %d lease(s)", self.miner_id, len(welcome.kept_lease_ids)
            )
            for msg in list(self.pending.values()):
                outbox.put_nowait(msg)  # results finished while away
            if self.draining:
                outbox.put_nowait(pb.ConnectRequest(drain=pb.DrainNotice(reason="miner draining")))
            heartbeats = asyncio.create_task(self._heartbeats(outbox))
            self._check_done()
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    break
                if resp.WhichOneof("msg") == "batch":
                    for inner in resp.batch.messages:
                        self._handle(inner)
                else:
                    self._handle(resp)
        finally:
            self._outbox = None
            self.connected.clear()
            if heartbeats is not None:
                heartbeats.cancel()
            outbox.put_nowait(_END)
            call.cancel()

    async def _heartbeats(self, outbox: asyncio.Queue[Any]) -> None:
        while True:
            await asyncio.sleep(self.cfg.heartbeat_interval_s)
            outbox.put_nowait(
                pb.ConnectRequest(
                    heartbeat=pb.MinerHeartbeat(
                        interval_ms=int(self.cfg.heartbeat_interval_s * 1000),
                        lease_ids=list(self.leases),
                        load=len(self.runner.inflight()) / self.cfg.slots,
                    )
                )
            )

    def _handle(self, resp: pb.ConnectResponse) -> None:
        kind = resp.WhichOneof("msg")
        if kind == "assignment":
            self._start(resp.assignment)
        elif kind == "cancel":
            c = resp.cancel
            log.info("cancel of lease %s: %s", c.lease_id, c.reason)
            self.leases.pop(c.lease_id, None)
            self.pending.pop(c.lease_id, None)
            self.runner.cancel(c.lease_id, c.reason)
            self._check_done()
        elif kind == "ack":
            a = resp.ack
            if not a.accepted:
                log.warning(
                    "coordinator refused %s for lease %s: %s %s",
                    a.job_id,
                    a.lease_id,
                    a.code,
                    a.message,
                )
            elif self.pending.get(a.lease_id) is not None and self.pending[a.lease_id].HasField(
                "result"
            ):
                self.completed += 1
            if self.pending.pop(a.lease_id, None) is not None:
                self.leases.pop(a.lease_id, None)
            self._check_done()
        elif kind == "drain":
            self.draining = True
            self._check_done()

    # -- jobs ---------------------------------------------------------------------------------
    def _start(self, a: pb.Assignment) -> None:
        lease, job = a.lease_id, a.job
        if self.runner.has_seen(lease) or lease in self.leases:
            log.warning("lease %s was already run here: not running it twice", lease)
            return
        params = plain(json_format.MessageToDict(job.payload.parameters))
        self.leases[lease] = job.job_id
        started_ms = int(time.time() * 1000)
        task = self.runner.start(lease, job.job_id, job.payload.service, params)
        self._send(pb.ConnectRequest(started=pb.JobStarted(lease_id=lease, job_id=job.job_id)))
        task.add_done_callback(lambda t: self._finished(lease, job.job_id, t, started_ms))

    def _on_progress(self, lease: str, fraction: float, message: str) -> None:
        job = self.leases.get(lease)
        if job is not None:
            self._send(
                pb.ConnectRequest(
                    progress=pb.JobProgressUpdate(
                        lease_id=lease, job_id=job, fraction=fraction, message=message[:500]
                    )
                )
            )

    def _finished(
        self, lease: str, job_id: str, task: asyncio.Task[ExecResult], started_ms: int
    ) -> None:
        if lease not in self.leases:
            return  # canceled or dropped by the coordinator: nothing to report
        if task.cancelled():
            msg = pb.ConnectRequest(
                failure=pb.JobFailure(
                    lease_id=lease,
                    job_id=job_id,
                    code="miner_shutdown",
                    message="the miner stopped",
                    retryable=True,
                )
            )
        elif isinstance(task.exception(), ExecutionError):
            e = task.exception()
            assert isinstance(e, ExecutionError)
            msg = pb.ConnectRequest(
                failure=pb.JobFailure(
                    lease_id=lease,
                    job_id=job_id,
                    code=e.code,
                    message=e.message[:2000],
                    retryable=e.retryable,
                )
            )
        else:
            msg = self._result(lease, job_id, task.result(), started_ms)
        self.pending[lease] = msg
        self._send(msg)

    def _result(
        self, lease: str, job_id: str, res: ExecResult, started_ms: int
    ) -> pb.ConnectRequest:
        out = job_pb.JobResult()
        if res.artifact is not None:
            a = res.artifact
            out.artifact.CopyFrom(
                job_pb.ArtifactRef(
                    url=a.url, size_bytes=a.size_bytes, sha256=a.sha256, content_type=a.content_type
                )
            )
            sha = a.sha256
        else:
            value = as_transmitted(res.inline)  # hash what the coordinator will see
            json_format.ParseDict(value, out.inline)
            sha = canonical_sha256(value)
        out.sha256 = sha
        claim = sign_claim(
            self.signer,
            job_id=job_id,
            lease_id=lease,
            artifact_hash=f"sha256:{sha}",
            started_at=started_ms,
            completed_at=max(started_ms, int(time.time() * 1000)),
            miner_id=self.miner_id,
        )
        return pb.ConnectRequest(
            result=pb.JobResultDelivery(
                lease_id=lease,
                job_id=job_id,
                result=out,
                claim=pb.MinerClaim(**claim["claim"], **claim["signature"]),
            )
        )
