"""The blender service: render frames of a .blend file with the real blender in background mode."""

from __future__ import annotations

import asyncio
import re
import zipfile
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from miner.executors.base import ExecContext, ExecResult, ExecutionError, bad_params
from miner.executors.config import ExecutorConfig
from miner.executors.inputs import fetch_input
from miner.executors.params import InputRef, Params, as_int, parse_size
from miner.executors.process import Finished, failed, run_process

PARAMS = ("scene", "engine", "frames", "resolution", "samples", "format")
# Job engine name -> Blender's identifiers to try: EEVEE is BLENDER_EEVEE_NEXT in 4.2-4.x and
# BLENDER_EEVEE before and after; Workbench is BLENDER_WORKBENCH everywhere.
ENGINES = {
    "CYCLES": ("CYCLES",),
    "BLENDER_EEVEE_NEXT": ("BLENDER_EEVEE_NEXT", "BLENDER_EEVEE"),
    "BLENDER_EEVEE": ("BLENDER_EEVEE", "BLENDER_EEVEE_NEXT"),
    "EEVEE": ("BLENDER_EEVEE_NEXT", "BLENDER_EEVEE"),
    "WORKBENCH": ("BLENDER_WORKBENCH",),
    "BLENDER_WORKBENCH": ("BLENDER_WORKBENCH",),
}
FORMATS = {  # -F value -> (extension, content type)
    "PNG": (".png", "image/png"),
    "JPEG": (".jpg", "image/jpeg"),
    "OPEN_EXR": (".exr", "image/x-exr"),
}
MAX_FRAME = 1_048_574  # Blender's MAXFRAME


@dataclass(frozen=True)
class RenderOptions:
    engine: str | None
    start: int
    end: int
    width: int | None
    height: int | None
    samples: int | None
    format: str

    @property
    def frame_count(self) -> int:
        return self.end - self.start + 1


def parse_render(raw: Mapping[str, Any], max_frames: int) -> tuple[InputRef, RenderOptions]:
    p = Params(raw, PARAMS)
    scene = p.input_ref("scene")
    engine = p.text("engine", None, choices=tuple(ENGINES))
    start, end = _frames(p.raw.get("frames"))
    if end - start + 1 > max_frames:
        raise bad_params("frames", f"at most {max_frames} frames per job, got {end - start + 1}")
    width = height = None
    if p.has("resolution"):
        width, height = parse_size("resolution", p.raw["resolution"], max_w=16384, max_h=16384)
    samples = p.integer("samples", None, lo=1, hi=65536)
    fmt = p.text("format", "PNG", choices=tuple(FORMATS))
    return scene, RenderOptions(engine, start, end, width, height, samples, fmt)


def _frames(value: Any) -> tuple[int, int]:
    """1 frame (a number), "START-END", or {"start": S, "end": E}; default frame 1."""
    if value is None:
        return 1, 1
    if isinstance(value, Mapping):
        extra = set(value) - {"start", "end"}
        if extra:
            raise bad_params(f"frames.{sorted(extra)[0]}", "unknown field (known: start, end)")
        if "start" not in value:
            raise bad_params("frames.start", "is required")
        start = as_int("frames.start", value["start"], 0, MAX_FRAME)
        end = as_int("frames.end", value.get("end", start), 0, MAX_FRAME)
    elif isinstance(value, str):
        m = re.fullmatch(r"(\d{1,7})(?:-(\d{1,7}))?", value)
        if not m:
            raise bad_params("frames", f"must be N, 'START-END' or {{start, end}}, got {value!r}")
        start = as_int("frames", int(m.group(1)), 0, MAX_FRAME)
        end = as_int("frames", int(m.group(2) or m.group(1)), 0, MAX_FRAME)
    else:
        start = end = as_int("frames", value, 0, MAX_FRAME)
    if end < start:
        raise bad_params("frames", f"end {end} is before start {start}")
    return start, end


# Run inside blender after the file is loaded. Only validated integers and fixed names are
# substituted into it; nothing from the job is pasted in as text.
_CYCLES_DEVICE = """
if s.render.engine == 'CYCLES':
    prefs = bpy.context.preferences.addons['cycles'].preferences
    s.cycles.device = 'CPU'
    for kind in {kinds!r}:
        try:
            prefs.compute_device_type = kind
        except TypeError:
            continue
        prefs.get_devices()
        if any(d.type == kind for d in prefs.devices):
            for d in prefs.devices:
                d.use = d.type == kind
            s.cycles.device = 'GPU'
            break
"""


_ENGINE = """
for name in {names!r}:
    try:
        s.render.engine = name
        break
    except TypeError:
        continue
else:
    raise RuntimeError('render engine {engine} is not available in this blender')
"""

# Some builds (Debian's, for one) lack OpenImageDenoise: a Cycles scene that asks for
# denoising renders nothing there ("Build without OpenImageDenoiser"), so it is turned off.
_NO_OIDN = """
if s.render.engine == 'CYCLES' and s.cycles.use_denoising:
    import _cycles
    if s.cycles.denoiser in ('', 'OPENIMAGEDENOISE') and not getattr(_cycles, 'with_openimagedenoise', True):
        print('aitbc: this blender has no OpenImageDenoise; rendering without denoising')
        s.cycles.use_denoising = False
"""


