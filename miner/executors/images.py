"""The stable-diffusion service: POST /v1/images/generations, b64_json images -> artifacts."""

from __future__ import annotations

import asyncio
import base64
import binascii
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from miner.executors.backend import Backend
from miner.executors.base import ExecContext, ExecResult, ExecutionError
from miner.executors.config import BackendConfig
from miner.executors.params import Params, parse_size

PARAMS = ("prompt", "negative_prompt", "model", "n", "size", "seed", "steps", "cfg_scale")
# Image signatures -> (extension, content type).
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", ".png", "image/png"),
    (b"\xff\xd8\xff", ".jpg", "image/jpeg"),
)


def build_request(raw: Mapping[str, Any], backend: Backend) -> dict[str, Any]:
    p = Params(raw, PARAMS)
    body: dict[str, Any] = {
        "model": backend.model(p.text("model", None, max_len=200)),
        "prompt": p.text("prompt", max_len=10_000),
        "n": p.integer("n", 1, lo=1, hi=8),
        "size": "{}x{}".format(
            *parse_size("size", p.raw.get("size", "512x512"), max_w=4096, max_h=4096)
        ),
        "response_format": "b64_json",
    }
    # Not in OpenAI's schema; sent only when given, for the servers that honour them
    # (LocalAI, stable-diffusion.cpp and similar).
    if p.has("negative_prompt"):
        body["negative_prompt"] = p.text("negative_prompt", max_len=10_000)
    if p.has("seed"):
        body["seed"] = p.integer("seed", lo=0, hi=2**32 - 1)
    if p.has("steps"):
        body["steps"] = p.integer("steps", lo=1, hi=500)
    if p.has("cfg_scale"):
        body["cfg_scale"] = p.number("cfg_scale", lo=0, hi=50)
    return body


def _image_type(data: bytes) -> tuple[str, str] | None:
    for magic, ext, ctype in _MAGIC:
        if data.startswith(magic):
            return ext, ctype
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp", "image/webp"
    return None


class ImageExecutor:
    """Text to image; one image is stored as itself, several as a zip."""

    service = "stable-diffusion"

    def __init__(self, config: BackendConfig):
        self.backend = Backend(self.service, config)

    async def run(self, params: Mapping[str, Any], ctx: ExecContext) -> ExecResult:
        self.backend.require()
        body = build_request(params, self.backend)
        ctx.progress(0.0, "generating")
        answer = await self.backend.post_json("/v1/images/generations", body)
        images = self._decode(answer)
        ctx.progress(0.95, "storing output")
        paths: list[Path] = []
        for i, (data, ext, _ctype) in enumerate(images):
            paths.append(ctx.workdir / f"image_{i + 1:02d}{ext}")
            paths[-1].write_bytes(data)
        if len(paths) == 1:
            info = await ctx.artifacts.put(paths[0], images[0][2])
        else:
            archive = ctx.workdir / "images.zip"
            await asyncio.to_thread(_zip, paths, archive)
            info = await ctx.artifacts.put(archive, "application/zip")
        ctx.progress(1.0, "done")
        return ExecResult(artifact=info, units_hint=len(paths))

    def _decode(self, answer: Any) -> list[tuple[bytes, str, str]]:
        def bad(what: str) -> ExecutionError:
            return ExecutionError("backend_error", f"stable-diffusion backend: {what}", True)

        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or not data:
            raise bad(f"answer has no data list: {str(answer)[:200]}")
        out = []
        for i, item in enumerate(data):
            encoded = item.get("b64_json") if isinstance(item, dict) else None
            if not isinstance(encoded, str):
                raise bad(f"data[{i}] has no b64_json")
            try:
                raw = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise bad(f"data[{i}].b64_json is not base64: {exc}") from exc
            kind = _image_type(raw)
            if kind is None:
                raise bad(f"data[{i}] is not a PNG, JPEG or WebP image")
            out.append((raw, *kind))
        return out


def _zip(paths: list[Path], archive: Path) -> None:
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in paths:
            zf.write(path, path.name)
