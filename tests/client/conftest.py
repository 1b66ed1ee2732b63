"""A real coordinator on its own event loop thread (the CLI and SDK are synchronous) + a CLI runner."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from aitbc.coordinator.v1 import miner_service_pb2 as miner_pb
from typer.testing import CliRunner, Result

from client.cli import app as cli_app
from client.sdk import Client
from coordinator.app import CoordinatorApp
from coordinator.store.memory import MemoryJobStore
from coordinator.testing import StreamMiner, caps

# The client suite's own identities (same shape as the coordinator API tests' keys).
KEYS = {
    "alice": "alice-secret-0123456789",
    "bob": "bob-secret-0123456789ab",
    "m1": "m1-secret-0123456789abc",
    "m2": "m2-secret-0123456789abc",
    "root": "root-secret-0123456789a",
}
SIGNING_HEX = "44" * 32
ATTEST_HEX = "55" * 32
T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread; `run` waits for a coroutine's result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="coordinator-loop")
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 20) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro: Coroutine[Any, Any, T]):
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        self.run(drain())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Coord:
    """One running coordinator, its miners, and helpers to drive them from sync tests."""

    def __init__(self, loop: LoopThread, app: CoordinatorApp):
        self.loop, self.app = loop, app
        self.target = app.grpc_target
        self.miners: list[StreamMiner] = []

    def miner(self, name: str = "m1", **kw: Any) -> StreamMiner:
        async def start() -> StreamMiner:
            return await StreamMiner(self.target, KEYS[name], caps(**kw)).start()

        m = self.loop.run(start())
        self.miners.append(m)
        return m

    def assignment(self, miner: StreamMiner) -> miner_pb.Assignment:
        return self.loop.run(miner.next("assignment")).assignment

    def ack(self, miner: StreamMiner) -> miner_pb.Ack:
        return self.loop.run(miner.next("ack")).ack

    def send(self, miner: StreamMiner, **kw: Any) -> None:
        self.loop.loop.call_soon_threadsafe(lambda: miner.send(**kw))

    def call(self, fn, *args: Any) -> None:
        """Run a plain StreamMiner method (started/result/fail) on the loop thread."""
        self.loop.loop.call_soon_threadsafe(fn, *args)

    def client(self, who: str | None = "alice") -> Client:
        return Client(self.target, KEYS[who] if who else None, timeout_s=10)

    def complete(self, miner: StreamMiner, value: Any) -> tuple[str, miner_pb.Ack]:
        """Take the next assignment, run it to a result, return (job_id, ack)."""
        a = self.assignment(miner)
        self.call(miner.started, a)
        self.call(miner.result, a, value)
        return a.job.job_id, self.ack(miner)


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture
def coord(loop_thread: LoopThread, tmp_path) -> Iterator[Coord]:
    from coordinator.config import CoordinatorConfig
    from core.server import ServerConfig

    config = CoordinatorConfig(
        server=ServerConfig(grpc_port=0, grpc_shutdown_grace_s=0.5),
        data_dir=tmp_path / "coordinator",
        http_port=-1,  # the CLI speaks gRPC only
        client_keys=f"alice={KEYS['alice']},bob={KEYS['bob']}",
        miner_keys=f"m1={KEYS['m1']},m2={KEYS['m2']}",
        admin_keys=f"root={KEYS['root']}",
        receipt_signing_key_hex=SIGNING_HEX,
        receipt_attestation_key_hex=ATTEST_HEX,
        sweep_interval_s=0.05,
    )
    app = loop_thread.run(CoordinatorApp(config, store=MemoryJobStore()).start())
    c = Coord(loop_thread, app)
    yield c
    for m in c.miners:
        loop_thread.run(m.abort())
    loop_thread.run(app.stop(0.2))


@pytest.fixture
def cli(coord: Coord):
    """Run `aitbc ARGS` against the coordinator as `who` (None: no key)."""
    runner = CliRunner()

    def invoke(
        *args: str,
        who: str | None = "alice",
        input: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> Result:
        env = {
            "AITBC_ENDPOINT": coord.target,
            "AITBC_API_KEY": KEYS[who] if who else None,
            "AITBC_TLS": None,
            "AITBC_TIMEOUT": None,
            "COLUMNS": "200",  # Rich tables: room for every column, as on a wide terminal
            **(extra_env or {}),
        }
        return runner.invoke(cli_app, list(args), env=env, input=input)

    return invoke


def one_line_error(result: Result) -> str:
    """The stderr of a failed command, asserted to be one line and no traceback."""
    err = result.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("aitbc: error: "), err
    return err


@contextlib.contextmanager
def serve_bytes(data: bytes) -> Iterator[str]:
    """A loopback HTTP server answering GET with `data`; yields its base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
