"""core.eventloop: the loop a service runs on."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from core import eventloop

# In a fresh interpreter: the setting is read once per process, when libuv first looks.
PROBE = textwrap.dedent(
    """
    import asyncio, os
    import grpc  # as in the coordinator: with it loaded, libuv opened its SQPOLL ring
    from core import eventloop

    async def main():
        server = grpc.aio.server()
        server.add_insecure_port("127.0.0.1:0")
        await server.start()
        await asyncio.to_thread(lambda: None)
        names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
        await server.stop(None)
        return type(asyncio.get_running_loop()).__module__, names

    module, names = eventloop.run(main(), "uvloop")
    print(module, os.environ.get("UV_USE_IO_URING"), ",".join(names))
    """
)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_uvloop_runs_without_the_io_uring_poller_thread():
    env = {k: v for k, v in os.environ.items() if k != "UV_USE_IO_URING"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    module, setting, names = out.stdout.split()
    assert module.startswith("uvloop")
    assert setting == "0"
    assert not [n for n in names.split(",") if n.startswith("iou-sqp")], names


def test_asyncio_loop_and_unknown_loop():
    async def which() -> str:
        import asyncio

        return type(asyncio.get_running_loop()).__module__

    assert eventloop.run(which(), "asyncio").startswith("asyncio")
    coro = which()
    with pytest.raises(ValueError, match="event loop must be one of"):
        eventloop.run(coro, "trio")
    coro.close()
