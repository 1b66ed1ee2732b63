"""`aitbc devnet` as a child process, for the e2e tests of the README's first command."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path


class DevnetProcess:
    """Starts `aitbc devnet` on free ports and reads its banner (endpoints and keys)."""

    def __init__(
        self, data_dir: Path | str, *, cwd: Path | None = None, env: dict[str, str] | None = None
    ):
        self.data_dir, self.cwd = str(data_dir), cwd
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None
        self.banner = ""

    async def start(self, timeout: float = 90) -> DevnetProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "client.cli",
            "devnet",
            "--grpc-port",
            "0",
            "--http-port",
            "0",
            "--data-dir",
            self.data_dir,
            cwd=self.cwd,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        async with asyncio.timeout(timeout):
            while "Ctrl-C stops everything" not in self.banner:
                line = await self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"devnet exited: {(await self.proc.stderr.read()).decode()}")
                self.banner += line.decode()
        return self

    def field(self, pattern: str) -> str:
        m = re.search(pattern, self.banner)
        if m is None:
            raise AssertionError(f"banner has no {pattern!r}:\n{self.banner}")
        return m.group(1)

    @property
    def grpc_target(self) -> str:
        return self.field(r"gRPC\s+(\S+)")

    @property
    def http_base(self) -> str:
        return self.field(r"REST\s+(http://\S+)")

    async def interrupt(self, timeout: float = 60) -> tuple[int, str]:
        """Ctrl-C; returns (exit code, what it printed after the banner)."""
        assert self.proc is not None and self.proc.stdout is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        return rc, (await self.proc.stdout.read()).decode()
