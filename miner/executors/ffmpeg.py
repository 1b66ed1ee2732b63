"""The ffmpeg service: download the input, transcode with the real ffmpeg, store the output."""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from miner.executors.base import ExecContext, ExecResult, ExecutionError
from miner.executors.config import ExecutorConfig
from miner.executors.ffmpeg_args import build_args, parse_transcode
from miner.executors.inputs import fetch_input
from miner.executors.process import failed, run_process


@functools.lru_cache(maxsize=8)
def ffmpeg_encoders(ffmpeg: str) -> frozenset[str]:
    """Encoder names of this ffmpeg build (`ffmpeg -encoders`), asked once per binary."""
    out = subprocess.run(
        [ffmpeg, "-hide_banner", "-encoders"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    listing = out.split("------", 1)[-1]
    return frozenset(m.group(1) for m in re.finditer(r"^\s*[VAS][A-Z.]{5}\s+(\S+)", listing, re.M))


async def probe_duration(ffprobe: str, path: Path, cwd: Path) -> float | None:
    """The input's duration in seconds, None when the container does not say."""
    lines: list[str] = []
    args = [ffprobe, "-v", "error", "-show_entries", "format=duration"]
    args += ["-of", "default=noprint_wrappers=1:nokey=1", str(path)]
    finished = await run_process(args, cwd=cwd, on_stdout=lines.append)
    if finished.returncode != 0:
        detail = finished.tail.strip()[-500:]
        raise ExecutionError("execution_failed", f"input: ffprobe cannot read it: {detail}", False)
    try:
        duration = float(lines[0])
    except (IndexError, ValueError):
        return None
    return duration if duration > 0 else None


class ProgressParser:
    """Turns `-progress pipe:1` blocks (key=value lines ending in progress=...) into fractions."""

    def __init__(self, duration_s: float | None, report: Callable[[float, str], None]):
        self.duration_s = duration_s
        self.report = report
        self.block: dict[str, str] = {}

    def feed(self, line: str) -> None:
        key, sep, value = line.partition("=")
        if not sep:
            return
        self.block[key.strip()] = value.strip()
        if key.strip() != "progress":
            return
        block, self.block = self.block, {}
        # out_time_us is the newer name; out_time_ms has always been microseconds too.
        raw = block.get("out_time_us") or block.get("out_time_ms") or ""
        seconds = int(raw) / 1e6 if raw.lstrip("-").isdigit() else 0.0
        seconds = max(0.0, seconds)
        speed = block.get("speed", "").strip()
        if self.duration_s:
            fraction = min(seconds / self.duration_s, 1.0)
            message = f"transcoding {seconds:.1f}/{self.duration_s:.1f}s"
        else:
            fraction, message = 0.0, f"transcoding {seconds:.1f}s"
        if speed and speed != "N/A":
            message += f" at {speed}"
        if block["progress"] == "end":
            fraction, message = 1.0, "transcoded"
        # Below 1.0 until the output is stored.
        self.report(min(fraction, 0.99), message)


class FfmpegExecutor:
    """Transcodes the `input` URL/artifact (see ffmpeg_args.PARAMS) to an artifact."""

    service = "ffmpeg"

    def __init__(self, config: ExecutorConfig, ffmpeg: str, ffprobe: str):
        self.config = config
        self.ffmpeg = ffmpeg
        self.ffprobe = ffprobe
        # Asked here, at start-up, so no job blocks the event loop on it.
        self.encoders = ffmpeg_encoders(ffmpeg)

    async def run(self, params: Mapping[str, Any], ctx: ExecContext) -> ExecResult:
        source, opts = parse_transcode(params, self.encoders)
        ctx.progress(0.0, "downloading input")
        src = ctx.workdir / "input"
        await fetch_input(source, src, self.config, "input")
        ctx.progress(0.0, "probing input")
        duration = await probe_duration(self.ffprobe, src, ctx.workdir)
        dest = ctx.workdir / f"output{opts.extension}"
        parser = ProgressParser(duration, ctx.progress)
        args = build_args(self.ffmpeg, src, dest, opts)
        finished = await run_process(args, cwd=ctx.workdir, on_stdout=parser.feed)
        if finished.returncode != 0:
            raise failed("ffmpeg", finished)
        ctx.progress(0.99, "storing output")
        info = await ctx.artifacts.put(dest, opts.content_type)
        ctx.progress(1.0, "done")
        return ExecResult(artifact=info, units_hint=duration)
