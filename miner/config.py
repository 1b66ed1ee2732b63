"""The miner agent's configuration: AITBC_MINER_* environment and an optional env-format file."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from miner.executors.config import BackendConfig, ExecutorConfig

KiB, MiB, GiB = 1024, 1024**2, 1024**3
SERVICE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def _f(default, doc: str, **meta):
    return field(default=default, metadata={"doc": doc, **meta})


@dataclass(frozen=True)
class MinerConfig:
    coordinator: str = _f("127.0.0.1:50051", "gRPC address of the coordinator (host:port).")
    api_key: str = _f("", "This miner's API key (its id comes from the key).", secret=True)
    key_file: Path = _f(
        Path("miner.key"), "Ed25519 key signing result claims; created (0600) on first run."
    )
    slots: int = _f(1, "Jobs run at once.", min=1, max=256)
    region: str = _f("", "Region announced to the coordinator, e.g. eu-west.")
    services: str = _f(
        "",
        "Services offered with unit prices, e.g. ffmpeg=0.002,echo=0; empty: every runnable service at 0.",
    )
    models: tuple[str, ...] = _f((), "Model names announced to the coordinator.")
    heartbeat_interval_s: float = _f(5.0, "Heartbeat interval, seconds.", min=1, max=60)
    work_dir: Path = _f(Path("miner-work"), "Per-job temporary directories go here.")
    tls: bool = _f(False, "Connect to the coordinator with TLS.")
    tls_ca_file: Path | None = _f(None, "CA bundle for TLS (default: system roots).")
    reconnect_max_backoff_s: float = _f(
        30.0, "Longest wait between reconnect attempts, seconds.", min=1, max=600
    )
    llm_url: str = _f("", "OpenAI-compatible server for 'llm' (vLLM, Ollama, llama.cpp, LocalAI).")
    llm_model: str = _f("", "Default model for 'llm'.")
    llm_api_key: str = _f("", "API key of the llm backend.", secret=True)
    whisper_url: str = _f("", "OpenAI-compatible server for 'whisper' (audio/transcriptions).")
    whisper_model: str = _f("", "Default model for 'whisper'.")
    stable_diffusion_url: str = _f(
        "", "OpenAI-compatible server for 'stable-diffusion' (images/generations)."
    )
    stable_diffusion_model: str = _f("", "Default model for 'stable-diffusion'.")
    backend_timeout_s: float = _f(
        600.0, "Whole-request bound of backend calls, seconds.", min=1, max=86400
    )
    allow_private_downloads: bool = _f(False, "Allow job inputs from loopback/private addresses.")
    max_download_bytes: int = _f(4 * GiB, "Largest job input downloaded, bytes.", min=1, max=2**40)
    inline_result_max_bytes: int = _f(
        256 * KiB, "Larger results are uploaded as artifacts, bytes.", min=1024, max=16 * MiB
    )

    def __post_init__(self) -> None:
        offers(self.services)  # raises naming the key

    def executor_config(self) -> ExecutorConfig:
        def backend(url: str, model: str, key: str = "") -> BackendConfig:
            return BackendConfig(
                url=url, model=model, api_key=key, timeout_s=self.backend_timeout_s
            )

        return ExecutorConfig(
            llm=backend(self.llm_url, self.llm_model, self.llm_api_key),
            whisper=backend(self.whisper_url, self.whisper_model),
            stable_diffusion=backend(self.stable_diffusion_url, self.stable_diffusion_model),
            allow_private_downloads=self.allow_private_downloads,
            max_download_bytes=self.max_download_bytes,
            inline_result_max_bytes=self.inline_result_max_bytes,
        )


def offers(text: str) -> dict[str, str]:
    """`ffmpeg=0.002,echo=0` -> {"ffmpeg": "0.002", "echo": "0"}; errors name AITBC_MINER_SERVICES."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, price = part.partition("=")
        name, price = name.strip(), (price.strip() or "0")
        try:
            ok = SERVICE_RE.match(name) and Decimal(price) >= 0
        except InvalidOperation:
            ok = False
        if not ok:
            raise ValueError(
                f"AITBC_MINER_SERVICES: {part!r} must be service=unit_price, e.g. ffmpeg=0.002"
            )
        if name in out:
            raise ValueError(f"AITBC_MINER_SERVICES: {name!r} is listed twice")
        out[name] = price
    return out
