"""A minimal stream miner for tests and benchmarks: speaks MinerService.Connect, nothing more.

The real miner agent (executors, reconnect, artifacts) lives in miner/; this one lets tests
and benchmarks drive the protocol message by message.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc
from aitbc.coordinator.v1 import job_pb2 as job_pb
from aitbc.coordinator.v1 import miner_service_pb2 as pb
from aitbc.coordinator.v1 import miner_service_pb2_grpc as pb_grpc
from google.protobuf import json_format

from core.batching import take_ready

_END = object()


def caps(
    slots: int = 1, services: dict[str, str] | None = None, **extra: Any
) -> pb.MinerCapabilities:
    offers = services or {"echo": "0.5"}
    return pb.MinerCapabilities(
        slots=slots,
        services=[pb.ServiceOffer(service=s, unit_price=p) for s, p in offers.items()],
        **extra,
    )


def inline_result(value: Any) -> job_pb.JobResult:
    r = job_pb.JobResult()
    json_format.ParseDict(value, r.inline)
    return r


class StreamMiner:
    def __init__(
        self,
        target: str,
        api_key: str,
        capabilities: pb.MinerCapabilities,
        *,
        held: list[tuple[str, str]] = (),  # type: ignore[assignment]
        heartbeat_interval_ms: int = 0,
        channel: grpc.aio.Channel | None = None,
        public_key: str = "",
        batches: bool = True,
    ):
        self.public_key = public_key
        self.batches = batches  # take and send several messages in one (as the agent does)
        self.frames: list[str] = []  # kind of every stream message received, batches unopened
        self.target, self.api_key, self.caps = target, api_key, capabilities
        self.held = list(held)
        self.interval_ms = heartbeat_interval_ms
        self._own_channel = channel is None
        self.channel = channel
        self.outgoing: asyncio.Queue[Any] = asyncio.Queue()
        self.incoming: asyncio.Queue[pb.ConnectResponse] = asyncio.Queue()
        self.welcome: pb.Welcome | None = None
        self.call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._stash: list[pb.ConnectResponse] = []
        self.closed = asyncio.Event()
        self.error: grpc.aio.AioRpcError | None = None

    async def _requests(self):
        yield pb.ConnectRequest(
            hello=pb.Hello(
                capabilities=self.caps,
                held_leases=[pb.HeldLease(lease_id=lease, job_id=job) for lease, job in self.held],
                heartbeat_interval_ms=self.interval_ms,
                public_key=self.public_key,
                accepts_batches=self.batches,
            )
        )
        held = None
        while True:
            msg = held if held is not None else await self.outgoing.get()
            held = None
            if msg is _END:
                return
            if not (self.batches and self.welcome is not None and self.welcome.accepts_batches):
                yield msg
                continue
            out, held = take_ready(
                self.outgoing, msg, convert=lambda m: m, is_stop=lambda m: m is _END
            )
            yield (
                out[0]
                if len(out) == 1
                else pb.ConnectRequest(batch=pb.ConnectRequestBatch(messages=out))
            )

    async def start(self) -> StreamMiner:
        if self.channel is None:
            self.channel = grpc.aio.insecure_channel(self.target)
        stub = pb_grpc.MinerServiceStub(self.channel)
        self.call = stub.Connect(self._requests(), metadata=(("x-api-key", self.api_key),))
        first = await self.call.read()
        if first is grpc.aio.EOF:
            raise RuntimeError(f"stream ended before welcome: {await self.call.code()}")
        self.welcome = first.welcome
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        try:
            while True:
                msg = await self.call.read()
                if msg is grpc.aio.EOF:
                    break
                self.frames.append(msg.WhichOneof("msg") or "")
                if msg.WhichOneof("msg") == "batch":
                    for inner in msg.batch.messages:
                        self.incoming.put_nowait(inner)
                else:
                    self.incoming.put_nowait(msg)
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        finally:
            self.closed.set()

    async def next(self, kind: str | None = None, timeout: float = 10.0) -> pb.ConnectResponse:
        """The next message (of `kind` when given; other kinds stay for later calls)."""
        for i, msg in enumerate(self._stash):
            if kind is None or msg.WhichOneof("msg") == kind:
                return self._stash.pop(i)
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.incoming.get()
                if kind is None or msg.WhichOneof("msg") == kind:
                    return msg
                self._stash.append(msg)

    def send(self, **kw: Any) -> None:
        self.outgoing.put_nowait(pb.ConnectRequest(**kw))

    def heartbeat(self, lease_ids: list[str] = (), load: float = 0.0, interval_ms: int = 0) -> None:  # type: ignore[assignment]
        self.send(
            heartbeat=pb.MinerHeartbeat(
                interval_ms=interval_ms, lease_ids=list(lease_ids), load=load
            )
        )

    def started(self, a: pb.Assignment) -> None:
        self.send(started=pb.JobStarted(lease_id=a.lease_id, job_id=a.job.job_id))

    def result(self, a: pb.Assignment, value: Any) -> None:
        self.send(
            result=pb.JobResultDelivery(
                lease_id=a.lease_id, job_id=a.job.job_id, result=inline_result(value)
            )
        )

    def fail(self, a: pb.Assignment, code: str, message: str, retryable: bool = True) -> None:
        self.send(
            failure=pb.JobFailure(
                lease_id=a.lease_id,
                job_id=a.job.job_id,
                code=code,
                message=message,
                retryable=retryable,
            )
        )

    async def close(self) -> None:
        """Half-close politely and wait for the coordinator to end the stream."""
        self.outgoing.put_nowait(_END)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.closed.wait(), 5)
        await self.abort()

    async def abort(self) -> None:
        """Drop the connection without a goodbye (a crash, as far as the coordinator knows)."""
        if self.call is not None:
            self.call.cancel()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._own_channel and self.channel is not None:
            await self.channel.close()


# Runs in the child, after its exec: take SIGKILL when the test process dies (so no coordinator
# outlives it), then run the coordinator. Done here rather than in a preexec_fn: with one,
# subprocess forks instead of vfork-and-exec, and a fork of a test process whose gRPC threads
# are busy could kill the child before its exec (seen: an e2e coordinator that never started).
_LAUNCH = """
import ctypes, os, runpy, signal, sys
parent = int(sys.argv.pop(1))
try:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != parent:  # the test process is gone already
    sys.exit(1)
