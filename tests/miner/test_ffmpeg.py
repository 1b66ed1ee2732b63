"""The ffmpeg executor with the real ffmpeg: transcode from a loopback URL, cancel mid-run."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from miner.executors import ExecutionError, ExecutorConfig
from miner.executors.ffmpeg import FfmpegExecutor


def executor(ffmpeg_bin: str) -> FfmpegExecutor:
    config = ExecutorConfig(allow_private_downloads=True)
    return FfmpegExecutor(config, ffmpeg_bin, shutil.which("ffprobe") or "ffprobe")


def ffprobe_video(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,width,height", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)["streams"][0]


async def test_transcode_from_url_to_small_h264(
    ffmpeg_bin, clip_2s, file_server, make_runner, store
) -> None:
    shutil.copy(clip_2s, file_server.directory / "clip.mp4")
    progress: list[tuple[float, str]] = []
    runner = make_runner(
        {"ffmpeg": executor(ffmpeg_bin)},
        on_progress=lambda _lease, f, m: progress.append((f, m)),
        progress_interval_s=0.0,  # keep every update: the test looks at the whole curve
    )
    params = {"input": f"{file_server.url}/files/clip.mp4", "codec": "h264", "resolution": "160x120",
              "preset": "ultrafast", "crf": 30, "audio_bitrate": "64k", "container": "mp4"}  # fmt: skip
    result = await runner.start("L1", "J1", "ffmpeg", params)
    info = result.artifact
    stored = store.path_for(info.sha256)
    assert info.content_type == "video/mp4" and info.size_bytes == stored.stat().st_size
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == info.sha256
    assert ffprobe_video(stored) == {"codec_name": "h264", "width": 160, "height": 120}
    assert result.units_hint == pytest.approx(2.0, abs=0.1)
    fractions = [f for f, _ in progress]
    assert fractions[0] < 0.5 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert any(m.startswith("transcod") for _, m in progress)
    assert list(runner.work_dir.iterdir()) == []


async def test_artifact_input_is_verified(ffmpeg_bin, clip_2s, file_server, make_runner) -> None:
    shutil.copy(clip_2s, file_server.directory / "clip.mp4")
    digest = hashlib.sha256(clip_2s.read_bytes()).hexdigest()
    runner = make_runner({"ffmpeg": executor(ffmpeg_bin)})
    url = f"{file_server.url}/files/clip.mp4"
    ok = await runner.start("L1", "J1", "ffmpeg", {"input": {"url": url, "sha256": digest},
                                                   "codec": "copy", "container": "mkv"})  # fmt: skip
    assert ok.artifact.content_type == "video/x-matroska"
    with pytest.raises(ExecutionError) as err:
        await runner.start("L2", "J2", "ffmpeg", {"input": {"url": url, "sha256": "0" * 64}})
    assert err.value.code == "checksum_mismatch" and err.value.message.startswith("input:")


async def test_unreadable_input_fails_without_retry(ffmpeg_bin, file_server, make_runner) -> None:
    (file_server.directory / "notes.txt").write_text("this is not a video\n" * 10)
    runner = make_runner({"ffmpeg": executor(ffmpeg_bin)})
    with pytest.raises(ExecutionError) as err:
        await runner.start("L1", "J1", "ffmpeg", {"input": f"{file_server.url}/files/notes.txt"})
    assert (err.value.code, err.value.retryable) == ("execution_failed", False)
    assert "input:" in err.value.message


async def test_cancel_kills_ffmpeg_and_removes_the_workdir(
    ffmpeg_bin, clip_60s, file_server, make_runner, procs
) -> None:
    shutil.copy(clip_60s, file_server.directory / "long.mp4")
    transcoding = asyncio.Event()

    def on_progress(_lease: str, _fraction: float, message: str) -> None:
        if message.startswith("transcoding"):
            transcoding.set()

    runner = make_runner({"ffmpeg": executor(ffmpeg_bin)}, on_progress=on_progress)
    # 60 s upscaled to 720p at veryslow takes minutes here: still running when we cancel.
    params = {
        "input": f"{file_server.url}/files/long.mp4",
        "resolution": "1280x720",
        "preset": "veryslow",
    }
    task = runner.start("L1", "J1", "ffmpeg", params)
    await asyncio.wait_for(transcoding.wait(), 30)
    (workdir,) = list(runner.work_dir.iterdir())
    pids = procs.using(str(workdir))
    assert pids, "ffmpeg should be running"
    assert runner.cancel("L1", "test")
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not workdir.exists()
    assert procs.alive(pids) == [], "ffmpeg survived the cancel"
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)
