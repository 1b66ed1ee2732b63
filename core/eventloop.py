"""The event loop a service runs on: uvloop (the default) or asyncio's own.

uvloop (libuv) runs the same coroutines with less overhead per callback, socket operation and
timer. Measured with bench.e2e (SQLite, stream miners, same run, 2 rounds): the coordinator
did 1,010 jobs/s on uvloop against 904-935 on asyncio's loop, at 1.15 ms of CPU per job
against 1.27. "asyncio" stays available as a fallback.

Only for processes that start no child processes through the loop: libuv forks (rather than
vfork), and gRPC's fork handlers can crash the child before it execs. The miner agent, which
runs ffmpeg and Blender, stays on asyncio's loop (under uvloop, ffmpeg exited with SIGSEGV in
the devnet test); the coordinator starts its store writer with subprocess (vfork + exec).

libuv's io_uring is switched off (UV_USE_IO_URING=0, unless the environment sets it): libuv
opens an SQPOLL ring, whose kernel thread polls for work and wakes the loop late. Measured
with an unloaded SubmitJob + WatchJob round trip (SQLite, one echo miner): 12.1 ms with it,
6.1 ms without; the thread also used 15 % of a core under load.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
LOOPS = ("uvloop", "asyncio")


def run(main: Coroutine[Any, Any, T], loop: str = "uvloop") -> T:
    if loop not in LOOPS:
        raise ValueError(f"event loop must be one of {LOOPS}, got {loop!r}")
    if loop == "uvloop":
        # Read by libuv when the loop is created (below), so it must be set before.
        os.environ.setdefault("UV_USE_IO_URING", "0")
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
