"""The llm service: POST /v1/chat/completions on the configured backend, streamed or not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from miner.executors.backend import Backend
from miner.executors.base import ExecContext, ExecResult, ExecutionError, bad_params
from miner.executors.config import BackendConfig
from miner.executors.params import Params

PARAMS = (
    "prompt", "system", "messages", "model", "max_tokens", "temperature", "top_p",
    "stop", "seed", "stream",
)  # fmt: skip
ROLES = ("system", "user", "assistant")


def build_request(raw: Mapping[str, Any], backend: Backend) -> dict[str, Any]:
    """The chat completion body for these parameters (validated)."""
    p = Params(raw, PARAMS)
    model = p.text("model", None, max_len=200)
    if p.has("messages") == p.has("prompt"):
        raise bad_params("prompt", "give exactly one of prompt or messages")
    if p.has("prompt"):
        messages = [{"role": "user", "content": p.text("prompt", max_len=1_000_000)}]
        if p.has("system"):
            messages.insert(0, {"role": "system", "content": p.text("system", max_len=100_000)})
    else:
        if p.has("system"):
            raise bad_params("system", "use a system message in messages instead")
        messages = _messages(p.raw["messages"])
    body: dict[str, Any] = {"model": backend.model(model), "messages": messages}
    if p.has("max_tokens"):
        body["max_tokens"] = p.integer("max_tokens", lo=1, hi=1_000_000)
    if p.has("temperature"):
        body["temperature"] = p.number("temperature", lo=0, hi=2)
    if p.has("top_p"):
        body["top_p"] = p.number("top_p", lo=0, hi=1)
    if p.has("seed"):
        body["seed"] = p.integer("seed", lo=-(2**63), hi=2**63 - 1)
    if p.has("stop"):
        body["stop"] = _stop(p.raw["stop"])
    body["stream"] = p.flag("stream", True)
    if body["stream"]:
        body["stream_options"] = {"include_usage": True}
    return body


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not 1 <= len(value) <= 1000:
        raise bad_params("messages", "must be a list of 1 to 1000 {role, content} objects")
    out = []
    for i, msg in enumerate(value):
        field = f"messages[{i}]"
        if not isinstance(msg, Mapping) or set(msg) - {"role", "content", "name"}:
            raise bad_params(field, "must be an object with role, content (and optional name)")
        if msg.get("role") not in ROLES:
            raise bad_params(f"{field}.role", f"must be one of {', '.join(ROLES)}")
        if not isinstance(msg.get("content"), str):
            raise bad_params(f"{field}.content", "must be a string")
        out.append({k: msg[k] for k in ("role", "content", "name") if isinstance(msg.get(k), str)})
    return out


def _stop(value: Any) -> list[str]:
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not 1 <= len(stops) <= 4:
        raise bad_params("stop", "must be a string or a list of 1 to 4 strings")
    if not all(isinstance(s, str) and 0 < len(s) <= 200 for s in stops):
        raise bad_params("stop", "every stop sequence must be a string of 1 to 200 characters")
    return stops


class LlmExecutor:
    """Chat completion; streamed responses report progress as tokens arrive."""

    service = "llm"

    def __init__(self, config: BackendConfig):
        self.backend = Backend(self.service, config)

    async def run(self, params: Mapping[str, Any], ctx: ExecContext) -> ExecResult:
        self.backend.require()
        body = build_request(params, self.backend)
        ctx.progress(0.0, "waiting for the model")
        if body["stream"]:
            result = await self._stream(body, ctx)
        else:
            answer = await self.backend.post_json("/v1/chat/completions", body)
            result = _from_completion(answer)
        usage = result.get("usage") or {}
        ctx.progress(1.0, f"done ({result['finish_reason'] or 'end'})")
        return ExecResult(inline=result, units_hint=usage.get("completion_tokens"))

    async def _stream(self, body: dict[str, Any], ctx: ExecContext) -> dict[str, Any]:
        parts: list[str] = []
        chunks, model, finish, usage = 0, body["model"], None, None
        limit = body.get("max_tokens")
        async for event in self.backend.stream_events("/v1/chat/completions", body):
            model = event.get("model") or model
            usage = event.get("usage") or usage
            before = chunks
            for choice in event.get("choices") or ():
                finish = choice.get("finish_reason") or finish
                text = (choice.get("delta") or {}).get("content")
                if text:
                    parts.append(text)
                    chunks += 1  # servers send about one token per chunk
            if chunks != before:
                fraction = min(chunks / limit, 0.99) if limit else 0.0
                ctx.progress(fraction, f"{chunks} tokens")
        return {"text": "".join(parts), "model": model, "finish_reason": finish, "usage": usage}


def _from_completion(answer: Any) -> dict[str, Any]:
    try:
        choice = answer["choices"][0]
        text = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ExecutionError(
            "backend_error", f"llm backend: unexpected answer {str(answer)[:300]}", True
        ) from None
    return {
        "text": text,
        "model": answer.get("model"),
        "finish_reason": choice.get("finish_reason"),
        "usage": answer.get("usage"),
    }
