"""Fetching a job's input file with the configured download guards."""

from __future__ import annotations

from pathlib import Path

from miner.artifacts import Downloaded, download
from miner.executors.base import ExecutionError
from miner.executors.config import ExecutorConfig
from miner.executors.params import InputRef


async def fetch_input(ref: InputRef, dest: Path, config: ExecutorConfig, field: str) -> Downloaded:
    """Download `ref` to `dest`; errors keep their code and name the parameter."""
    try:
        return await download(
            ref.url,
            dest,
            max_bytes=config.max_download_bytes,
            allow_private=config.allow_private_downloads,
            expected_sha256=ref.sha256,
            timeout_s=config.download_timeout_s,
        )
    except ExecutionError as exc:
        raise ExecutionError(exc.code, f"{field}: {exc.message}", exc.retryable) from exc
