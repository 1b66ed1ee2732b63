"""Benchmark child processes: the coordinator (optionally under cProfile) and /proc readings."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# A directory: when set (or --profile given), the coordinator runs under cProfile and writes
# <dir>/coordinator-<label>.prof on shutdown. Not an AITBC_* key: the coordinator's config
# loader rejects unknown AITBC_* keys.
PROFILE_ENV = "BENCH_PROFILE"
PROFILE_TIMER_ENV = "BENCH_PROFILE_TIMER"  # "cpu" (default: main-thread CPU time) or "wall"
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_RE = re.compile(r"gRPC (\S+):(\d+)")

# `python -c` wrapper: the real entry point's main() under cProfile, collecting only between
# SIGUSR1 (on) and SIGUSR2 (off) so that start-up, warm-up and read-back stay out. SIGTERM
# ends main() through the coordinator's own graceful shutdown; the stats are written then.
_PROFILED = """
import cProfile, signal, sys, time
from coordinator.main import main
# thread_time: CPU of the event-loop thread only (wall time would charge the waits in epoll
# and the preemptions of a busy box to whatever function was running).
prof = cProfile.Profile(time.thread_time) if sys.argv[2] == "cpu" else cProfile.Profile()
signal.signal(signal.SIGUSR1, lambda *_: prof.enable())
signal.signal(signal.SIGUSR2, lambda *_: prof.disable())
try:
    main([])
finally:
    prof.disable()
    prof.dump_stats(sys.argv[1])
"""


def make_keys(prefix: str, n: int) -> dict[str, str]:
    """n API keys id -> secret (secrets are 24 hex characters, above the 16 minimum)."""
    return {f"{prefix}{i}": secrets.token_hex(12) for i in range(n)}


def key_list(keys: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in keys.items())


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """os.environ without AITBC_* settings from the caller's shell (test-harness keys kept)."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AITBC_") or k.startswith(("AITBC_TEST_", "AITBC_REQUIRE_"))
    }
    return {**keep, **extra}


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_pids(pid: int) -> list[int]:
    """pid and its descendants (e.g. a Celery worker and its prefork children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(p)
    return total


def pids_named(comm: str) -> list[int]:
    """Every process on this machine whose name is `comm` ("postgres": a local PostgreSQL's
    postmaster and backends; "redis-server"); empty when the server runs elsewhere."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if (d / "comm").read_text().strip() == comm:
                    out.append(int(d.name))
    return out


class ServerCpu:
    """CPU seconds a local database or broker server used between start() and stop(): the
    processes named `comm` when it starts (a backend that exits in between is not counted)."""

    def __init__(self, comm: str, *, pids: list[int] | None = None):
        self.comm = comm
        self._given = pids  # these processes only (a server of the benchmark's own)
        self.pids: list[int] = []
        self.cpu = 0.0

    def _read(self) -> dict[int, float]:
        out = {}
        for pid in self.pids:
            with contextlib.suppress(OSError):
                out[pid] = cpu_seconds(pid)
        return out

    def start(self) -> ServerCpu:
        self.pids = list(self._given) if self._given else pids_named(self.comm)
        self._before = self._read()
        return self

    def stop(self) -> ServerCpu:
        after = self._read()
        self.cpu = sum(after[p] - self._before[p] for p in after if p in self._before)
        return self


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def thread_cpu(pid: int, *, tree: bool = False) -> dict[str, float]:
    """CPU seconds per thread, keyed 'name/tid' (the main thread's tid is the pid); with
    tree, also those of its child processes (their main threads keyed 'child/tid')."""
    out = {}
    if tree:
        for child in tree_pids(pid)[1:]:
            with contextlib.suppress(OSError):
                for key, value in thread_cpu(child).items():
                    out[key.replace("main/", "child/", 1)] = value
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            tag = "main" if task.name == str(pid) else name
            out[f"{tag}/{task.name}"] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


@dataclass
class CoordinatorProc:
    """`aitbc-coordinator` as a child process; gRPC port parsed from its ready line."""

    env: dict[str, str]
    workdir: Path
    label: str = "coordinator"
    profile_dir: Path | None = None
    proc: asyncio.subprocess.Process | None = None
    target: str = ""
    profile_path: Path | None = field(default=None, init=False)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout: float = 60.0) -> CoordinatorProc:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = clean_env({"AITBC_GRPC_PORT": "0", "AITBC_HTTP_PORT": "0", **self.env})
        if self.profile_dir is not None:
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            self.profile_path = (self.profile_dir / f"coordinator-{self.label}.prof").resolve()
            timer = os.environ.get(PROFILE_TIMER_ENV, "cpu")
            argv = [sys.executable, "-c", _PROFILED, str(self.profile_path), timer]
        else:
            argv = [str(BIN / "aitbc-coordinator")]
        # The working directory holds a .env when the key lists are too long for one
        # environment string (Linux caps a single one at 128 KiB).
        self._stderr = (self.workdir / "coordinator.stderr").open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.workdir,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
        )
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            line = b""
        m = READY_RE.search(line.decode(errors="replace"))
        if m is None:
            await self.stop()
            raise RuntimeError(f"coordinator did not start: {line!r}\n{self.stderr_tail()}")
        self.target = f"127.0.0.1:{int(m.group(2))}"
        return self

    def profile_on(self) -> None:
        """Start collecting (profiled runs only): the measured window begins."""
        if self.profile_path is not None and self.proc is not None:
            self.proc.send_signal(signal.SIGUSR1)

    def profile_off(self) -> None:
        if self.profile_path is not None and self.proc is not None:
            self.proc.send_signal(signal.SIGUSR2)

    def stderr_tail(self, n: int = 20) -> str:
        path = self.workdir / "coordinator.stderr"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(lines[-n:])

    async def stop(self, timeout: float = 60.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            rc = await self.proc.wait()
        self._stderr.close()
        return rc


class CpuWindow:
    """CPU seconds a process tree used between start() and stop(), with wall time."""

    def __init__(self, pid: int, *, tree: bool = False):
        self.pid, self.tree = pid, tree

    def _read(self) -> float:
        return tree_cpu_seconds(self.pid) if self.tree else cpu_seconds(self.pid)

    def start(self) -> CpuWindow:
        self.cpu0, self.t0 = self._read(), time.perf_counter()
        self.threads0 = thread_cpu(self.pid, tree=self.tree)
        return self

    def stop(self) -> CpuWindow:
        self.cpu = self._read() - self.cpu0
        self.wall = time.perf_counter() - self.t0
        after = thread_cpu(self.pid, tree=self.tree)
        self.threads = {k: v - self.threads0.get(k, 0.0) for k, v in after.items()}
        return self

    @property
    def percent(self) -> float:
        """CPU used as % of one core."""
        return 100.0 * self.cpu / self.wall if self.wall > 0 else 0.0

    def top_threads(self, n: int = 4) -> str:
        top = sorted(self.threads.items(), key=lambda kv: -kv[1])[:n]
        return ", ".join(f"{k} {100 * v / self.wall:.0f}%" for k, v in top if v > 0)