def render_script(opts: RenderOptions, cycles_device: str) -> str:
    lines = ["import bpy", "s = bpy.context.scene"]
    if opts.engine is not None:
        lines.append(_ENGINE.format(names=ENGINES[opts.engine], engine=opts.engine))
    lines.append(_NO_OIDN)
    if opts.width is not None:
        lines += [
            f"s.render.resolution_x = {opts.width:d}",
            f"s.render.resolution_y = {opts.height:d}",
        ]
        lines.append("s.render.resolution_percentage = 100")
    if opts.samples is not None:
        lines.append(f"if s.render.engine == 'CYCLES': s.cycles.samples = {opts.samples:d}")
        lines.append(
            f"if s.render.engine.startswith('BLENDER_EEVEE'): s.eevee.taa_render_samples = {opts.samples:d}"
        )
    if cycles_device != "CPU":
        kinds = (
            ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")
            if cycles_device == "auto"
            else (cycles_device,)
        )
        lines.append(_CYCLES_DEVICE.format(kinds=kinds))
    return "\n".join(lines)


def build_args(
    blender: str, scene: Path, outdir: Path, opts: RenderOptions, cycles_device: str
) -> list[str]:
    """Blender applies its arguments in order: file, script (engine and settings), output,
    frames, render. The engine is set from the script, which can try the names it has."""
    # -Y: never run Python embedded in the (untrusted) .blend file; a failing script exits 3.
    args = [blender, "-b", "-Y", str(scene), "--python-exit-code", "3"]
    args += ["--python-expr", render_script(opts, cycles_device)]
    args += ["-o", str(outdir / "frame_#####"), "-F", opts.format, "-x", "1"]
    args += ["-s", str(opts.start), "-e", str(opts.end), "-a"]
    return args


class BlenderProgress:
    """Reads blender's stdout: "Fra:N ..." status lines, samples/tiles, and "Saved:" lines."""

    _sub = re.compile(
        r"(?:Sample (\d+)/(\d+)|Rendering (\d+) / (\d+) samples|Rendered (\d+)/(\d+) Tiles)"
    )

    def __init__(self, opts: RenderOptions, report: Callable[[float, str], None]):
        self.opts, self.report = opts, report
        self.saved = 0
        self.lines: deque[str] = deque(maxlen=30)  # the tail, for error messages

    def feed(self, line: str) -> None:
        self.lines.append(line)
        total = self.opts.frame_count
        if line.startswith("Saved:"):
            self.saved += 1
            self.report(min(self.saved / total, 0.99), f"saved frame {self.saved}/{total}")
            return
        m = re.match(r"Fra:(\d+)\b", line)
        if not m:
            return
        within = 0.0
        if sub := self._sub.search(line):
            done, of = (int(g) for g in sub.groups() if g is not None)
            within = done / of if of else 0.0
        fraction = min((self.saved + min(within, 1.0)) / total, 0.99)
        self.report(fraction, f"rendering frame {m.group(1)} ({self.saved}/{total} done)")


class BlenderExecutor:
    """Renders `frames` of the `scene` .blend; one frame is an image, several are a zip."""

    service = "blender"

    def __init__(self, config: ExecutorConfig, blender: str):
        self.config = config
        self.blender = blender

    async def run(self, params: Mapping[str, Any], ctx: ExecContext) -> ExecResult:
        source, opts = parse_render(params, self.config.blender_max_frames)
        ctx.progress(0.0, "downloading scene")
        scene = ctx.workdir / "scene.blend"
        await fetch_input(source, scene, self.config, "scene")
        outdir = ctx.workdir / "out"
        outdir.mkdir()
        tracker = BlenderProgress(opts, ctx.progress)
        args = build_args(self.blender, scene, outdir, opts, self.config.blender_cycles_device)
        finished = await run_process(args, cwd=ctx.workdir, on_stdout=tracker.feed)
        if finished.returncode != 0:
            raise failed("blender", _with_stdout(finished, tracker))
        ext, ctype = FORMATS[opts.format]
        frames = sorted(outdir.glob(f"frame_*{ext}"))
        if len(frames) != opts.frame_count:
            detail = "\n".join(list(tracker.lines)[-10:])
            raise ExecutionError(
                "execution_failed",
                f"blender wrote {len(frames)} of {opts.frame_count} frames: {detail[-1500:]}",
                False,
            )
        ctx.progress(0.99, "storing output")
        if len(frames) == 1:
            info = await ctx.artifacts.put(frames[0], ctype)
        else:
            archive = ctx.workdir / "frames.zip"
            await asyncio.to_thread(_zip, frames, archive)
            info = await ctx.artifacts.put(archive, "application/zip")
        ctx.progress(1.0, "done")
        return ExecResult(artifact=info, units_hint=opts.frame_count)


def _with_stdout(finished: Finished, tracker: BlenderProgress) -> Finished:
    # Blender reports most errors on stdout, which the tracker consumed.
    return Finished(finished.returncode, "\n".join([*list(tracker.lines)[-15:], finished.tail]))


def _zip(frames: list[Path], archive: Path) -> None:
    # Image formats are compressed already: storing is as small and much faster.
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for frame in frames:
            zf.write(frame, frame.name)
