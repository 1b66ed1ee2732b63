"""Child processes for executors: argv lists only, own process group, killed on cancel."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from miner.executors.base import ExecutionError

# Blender prints long lines (file paths, Python tracebacks); asyncio's default is 64 KiB.
_LINE_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class Finished:
    returncode: int
    # The last lines of stderr (and of stdout when it is not parsed), for error messages.
    tail: str


async def run_process(
    args: Sequence[str],
    *,
    cwd: Path,
    on_stdout: Callable[[str], None] | None = None,
    tail_lines: int = 30,
) -> Finished:
    """Run `args` (no shell), feeding each stdout line to `on_stdout`; wait for the exit.

    The child gets its own session, so on cancellation (or any error here) the whole process
    group is killed with SIGKILL and reaped before the exception propagates.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=_LINE_LIMIT,
        )
    except FileNotFoundError as exc:
        raise ExecutionError("backend_unavailable", f"program not found: {args[0]}", True) from exc
    tail: deque[str] = deque(maxlen=tail_lines)

    async def pump(stream: asyncio.StreamReader, handler: Callable[[str], None] | None) -> None:
        while raw := await stream.readline():
            line = raw.decode(errors="replace").rstrip("\r\n")
            if handler is None:
                tail.append(line)
            else:
                handler(line)

    assert proc.stdout is not None and proc.stderr is not None
    readers = asyncio.gather(pump(proc.stdout, on_stdout), pump(proc.stderr, None))
    try:
        await readers
        returncode = await proc.wait()
    except BaseException:
        readers.cancel()
        _kill_group(proc.pid)
        # Reap it even if we are cancelled again meanwhile: SIGKILL makes this immediate.
        await asyncio.shield(proc.wait())
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await readers
        raise
    return Finished(returncode, "\n".join(tail))


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def failed(program: str, finished: Finished) -> ExecutionError:
    """The error for a non-zero exit: bad input or a crash; another try would fail alike."""
    detail = finished.tail.strip()[-1500:] or "(no output)"
    return ExecutionError(
        "execution_failed", f"{program} exited with code {finished.returncode}: {detail}", False
    )
