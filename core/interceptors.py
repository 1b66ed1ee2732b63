"""ServerPipeline: the one grpc.aio interceptor (request id, auth, rate limit, metrics, errors).

Each registered method handler is wrapped once (cached per method) for all four RPC kinds.
Per call, in order: request id (from `x-request-id` or generated) → Authenticator →
RateLimiter → handler → error mapping; the metrics record every outcome, rejections
included. Response headers queued with core.context.set_response_header() go out with
`x-request-id` as initial metadata right before the first message (see core/context.py).

Handlers should be `async def` (coroutines, async generators, or write-style streaming
coroutines). A plain `def` handler runs on the event loop, so it must not block; the
generated servicer base class' UNIMPLEMENTED defaults are such functions and map to
UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, NoReturn, Protocol

import grpc
import grpc.aio
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry, Counter, Histogram

from core import context as call_context
from core import logging as log_context
from core.context import X_HTTP_CODE, CallState, Principal
from core.errors import AitbcError, Unimplemented

log = logging.getLogger("aitbc.grpc")

# Load balancers and tooling call these without credentials; they get ids, metrics, errors.
DEFAULT_EXEMPT_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# grpc runtime signals (abort, client gone, server stopped) pass through untouched.
_PASSTHROUGH = (
    asyncio.CancelledError,
    GeneratorExit,
    grpc.aio.BaseError,
    KeyboardInterrupt,
    SystemExit,
)
_MAX_CACHED_METHODS = 4096


class Authenticator(Protocol):
    async def authenticate(self, method: str, metadata: Mapping[str, str]) -> Principal:
        """Return the caller for `method` (`/pkg.Service/Method`) or raise
        core.errors.Unauthenticated / PermissionDenied. Per-method policy lives here."""
        ...


class RateLimiter(Protocol):
    async def check(self, principal: Principal | None, method: str, request: Any) -> None:
        """Return to admit the call; raise core.errors.ResourceExhausted(retry_after_s=...).
        `request` is what the handler receives (the request message of a unary-request call,
        the request iterator of a streaming one): a call may cost more than one token (a batch
        of jobs)."""
        ...


class RequestVerifier(Protocol):
    """Checks a call against the exact request bytes received (e.g. an HMAC signature).

    `request_bytes` is the serialized request of unary-request RPCs and b"" for
    client-streaming ones (their signature covers only the start of the call).
    """

    async def verify(
        self,
        principal: Principal | None,
        method: str,
        metadata: Mapping[str, str],
        request_bytes: bytes,
    ) -> None: ...


class _Raw:
    """A request message with the bytes it was parsed from (only when a verifier is set)."""

    __slots__ = ("data", "message")

    def __init__(self, data: bytes, message: Any):
        self.data, self.message = data, message


def _keep_raw(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], _Raw]:
    return lambda data: _Raw(data, deserializer(data))


class GrpcMetrics:
    """`aitbc_grpc_requests_total{method,code}` and `aitbc_grpc_request_seconds{method}`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "aitbc_grpc_requests",
            "gRPC calls finished, by full method name and status code.",
            ["method", "code"],
            registry=registry,
        )
        self.seconds = Histogram(
            "aitbc_grpc_request_seconds",
            "gRPC call duration (whole stream for streaming calls).",
            ["method"],
            registry=registry,
        )
        # Label lookups take a lock and build tuples; cache the children per label set.
        self._counters: dict[tuple[str, str], Any] = {}
        self._histograms: dict[str, Any] = {}

    def observe(self, method: str, code: str, seconds: float) -> None:
        counter = self._counters.get((method, code))
        if counter is None:
            counter = self._counters[(method, code)] = self.requests.labels(method, code)
        counter.inc()
        hist = self._histograms.get(method)
        if hist is None:
            hist = self._histograms[method] = self.seconds.labels(method)
        hist.observe(seconds)


def _code_name(context: grpc.aio.ServicerContext) -> str:
    code = context.code()
    return "OK" if code is None else getattr(code, "name", str(code))