runpy.run_module("coordinator.main", run_name="__main__", alter_sys=True)
"""


class CoordinatorProcess:
    """`aitbc-coordinator` as a child process (e2e tests): ports come from its ready line.

    Every started process is listed in `CoordinatorProcess.live`; the test suite kills what a
    failed test left behind (tests/conftest.py), and a child dies with its parent.
    """

    live: set[CoordinatorProcess] = set()

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.grpc_target = ""
        self.http_base = ""

    async def start(self, timeout: float = 30.0) -> CoordinatorProcess:
        import os
        import re
        import sys

        full_env = {**os.environ, "AITBC_GRPC_PORT": "0", "AITBC_HTTP_PORT": "0", **self.env}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _LAUNCH,
            str(os.getpid()),
            env=full_env,
            stdout=asyncio.subprocess.PIPE,
            # AITBC_TEST_SHOW_CHILD_LOGS=1 shows the child's logs when debugging a test.
            stderr=None
            if os.environ.get("AITBC_TEST_SHOW_CHILD_LOGS")
            else asyncio.subprocess.DEVNULL,
        )
        CoordinatorProcess.live.add(self)
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            line = b""
        m = re.search(rb"gRPC (\S+):(\d+)\s+REST (http://\S+)", line)
        if m is None:
            self.kill()
            rc = await self.wait()
            raise RuntimeError(f"coordinator did not start (exit code {rc}): {line!r}")
        self.grpc_target = f"127.0.0.1:{int(m.group(2))}"
        self.http_base = m.group(3).decode()
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()

    async def wait(self) -> int:
        assert self.proc is not None
        rc = await self.proc.wait()
        CoordinatorProcess.live.discard(self)
        return rc

    async def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.terminate()
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        CoordinatorProcess.live.discard(self)
        return rc
