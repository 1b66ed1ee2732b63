"""The group-commit writer in its own process, with its own GIL.

Why a process: under load the writer thread spent most of each batch waiting for the GIL, not in
the database. sqlite3 and psycopg let go of the GIL around every statement and every COMMIT, and
the busy event loop took it each time: measured on bench.e2e (SQLite, 2 cores), a batch of 8
writes took about 4 ms of wall time for well under 1 ms of work, and `sys.setswitchinterval`
did not change that. A writer process runs the same batches (BatchRunner) without sharing that
lock, and the event loop reads its answers straight off a socket: no thread hop.

The coordinator and the writer talk over a socketpair in length-prefixed pickle frames. Both
ends are this program, started by ProcessWriter with the same interpreter; nothing from outside
ever reaches the socket, and the database URL goes over it rather than on the command line.

- coordinator -> writer: first a config dict, then lists of (id, kind, args, order).
- writer -> coordinator: ("ready", pid), then ("done", [(id, outcome), ...], commits) per
  batch. Outcomes are plain values or Rejected(AitbcError).

The writer exits when its socket closes (the coordinator stopped, or was killed). It ignores
SIGINT and SIGTERM: a Ctrl-C or a service manager signalling the whole process group must not
cut a batch short while the coordinator drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
from collections import deque
from typing import Any

from coordinator.store import engines
from coordinator.store.groupcommit import BatchRunner, Rejected, resolve
from coordinator.store.statements import WriteStatements
from coordinator.store.writes import Write, operation
from core import logging as aitbc_logging
from core.errors import Internal, Unavailable

log = logging.getLogger(__name__)

_HEADER = 4  # frame length, big-endian
_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 60.0
_RESPAWN_DELAY_S = 0.5


def frame(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(_HEADER, "big") + data


class FrameReader:
    """Splits a byte stream into messages."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        buf = self._buf
        buf += data
        out, pos = [], 0
        while len(buf) - pos >= _HEADER:
            n = int.from_bytes(buf[pos : pos + _HEADER], "big")
            if len(buf) - pos - _HEADER < n:
                break
            out.append(pickle.loads(buf[pos + _HEADER : pos + _HEADER + n]))
            pos += _HEADER + n
        if pos:
            del buf[:pos]
        return out


# == the coordinator's side ===================================================================


class _Link(asyncio.Protocol):
    def __init__(self, owner: ProcessWriter):
        self._owner = owner
        self._frames = FrameReader()
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        for message in self._frames.feed(data):
            self._owner._on_message(message)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self._owner._on_lost(self)


