"""`aitbc devnet` through real processes: a real ffmpeg job, a miner killed mid-job, a clean stop."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sys

import pytest

from client.testing import DevnetProcess
from core.testing import services_required

pytestmark = pytest.mark.e2e


async def _run(*cmd: str, env: dict[str, str], cwd) -> str:
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, f"{cmd}: {err.decode()}"
    return out.decode()


@pytest.mark.timeout(240)  # starts a devnet, transcodes, waits out a lost lease
async def test_devnet_runs_ffmpeg_survives_a_killed_miner_and_stops_cleanly(tmp_path):
    if shutil.which("ffmpeg") is None:
        if services_required():
            pytest.fail("ffmpeg is missing (tools/system_deps.sh installs it)")
        pytest.skip("ffmpeg is not installed (tools/system_deps.sh installs it as root)")
    env = {**os.environ, "AITBC_MINER_HEARTBEAT_INTERVAL_S": "1"}
    devnet = DevnetProcess(tmp_path / "data", env=env)
    try:
        await devnet.start()
        banner = devnet.banner
        grpc_target = devnet.grpc_target
        client_key = devnet.field(r"client key\s+client-1: (\S+)")
        admin_key = devnet.field(r"admin key\s+admin: (\S+)")
        cli = [sys.executable, "-m", "client.cli"]
        cenv = {**env, "AITBC_ENDPOINT": grpc_target, "AITBC_API_KEY": client_key}
        # the banner's aitbc example, as printed: a real ffmpeg transcode, watched, then verified
        example = re.search(
            r"(JOB=\$\(aitbc jobs submit ffmpeg.*?aitbc receipt verify \$JOB)", banner, re.S
        ).group(1)
        example = example.replace("aitbc ", f"{sys.executable} -m client.cli ")
        out = await _run("bash", "-euo", "pipefail", "-c", example, env=cenv, cwd=tmp_path)
        assert "OK receipt" in out and "miner claim: verified" in out

        # a miner dies mid-job: the job finishes on the other one
        job = json.loads(
            await _run(
                *cli, "jobs", "submit", "sleep", "-p", "seconds=3", "--json", env=cenv, cwd=tmp_path
            )
        )
        admin_env = {**cenv, "AITBC_API_KEY": admin_key}
        async with asyncio.timeout(20):
            while True:
                jobs = json.loads(
                    await _run(*cli, "admin", "jobs", "--json", env=admin_env, cwd=tmp_path)
                )
                running = [
                    j for j in jobs["jobs"] if j["job_id"] == job["job_id"] and j["miner_id"]
                ]
                if running:
                    break
                await asyncio.sleep(0.2)
        victim = running[0]["miner_id"]
        os.kill(
            int((tmp_path / "data" / "miners" / victim / "miner.pid").read_text()), signal.SIGKILL
        )
        # `jobs watch` follows it to the end (exit 0 only when COMPLETED)
        await _run(*cli, "jobs", "watch", job["job_id"], "--json", env=cenv, cwd=tmp_path)
        done = json.loads(
            await _run(*cli, "jobs", "get", job["job_id"], "--json", env=cenv, cwd=tmp_path)
        )
        assert done["miner_id"] != victim and done["attempt"] == 2
        assert done["attempts"][0]["outcome"] == "lease_lost"
    finally:
        rc, tail = await devnet.interrupt()  # Ctrl-C
    assert rc == 0
    assert "devnet stopped" in tail