def _classify(exc: BaseException, context: grpc.aio.ServicerContext) -> str:
    if isinstance(exc, AitbcError):
        return exc.code.name
    if isinstance(exc, NotImplementedError):
        return "UNIMPLEMENTED"
    if isinstance(exc, grpc.aio.AbortError):
        return _code_name(context)
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    if isinstance(exc, grpc.aio.BaseError):
        return "UNKNOWN"
    return "INTERNAL"


class _FlushingContext:
    """Context proxy for write-style streaming handlers: headers go out before the 1st write."""

    def __init__(self, inner: grpc.aio.ServicerContext, state: CallState, pipe: ServerPipeline):
        self._inner, self._state, self._pipe = inner, state, pipe

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def write(self, message: Any) -> None:
        if not self._state.headers_sent:
            await self._pipe._flush(self._state, self._inner)
        await self._inner.write(message)

    async def send_initial_metadata(self, metadata: Iterable[tuple[str, str]]) -> None:
        # Merge instead of racing: a handler's own headers join the queued ones.
        self._state.headers.extend(metadata)
        await self._pipe._flush(self._state, self._inner)


class ServerPipeline(grpc.aio.ServerInterceptor):
    """The single server interceptor; every hook is optional except the error mapping."""

    def __init__(
        self,
        *,
        authenticator: Authenticator | None = None,
        rate_limiter: RateLimiter | None = None,
        metrics: GrpcMetrics | None = None,
        exempt_services: Iterable[str] = DEFAULT_EXEMPT_SERVICES,
        request_verifier: RequestVerifier | None = None,
    ) -> None:
        self._verifier = request_verifier
        self._auth = authenticator
        self._limiter = rate_limiter
        self._metrics = metrics
        self._exempt = frozenset(exempt_services)
        self._cache: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        if len(self._cache) < _MAX_CACHED_METHODS:
            self._cache[method] = (handler, wrapped)
        return wrapped

    # -- wrapping -------------------------------------------------------------------------

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        # Exempt: a whole service by name, or one method by its full name.
        service = method.split("/")[1] if method.count("/") >= 2 else ""
        exempt = service in self._exempt or method in self._exempt
        kw = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        unary_request = bool(handler.unary_unary or handler.unary_stream)
        if (
            self._verifier is not None
            and not exempt
            and unary_request
            and handler.request_deserializer
        ):
            kw["request_deserializer"] = _keep_raw(handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary, exempt), **kw
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(method, handler.stream_unary, exempt), **kw
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, handler.unary_stream, exempt), **kw
            )
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(method, handler.stream_stream, exempt), **kw
        )

    def _unary(self, method: str, behavior: Callable[..., Any], exempt: bool):
        is_async = inspect.iscoroutinefunction(behavior)

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            state, tokens = self._enter(method, context)
            start = time.perf_counter()
            code = "OK"
            try:
                if not exempt:
                    request = await self._admit(state, context, request)
                response = behavior(request, context)
                if is_async or inspect.isawaitable(response):
                    response = await response
                code = _code_name(context)
                await self._flush(state, context)
                return response
            except BaseException as exc:
                code = _classify(exc, context)
                if isinstance(exc, _PASSTHROUGH):
                    raise
                await self._abort(state, context, exc)
            finally:
                self._exit(method, code, start, tokens)

        return unary

    def _streaming(self, method: str, behavior: Callable[..., Any], exempt: bool):
        if inspect.iscoroutinefunction(behavior):
            return self._write_style(method, behavior, exempt)
        is_agen = inspect.isasyncgenfunction(behavior)

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            state, tokens = self._enter(method, context)
            start = time.perf_counter()
            code = "OK"
            try:
                if not exempt:
                    request = await self._admit(state, context, request)
                result = behavior(request, context)
                async with contextlib.aclosing(result if is_agen else _as_async(result)) as agen:
                    async for message in agen:
                        if not state.headers_sent:
                            await self._flush(state, context)
                        yield message
                code = _code_name(context)
                await self._flush(state, context)
            except BaseException as exc:
                code = _classify(exc, context)
                if isinstance(exc, _PASSTHROUGH):
                    raise
                await self._abort(state, context, exc)
            finally:
                self._exit(method, code, start, tokens)

        return streaming

    def _write_style(self, method: str, behavior: Callable[..., Any], exempt: bool):
        async def write_style(request: Any, context: grpc.aio.ServicerContext) -> None:
            state, tokens = self._enter(method, context)
            start = time.perf_counter()
            code = "OK"
            try:
                if not exempt:
                    request = await self._admit(state, context, request)
                await behavior(request, _FlushingContext(context, state, self))
                code = _code_name(context)
                await self._flush(state, context)
            except BaseException as exc:
                code = _classify(exc, context)
                if isinstance(exc, _PASSTHROUGH):
                    raise
                await self._abort(state, context, exc)
            finally:
                self._exit(method, code, start, tokens)

        return write_style

    # -- per-call steps ---------------------------------------------------------------------

    def _enter(self, method: str, context: Any) -> tuple[CallState, tuple[Any, Any]]:
        # Text metadata only (binary "-bin" values are bytes); the first value of a key wins.
        metadata: dict[str, str] = {}
        for key, value in context.invocation_metadata() or ():
            if isinstance(value, str) and key not in metadata:
                metadata[key] = value
        rid = metadata.get(call_context.X_REQUEST_ID)
        if rid is None or not _REQUEST_ID_OK.match(rid):
            rid = os.urandom(8).hex()
        state = CallState(method, rid, metadata)
        state.send_headers = functools.partial(self._flush, state, context)
        return state, (call_context.current_call.set(state), log_context.request_id.set(rid))

    async def _admit(
        self, state: CallState, context: grpc.aio.ServicerContext, request: Any
    ) -> Any:
        """Authenticate, verify, rate-limit; returns the request message for the handler."""
        if self._auth is not None:
            principal = await self._auth.authenticate(state.method, state.metadata)
            if not isinstance(principal, Principal):
                raise TypeError(f"authenticator returned {type(principal).__name__}, not Principal")
            state.principal = principal
        if self._verifier is not None:
            raw = b""
            if isinstance(request, _Raw):
                raw, request = request.data, request.message
            await self._verifier.verify(state.principal, state.method, state.metadata, raw)
        if self._limiter is not None:
            await self._limiter.check(state.principal, state.method, request)
        return request

    def _exit(self, method: str, code: str, start: float, tokens: tuple[Any, Any]) -> None:
        if self._metrics is not None:
            self._metrics.observe(method, code, time.perf_counter() - start)
        # A streaming wrapper may be finalized from another context (asyncgen hooks).
        with contextlib.suppress(ValueError):
            call_context.current_call.reset(tokens[0])
            log_context.request_id.reset(tokens[1])

    async def _flush(
        self,
        state: CallState,
        context: Any,
        *,
        queued: bool = True,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        if state.headers_sent:
            return
        state.headers_sent = True
        try:
            await context.send_initial_metadata(
                (*state.initial_metadata(include_queued=queued), *extra)
            )
        except grpc.aio.UsageError:
            log.warning(
                "handler sent initial metadata itself; queued headers dropped "
                "(use core.context.set_response_header)",
                extra={"method": state.method},
            )

    async def _abort(self, state: CallState, context: Any, exc: BaseException) -> NoReturn:
        # On errors only x-request-id goes out: queued success headers (x-http-code=201)
        # must not describe a failed call. An error may name its own REST status.
        status = getattr(exc, "http_status", None)
        extra = ((X_HTTP_CODE, str(status)),) if status else ()
        await self._flush(state, context, queued=False, extra=extra)
        if isinstance(exc, NotImplementedError):
            exc = Unimplemented(f"{state.method} is not implemented")
        if isinstance(exc, AitbcError):
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "rpc failed",
                    extra={"method": state.method, "code": exc.code.name, "reason": exc.reason},
                )
            await context.abort_with_status(rpc_status.to_status(exc.to_status()))
        log.error("unhandled exception", exc_info=exc, extra={"method": state.method})
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        raise AssertionError("unreachable: abort() raises")  # pragma: no cover


async def _as_async(result: Any) -> AsyncIterator[Any]:
    """Adapt what a plain-`def` streaming handler returned (an iterable, or None)."""
    for item in result or ():
        yield item
