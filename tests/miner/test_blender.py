"""The blender executor: validation, argument order, progress parsing, packaging, cancel."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from miner.executors import ExecutionError, ExecutorConfig
from miner.executors.blender import (
    BlenderExecutor,
    BlenderProgress,
    RenderOptions,
    build_args,
    parse_render,
)

SCENE = "https://files.example/scene.blend"

# Stands in for blender where it is not installed: honours -o/-F/-s/-e like blender does,
# prints blender-style status lines, and sleeps after frame 1 when the scene says "slow".
FAKE_BLENDER = r"""
import os, sys, time
args = sys.argv[1:]
if args == ["--version"]:
    print("Blender 4.2.1 LTS\n\tbuild date: 2024-08-19"); sys.exit(0)
def opt(flag):
    return args[args.index(flag) + 1]
scene, pattern, fmt = args[2], opt("-o"), opt("-F")
start, end = int(opt("-s")), int(opt("-e"))
assert args[:2] == ["-b", "-Y"] and args[-1] == "-a" and "--python-expr" in args
if open(scene, "rb").read().startswith(b"broken"):
    print("Error: File format is not supported in file '%s'" % scene); sys.exit(1)
ext = {"PNG": ".png", "JPEG": ".jpg", "OPEN_EXR": ".exr"}[fmt]
for frame in range(start, end + 1):
    for sample in (1, 2):
        print(f"Fra:{frame} Mem:12.85M (Peak 13.53M) | Time:00:00.29 | Scene, ViewLayer | Sample {sample}/2", flush=True)
    if open(scene, "rb").read().startswith(b"slow"):
        time.sleep(600)
    out = pattern.replace("#####", f"{frame:05d}") + ext
    with open(out, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + f"frame {frame}".encode())
    print(f"Saved: '{out}'", flush=True)
