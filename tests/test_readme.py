"""The README's examples run as written against a real coordinator (only the ports differ)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from client.testing import DevnetProcess
from coordinator.testing import CoordinatorProcess

README = Path(__file__).resolve().parent.parent / "README.md"
pytestmark = pytest.mark.e2e


def block(name: str) -> str:
    m = re.search(rf"<!-- readme-test: {name} -->\n```\w+\n(.*?)```", README.read_text(), re.S)
    assert m, f"README has no block tagged readme-test: {name}"
    return m.group(1)


async def run(cmd: list[str], cwd: Path, stdin: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    assert proc.returncode == 0, (
        f"{cmd[0]} failed ({proc.returncode}):\n{err.decode()}\n{out.decode()}"
    )
    return out.decode()


@pytest.mark.timeout(180)  # starts a whole devnet
async def test_readme_examples_against_the_devnet(tmp_path):
    """The README's first command is `make run` = `aitbc devnet`; its examples run against it."""
    devnet = DevnetProcess("data", cwd=tmp_path)
    try:
        await devnet.start()
        grpc_port = devnet.grpc_target.rsplit(":", 1)[1]
        http_port = devnet.http_base.rsplit(":", 1)[1]

        def ports(text: str) -> str:
            return text.replace("localhost:8080", f"localhost:{http_port}").replace(
                "127.0.0.1:50051", f"127.0.0.1:{grpc_port}"
            )

        out = await run(["bash", "-euo", "pipefail", "-s"], tmp_path, ports(block("rest")))
        assert '"state":"JOB_STATE_COMPLETED"' in out and '"purpose":"signing"' in out
        assert out.rstrip().endswith("JOB_STATE_COMPLETED")  # the one-call submit
        assert (tmp_path / "receipt.json").read_bytes().startswith(b'{"artifact_hash":"sha256:')
        out = await run(["bash", "-euo", "pipefail", "-s"], tmp_path, ports(block("poll")))
        assert "True" in out and '"state":"JOB_STATE_COMPLETED"' in out
        out = await run([sys.executable, "-"], tmp_path, ports(block("grpc")))
        assert out.startswith("JOB_STATE_COMPLETED {")
    finally:
        rc, _ = await devnet.interrupt()
    assert rc == 0


async def test_readme_hmac_examples(tmp_path):
    keys = "alice=alice-api-key-0123456789:alice-hmac-secret-0123456789"
    assert f"AITBC_CLIENT_KEYS='{keys}'" in README.read_text()
    coord = await CoordinatorProcess(
        {
            "AITBC_DATA_DIR": str(tmp_path / "data"),
            "AITBC_CLIENT_KEYS": keys,
            "AITBC_LOG_LEVEL": "WARNING",
        }
    ).start()
    try:
        port = coord.http_base.rsplit(":", 1)[1]
        out = await run(
            ["bash", "-euo", "pipefail", "-s"],
            tmp_path,
            block("hmac-curl").replace("localhost:8080", f"localhost:{port}"),
        )
        assert '"state":"JOB_STATE_QUEUED"' in out
        out = await run(
            [sys.executable, "-"],
            tmp_path,
            block("hmac-python").replace("localhost:8080", f"localhost:{port}"),
        )
        assert out.strip() == "201 JOB_STATE_QUEUED"
    finally:
        assert await coord.terminate() == 0
