"""The gateway ASGI handler: REST -> gRPC over one grpc.aio channel, errors, streaming."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
from google.rpc import status_pb2
from starlette.responses import StreamingResponse

from core.errors import AitbcError, ResourceExhausted
from core.gateway.config import GatewayConfig
from core.gateway.metadata import HeaderMapper, outgoing, signing_metadata
from core.gateway.routes import Route, RouteTable
from core.gateway.status import error_headers, http_status, status_from_rpc_error, status_json
from core.gateway.transcode import build_request, dumps, json_value, response_body

log = logging.getLogger(__name__)
_JSON_HEADER = (b"content-type", b"application/json")
_NDJSON = "application/x-ndjson"
_NO_BODY = frozenset({204, 304})


class BodyTooLarge(ResourceExhausted):
    """The request body is over GatewayConfig.max_body_bytes (HTTP 413)."""

    reason = "request_body_too_large"
    http_status = 413


class _Disconnected(Exception):
    """The client went away while sending its body: nobody is left to answer."""


class Gateway:
    """ASGI app for every transcoded route; owns the channel and one multicallable per RPC."""

    def __init__(
        self,
        table: RouteTable,
        target: str,
        config: GatewayConfig,
        channel_options: Sequence[tuple[str, Any]] = (),
        channel_factory: Callable[[], grpc.aio.Channel] | None = None,
    ) -> None:
        self.table = table
        self.target = target
        self.config = config
        self._options = list(channel_options)
        self._factory = channel_factory
        self._headers = HeaderMapper(config.forwarded_headers, config.call_metadata)
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[str, Any] = {}

    async def start(self) -> None:
        """Open the channel (inside the serving event loop) and build the multicallables."""
        if self._channel is not None:
            return
        if self._factory is not None:
            self._channel = self._factory()
        else:
            self._channel = grpc.aio.insecure_channel(self.target, options=self._options)
        for r in self.table.routes:
            if r.grpc_path in self._calls:
                continue
            make = self._channel.unary_stream if r.server_streaming else self._channel.unary_unary
            self._calls[r.grpc_path] = make(
                r.grpc_path,
                request_serializer=r.request_class.SerializeToString,
                response_deserializer=r.response_class.FromString,
                _registered_method=True,
            )

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel, self._calls = None, {}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        full = raw = scope.get("raw_path") or scope["path"].encode()
        root = scope.get("root_path", "").encode()
        if root and raw.startswith(root):
            raw = raw[len(root) :]
        try:
            segments = raw.decode("utf-8")[1:].split("/")
        except UnicodeDecodeError:
            await self._send_status(send, _status(3, "request path is not UTF-8"))
            return
        found = self.table.match(scope["method"], segments)
        if found is None:
            await self._not_routed(send, segments)
            return
        route, segments = found
        try:
            client = scope.get("client")
            headers = scope["headers"]
            metadata, timeout, signed = self._headers.incoming(headers, client and client[0])
            query = scope.get("query_string", b"")
            # A signed request's body is hashed even where the route ignores it.
            body = await self._read_body(scope, receive) if route.body or signed else b""
            if signed:
                metadata += signing_metadata(scope["method"], full, query, body)
            content_type = _header(scope, b"content-type")
            request = build_request(route, self.table.index, segments, query, body, content_type)
        except _Disconnected:
            return
        except AitbcError as err:
            await self._send_status(send, err.to_status(), http=err.http_status)
            return
        if timeout is None:
            timeout = self.config.default_timeout_s
        multicallable = self._calls.get(route.grpc_path)
        if multicallable is None:
            await self._send_status(send, _status(14, "gateway is not started"))
            return
        call = multicallable(request, metadata=metadata, timeout=timeout)
        if route.server_streaming:
            await self._stream(route, call, scope, receive, send)
        else:
            await self._unary(route, call, receive, send)

    async def _unary(self, route: Route, call: Any, receive: Callable, send: Callable) -> None:
        # Like grpc-gateway: a client that goes away cancels its RPC (a long-poll must not
        # hand out work nobody will receive).
        watcher = asyncio.ensure_future(_cancel_on_disconnect(receive, call))
        try:
            resp = await call
            headers, code = outgoing(await call.initial_metadata())
        except grpc.aio.AioRpcError as err:
            if not watcher.done():
                await self._send_rpc_error(send, err)
            return
        finally:
            watcher.cancel()
        status = code or 200
        if status in _NO_BODY:
            await _send(send, status, headers, b"")
            return
        try:
            body, content_type = response_body(route, resp)
        except Exception:  # a response the JSON printer rejects is our bug: report, don't hang
            log.exception("cannot render the response of %s", route.rpc)
            await self._send_status(send, _status(13, "cannot render the response"))
            return
        headers.append((b"content-type", content_type))
        await _send(send, status, headers, body)

    async def _stream(
        self, route: Route, call: Any, scope: dict, receive: Callable, send: Callable
    ) -> None:
        try:
            first = await call.read()
            headers, code = outgoing(await call.initial_metadata())
        except grpc.aio.AioRpcError as err:  # nothing sent yet: a normal error response
            await self._send_rpc_error(send, err)
            return
        status = code or 200
        if status in _NO_BODY:
            call.cancel()
            await _send(send, status, headers, b"")
            return
        if route.response_is_raw:
            media = (
                response_body(route, first)[1].decode("latin-1")
                if first is not grpc.aio.EOF
                else None
            )
            body = _raw_chunks(route, call, first)
        else:
            media, body = _NDJSON, _ndjson_lines(route, call, first)
        response = StreamingResponse(body, status_code=status, media_type=media)
        response.raw_headers.extend(headers)
        await response(scope, receive, send)

    async def _read_body(self, scope: dict, receive: Callable) -> bytes:
        limit = self.config.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(f"request body is over the {limit}-byte limit")
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:  # chunked bodies have no Content-Length: enforce while reading
                raise BodyTooLarge(f"request body is over the {limit}-byte limit")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _not_routed(self, send: Callable, segments: list[str]) -> None:
        allowed = self.table.allowed_methods(segments)
        if not allowed:
            await self._send_status(send, _status(5, "Not Found"))
            return
        allow = (b"allow", ", ".join(allowed).encode())
        await self._send_status(send, _status(12, "Method Not Allowed"), http=405, extra=[allow])

    async def _send_rpc_error(self, send: Callable, err: grpc.aio.AioRpcError) -> None:
        # An error may name its own REST status (core.errors.AitbcError.http_status); a success
        # status sent before the call failed (headers sent early) does not describe the error.
        headers, code = outgoing(err.initial_metadata())
        if code is not None and code < 400:
            code = None
        await self._send_status(send, status_from_rpc_error(err), http=code, extra=headers)

    async def _send_status(
        self,
        send: Callable,
        status: status_pb2.Status,
        http: int | None = None,
        extra: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        headers = [_JSON_HEADER, *error_headers(status, self.config.auth_challenge), *extra]
        await _send(send, http or http_status(status.code), headers, status_json(status))


async def _cancel_on_disconnect(receive: Callable, call: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass  # request body chunks a body-less route did not read
    call.cancel()


async def _ndjson_lines(route: Route, call: Any, first: Any) -> AsyncIterator[bytes]:
    try:
        msg = first
        while msg is not grpc.aio.EOF:
            try:
                line = b'{"result":' + dumps(json_value(route, msg)) + b"}\n"
            except Exception:  # our bug, not the client's: say so on the stream and stop
                log.exception("cannot render a message of %s", route.rpc)
                yield b'{"error":' + status_json(_status(13, "cannot render the response")) + b"}\n"
                return
            yield line
            msg = await call.read()
    except grpc.aio.AioRpcError as err:
        yield b'{"error":' + status_json(status_from_rpc_error(err)) + b"}\n"
    finally:
        call.cancel()  # no-op when finished; stops the RPC when the client went away


async def _raw_chunks(route: Route, call: Any, first: Any) -> AsyncIterator[bytes]:
    # HttpBody streams carry no framing for an error: a failure aborts the connection instead.
    try:
        msg = first
        while msg is not grpc.aio.EOF:
            yield response_body(route, msg)[0]
            msg = await call.read()
    finally:
        call.cancel()


def _status(code: int, message: str) -> status_pb2.Status:
    return status_pb2.Status(code=code, message=message)


def _header(scope: dict, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


async def _send(send: Callable, status: int, headers: list, body: bytes) -> None:
    if status not in _NO_BODY:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