print("Blender quit")
"""


@pytest.fixture
def fake_blender(tmp_path: Path) -> str:
    path = tmp_path / "bin" / "blender"
    path.parent.mkdir()
    path.write_text(f"#!{sys.executable}\n{FAKE_BLENDER}")
    path.chmod(0o755)
    return str(path)


def test_parse_and_argument_order() -> None:
    ref, opts = parse_render({"scene": SCENE, "engine": "CYCLES", "frames": {"start": 3, "end": 5.0},
                              "resolution": "640x360", "samples": 16, "format": "JPEG"}, 100)  # fmt: skip
    assert ref.url == SCENE and opts.frame_count == 3
    args = build_args("/opt/blender", Path("/w/scene.blend"), Path("/w/out"), opts, "auto")
    assert args[:4] == ["/opt/blender", "-b", "-Y", "/w/scene.blend"]  # file first, autoexec off
    assert "-E" not in args  # the engine is chosen by the script (names differ by version)
    assert args[args.index("--python-exit-code") + 1] == "3"  # a failing script fails the run
    assert args[-9:] == ["-F", "JPEG", "-x", "1", "-s", "3", "-e", "5", "-a"]
    assert args[args.index("-o") + 1] == "/w/out/frame_#####"
    assert args.index("--python-expr") < args.index("-o") < args.index("-a")
    script = args[args.index("--python-expr") + 1]
    assert "CYCLES" in script and "render.engine" in script
    assert "s.render.resolution_x = 640" in script and "s.render.resolution_y = 360" in script
    assert "s.cycles.samples = 16" in script and "taa_render_samples = 16" in script
    assert "'OPTIX', 'CUDA'" in script
    compile(script, "<render>", "exec")  # what blender will run is valid Python
    _ref, plain = parse_render({"scene": SCENE}, 100)
    assert (plain.start, plain.end, plain.format, plain.engine) == (1, 1, "PNG", None)
    cpu = build_args("b", Path("s"), Path("o"), plain, "CPU")
    assert "-E" not in cpu and "prefs" not in cpu[cpu.index("--python-expr") + 1]
    assert parse_render({"scene": SCENE, "frames": "10-12"}, 100)[1].frame_count == 3
    _ref, wb = parse_render({"scene": SCENE, "engine": "WORKBENCH"}, 100)
    wb_args = build_args("b", Path("s"), Path("o"), wb, "CPU")
    assert "('BLENDER_WORKBENCH',)" in wb_args[wb_args.index("--python-expr") + 1]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "scene: is required"),
        ({"engine": "POVRAY"}, "engine:"),
        ({"frames": {"start": 5, "end": 2}}, "frames: end 2 is before start 5"),
        ({"frames": {"end": 2}}, "frames.start: is required"),
        ({"frames": {"start": 1, "step": 2}}, "frames.step:"),
        ({"frames": "1..5"}, "frames:"),
        ({"frames": {"start": 1, "end": 101}}, "frames: at most 100 frames"),
        ({"frames": -1}, "frames:"),
        ({"resolution": "640"}, "resolution:"),
        ({"samples": 0}, "samples:"),
        ({"format": "GIF"}, "format:"),
        ({"python": "import os"}, "python: unknown parameter"),
    ],
)
def test_validation_errors_name_the_field(params: dict, field: str) -> None:
    with pytest.raises(ExecutionError) as err:
        parse_render(
            {"scene": SCENE, **params} if "scene" not in params and params else params, 100
        )
    assert err.value.code == "bad_params" and err.value.message.startswith(field), err.value.message


def test_progress_from_status_lines() -> None:
    events: list = []
    opts = RenderOptions(None, 1, 2, None, None, None, "PNG")
    tracker = BlenderProgress(opts, lambda f, m: events.append(round(f, 3)))
    for line in ["Blender 4.2.1", "Fra:1 Mem:1M | Time:00:00.1 | Sample 32/128",
                 "Saved: '/w/out/frame_00001.png'", "Fra:2 Mem:1M | Rendering 8 / 16 samples",
                 "Fra:2 Mem:1M | Rendered 4/4 Tiles", "Saved: '/w/out/frame_00002.png'"]:  # fmt: skip
        tracker.feed(line)
    assert events == [0.125, 0.5, 0.75, 0.99, 0.99]


async def test_fake_blender_renders_one_frame_and_a_zip(
    fake_blender, file_server, make_runner, store
) -> None:
    (file_server.directory / "scene.blend").write_bytes(b"BLENDER-v402 fake scene")
    config = ExecutorConfig(allow_private_downloads=True, blender_path=fake_blender)
    progress: list = []
    runner = make_runner({"blender": BlenderExecutor(config, fake_blender)},
                         on_progress=lambda _l, f, m: progress.append(f), progress_interval_s=0.0)  # fmt: skip
    url = f"{file_server.url}/files/scene.blend"
    one = await runner.start("L1", "J1", "blender", {"scene": url, "frames": 7})
    assert one.artifact.content_type == "image/png"
    assert store.path_for(one.artifact.sha256).read_bytes().endswith(b"frame 7")
    assert progress[-1] == 1.0
    many = await runner.start(
        "L2", "J2", "blender", {"scene": url, "frames": {"start": 1, "end": 3}}
    )
    assert many.artifact.content_type == "application/zip" and many.units_hint == 3
    with zipfile.ZipFile(store.path_for(many.artifact.sha256)) as zf:
        assert zf.namelist() == ["frame_00001.png", "frame_00002.png", "frame_00003.png"]
    (file_server.directory / "broken.blend").write_bytes(b"broken")
    with pytest.raises(ExecutionError) as err:
        await runner.start(
            "L3", "J3", "blender", {"scene": f"{file_server.url}/files/broken.blend"}
        )
    assert err.value.code == "execution_failed" and "not supported" in err.value.message


async def test_cancel_kills_blender(fake_blender, file_server, make_runner, procs) -> None:
    (file_server.directory / "slow.blend").write_bytes(b"slow scene")
    config = ExecutorConfig(allow_private_downloads=True)
    rendering = asyncio.Event()
    runner = make_runner({"blender": BlenderExecutor(config, fake_blender)},
                         on_progress=lambda _l, f, m: m.startswith("rendering") and rendering.set())  # fmt: skip
    task = runner.start("L1", "J1", "blender", {"scene": f"{file_server.url}/files/slow.blend"})
    await asyncio.wait_for(rendering.wait(), 30)
    (workdir,) = list(runner.work_dir.iterdir())
    pids = procs.using(str(workdir))
    assert pids, "the fake blender should be running"
    runner.cancel("L1", "test")
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not workdir.exists()
    assert procs.alive(pids) == []


async def test_real_blender_render(file_server, make_runner, store, tmp_path: Path) -> None:
    blender = shutil.which("blender")
    if blender is None:
        pytest.skip("blender is not installed: the real-render test needs the blender binary")
    scene = file_server.directory / "cube.blend"
    save = f"import bpy; bpy.ops.wm.save_as_mainfile(filepath={str(scene)!r})"
    args = [blender, "-b", "--factory-startup", "--python-expr", save]
    await asyncio.to_thread(subprocess.run, args, check=True, capture_output=True, timeout=120)
    config = ExecutorConfig(allow_private_downloads=True, blender_cycles_device="CPU")
    runner = make_runner({"blender": BlenderExecutor(config, blender)})
    params = {
        "scene": f"{file_server.url}/files/cube.blend",
        "engine": "WORKBENCH",
        "resolution": "64x48",
    }
    result = await runner.start("L1", "J1", "blender", params)
    data = store.path_for(result.artifact.sha256).read_bytes()
    assert data.startswith(b"\x89PNG") and result.artifact.content_type == "image/png"
    assert data[12:16] == b"IHDR" and data[16:24] == (64).to_bytes(4) + (48).to_bytes(4)
