"""`aitbc devnet`: a coordinator and N local miner agents, on the embedded defaults, in one command.

The coordinator runs in this process (SQLite under the data dir, no Redis); each miner is an
`aitbc-miner` process with its own key under <data_dir>/miners/. Keys and jobs persist in the
data dir across restarts. Ctrl-C drains the miners, then stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from coordinator import devkeys
from coordinator.app import CoordinatorApp
from coordinator.config import CoordinatorConfig
from coordinator.main import OTHER_COMPONENTS
from core.config import ConfigError, load_config
from core.logging import setup_logging
from miner.executors import ExecutorConfig
from miner.probe import probe

# Unit prices the local miners advertise (per gpu_second; CPU here, but the units are the same).
DEV_PRICES = {
    "ffmpeg": "0.002",
    "blender": "0.01",
    "llm": "0.005",
    "whisper": "0.003",
    "stable-diffusion": "0.01",
    "echo": "0.0001",
    "sha256": "0.0001",
    "sleep": "0.0001",
}


def _offers() -> str:
    """What a local miner can run here (probed: model services need a backend URL)."""
    runnable = probe(ExecutorConfig(), check_backends=False).services
    return ",".join(f"{s}={DEV_PRICES.get(s, '0.001')}" for s in sorted(runnable))


async def _sample_clip(app: CoordinatorApp, data_dir: Path) -> tuple[str, str] | None:
    """A 30-second 720p test clip stored as an artifact, for the ffmpeg example; None without ffmpeg."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return None
    clip = data_dir / "sample.mp4"
    if not clip.exists():
        proc = await asyncio.create_subprocess_exec(
            ffmpeg,
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=duration=30:size=1280x720:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=30",
            "-c:v",
            "libx264",
            "-b:v",
            "600k",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            str(clip),
        )
        if await proc.wait() != 0:
            return None
    sha = await app.artifacts.put(clip.read_bytes(), "video/mp4")
    return f"{app.public_url}/v1/artifacts/{sha}", sha


async def _spawn_miner(
    app: CoordinatorApp, ident: str, secret: str, data_dir: Path, slots: int
) -> asyncio.subprocess.Process:
    home = (data_dir / "miners" / ident).resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "AITBC_MINER_COORDINATOR": app.grpc_target,
        "AITBC_MINER_API_KEY": secret,
        "AITBC_MINER_KEY_FILE": str(home / "miner.key"),
        "AITBC_MINER_WORK_DIR": str(home / "work"),
        "AITBC_MINER_SLOTS": str(slots),
        "AITBC_MINER_REGION": "local",
        "AITBC_MINER_SERVICES": _offers(),
        # inputs come from this machine's coordinator (loopback)
        "AITBC_MINER_ALLOW_PRIVATE_DOWNLOADS": "1",
    }
    log = (home / "miner.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "miner.main",
        "run",
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,  # Ctrl-C reaches the devnet only; it drains the miners itself
    )
    (home / "miner.pid").write_text(f"{proc.pid}\n")
    return proc


