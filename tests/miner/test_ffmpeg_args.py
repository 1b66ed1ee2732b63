"""Transcode parameter validation and the ffmpeg argument list (no ffmpeg needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from miner.executors import ExecutionError
from miner.executors.ffmpeg import ProgressParser
from miner.executors.ffmpeg_args import build_args, parse_transcode

ALL = frozenset(
    {
        "libx264",
        "libx265",
        "libvpx-vp9",
        "libsvtav1",
        "libaom-av1",
        "aac",
        "libopus",
        "libmp3lame",
        "libvorbis",
    }
)
SRC = "https://media.example/in.mp4"


def args_for(params: dict, encoders=ALL) -> list[str]:
    _ref, opts = parse_transcode({"input": SRC, **params}, encoders)
    return build_args("/usr/bin/ffmpeg", Path("/w/input"), Path("/w/output" + opts.extension), opts)


def after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_defaults_h264_aac_mp4() -> None:
    ref, opts = parse_transcode({"input": SRC}, ALL)
    assert (ref.url, ref.sha256) == (SRC, None)
    assert (opts.codec, opts.encoder, opts.container, opts.audio_codec) == (
        "h264",
        "libx264",
        "mp4",
        "aac",
    )
    args = build_args("ffmpeg", Path("/w/in"), Path("/w/out.mp4"), opts)
    assert all(isinstance(a, str) for a in args)
    assert args[:1] == ["ffmpeg"] and args[-3:] == ["-f", "mp4", "/w/out.mp4"]
    assert after(args, "-progress") == "pipe:1" and after(args, "-i") == "/w/in"
    assert after(args, "-c:v") == "libx264" and after(args, "-c:a") == "aac"
    assert "-vf" not in args and "-crf" not in args


def test_full_h264_options() -> None:
    args = args_for({"codec": "H264", "preset": "veryfast", "crf": 23.0, "resolution": "1280x720",
                     "fps": 30, "audio_codec": "aac", "audio_bitrate": "128k", "format": "mp4"})  # fmt: skip
    assert after(args, "-preset") == "veryfast" and after(args, "-crf") == "23"
    assert after(args, "-vf") == "scale=1280:720,fps=30"
    assert after(args, "-b:a") == "128k" and after(args, "-pix_fmt") == "yuv420p"


def test_height_only_keeps_aspect_ratio() -> None:
    assert after(args_for({"resolution": 720}), "-vf") == "scale=-2:720"
    assert after(args_for({"resolution": "480p"}), "-vf") == "scale=-2:480"


def test_codec_specific_mappings() -> None:
    vp9 = args_for({"codec": "vp9", "container": "webm", "preset": "fast"})
    assert after(vp9, "-c:v") == "libvpx-vp9" and after(vp9, "-cpu-used") == "3"
    assert (
        after(vp9, "-crf") == "31" and after(vp9, "-b:v") == "0" and after(vp9, "-c:a") == "libopus"
    )
    av1 = args_for({"codec": "av1", "preset": "medium", "crf": 35})
    assert after(av1, "-c:v") == "libsvtav1" and after(av1, "-preset") == "6"
    aom = args_for({"codec": "av1", "preset": "slow"}, ALL - {"libsvtav1"})
    assert after(aom, "-c:v") == "libaom-av1" and after(aom, "-cpu-used") == "3"
    hevc = args_for({"codec": "hevc", "bitrate": "2M", "audio_codec": "none"})
    assert after(hevc, "-tag:v") == "hvc1" and after(hevc, "-b:v") == "2M" and "-an" in hevc
    copy = args_for({"codec": "copy", "container": "mkv"})
    assert after(copy, "-c:v") == "copy" and after(copy, "-c:a") == "copy"
    assert after(copy, "-f") == "matroska"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"input": None}, "input: is required"),
        ({"input": "file:///etc/passwd"}, "input: must be an http(s) URL"),
        ({"input": {"url": SRC, "sha256": "xyz"}}, "input.sha256:"),
        ({"input": {"url": SRC, "md5": "x"}}, "input.md5:"),
        ({"codec": "mpeg2"}, "codec:"),
        ({"codec": "h264", "container": "webm"}, "codec: h264 cannot go in webm"),
        ({"codec": "copy", "crf": 20}, "crf: cannot be used with codec copy"),
        ({"preset": "warp"}, "preset:"),
        ({"crf": 52}, "crf:"),
        ({"crf": 20.5}, "crf:"),
        ({"resolution": "1281x720"}, "resolution: width and height must be even"),
        ({"resolution": "big"}, "resolution:"),
        ({"resolution": 8}, "resolution:"),
        ({"bitrate": "fast"}, "bitrate:"),
        ({"bitrate": "900M"}, "bitrate:"),
        ({"bitrate": "2M", "crf": 20}, "bitrate: cannot be combined with crf"),
        ({"fps": 0}, "fps:"),
        ({"audio_codec": "aac", "container": "webm", "codec": "vp9"}, "audio_codec:"),
        ({"audio_codec": "none", "audio_bitrate": "96k"}, "audio_bitrate:"),
        ({"audio_bitrate": "5k"}, "audio_bitrate:"),
        ({"container": "avi"}, "container:"),
        ({"container": "mp4", "format": "mkv"}, "format:"),
        ({"sneaky": "-f"}, "sneaky: unknown parameter"),
    ],
)
def test_validation_errors_name_the_field(params: dict, field: str) -> None:
    with pytest.raises(ExecutionError) as err:
        parse_transcode({"input": SRC, **params}, ALL)
    assert err.value.code == "bad_params" and not err.value.retryable
    assert err.value.message.startswith(field), err.value.message


def test_missing_encoder_is_reported() -> None:
    with pytest.raises(ExecutionError, match="codec: hevc: no encoder"):
        parse_transcode({"input": SRC, "codec": "hevc"}, ALL - {"libx265"})
    with pytest.raises(ExecutionError, match="audio_codec: opus"):
        parse_transcode({"input": SRC, "audio_codec": "opus"}, ALL - {"libopus"})


def test_progress_parser() -> None:
    events: list = []
    parser = ProgressParser(10.0, lambda f, m: events.append((f, m)))
    for line in ["frame=10", "out_time_us=2500000", "speed=2.5x", "progress=continue",
                 "out_time_us=N/A", "progress=continue", "out_time_ms=10000000", "progress=end"]:  # fmt: skip
        parser.feed(line)
    assert events == [
        (0.25, "transcoding 2.5/10.0s at 2.5x"),
        (0.0, "transcoding 0.0/10.0s"),
        (0.99, "transcoded"),
    ]
    unknown: list = []
    ProgressParser(None, lambda f, m: unknown.append((f, m))).feed("progress=continue")
    assert unknown == [(0.0, "transcoding 0.0s")]
