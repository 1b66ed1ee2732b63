"""Gateway settings: a frozen dataclass validated at construction (bad values name the key)."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.gateway.metadata import FORWARDED_HEADERS, MAX_TIMEOUT_S, check_call_metadata


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    # Largest request body accepted; larger ones get 413 before or while being read.
    max_body_bytes: int = 1 << 20
    # Deadline for calls whose request carries no Grpc-Timeout; None means no deadline.
    default_timeout_s: float | None = None
    # Where the generated OpenAPI document and the Swagger UI page are served (None: off).
    openapi_path: str | None = "/openapi.json"
    docs_path: str | None = "/docs"
    # Request headers forwarded as metadata under their own lower-case name.
    forwarded_headers: tuple[str, ...] = FORWARDED_HEADERS
    # WWW-Authenticate value sent with 401 (UNAUTHENTICATED).
    auth_challenge: str = 'ApiKey realm="aitbc"'
    # Metadata added to every call, e.g. (("x-aitbc-gateway", token),) so the server can tell
    # calls from this gateway; clients cannot send these keys. Kept out of repr (secrets).
    call_metadata: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.max_body_bytes, int) or self.max_body_bytes <= 0:
            raise ValueError(
                f"max_body_bytes must be a positive integer, got {self.max_body_bytes!r}"
            )
        if self.default_timeout_s is not None and not 0 < self.default_timeout_s <= MAX_TIMEOUT_S:
            raise ValueError(
                f"default_timeout_s must be in (0, {MAX_TIMEOUT_S:.0f}] or None, "
                f"got {self.default_timeout_s!r}"
            )
        for key in ("openapi_path", "docs_path"):
            value = getattr(self, key)
            if value is not None and (not value.startswith("/") or value.endswith("/")):
                raise ValueError(f"{key} must start with '/' and not end with '/', got {value!r}")
        if self.docs_path is not None and self.openapi_path is None:
            raise ValueError("docs_path needs openapi_path (the page renders that document)")
        for header in self.forwarded_headers:
            if not header or header.lower().startswith(("grpc-", ":")) or not header.isascii():
                raise ValueError(f"forwarded_headers has an invalid header name {header!r}")
        if not self.auth_challenge.isascii() or "\n" in self.auth_challenge:
            raise ValueError("auth_challenge must be one line of ASCII")
        check_call_metadata(self.call_metadata)