def _banner(
    app: CoordinatorApp, keys: dict[str, str], miners: list[str], sample: tuple[str, str] | None
) -> str:
    client_id, client_key = keys["AITBC_CLIENT_KEYS"].split(",")[0].split("=", 1)
    admin_id, admin_key = keys["AITBC_ADMIN_KEYS"].split(",")[0].split("=", 1)
    spare_id, spare_key = keys["AITBC_MINER_KEYS"].split(",")[len(miners)].split("=", 1)
    rest, grpc_target = app.public_url, app.grpc_target
    ffmpeg = (
        f'JOB=$(aitbc jobs submit ffmpeg -p input=\'{{"url": "{sample[0]}", "sha256": "{sample[1]}"}}\' \\\n'
        f"      -p codec=h264 -p resolution=640x360 -p preset=medium --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"job_id\"])')\n"
        "  aitbc jobs watch $JOB && aitbc jobs result $JOB && aitbc receipt verify $JOB"
        if sample
        else "aitbc jobs submit echo -p text=hello --wait"
    )
    return f"""
AITBC devnet is up: coordinator + {len(miners)} miner(s) ({", ".join(miners)}); data in {app.config.data_dir}
  gRPC        {grpc_target}
  REST        {rest}   (API docs: {rest}/docs)
  client key  {client_id}: {client_key}
  admin key   {admin_id}: {admin_key}
  spare miner {spare_id}: {spare_key}   (for your own aitbc-miner or a polling miner)
  miner logs  {app.config.data_dir}/miners/<id>/miner.log

Try, from another terminal:

  # 1. curl: submit a job, then read its result
  curl -s -X POST {rest}/v1/jobs -H "X-Api-Key: {client_key}" \\
       -d '{{"payload": {{"service": "echo", "parameters": {{"text": "hello"}}}}}}'
  curl -s {rest}/v1/jobs/<job_id>/result -H "X-Api-Key: {client_key}"

  # 2. aitbc: transcode the sample clip with the real ffmpeg and watch its progress
  export AITBC_ENDPOINT={grpc_target} AITBC_API_KEY={client_key}
  {ffmpeg}

  # 3. Python
  python -c 'from client import Client; from aitbc.coordinator.v1.job_pb2 import JobState; \\
c = Client("{grpc_target}", "{client_key}"); j = c.submit_job("sha256", {{"mib": 64}}); \\
print(JobState.Name(c.wait_job(j.job_id).state))'

Ctrl-C stops everything.
"""


async def run_devnet(
    config: CoordinatorConfig,
    *,
    miners: int,
    slots: int,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    # one key more than miners started: a spare for your own agent or a polling miner
    keys, _, _ = devkeys.load_or_create(config.data_dir, miners=miners + 1)
    config = replace(
        config,
        client_keys=keys["AITBC_CLIENT_KEYS"],
        miner_keys=keys["AITBC_MINER_KEYS"],
        admin_keys=keys["AITBC_ADMIN_KEYS"],
    )
    app = await CoordinatorApp(config).start()
    procs: list[asyncio.subprocess.Process] = []
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    try:
        sample = await _sample_clip(app, config.data_dir)
        pairs = [p.split("=", 1) for p in keys["AITBC_MINER_KEYS"].split(",")][:miners]
        for ident, secret in pairs:
            procs.append(await _spawn_miner(app, ident, secret, config.data_dir, slots))
        async with asyncio.timeout(60):
            while sum(1 for s in app.coordinator.sessions.values() if s.connected) < len(pairs):
                if any(p.returncode is not None for p in procs):
                    raise RuntimeError(
                        f"a miner exited at start; see {config.data_dir}/miners/*/miner.log"
                    )
                await asyncio.sleep(0.1)
        print(_banner(app, keys, [i for i, _ in pairs], sample), flush=True)
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        print("stopping: draining miners ...", flush=True)
        await _stop_miners(procs)
        await app.stop()
        print("devnet stopped", flush=True)


async def _stop_miners(procs: list[asyncio.subprocess.Process]) -> None:
    """SIGTERM drains (held jobs finish); a second SIGTERM cancels them; then SIGKILL."""
    for attempt in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in procs if p.returncode is None]
        if not alive:
            return
        for p in alive:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(attempt)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in alive)), 5)


def devnet_command(
    miners: Annotated[int, typer.Option("--miners", min=1, max=64, help="Local miner agents.")] = 2,
    slots: Annotated[int, typer.Option("--slots", min=1, max=64, help="Job slots per miner.")] = 2,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where jobs, keys and artifacts persist.")
    ] = Path("data"),
    grpc_port: Annotated[int, typer.Option("--grpc-port", min=0, max=65535)] = 50051,
    http_port: Annotated[int, typer.Option("--http-port", min=0, max=65535)] = 8080,
) -> None:
    """Start a coordinator and local miners on the embedded defaults (SQLite, no Redis)."""
    try:
        base = load_config(CoordinatorConfig, allow=OTHER_COMPONENTS)
    except (ConfigError, ValueError) as exc:
        print(f"aitbc: error: bad configuration: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    config = replace(
        base,
        data_dir=data_dir,
        http_port=http_port,
        server=replace(base.server, grpc_port=grpc_port),
    )
    setup_logging("WARNING", "text")
    try:
        asyncio.run(run_devnet(config, miners=miners, slots=slots))
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"aitbc: error: devnet: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None


__all__ = ["devnet_command", "run_devnet"]
