"""Capability probe: GPUs, CPU and memory, tools and their versions, model backends, services."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from miner.executors.config import ExecutorConfig
from miner.executors.ffmpeg import ffmpeg_encoders
from miner.executors.ffmpeg_args import VIDEO_ENCODERS
from miner.executors.registry import build_registry, find_program

MODEL_SERVICES = ("llm", "whisper", "stable-diffusion")


@dataclass
class Gpu:
    name: str
    memory_mb: int
    driver_version: str = ""


@dataclass
class Tool:
    name: str
    path: str
    version: str
    # For ffmpeg: the video codecs it can encode (h264, hevc, vp9, av1).
    features: list[str] = field(default_factory=list)


@dataclass
class BackendStatus:
    service: str
    url: str
    model: str
    # None when not checked; the model ids the server lists under /v1/models.
    reachable: bool | None = None
    models: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class Capabilities:
    gpus: list[Gpu]
    cuda_version: str
    cpu_cores: int
    cpu_model: str
    memory_mb: int
    tools: dict[str, Tool]
    backends: dict[str, BackendStatus]
    services: list[str]

    @property
    def models(self) -> list[str]:
        """Configured and listed models of the model services offered."""
        names = {b.model for b in self.backends.values() if b.model}
        names.update(m for b in self.backends.values() for m in b.models)
        return sorted(names)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "models": self.models}


def _run(args: list[str], timeout: float = 10.0) -> str | None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def parse_nvidia_smi_csv(text: str) -> list[Gpu]:
    """Rows of `--query-gpu=name,memory.total,driver_version --format=csv,noheader,nounits`."""
    gpus = []
    for line in text.splitlines():
        parts = line.rsplit(",", 2)  # a GPU name may contain a comma; the numbers do not
        if len(parts) != 3:
            continue
        name, memory, driver = (p.strip() for p in parts)
        try:
            memory_mb = int(float(memory))
        except ValueError:
            memory_mb = 0  # "[N/A]" on some boards
        gpus.append(Gpu(name, memory_mb, driver))
    return gpus


def parse_cuda_version(text: str) -> str:
    """The "CUDA Version: 12.4" of plain `nvidia-smi`'s header, or ""."""
    m = re.search(r"CUDA Version\s*:\s*([0-9]+(?:\.[0-9]+)*)", text)
    return m.group(1) if m else ""


def probe_gpus() -> tuple[list[Gpu], str]:
    smi = find_program("nvidia-smi")
    if smi is None:
        return [], ""
    query = "--query-gpu=name,memory.total,driver_version"
    listing = _run([smi, query, "--format=csv,noheader,nounits"]) or ""
    return parse_nvidia_smi_csv(listing), parse_cuda_version(_run([smi]) or "")


def parse_meminfo(text: str) -> int:
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.M)
    return int(m.group(1)) // 1024 if m else 0


def probe_cpu() -> tuple[int, str, int]:
    """(usable cores, model name, total memory in MiB)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    cpuinfo = _read("/proc/cpuinfo")
    m = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    return cores, m.group(1).strip() if m else "", parse_meminfo(_read("/proc/meminfo"))


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def tool_version(name: str, output: str) -> str:
    """ "ffmpeg version 5.1.9-0+deb12u1 ..." -> 5.1.9-0+deb12u1; "Blender 4.2.1 LTS" -> 4.2.1."""
    first = output.strip().splitlines()[0] if output.strip() else ""
    m = re.search(r"(?:version|Blender)\s+(\S+)", first)
    return m.group(1) if m else first[:80]


def probe_tools(config: ExecutorConfig) -> dict[str, Tool]:
    tools = {}
    for name, program, flag in (
        ("ffmpeg", config.ffmpeg_path, "-version"),
        ("ffprobe", config.ffprobe_path, "-version"),
        ("blender", config.blender_path, "--version"),
    ):
        path = find_program(program)
        if path is None:
            continue
        output = _run([path, flag], timeout=30.0)
        if output is not None:
            tools[name] = Tool(name, path, tool_version(name, output))
    if "ffmpeg" in tools:
        try:
            encoders = ffmpeg_encoders(tools["ffmpeg"].path)
        except (OSError, subprocess.SubprocessError):
            encoders = frozenset()
        tools["ffmpeg"].features = [
            codec for codec, names in VIDEO_ENCODERS.items() if any(n in encoders for n in names)
        ]
    return tools


def probe_backend(service: str, config: ExecutorConfig, check: bool) -> BackendStatus:
    backend = config.backend(service)
    status = BackendStatus(service, backend.url, backend.model)
    if not check:
        return status
    headers = {"Authorization": f"Bearer {backend.api_key}"} if backend.api_key else {}
    try:
        resp = httpx.get(
            f"{backend.base_url}/v1/models", headers=headers, timeout=3.0, trust_env=False
        )
        resp.raise_for_status()
        data = resp.json().get("data", [])
        status.models = sorted(str(m["id"]) for m in data if isinstance(m, dict) and "id" in m)
        status.reachable = True
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        status.reachable, status.error = False, f"{type(exc).__name__}: {exc}"[:300]
    return status


def probe(config: ExecutorConfig, *, check_backends: bool = True) -> Capabilities:
    """Look at this machine. Blocking (runs programs, may call the backends): call it from a
    thread in async code."""
    gpus, cuda = probe_gpus()
    cores, cpu_model, memory_mb = probe_cpu()
    backends = {
        s: probe_backend(s, config, check_backends) for s in MODEL_SERVICES if config.backend(s).url
    }
    registry = build_registry(config)
    # A model service is offered only with a backend; the others when their executor exists.
    services = sorted(s for s in registry if s not in MODEL_SERVICES or s in backends)
    return Capabilities(
        gpus, cuda, cores, cpu_model, memory_mb, probe_tools(config), backends, services
    )


def format_probe(caps: Capabilities) -> str:
    """Human-readable report (for `aitbc-miner probe`)."""
    lines = []
    if caps.gpus:
        lines.append(f"GPUs ({len(caps.gpus)}), CUDA {caps.cuda_version or 'unknown'}:")
        lines += [f"  {g.name}  {g.memory_mb} MiB  driver {g.driver_version}" for g in caps.gpus]
    else:
        lines.append("GPUs: none found (CPU only)")
    lines.append(f"CPU: {caps.cpu_cores} cores  {caps.cpu_model or 'unknown model'}")
    lines.append(f"Memory: {caps.memory_mb} MiB")
    lines.append("Tools:" if caps.tools else "Tools: none of ffmpeg, ffprobe, blender found")
    for t in caps.tools.values():
        extra = f"  encodes {', '.join(t.features)}" if t.features else ""
        lines.append(f"  {t.name} {t.version}  ({t.path}){extra}")
    lines.append("Model backends:" if caps.backends else "Model backends: none configured")
    for b in caps.backends.values():
        state = {True: "reachable", False: f"unreachable ({b.error})", None: "not checked"}
        lines.append(f"  {b.service}: {b.url}  model {b.model or '-'}  {state[b.reachable]}")
        if b.models:
            lines.append(f"    lists: {', '.join(b.models[:20])}")
    lines.append(f"Services offered: {', '.join(caps.services) or 'none'}")
    return "\n".join(lines)
