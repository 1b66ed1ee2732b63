"""The whisper service: POST /v1/audio/transcriptions (multipart) with the downloaded audio."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from miner.executors.backend import Backend
from miner.executors.base import ExecContext, ExecResult
from miner.executors.config import ExecutorConfig
from miner.executors.inputs import fetch_input
from miner.executors.params import Params

PARAMS = ("audio", "model", "language", "prompt", "response_format", "temperature")
FORMATS = ("json", "verbose_json", "text", "srt", "vtt")


def audio_filename(url: str) -> str:
    """A safe file name keeping the URL's extension: servers pick the decoder by it."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    ext = re.search(r"\.([A-Za-z0-9]{1,8})$", name)
    return f"audio.{ext.group(1).lower()}" if ext else "audio"


class WhisperExecutor:
    """Transcribes the `audio` URL/artifact; JSON formats inline, text formats as {"text"}."""

    service = "whisper"

    def __init__(self, config: ExecutorConfig):
        self.config = config
        self.backend = Backend(self.service, config.whisper)

    async def run(self, params: Mapping[str, Any], ctx: ExecContext) -> ExecResult:
        self.backend.require()
        p = Params(params, PARAMS)
        source = p.input_ref("audio")
        form = {"model": self.backend.model(p.text("model", None, max_len=200))}
        form["response_format"] = p.text("response_format", "json", choices=FORMATS)
        if p.has("language"):
            form["language"] = p.text("language", pattern=r"[a-z]{2,3}", lower=True)
        if p.has("prompt"):
            form["prompt"] = p.text("prompt", max_len=4000)
        if p.has("temperature"):
            form["temperature"] = f"{p.number('temperature', lo=0, hi=1):g}"
        ctx.progress(0.0, "downloading audio")
        path = ctx.workdir / audio_filename(source.url)
        audio = await fetch_input(source, path, self.config, "audio")
        ctx.progress(0.1, "transcribing")
        with path.open("rb") as f:
            files = {"file": (path.name, f, audio.content_type.split(";")[0])}
            resp = await self.backend.post_form("/v1/audio/transcriptions", form, files)
        if form["response_format"] in ("json", "verbose_json"):
            result = self.backend.json(resp)
        else:
            result = {"format": form["response_format"], "text": resp.text}
        duration = result.get("duration") if isinstance(result, dict) else None
        ctx.progress(1.0, "done")
        return ExecResult(
            inline=result, units_hint=duration if isinstance(duration, int | float) else None
        )
