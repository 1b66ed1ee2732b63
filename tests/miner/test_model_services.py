"""llm / whisper / stable-diffusion against a fake OpenAI-compatible server on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import base64
import email.parser
import email.policy
import json
import struct
import zipfile
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from miner.executors import BackendConfig, ExecContext, ExecutionError, ExecutorConfig
from miner.executors.images import ImageExecutor
from miner.executors.llm import LlmExecutor
from miner.executors.whisper import WhisperExecutor


def tiny_png(width: int = 2, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


class FakeOpenAI:
    """Chat completions (JSON and SSE), transcriptions (multipart), image generations, models."""

    TOKENS = ("Hello", ",", " world", "!")

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], object]] = []
        # The stream waits for this after its first token: proves progress arrives mid-stream.
        self.first_token_seen = asyncio.Event()

    def app(self) -> Starlette:
        async def chat(request: Request) -> Response:
            body = await request.json()
            self.requests.append(("chat", dict(request.headers), body))
            if body["model"] == "broken":
                return JSONResponse({"error": {"message": "model exploded"}}, status_code=500)
            if not body.get("stream"):
                return JSONResponse({
                    "id": "c1", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(self.TOKENS)},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
                })  # fmt: skip
            return StreamingResponse(self._sse(body["model"]), media_type="text/event-stream")

        async def transcribe(request: Request) -> Response:
            raw = await request.body()
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + raw
            )
            fields, files = {}, {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if part.get_filename():
                    files[name] = (
                        part.get_filename(),
                        part.get_content_type(),
                        part.get_payload(decode=True),
                    )
                else:
                    fields[name] = part.get_payload(decode=True).decode()
            self.requests.append(
                ("audio", dict(request.headers), {"fields": fields, "files": files})
            )
            if fields.get("response_format") == "srt":
                return PlainTextResponse("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
            return JSONResponse({"text": "hello there", "language": "en", "duration": 2.0})

        async def images(request: Request) -> Response:
            body = await request.json()
            self.requests.append(("images", dict(request.headers), body))
            if body["prompt"] == "garbage":
                return JSONResponse(
                    {"data": [{"b64_json": base64.b64encode(b"not an image").decode()}]}
                )
            png = base64.b64encode(tiny_png()).decode()
            return JSONResponse(
                {"created": 1, "data": [{"b64_json": png} for _ in range(body["n"])]}
            )

        async def models(request: Request) -> Response:
            return JSONResponse(
                {"object": "list", "data": [{"id": "tiny-llm"}, {"id": "whisper-1"}]}
            )

        return Starlette(routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/audio/transcriptions", transcribe, methods=["POST"]),
            Route("/v1/images/generations", images, methods=["POST"]),
            Route("/v1/models", models),
        ])  # fmt: skip

    async def _sse(self, model: str) -> AsyncIterator[bytes]:
        def event(payload: dict) -> bytes:
            return f"data: {json.dumps(payload)}\n\n".encode()

        yield b": keep-alive comment\n\n"
        for i, token in enumerate(self.TOKENS):
            yield event(
                {
                    "model": model,
                    "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}],
                }
            )
            if i == 0:
                await self.first_token_seen.wait()
        yield event(
            {"model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        )
        yield event(
            {"model": model, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 4}}
        )
        yield b"data: [DONE]\n\n"


@pytest.fixture
async def fake_openai(serve_app) -> AsyncIterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    async with serve_app(fake.app()) as url:
        yield fake, url


def ctx(tmp_path: Path, store, events: list, on_event=None) -> ExecContext:
    def progress(fraction: float, message: str) -> None:
        events.append((fraction, message))
        if on_event:
            on_event(fraction, message)

    return ExecContext("job-1", tmp_path, progress, store)


async def test_llm_streams_tokens_with_progress(fake_openai, tmp_path: Path, store) -> None:
    fake, url = fake_openai
    llm = LlmExecutor(BackendConfig(url=f"{url}/v1/", model="tiny-llm", api_key="sekret"))
    events: list = []
    on_event = lambda f, m: m == "1 tokens" and fake.first_token_seen.set()  # noqa: E731
    params = {
        "prompt": "Say hello",
        "system": "Be brief",
        "max_tokens": 8.0,
        "temperature": 0.2,
        "stop": "\n",
    }
    result = await llm.run(params, ctx(tmp_path, store, events, on_event))
    assert result.inline == {
        "text": "Hello, world!", "model": "tiny-llm", "finish_reason": "stop",
        "usage": {"prompt_tokens": 5, "completion_tokens": 4},
    }  # fmt: skip
    assert result.units_hint == 4
    _kind, headers, body = fake.requests[-1]
    assert headers["authorization"] == "Bearer sekret"
    assert body == {
        "model": "tiny-llm",
        "messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Say hello"}],
        "max_tokens": 8, "temperature": 0.2, "stop": ["\n"], "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip
    assert events[1:] == [(0.125, "1 tokens"), (0.25, "2 tokens"), (0.375, "3 tokens"),
                          (0.5, "4 tokens"), (1.0, "done (stop)")]  # fmt: skip


async def test_llm_non_stream_and_messages(fake_openai, tmp_path: Path, store) -> None:
    fake, url = fake_openai
    llm = LlmExecutor(BackendConfig(url=url, model="tiny-llm"))
    msgs = [{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}]
    result = await llm.run(
        {"messages": msgs, "stream": False, "model": "other"}, ctx(tmp_path, store, [])
    )
    assert result.inline["text"] == "Hello, world!" and result.inline["usage"]["total_tokens"] == 9
    _kind, headers, body = fake.requests[-1]
    assert body["model"] == "other" and body["messages"] == msgs and body["stream"] is False
    assert "authorization" not in headers and "stream_options" not in body


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "prompt: give exactly one"),
        (
            {"prompt": "a", "messages": [{"role": "user", "content": "b"}]},
            "prompt: give exactly one",
        ),
        ({"messages": []}, "messages:"),
        ({"messages": [{"role": "wizard", "content": "b"}]}, "messages[0].role:"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content:"),
        ({"prompt": "a", "max_tokens": 0}, "max_tokens:"),
        ({"prompt": "a", "temperature": 3}, "temperature:"),
        ({"prompt": "a", "stop": ["1", "2", "3", "4", "5"]}, "stop:"),
        ({"prompt": "a", "stream": "yes"}, "stream:"),
        ({"prompt": "a", "tools": []}, "tools: unknown parameter"),
    ],
)
async def test_llm_validation(tmp_path: Path, store, params: dict, field: str) -> None:
    llm = LlmExecutor(BackendConfig(url="http://127.0.0.1:9", model="m"))
    with pytest.raises(ExecutionError) as err:
        await llm.run(params, ctx(tmp_path, store, []))
    assert err.value.code == "bad_params" and err.value.message.startswith(field), err.value.message


async def test_backend_errors(fake_openai, tmp_path: Path, store) -> None:
    _fake, url = fake_openai
    with pytest.raises(ExecutionError) as err:
        await LlmExecutor(BackendConfig()).run({"prompt": "x"}, ctx(tmp_path, store, []))
    assert (err.value.code, err.value.retryable) == ("backend_not_configured", False)
    assert (
        err.value.message == "no backend URL configured for service 'llm' (set AITBC_MINER_LLM_URL)"
    )
    for stream in (True, False):
        with pytest.raises(ExecutionError) as err:
            await LlmExecutor(BackendConfig(url=url, model="broken")).run(
                {"prompt": "x", "stream": stream}, ctx(tmp_path, store, [])
            )
        assert (err.value.code, err.value.retryable) == ("backend_error", True)
        assert "HTTP 500: model exploded" in err.value.message
    with pytest.raises(ExecutionError) as err:  # nothing listens on the discard port
        await LlmExecutor(BackendConfig(url="http://127.0.0.1:9", model="m")).run(
            {"prompt": "x"}, ctx(tmp_path, store, [])
        )
    assert (err.value.code, err.value.retryable) == ("backend_unavailable", True)
    with pytest.raises(ExecutionError, match="set AITBC_MINER_LLM_MODEL or pass model"):
        await LlmExecutor(BackendConfig(url=url)).run({"prompt": "x"}, ctx(tmp_path, store, []))


async def test_whisper_uploads_the_downloaded_audio(
    fake_openai, file_server, tmp_path: Path, store
) -> None:
    fake, url = fake_openai
    audio = b"RIFF\x24\x00\x00\x00WAVEfmt fake audio bytes"
    (file_server.directory / "talk.wav").write_bytes(audio)
    config = ExecutorConfig(
        whisper=BackendConfig(url=url, model="whisper-1"), allow_private_downloads=True
    )
    whisper = WhisperExecutor(config)
    params = {"audio": f"{file_server.url}/files/talk.wav", "language": "EN", "temperature": 0}
    result = await whisper.run(params, ctx(tmp_path, store, []))
    assert result.inline == {"text": "hello there", "language": "en", "duration": 2.0}
    assert result.units_hint == 2.0
    _kind, headers, sent = fake.requests[-1]
    assert headers["content-type"].startswith("multipart/form-data")
    assert sent["fields"] == {
        "model": "whisper-1",
        "response_format": "json",
        "language": "en",
        "temperature": "0",
    }
    assert sent["files"]["file"] == ("audio.wav", "audio/x-wav", audio)
    srt = await whisper.run({**params, "response_format": "srt"}, ctx(tmp_path, store, []))
    assert srt.inline["format"] == "srt" and "hello" in srt.inline["text"]
    for bad, field in (
        ({**params, "language": "english"}, "language:"),
        ({"language": "en"}, "audio:"),
    ):
        with pytest.raises(ExecutionError) as err:
            await whisper.run(bad, ctx(tmp_path, store, []))
        assert err.value.message.startswith(field)
    no_private = WhisperExecutor(ExecutorConfig(whisper=BackendConfig(url=url, model="w")))
    with pytest.raises(ExecutionError) as err:
        await no_private.run(params, ctx(tmp_path, store, []))
    assert err.value.code == "download_refused" and err.value.message.startswith("audio:")


async def test_images_become_png_artifacts(fake_openai, tmp_path: Path, store) -> None:
    fake, url = fake_openai
    sd = ImageExecutor(BackendConfig(url=url, model="sd-turbo"))
    one = await sd.run({"prompt": "a red square", "size": "256x256", "seed": 42.0, "steps": 4},
                       ctx(tmp_path, store, []))  # fmt: skip
    assert one.artifact.content_type == "image/png"
    assert store.path_for(one.artifact.sha256).read_bytes() == tiny_png()
    assert fake.requests[-1][2] == {"model": "sd-turbo", "prompt": "a red square", "n": 1, "size": "256x256",
                                    "response_format": "b64_json", "seed": 42, "steps": 4}  # fmt: skip
    two = await sd.run({"prompt": "two squares", "n": 2}, ctx(tmp_path, store, []))
    with zipfile.ZipFile(store.path_for(two.artifact.sha256)) as zf:
        assert zf.namelist() == ["image_01.png", "image_02.png"]
    with pytest.raises(ExecutionError) as err:
        await sd.run({"prompt": "garbage"}, ctx(tmp_path, store, []))
    assert err.value.code == "backend_error" and "not a PNG" in err.value.message
    with pytest.raises(ExecutionError, match="size:"):
        await sd.run({"prompt": "x", "size": "huge"}, ctx(tmp_path, store, []))
    with pytest.raises(ExecutionError, match="AITBC_MINER_STABLE_DIFFUSION_URL"):
        await ImageExecutor(BackendConfig()).run({"prompt": "x"}, ctx(tmp_path, store, []))
