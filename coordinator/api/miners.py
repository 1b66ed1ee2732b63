"""MinerService: the bidirectional miner stream and the REST polling set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aitbc.coordinator.v1 import miner_service_pb2 as pb
from aitbc.coordinator.v1 import miner_service_pb2_grpc as pb_grpc

from coordinator.api.convert import (
    ack_to_pb,
    assignment_to_pb,
    cancel_to_pb,
    caps_to_dict,
    claim_from_pb,
    result_from_pb,
)
from coordinator.domain.service import Coordinator
from coordinator.domain.sessions import (
    AckOut,
    AssignmentOut,
    CancelOut,
    Close,
    DrainOut,
    MinerSession,
    Outbound,
)
from core import errors
from core.batching import take_ready
from core.context import current_principal, set_response_header

log = logging.getLogger(__name__)

# Miner messages handled at once per stream (results, failures, progress); beyond this the
# stream is not read until one finishes, which pushes back on the miner through HTTP/2.
MAX_INFLIGHT_PER_STREAM = 64


class _ProtocolError(Close):
    def __init__(self, error: errors.AitbcError):
        super().__init__(error.message)
        self.error = error


def _to_pb(msg: Outbound) -> pb.ConnectResponse:
    if isinstance(msg, AssignmentOut):
        return pb.ConnectResponse(assignment=assignment_to_pb(msg))
    if isinstance(msg, CancelOut):
        return pb.ConnectResponse(cancel=cancel_to_pb(msg))
    if isinstance(msg, DrainOut):
        return pb.ConnectResponse(drain=pb.DrainNotice(reason=msg.reason))
    assert isinstance(msg, AckOut)
    return pb.ConnectResponse(ack=ack_to_pb(msg))


class MinerServicer(pb_grpc.MinerServiceServicer):
    def __init__(self, coordinator: Coordinator):
        self.c = coordinator

    # -- the stream -------------------------------------------------------------------------
    async def Connect(self, request_iterator, context) -> AsyncIterator[pb.ConnectResponse]:
        miner_id = current_principal().id
        it = request_iterator.__aiter__()
        try:
            first = await it.__anext__()
        except StopAsyncIteration:
            return
        if first.WhichOneof("msg") != "hello":
            raise errors.InvalidArgument.field(
                "hello", "the first message on the stream must be hello"
            )
        hello = first.hello
        session, kept, dropped = await self.c.connect(
            miner_id,
            mode="stream",
            caps=caps_to_dict(hello.capabilities),
            interval_ms=hello.heartbeat_interval_ms,
            held=[(h.lease_id, h.job_id) for h in hello.held_leases],
            public_key=hello.public_key,
            batches=hello.accepts_batches,
        )
        log.info(
            "miner connected",
            extra={"miner_id": miner_id, "kept": len(kept), "dropped": len(dropped)},
        )
        yield pb.ConnectResponse(
            welcome=pb.Welcome(
                miner_id=miner_id,
                session_id=session.session_id,
                kept_lease_ids=kept,
                dropped_lease_ids=dropped,
                heartbeat_interval_ms=int(session.interval_s * 1000),
                accepts_batches=True,
            )
        )
        reader = asyncio.create_task(self._read(it, session))
        held: Outbound | None = None
        try:
            while True:
                msg = held if held is not None else await session.outbox.get()
                held = None
                if isinstance(msg, _ProtocolError):
                    raise msg.error
                if isinstance(msg, Close):
                    break
                if not session.batches:
                    yield _to_pb(msg)
                    continue
                out, held = take_ready(
                    session.outbox, msg, convert=_to_pb, is_stop=lambda m: isinstance(m, Close)
                )
                if len(out) == 1:
                    yield out[0]
                else:
                    yield pb.ConnectResponse(batch=pb.ConnectResponseBatch(messages=out))
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await self.c.disconnect(session)
            log.info("miner stream ended", extra={"miner_id": miner_id})

    async def _read(self, it, session: MinerSession) -> None:
        gate = asyncio.Semaphore(MAX_INFLIGHT_PER_STREAM)
        tasks: set[asyncio.Task[None]] = set()

        async def one(req: pb.ConnectRequest, field: str) -> bool:
            """Handle one miner message; False: a protocol error ended the stream."""
            kind = req.WhichOneof("msg")
            if kind == "heartbeat":
                hb = req.heartbeat
                try:
                    for cancel in self.c.heartbeat(
                        session,
                        interval_ms=hb.interval_ms,
                        lease_ids=list(hb.lease_ids),
                        load=hb.load,
                    ):
                        session.send(cancel)
                except errors.AitbcError as exc:
                    self.c.ack(session, "", "", exc)
            elif kind == "drain":
                self.c.drain(session)
            elif kind in ("started", "progress") and self._noted(kind, getattr(req, kind), session):
                pass
            elif kind in ("started", "progress", "result", "failure"):
                await gate.acquire()
                task = asyncio.create_task(self._handle(kind, getattr(req, kind), session))
                tasks.add(task)
                task.add_done_callback(lambda t: (tasks.discard(t), gate.release()))
            else:  # hello again, a batch inside a batch, or nothing
                session.send(
                    _ProtocolError(
                        errors.InvalidArgument.field(field, f"unexpected {kind or 'empty'} message")
                    )
                )
                return False
            return True

        try:
            async for req in it:
                self.c.seen(session)
                if req.WhichOneof("msg") != "batch":
                    if not await one(req, "msg"):
                        return
                    continue
                for i, inner in enumerate(req.batch.messages):
                    if not await one(inner, f"batch.messages[{i}]"):
                        return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the client went away mid-read
            log.info("miner stream read ended: %s", exc, extra={"miner_id": session.miner_id})
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        session.send(Close("the miner closed its side of the stream"))

    def _noted(self, kind: str, msg, session: MinerSession) -> bool:
        """ "started" or "progress" without a task when the job is in memory (the usual case);
        False: the caller handles it as a task (the store has to be read, or a write is due)."""
        try:
            if kind == "started":
                return self.c.note_started(session.miner_id, msg.lease_id, msg.job_id)
            return self.c.note_progress(
                session.miner_id, msg.lease_id, msg.job_id, msg.fraction, msg.message
            )
        except errors.AitbcError as exc:
            self.c.ack(session, msg.lease_id, msg.job_id, exc)
            return True

    async def _handle(self, kind: str, msg, session: MinerSession) -> None:
        mid = session.miner_id
        try:
            if kind == "started":
                await self.c.started(mid, msg.lease_id, msg.job_id)
                return
            if kind == "progress":
                await self.c.progress(mid, msg.lease_id, msg.job_id, msg.fraction, msg.message)
                return
            if kind == "result":
                result = result_from_pb(
                    msg.result, max_inline_bytes=self.c.settings.limits.max_inline_result_bytes
                )
                _, _, receipt = await self.c.deliver_result(
                    mid, msg.lease_id, msg.job_id, result, claim_from_pb(msg)
                )
                self.c.ack(session, msg.lease_id, msg.job_id, None, receipt=receipt)
                return
            else:
                await self.c.fail(
                    mid,
                    msg.lease_id,
                    msg.job_id,
                    code=msg.code,
                    message=msg.message,
                    retryable=msg.retryable,
                )
            self.c.ack(session, msg.lease_id, msg.job_id, None)
        except errors.AitbcError as exc:
            self.c.ack(session, msg.lease_id, msg.job_id, exc)
        except Exception as exc:
            log.exception("handling %s from %s failed", kind, mid)
            self.c.ack(
                session,
                msg.lease_id,
                msg.job_id,
                errors.Internal(f"internal error: {type(exc).__name__}"),
            )

    # -- REST polling set -------------------------------------------------------------------
    async def Register(self, request: pb.RegisterRequest, context) -> pb.RegisterResponse:
        miner_id = current_principal().id
        session, _, _ = await self.c.connect(
            miner_id,
            mode="poll",
            caps=caps_to_dict(request.capabilities),
            public_key=request.public_key,
        )
        return pb.RegisterResponse(
            miner_id=miner_id,
            session_token=session.session_id,
            heartbeat_interval_ms=int(session.interval_s * 1000),
        )

    async def Heartbeat(self, request: pb.HeartbeatRequest, context) -> pb.HeartbeatResponse:
        session = self.c.session_for(current_principal().id, request.session_token)
        cancels = self.c.heartbeat(
            session, interval_ms=0, lease_ids=list(request.lease_ids), load=request.load
        )
        return pb.HeartbeatResponse(
            cancels=[cancel_to_pb(c) for c in cancels], draining=session.draining
        )

    async def Poll(self, request: pb.PollRequest, context) -> pb.PollResponse:
        session = self.c.session_for(current_principal().id, request.session_token)
        assignment = await self.c.poll(session, request.max_wait_seconds)
        if assignment is None:
            set_response_header("x-http-code", "204")
            return pb.PollResponse()
        return pb.PollResponse(assignment=assignment_to_pb(assignment))

    async def SubmitResult(
        self, request: pb.SubmitResultRequest, context
    ) -> pb.SubmitResultResponse:
        result = result_from_pb(
            request.result, max_inline_bytes=self.c.settings.limits.max_inline_result_bytes
        )
        _, _, receipt = await self.c.deliver_result(
            current_principal().id, request.lease_id, request.job_id, result, claim_from_pb(request)
        )
        return pb.SubmitResultResponse(
            ack=pb.Ack(lease_id=request.lease_id, job_id=request.job_id, accepted=True),
            receipt=receipt.decode() if receipt else "",
        )

    async def Fail(self, request: pb.FailRequest, context) -> pb.FailResponse:
        await self.c.fail(
            current_principal().id,
            request.lease_id,
            request.job_id,
            code=request.code,
            message=request.message,
            retryable=request.retryable,
        )
        return pb.FailResponse(
            ack=pb.Ack(lease_id=request.lease_id, job_id=request.job_id, accepted=True)
        )

    async def Drain(self, request: pb.DrainRequest, context) -> pb.DrainResponse:
        miner_id = current_principal().id
        if request.session_token:
            session = self.c.session_for(miner_id, request.session_token)
        else:
            found = self.c.sessions.get(miner_id)
            if found is None or not found.connected:
                raise errors.FailedPrecondition(
                    "no connected session for this miner", reason="unknown_session"
                )
            session = found
        self.c.drain(session)
        return pb.DrainResponse(draining=True)
