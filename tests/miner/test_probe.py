"""Capability probe: nvidia-smi parsing on captured output, the real CPU/ffmpeg probe, backends."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from miner.executors import BackendConfig, ExecutorConfig
from miner.probe import (
    Gpu,
    format_probe,
    parse_cuda_version,
    parse_meminfo,
    parse_nvidia_smi_csv,
    probe,
    probe_gpus,
    tool_version,
)

# Captured from real machines: `--query-gpu=name,memory.total,driver_version
# --format=csv,noheader,nounits`, and the header of plain `nvidia-smi`.
SMI_CSV = """NVIDIA GeForce RTX 4090, 24564, 550.54.14
NVIDIA A100-SXM4-80GB, 81920, 550.54.14
"""
SMI_HEADER = """Tue Mar 12 10:01:02 2024
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.14              Driver Version: 550.54.14      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
"""
SMI_HEADER_OLD = "| NVIDIA-SMI 470.82.01    Driver Version: 470.82.01    CUDA Version: 11.4     |"


def test_parse_nvidia_smi() -> None:
    assert parse_nvidia_smi_csv(SMI_CSV) == [
        Gpu("NVIDIA GeForce RTX 4090", 24564, "550.54.14"),
        Gpu("NVIDIA A100-SXM4-80GB", 81920, "550.54.14"),
    ]
    assert parse_nvidia_smi_csv("Tesla T4, [N/A], 535.1\n\n") == [Gpu("Tesla T4", 0, "535.1")]
    assert parse_nvidia_smi_csv("Weird, Name, GPU, 8192, 1.0") == [
        Gpu("Weird, Name, GPU", 8192, "1.0")
    ]
    assert parse_cuda_version(SMI_HEADER) == "12.4"
    assert parse_cuda_version(SMI_HEADER_OLD) == "11.4"
    assert parse_cuda_version("No devices were found") == ""


def test_probe_gpus_runs_nvidia_smi(tmp_path: Path, monkeypatch) -> None:
    # A stand-in nvidia-smi on PATH: answers the query and the plain header like the real one.
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        f"#!{sys.executable}\nimport sys\n"
        f"print({SMI_CSV!r} if any(a.startswith('--query-gpu=') for a in sys.argv) else {SMI_HEADER!r})\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    gpus, cuda = probe_gpus()
    assert [g.name for g in gpus] == ["NVIDIA GeForce RTX 4090", "NVIDIA A100-SXM4-80GB"]
    assert cuda == "12.4"


def test_tool_version() -> None:
    assert (
        tool_version("ffmpeg", "ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000")
        == "5.1.9-0+deb12u1"
    )
    assert tool_version("ffmpeg", "ffmpeg version n7.0 Copyright") == "n7.0"
    assert tool_version("blender", "Blender 4.2.1 LTS\n\tbuild date: 2024-08-19") == "4.2.1"
    assert parse_meminfo("MemTotal:       24683520 kB\nMemFree: 1 kB") == 24105


def test_real_probe_of_this_machine(ffmpeg_bin) -> None:
    caps = probe(ExecutorConfig())
    assert caps.cpu_cores >= 1 and caps.memory_mb == parse_meminfo(
        Path("/proc/meminfo").read_text()
    )
    if shutil.which("nvidia-smi") is None:
        assert caps.gpus == [] and caps.cuda_version == ""
    first = subprocess.run([ffmpeg_bin, "-version"], capture_output=True, text=True).stdout.split()
    assert caps.tools["ffmpeg"].version == first[2] and "h264" in caps.tools["ffmpeg"].features
    assert {"echo", "sha256", "sleep", "ffmpeg"} <= set(caps.services)
    assert ("blender" in caps.services) == (shutil.which("blender") is not None)
    assert not {"llm", "whisper", "stable-diffusion"} & set(caps.services)  # no backend set
    text = format_probe(caps)
    assert "ffmpeg " + caps.tools["ffmpeg"].version in text and "Services offered: " in text
    assert caps.to_dict()["services"] == caps.services
    bare = probe(ExecutorConfig(builtin_services=False, ffmpeg_path="no-such-ffmpeg"))
    assert (
        "ffmpeg" not in bare.tools and "ffmpeg" not in bare.services and "echo" not in bare.services
    )


async def test_probe_checks_configured_backends(serve_app) -> None:
    app = Starlette(
        routes=[Route("/v1/models", lambda r: JSONResponse({"data": [{"id": "llama3"}]}))]
    )
    async with serve_app(app) as url:
        config = ExecutorConfig(
            llm=BackendConfig(url=f"{url}/v1", model="llama3:8b"),
            whisper=BackendConfig(url="http://127.0.0.1:9", model="base.en"),
        )
        caps = await asyncio.to_thread(probe, config)
    assert caps.backends["llm"].reachable and caps.backends["llm"].models == ["llama3"]
    assert (
        caps.backends["whisper"].reachable is False
        and "ConnectError" in caps.backends["whisper"].error
    )
    assert "stable-diffusion" not in caps.backends
    assert {"llm", "whisper"} <= set(caps.services) and "stable-diffusion" not in caps.services
    assert caps.models == ["base.en", "llama3", "llama3:8b"]
    text = format_probe(caps)
    assert "llm: " in text and "reachable" in text and "unreachable" in text
    unchecked = probe(config, check_backends=False)
    assert unchecked.backends["llm"].reachable is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_download_bytes": 0}, "max_download_bytes"),
        ({"download_timeout_s": -1}, "download_timeout_s"),
        ({"ffmpeg_path": ""}, "ffmpeg_path"),
        ({"blender_cycles_device": "GPU"}, "blender_cycles_device"),
    ],
)
def test_config_validation_names_the_key(kwargs: dict, field: str) -> None:
    from core.errors import InvalidArgument

    with pytest.raises(InvalidArgument) as err:
        ExecutorConfig(**kwargs)
    assert err.value.violations[0][0] == field
    with pytest.raises(InvalidArgument, match="url"):
        BackendConfig(url="localhost:8000")
