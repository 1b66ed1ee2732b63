"""Per-call context for handlers: the authenticated principal, request id, response headers.

The gRPC pipeline (core.interceptors.ServerPipeline) opens one CallState per RPC. Handlers
read it through the functions here and never touch gRPC metadata directly:

* `current_principal()` — who is calling (set by the pipeline's Authenticator).
* `current_request_id()` — the `x-request-id` of the call (echoed to the client).
* `set_response_header(key, value)` — queue a response header. The pipeline sends all queued
  headers together with `x-request-id` as the call's initial metadata, exactly once: right
  before the first streamed message, or when a unary handler returns. Handlers must use this
  instead of `context.send_initial_metadata()`: gRPC sends initial metadata only once, so an
  early send by anyone would silently drop the other's headers. The REST gateway reads
  `x-http-code` from this metadata to answer 201/202/204/425.
* `send_response_headers()` — send the queued headers now, for a handler that waits before it
  answers (SubmitJob's wait), so the answer does not wait for a separate send of them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from types import MappingProxyType

from core.errors import Unauthenticated

X_REQUEST_ID = "x-request-id"
X_HTTP_CODE = "x-http-code"

# Lower-case header names as gRPC allows them; names starting with "grpc-" are reserved.
_HEADER_NAME = re.compile(r"^[0-9a-z_.-]+$")
_RESERVED = frozenset({X_REQUEST_ID, "content-type", "te", "user-agent"})


@dataclasses.dataclass(frozen=True)
class Principal:
    """An authenticated caller: `id` (client or miner id), `role`, and the key that proved it."""

    id: str
    role: str
    key_id: str
    attributes: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # Frozen all the way down: handlers share the principal and must not mutate it.
        object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))


class CallState:
    """Mutable per-RPC state owned by the pipeline; handlers use the module functions."""

    __slots__ = (
        "headers",
        "headers_sent",
        "metadata",
        "method",
        "principal",
        "request_id",
        "send_headers",
    )

    def __init__(self, method: str, request_id: str, metadata: Mapping[str, str]) -> None:
        self.method = method
        self.request_id = request_id
        # The caller's text metadata (lower-case keys); passed to the Authenticator.
        self.metadata = metadata
        self.principal: Principal | None = None
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False
        # Set by the pipeline: sends the queued headers now (send_response_headers).
        self.send_headers: Callable[[], Awaitable[None]] | None = None

    def initial_metadata(self, *, include_queued: bool = True) -> tuple[tuple[str, str], ...]:
        """The metadata to send: x-request-id first, then the queued headers in order."""
        if include_queued:
            return ((X_REQUEST_ID, self.request_id), *self.headers)
        return ((X_REQUEST_ID, self.request_id),)


current_call: ContextVar[CallState | None] = ContextVar("aitbc_call", default=None)


def _call() -> CallState:
    state = current_call.get()
    if state is None:
        raise RuntimeError("not inside an RPC handled by core.interceptors.ServerPipeline")
    return state


def current_principal() -> Principal:
    """The caller authenticated for this RPC; Unauthenticated when there is none."""
    state = current_call.get()
    if state is None or state.principal is None:
        # Fail closed: a handler that needs a caller never runs anonymously by accident.
        raise Unauthenticated("this call requires an authenticated caller")
    return state.principal


def optional_principal() -> Principal | None:
    """The authenticated caller, or None (no authenticator configured, or exempt method)."""
    state = current_call.get()
    return None if state is None else state.principal


def current_request_id() -> str:
    return _call().request_id


async def send_response_headers() -> None:
    """Send the queued response headers (with x-request-id) now rather than with the answer:
    for a handler that waits before it answers, so the answer is not held up by them. Later
    set_response_header calls raise."""
    state = _call()
    if state.send_headers is None:
        raise RuntimeError("this call's pipeline cannot send headers early")
    await state.send_headers()


def set_response_header(key: str, value: str) -> None:
    """Queue a response header for the initial metadata (see the module docstring).

    Raises RuntimeError outside an RPC or after the headers went out (first message sent),
    ValueError for a name gRPC would reject or that the pipeline owns.
    """
    state = _call()
    if state.headers_sent:
        raise RuntimeError(f"response headers already sent; too late to set {key!r}")
    if not _HEADER_NAME.match(key) or key.startswith("grpc-") or key in _RESERVED:
        raise ValueError(f"invalid or reserved response header name {key!r}")
    if key.endswith("-bin"):
        raise ValueError(f"binary headers are not supported here: {key!r}")
    if not isinstance(value, str) or any(ord(c) < 0x20 or ord(c) > 0x7E for c in value):
        raise ValueError(f"header {key!r} needs a printable ASCII string value")
    state.headers.append((key, value))
