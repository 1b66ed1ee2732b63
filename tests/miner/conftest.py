"""Miner test fixtures: in-process HTTP servers on 127.0.0.1:0, ffmpeg media, a runner."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from core.testing import serve_asgi as serve
from core.testing import unavailable
from miner.artifacts import LocalArtifactStore
from miner.executors import JobRunner


@pytest.fixture
def serve_app() -> Callable:
    return serve


class FileServer:
    """Serves files of a directory, plus redirects, errors and an endless body; counts hits."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.hits = 0
        self.url = ""

    def app(self) -> Starlette:
        async def files(request: Request) -> Response:
            self.hits += 1
            path = self.directory / request.path_params["name"]
            return FileResponse(path) if path.is_file() else Response(status_code=404)

        async def redirect(request: Request) -> Response:
            self.hits += 1
            return RedirectResponse(request.query_params["to"], status_code=302)

        async def status(request: Request) -> Response:
            self.hits += 1
            return Response(status_code=int(request.path_params["code"]))

        async def endless(request: Request) -> Response:
            self.hits += 1

            async def body() -> AsyncIterator[bytes]:
                while True:  # no Content-Length: only the streaming cap can stop it
                    yield b"x" * 65536
                    await asyncio.sleep(0)

            return StreamingResponse(body())

        return Starlette(
            routes=[
                Route("/files/{name}", files),
                Route("/redirect", redirect),
                Route("/status/{code:int}", status),
                Route("/endless", endless),
            ]
        )


@pytest.fixture
async def file_server(tmp_path: Path) -> AsyncIterator[FileServer]:
    directory = tmp_path / "served"
    directory.mkdir()
    fs = FileServer(directory)
    async with serve(fs.app()) as url:
        fs.url = url
        yield fs


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts", "http://artifacts.test/a")


@pytest.fixture
def make_runner(tmp_path: Path, store: LocalArtifactStore) -> Callable[..., JobRunner]:
    def make(executors, **kw) -> JobRunner:
        kw.setdefault("slots", 2)
        kw.setdefault("work_dir", tmp_path / "work")
        kw.setdefault("artifacts", store)
        return JobRunner(executors, **kw)

    return make


class Procs:
    """Looks at /proc: which processes mention a path, and whether they still exist."""

    @staticmethod
    def using(marker: str) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                if marker in cmdline:
                    pids.append(int(entry.name))
        return pids

    @staticmethod
    def alive(pids: list[int]) -> list[int]:
        return [pid for pid in pids if Path(f"/proc/{pid}").exists()]

    @staticmethod
    def listing(directory: Path) -> list[Path]:
        return sorted(directory.iterdir()) if directory.exists() else []


@pytest.fixture
def procs() -> type[Procs]:
    return Procs


def _need_program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (make setup installs it)")
    return path


@pytest.fixture(scope="session")
def ffmpeg_bin() -> str:
    _need_program("ffprobe")
    return _need_program("ffmpeg")


def make_clip(ffmpeg: str, dest: Path, seconds: int, size: str = "320x240") -> Path:
    """A test clip: lavfi testsrc video + a sine tone, h264/aac in mp4."""
    args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
    args += ["-f", "lavfi", "-i", f"testsrc=duration={seconds}:size={size}:rate=25"]
    args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    args += ["-shortest", str(dest)]
    subprocess.run(args, check=True, timeout=60)
    return dest


@pytest.fixture(scope="session")
def clip_2s(ffmpeg_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(ffmpeg_bin, tmp_path_factory.mktemp("media") / "clip2s.mp4", 2)


@pytest.fixture(scope="session")
def clip_60s(ffmpeg_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(ffmpeg_bin, tmp_path_factory.mktemp("media") / "clip60s.mp4", 60, "160x120")
