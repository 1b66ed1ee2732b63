"""build_registry: the executors that can run on this machine, by service name."""

from __future__ import annotations

import shutil

from miner.executors.base import Executor
from miner.executors.config import ExecutorConfig


def find_program(name: str) -> str | None:
    """The absolute path of a program name or path, None when it is not there."""
    return shutil.which(name)


def build_registry(config: ExecutorConfig) -> dict[str, Executor]:
    """Services whose executor can run here. Model services are always present (a job for an
    unconfigured one fails with backend_not_configured); ffmpeg and blender need their binary.
    """
    # Imported here so that miner.artifacts can import miner.executors.base without a cycle.
    from miner.executors.blender import BlenderExecutor
    from miner.executors.builtin import EchoExecutor, Sha256Executor, SleepExecutor
    from miner.executors.ffmpeg import FfmpegExecutor
    from miner.executors.images import ImageExecutor
    from miner.executors.llm import LlmExecutor
    from miner.executors.whisper import WhisperExecutor

    executors: list[Executor] = [
        LlmExecutor(config.llm),
        WhisperExecutor(config),
        ImageExecutor(config.stable_diffusion),
    ]
    if config.builtin_services:
        executors += [EchoExecutor(), Sha256Executor(), SleepExecutor()]
    ffmpeg, ffprobe = find_program(config.ffmpeg_path), find_program(config.ffprobe_path)
    if ffmpeg and ffprobe:
        executors.append(FfmpegExecutor(config, ffmpeg, ffprobe))
    if blender := find_program(config.blender_path):
        executors.append(BlenderExecutor(config, blender))
    return {executor.service: executor for executor in executors}
