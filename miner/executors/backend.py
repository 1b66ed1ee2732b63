"""HTTP client for local inference servers speaking the OpenAI-compatible API (+ SSE)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from miner.executors.base import ExecutionError
from miner.executors.config import BACKEND_URL_ENV, BackendConfig


class Backend:
    """One model service's backend (vLLM, Ollama, llama.cpp, LocalAI, whisper.cpp, ...)."""

    def __init__(self, service: str, config: BackendConfig):
        self.service = service
        self.config = config

    def require(self) -> None:
        if not self.config.url:
            env = BACKEND_URL_ENV.get(self.service, "the backend URL")
            raise ExecutionError(
                "backend_not_configured",
                f"no backend URL configured for service '{self.service}' (set {env})",
                False,
            )

    def model(self, requested: str | None) -> str:
        """The job's `model` if it names one, else the configured model."""
        model = requested or self.config.model
        if not model:
            env = BACKEND_URL_ENV.get(self.service, "").replace("_URL", "_MODEL")
            raise ExecutionError(
                "backend_not_configured",
                f"no model configured for service '{self.service}' (set {env} or pass model)",
                False,
            )
        return model

    def client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        timeout = httpx.Timeout(self.config.timeout_s, connect=self.config.connect_timeout_s)
        # trust_env=False: a proxy from the environment must not sit in front of a local server.
        return httpx.AsyncClient(
            base_url=self.config.base_url, headers=headers, timeout=timeout, trust_env=False
        )

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Maps transport failures to retryable ExecutionErrors."""
        try:
            yield
        except httpx.ConnectError as exc:
            raise self._error("backend_unavailable", f"cannot connect: {exc}") from exc
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise self._error("backend_timeout", f"no answer in time: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise self._error("backend_error", f"request failed: {exc!r}") from exc

    def _error(self, code: str, message: str) -> ExecutionError:
        return ExecutionError(
            code, f"{self.service} backend {self.config.base_url}: {message}", True
        )

    def check(self, resp: httpx.Response) -> None:
        if resp.status_code >= 400:
            raise self._error(
                "backend_error", f"HTTP {resp.status_code}: {_error_detail(resp.text)}"
            )

    def json(self, resp: httpx.Response) -> Any:
        try:
            return resp.json()
        except ValueError as exc:
            raise self._error("backend_error", f"answer is not JSON: {resp.text[:200]!r}") from exc

    async def post_json(self, path: str, body: dict[str, Any]) -> Any:
        with self.errors():
            async with asyncio.timeout(self.config.timeout_s), self.client() as client:
                resp = await client.post(path, json=body)
            self.check(resp)
            return self.json(resp)

    async def post_form(
        self, path: str, data: dict[str, str], files: dict[str, Any]
    ) -> httpx.Response:
        with self.errors():
            async with asyncio.timeout(self.config.timeout_s), self.client() as client:
                resp = await client.post(path, data=data, files=files)
            self.check(resp)
            return resp

    async def stream_events(self, path: str, body: dict[str, Any]) -> AsyncIterator[Any]:
        """POST and yield each server-sent event's JSON data until `[DONE]` or the end."""
        with self.errors():
            async with asyncio.timeout(self.config.timeout_s), self.client() as client:
                async with client.stream("POST", path, json=body) as resp:
                    if resp.status_code >= 400:
                        await resp.aread()
                        self.check(resp)
                    async for data in sse_data(resp.aiter_lines()):
                        if data.strip() == "[DONE]":
                            return
                        try:
                            event = json.loads(data)
                        except ValueError as exc:
                            raise self._error(
                                "backend_error", f"bad event: {data[:200]!r}"
                            ) from exc
                        if isinstance(event, dict) and "error" in event:
                            raise self._error("backend_error", _error_detail(json.dumps(event)))
                        yield event


async def sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The data of each event of a text/event-stream (multi-line data joined with newlines)."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def _error_detail(text: str) -> str:
    """The message of an OpenAI-style {"error": {"message": ...}} body, else the text."""
    try:
        body = json.loads(text)
        err = body.get("error", body) if isinstance(body, dict) else body
        message = err.get("message") if isinstance(err, dict) else err
        if isinstance(message, str) and message:
            return message[:500]
    except ValueError:
        pass
    return text[:500] or "(empty body)"
