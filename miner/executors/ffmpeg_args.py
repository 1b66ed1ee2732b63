"""Transcode parameters -> validated options -> an ffmpeg argument list (never a shell line)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from miner.executors.base import bad_params
from miner.executors.params import InputRef, Params, as_int, parse_size

PARAMS = (
    "input", "codec", "preset", "crf", "resolution", "bitrate", "fps",
    "audio_codec", "audio_bitrate", "container", "format",
)  # fmt: skip

# Software encoders by preference; the first one present in `ffmpeg -encoders` is used.
VIDEO_ENCODERS = {
    "h264": ("libx264",),
    "hevc": ("libx265",),
    "vp9": ("libvpx-vp9",),
    "av1": ("libsvtav1", "libaom-av1"),
}
AUDIO_ENCODERS = {"aac": "aac", "opus": "libopus", "mp3": "libmp3lame", "vorbis": "libvorbis"}
CRF_MAX = {"libx264": 51, "libx265": 51, "libvpx-vp9": 63, "libsvtav1": 63, "libaom-av1": 63}

# One preset vocabulary (x264's) for every codec; mapped to each encoder's speed knob.
PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast",
    "medium", "slow", "slower", "veryslow", "placebo",
)  # fmt: skip
_SPEED = {  # encoder -> (option, value per preset in PRESETS order)
    "libvpx-vp9": ("-cpu-used", (5, 5, 4, 4, 3, 2, 1, 1, 0, 0)),
    "libsvtav1": ("-preset", (12, 11, 10, 9, 8, 6, 4, 3, 2, 1)),
    "libaom-av1": ("-cpu-used", (8, 8, 7, 6, 5, 4, 3, 2, 1, 0)),
}

# container -> (ffmpeg muxer, content type, extension, video codecs, audio codecs)
CONTAINERS: dict[str, tuple[str, str, str, Collection[str], Collection[str]]] = {
    "mp4": ("mp4", "video/mp4", ".mp4", ("h264", "hevc", "vp9", "av1"), ("aac", "mp3", "opus")),
    "mkv": ("matroska", "video/x-matroska", ".mkv", tuple(VIDEO_ENCODERS), tuple(AUDIO_ENCODERS)),
    "webm": ("webm", "video/webm", ".webm", ("vp9", "av1"), ("opus", "vorbis")),
}
_RATE = r"[1-9][0-9]{0,8}(\.[0-9]{1,3})?[kKmM]?"


@dataclass(frozen=True)
class TranscodeOptions:
    codec: str  # h264 | hevc | vp9 | av1 | copy
    encoder: str | None  # None for copy
    container: str
    preset: str | None = None
    crf: int | None = None
    width: int | None = None  # None with a height: keep the aspect ratio
    height: int | None = None
    bitrate: str | None = None
    fps: float | None = None
    audio_codec: str = "aac"  # a key of AUDIO_ENCODERS, "copy" or "none"
    audio_bitrate: str | None = None

    @property
    def content_type(self) -> str:
        return CONTAINERS[self.container][1]

    @property
    def extension(self) -> str:
        return CONTAINERS[self.container][2]


def _rate_bps(value: str) -> float:
    scale = {"k": 1e3, "m": 1e6}.get(value[-1].lower(), 1.0)
    return float(value.rstrip("kKmM")) * scale


def parse_transcode(
    raw: Mapping[str, Any], encoders: Collection[str]
) -> tuple[InputRef, TranscodeOptions]:
    """Validate the parameters against the encoders this ffmpeg has."""
    p = Params(raw, PARAMS)
    source = p.input_ref("input")
    container = _container(p)
    _muxer, _ctype, _ext, video_ok, audio_ok = CONTAINERS[container]
    codec = p.text("codec", "h264", choices=(*VIDEO_ENCODERS, "copy"), lower=True)
    if codec != "copy" and codec not in video_ok:
        raise bad_params("codec", f"{codec} cannot go in {container} (use {', '.join(video_ok)})")
    encoder = None
    if codec != "copy":
        encoder = next((e for e in VIDEO_ENCODERS[codec] if e in encoders), None)
        if encoder is None:
            raise bad_params(
                "codec", f"{codec}: no encoder in this ffmpeg ({'/'.join(VIDEO_ENCODERS[codec])})"
            )
    else:
        for name in ("preset", "crf", "resolution", "bitrate", "fps"):
            if p.has(name):
                raise bad_params(name, "cannot be used with codec copy")
    preset = p.text("preset", None, choices=PRESETS, lower=True)
    crf = p.integer("crf", None, lo=0, hi=CRF_MAX.get(encoder or "", 0))
    bitrate = p.text("bitrate", None, pattern=_RATE, max_len=20)
    if bitrate is not None and not 10e3 <= _rate_bps(bitrate) <= 500e6:
        raise bad_params("bitrate", f"must be between 10k and 500M, got {bitrate}")
    if bitrate is not None and crf is not None and codec in ("h264", "hevc"):
        raise bad_params("bitrate", f"cannot be combined with crf for {codec} (pick one)")
    width, height = _resolution(p)
    fps = p.number("fps", None, lo=1, hi=240)
    default_audio = "copy" if codec == "copy" else ("opus" if container == "webm" else "aac")
    audio = p.text(
        "audio_codec", default_audio, choices=(*AUDIO_ENCODERS, "copy", "none"), lower=True
    )
    if audio in AUDIO_ENCODERS:
        if audio not in audio_ok:
            raise bad_params(
                "audio_codec", f"{audio} cannot go in {container} (use {', '.join(audio_ok)})"
            )
        if AUDIO_ENCODERS[audio] not in encoders:
            raise bad_params(
                "audio_codec", f"{audio}: encoder {AUDIO_ENCODERS[audio]} is not in this ffmpeg"
            )
    audio_bitrate = p.text("audio_bitrate", None, pattern=_RATE, max_len=20)
    if audio_bitrate is not None:
        if audio not in AUDIO_ENCODERS:
            raise bad_params("audio_bitrate", f"cannot be used with audio_codec {audio}")
        if not 8e3 <= _rate_bps(audio_bitrate) <= 1e6:
            raise bad_params("audio_bitrate", f"must be between 8k and 1M, got {audio_bitrate}")
    return source, TranscodeOptions(
        codec, encoder, container, preset, crf, width, height, bitrate, fps, audio, audio_bitrate
    )


def _container(p: Params) -> str:
    container = p.text("container", None, choices=tuple(CONTAINERS), lower=True)
    fmt = p.text("format", None, choices=tuple(CONTAINERS), lower=True)
    if container and fmt and container != fmt:
        raise bad_params("format", f"{fmt!r} contradicts container {container!r}")
    return container or fmt or "mp4"


def _resolution(p: Params) -> tuple[int | None, int | None]:
    value = p.raw.get("resolution")
    if value is None:
        return None, None
    if isinstance(value, str) and "x" in value:
        width, height = parse_size("resolution", value)
    else:
        text = value[:-1] if isinstance(value, str) and value.endswith("p") else value
        if isinstance(text, str):
            if not re.fullmatch(r"\d{1,5}", text):
                raise bad_params("resolution", f"must be WIDTHxHEIGHT or a height, got {value!r}")
            text = int(text)
        width, height = None, as_int("resolution", text, 16, 8192)
    # 4:2:0 video needs even dimensions.
    if height % 2 or (width is not None and width % 2):
        raise bad_params("resolution", f"width and height must be even, got {value!r}")
    return width, height


def build_args(ffmpeg: str, src: Path, dest: Path, opts: TranscodeOptions) -> list[str]:
    """The full argv: progress as key=value lines on stdout, errors only on stderr."""
    args = [ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]
    args += ["-progress", "pipe:1", "-y", "-i", str(src)]
    # The first video and the first audio stream, when present.
    args += ["-map", "0:v:0?", "-map", "0:a:0?", "-map_metadata", "0"]
    if opts.encoder is None:
        args += ["-c:v", "copy"]
    else:
        args += ["-c:v", opts.encoder, "-pix_fmt", "yuv420p"]
        filters = []
        if opts.height is not None:
            filters.append(f"scale={opts.width if opts.width is not None else -2}:{opts.height}")
        if opts.fps is not None:
            filters.append(f"fps={opts.fps:g}")
        if filters:
            args += ["-vf", ",".join(filters)]
        if opts.preset is not None:
            if opts.encoder in _SPEED:
                option, values = _SPEED[opts.encoder]
                args += [option, str(values[PRESETS.index(opts.preset)])]
            else:
                args += ["-preset", opts.preset]
        if opts.encoder == "libvpx-vp9":
            args += ["-row-mt", "1"]
        if opts.crf is not None or (opts.encoder == "libvpx-vp9" and opts.bitrate is None):
            crf = opts.crf if opts.crf is not None else 31
            args += ["-crf", str(crf)]
            if opts.encoder == "libvpx-vp9" and opts.bitrate is None:
                args += ["-b:v", "0"]  # vp9 constant quality needs a zero target bitrate
        if opts.bitrate is not None:
            args += ["-b:v", opts.bitrate]
        if opts.codec == "hevc" and opts.container == "mp4":
            args += ["-tag:v", "hvc1"]  # the tag Apple players require
    if opts.audio_codec == "none":
        args += ["-an"]
    elif opts.audio_codec == "copy":
        args += ["-c:a", "copy"]
    else:
        args += ["-c:a", AUDIO_ENCODERS[opts.audio_codec]]
        if opts.audio_bitrate is not None:
            args += ["-b:a", opts.audio_bitrate]
    args += ["-sn", "-dn"]
    if opts.container == "mp4":
        args += ["-movflags", "+faststart"]
    args += ["-f", CONTAINERS[opts.container][0], str(dest)]
    return args