class ProcessWriter:
    """Sends writes to the writer process and resolves their futures from its answers.

    Writes submitted in one event-loop iteration go out as one frame. Bound to the event loop
    that started it.
    """

    def __init__(self, url: str, *, batch_max: int):
        if batch_max < 1:
            raise ValueError("batch_max must be >= 1")
        self._url = url
        self._batch_max = batch_max
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._outbox: list[tuple[Any, ...]] = []
        self._flush_soon = False
        # Writes sent and not answered yet. One frame is out at a time: what is submitted
        # meanwhile goes as the next batch, as with a writer thread that is busy committing.
        self._unanswered = 0
        self._held = False
        self._closed = False
        self._link: _Link | None = None
        self._transport: asyncio.Transport | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready: asyncio.Future[int] | None = None
        self._respawning: asyncio.Task[None] | None = None
        self.commits = 0  # batch commits the writer process reported
        self.pid = 0  # the writer process (tests kill it)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._spawn()

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # subprocess (vfork + exec), not the event loop's subprocess support: uvloop's
            # libuv forks, and gRPC's fork handlers can crash the child before its exec
            # (seen as SIGSEGV exits of ffmpeg under uvloop in the miner agent).
            self._proc = await asyncio.to_thread(
                subprocess.Popen,
                [sys.executable, "-m", "coordinator.store.writer_process", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._ready = loop.create_future()
        transport, link = await loop.create_unix_connection(lambda: _Link(self), sock=ours)
        self._transport, self._link = transport, link
        # Logged the way this process logs (its stderr is this process's stderr).
        config = {
            "url": self._url,
            "batch_max": self._batch_max,
            "logging": aitbc_logging.configured,
        }
        transport.write(frame(config))
        try:
            async with asyncio.timeout(_START_TIMEOUT_S):
                done, _ = await asyncio.wait(
                    [self._ready, link.lost], return_when=asyncio.FIRST_COMPLETED
                )
            if self._ready not in done:
                raise Unavailable("the store writer process exited while starting (see its log)")
        except BaseException:
            transport.abort()
            await self._reap()
            raise
        self.pid = self._ready.result()
        self._schedule_flush()

    async def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            await asyncio.to_thread(proc.wait, _STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.error("the store writer process did not exit; killing it")
            proc.kill()
            await asyncio.to_thread(proc.wait)

    def submit(self, write: Write) -> asyncio.Future[Any]:
        if self._closed or self._loop is None:
            raise Unavailable("store is closed")
        fut = self._loop.create_future()
        i = next(self._ids)
        self._pending[i] = fut
        self._outbox.append((i, write.kind, write.args, write.order))
        self._schedule_flush()
        return fut

    def hold(self) -> None:
        """Keep writes back until release(), which sends them as one batch (tests use it)."""
        self._held = True

    def release(self) -> None:
        self._held = False
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_soon and self._outbox and self._loop is not None:
            self._flush_soon = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_soon = False
        if self._held or self._transport is None or not self._outbox or self._unanswered:
            return  # sent once released, once a new writer process is up, or with the next batch
        items, self._outbox = self._outbox, []
        self._unanswered = len(items)
        try:
            data = frame(items)
        except Exception:  # a value pickle refuses: fail only the writes that hold one
            data = b"".join(self._frame_each(items))
        if data:
            self._transport.write(data)

    def _frame_each(self, items: list[tuple[Any, ...]]) -> list[bytes]:
        out = []
        for item in items:
            try:
                out.append(frame([item]))
            except Exception as exc:
                log.error("a store write could not be encoded: %r", exc)
                self._unanswered -= 1
                self._settle(item[0], Rejected(Internal("database operation failed")))
        return out

    def _settle(self, i: int, outcome: Any) -> None:
        fut = self._pending.pop(i, None)
        if fut is not None:
            resolve(((fut, outcome),))

    def _on_message(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "done":
            _, outcomes, self.commits = message
            pending = self._pending
            resolve([(pending.pop(i), outcome) for i, outcome in outcomes if i in pending])
            self._unanswered -= len(outcomes)
            if self._unanswered <= 0:
                self._unanswered = 0
                # The next batch goes out now, not on the next loop iteration: a busy loop's
                # iteration took milliseconds in which the writer sat idle (bench e2e: the
                # writer's idle time between batches p50 2.1 -> 0.9 ms).
                self._flush()
        elif kind == "ready" and self._ready is not None and not self._ready.done():
            self._ready.set_result(message[1])

    def _on_lost(self, link: _Link) -> None:
        if link is not self._link:
            return
        self._transport = self._link = None
        self._unanswered = 0
        # Sent and unanswered: they may or may not have committed. The caller retries (an
        # Idempotency-Key makes a retried submit safe); nothing is acknowledged unwritten.
        unsent = {item[0] for item in self._outbox}  # these go to the next writer process
        sent = [i for i in self._pending if i not in unsent]
        resolve([(self._pending.pop(i), Rejected(_gone())) for i in sent])
        if self._closed or self._ready is None or not self._ready.done():
            return  # stopping, or still starting (start() reports it)
        log.error("the store writer process exited unexpectedly; starting a new one")
        assert self._loop is not None
        self._respawning = self._loop.create_task(self._respawn())

    async def _respawn(self) -> None:
        with contextlib.suppress(Exception):
            await self._reap()
        while not self._closed:
            try:
                await self._spawn()
                return
            except Exception as exc:
                log.error("starting the store writer process failed: %r", exc)
                # Nothing can be written meanwhile: callers hear it rather than wait.
                items, self._outbox = self._outbox, []
                for item in items:
                    self._settle(item[0], Rejected(_gone()))
                await asyncio.sleep(_RESPAWN_DELAY_S)

    async def stop(self) -> None:
        """Send what is queued, let the writer finish it, and wait for the process to end."""
        self._held = False
        self._flush()
        self._closed = True
        if self._respawning is not None:
            self._respawning.cancel()
            with contextlib.suppress(BaseException):
                await self._respawning
        link, transport = self._link, self._transport
        if transport is not None and link is not None:
            if transport.can_write_eof():
                transport.write_eof()  # the writer answers what it has, then exits
            try:
                await asyncio.wait_for(asyncio.shield(link.lost), _STOP_TIMEOUT_S)
            except TimeoutError:
                transport.abort()
        await self._reap()
        for i in list(self._pending):
            self._settle(i, Rejected(Unavailable("store is closed")))


def _gone() -> Unavailable:
    return Unavailable(
        "the store writer restarted; this write may not have been saved, retry it",
        retry_after_s=1.0,
    )


# == the writer process =======================================================================


def _serve(sock: socket.socket) -> None:
    frames = FrameReader()
    messages: deque[Any] = deque()  # received, not handled yet
    eof = False

    def receive(block: bool) -> None:
        """Read what has arrived; with block, first wait for at least one whole message."""
        nonlocal eof
        sock.setblocking(block)
        while not eof:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                return
            if not data:
                eof = True
                return
            messages.extend(frames.feed(data))
            if block and messages:
                sock.setblocking(False)
                block = False

    receive(block=True)
    if not messages:
        return
    config = messages.popleft()
    if config["logging"] is not None:
        aitbc_logging.setup_logging(*config["logging"])
    engine = engines.writer_engine(engines.parse_url(config["url"]))
    sql = WriteStatements(engine.dialect)
    runner = BatchRunner(engine)
    batch_max = config["batch_max"]
    sock.sendall(frame(("ready", os.getpid())))
    writes: deque[tuple[Any, ...]] = deque()
    try:
        while True:
            # Wait only when idle; otherwise everything already here joins the next batch.
            receive(block=not writes and not messages)
            while messages:
                writes.extend(messages.popleft())
            if not writes:
                if eof:
                    return
                continue
            batch = sorted(
                (writes.popleft() for _ in range(min(batch_max, len(writes)))),
                key=lambda item: item[3],
            )
            outcomes = runner.run([operation(sql, kind, args) for _, kind, args, _ in batch])
            answer = [(item[0], outcome) for item, outcome in zip(batch, outcomes, strict=True)]
            try:
                data = frame(("done", answer, runner.commits))
            except Exception as exc:  # an outcome pickle refuses: it fails, the others go
                log.error("a store write's outcome could not be encoded: %r", exc)
                data = frame(("done", [_encodable(a) for a in answer], runner.commits))
            sock.setblocking(True)
            sock.sendall(data)
    finally:
        runner.close()
        engine.dispose()


def _encodable(item: tuple[int, Any]) -> tuple[int, Any]:
    try:
        pickle.dumps(item[1])
        return item
    except Exception:
        return item[0], Rejected(Internal("database operation failed"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m coordinator.store.writer_process FD (started by the coordinator)")
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=int(args[0]))
    try:
        _serve(sock)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the coordinator is gone: nobody is waiting for answers
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
