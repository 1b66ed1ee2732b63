"""HTTP headers <-> gRPC metadata, and `Grpc-Timeout` parsing."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from urllib.parse import quote_from_bytes

from core.errors import InvalidArgument
from core.hmac_auth import MD_BODY_SHA256, MD_HTTP_METHOD, MD_HTTP_PATH, MD_HTTP_QUERY

# Headers forwarded under their own (lower-case) name; everything else needs Grpc-Metadata-.
FORWARDED_HEADERS = (
    "x-api-key",
    "authorization",
    "idempotency-key",
    "x-signature",
    "x-timestamp",
    "x-nonce",
)
STATUS_KEY = "x-http-code"
SIGNATURE_HEADER = b"x-signature"
# Keys only the gateway may set: a client sending them as Grpc-Metadata-* would forge them.
GATEWAY_KEYS = frozenset(
    {b"x-forwarded-for", b"x-forwarded-host"}
    | {k.encode() for k in (MD_HTTP_METHOD, MD_HTTP_PATH, MD_HTTP_QUERY, MD_BODY_SHA256)}
)
_PREFIX = b"grpc-metadata-"
_TIMEOUT = re.compile(rb"([0-9]{1,8})([HMSmun])\Z")
MAX_TIMEOUT_S = 100 * 86400.0
_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
_KEY = re.compile(rb"[0-9a-z_.\-]+\Z")
_VALUE = re.compile(rb"[\x20-\x7e]*\Z")


class HeaderMapper:
    """Turns an ASGI header list into (metadata, timeout) once per request.

    `call_metadata` is added to every call (e.g. a token proving the call came through this
    gateway); clients can neither send nor override those keys.
    """

    def __init__(
        self,
        forwarded: Iterable[str] = FORWARDED_HEADERS,
        call_metadata: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._static = list(call_metadata)
        self._reserved = GATEWAY_KEYS | {k.encode() for k, _ in self._static}
        self._direct = {
            h.lower().encode(): h.lower()
            for h in forwarded
            if h.lower().encode() not in self._reserved
        }

    def incoming(
        self, headers: Iterable[tuple[bytes, bytes]], client_host: str | None
    ) -> tuple[list[tuple[str, str | bytes]], float | None, bool]:
        """(metadata, timeout from Grpc-Timeout, whether the request carries X-Signature)."""
        metadata: list[tuple[str, str | bytes]] = []
        timeout: float | None = None
        forwarded_for = host = None
        signed = False
        direct = self._direct
        for name, value in headers:
            key = direct.get(name)
            if key is not None:
                metadata.append((key, _text(name, value)))
                signed = signed or name == SIGNATURE_HEADER
            elif name.startswith(_PREFIX):
                metadata.append(_prefixed(name, value, self._reserved))
            elif name == b"grpc-timeout":
                timeout = parse_timeout(value)
            elif name == b"x-forwarded-for" and _VALUE.match(value):
                forwarded_for = value.decode("ascii")
            elif name == b"host" and _VALUE.match(value):
                host = value.decode("ascii")
        # Like grpc-gateway: services (rate limits, audit) see the REST client, not the gateway.
        if client_host:
            chain = f"{forwarded_for}, {client_host}" if forwarded_for else client_host
            metadata.append(("x-forwarded-for", chain))
        if host:
            metadata.append(("x-forwarded-host", host))
        metadata += self._static
        return metadata, timeout, signed


def _text(name: bytes, value: bytes) -> str:
    if not _VALUE.match(value):
        raise InvalidArgument.field(
            f"header {name.decode('latin-1')}", "value must be printable ASCII"
        )
    return value.decode("ascii")


def _prefixed(name: bytes, value: bytes, reserved: frozenset[bytes]) -> tuple[str, str | bytes]:
    key = name[len(_PREFIX) :]
    header = name.decode("latin-1")
    if not _KEY.match(key) or key.startswith(b"grpc-"):
        raise InvalidArgument.field(f"header {header}", "not a valid gRPC metadata key")
    if key in reserved:
        raise InvalidArgument.field(f"header {header}", "this metadata key is set by the gateway")
    if key.endswith(b"-bin"):
        try:
            return key.decode(), base64.b64decode(value + b"=" * (-len(value) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgument.field(f"header {header}", "a -bin value must be base64") from None
    return key.decode(), _text(name, value)


def signing_metadata(
    method: str, raw_path: bytes, query: bytes, body: bytes
) -> list[tuple[str, str]]:
    """The original HTTP request, for verifying a REST-form HMAC signature (core.hmac_auth).

    Path and query go as received (still percent-encoded); non-ASCII bytes are escaped so
    the values stay valid metadata, which the signer's canonical form decodes again.
    """
    return [
        (MD_HTTP_METHOD, method),
        (MD_HTTP_PATH, _ascii(raw_path)),
        (MD_HTTP_QUERY, _ascii(query)),
        (MD_BODY_SHA256, hashlib.sha256(body).hexdigest()),
    ]


def _ascii(raw: bytes) -> str:
    if _VALUE.match(raw):
        return raw.decode("ascii")
    return quote_from_bytes(raw, safe="/?&=%+:@!$'()*,;~")


def parse_timeout(value: bytes) -> float:
    """gRPC timeout syntax: 1-8 digits and a unit (H, M, S, m, u, n), e.g. `5S`, `100m`."""
    m = _TIMEOUT.match(value.strip())
    if m is None:
        raise InvalidArgument.field(
            "header Grpc-Timeout",
            f"{value.decode('latin-1')!r} is not a gRPC timeout (digits then H, M, S, m, u or n)",
        )
    # gRPC turns deadlines past ~30 years into "already expired": clamp far ones instead.
    return min(int(m.group(1)) * _UNITS[m.group(2)], MAX_TIMEOUT_S)


def outgoing(metadata: Iterable[tuple[str, str | bytes]] | None) -> tuple[list, int | None]:
    """Response headers from initial metadata, and the status an `x-http-code` key asks for."""
    headers: list[tuple[bytes, bytes]] = []
    code: int | None = None
    for key, value in metadata or ():
        if key == STATUS_KEY:
            if isinstance(value, str) and value.isdigit() and 200 <= int(value) <= 599:
                code = int(value)
            continue
        if key.endswith("-bin") or not isinstance(value, str):
            continue
        headers.append((_PREFIX + key.encode(), value.encode("latin-1")))
    return headers, code


def check_call_metadata(pairs: Iterable[tuple[str, str]]) -> None:
    """Raise ValueError unless every pair is a valid text metadata entry the gateway may own."""
    for key, value in pairs:
        raw = key.encode() if isinstance(key, str) else b""
        if not _KEY.match(raw) or raw.startswith(b"grpc-") or raw.endswith(b"-bin"):
            raise ValueError(f"call_metadata has an invalid key {key!r}")
        if raw in GATEWAY_KEYS or key == STATUS_KEY:
            raise ValueError(f"call_metadata key {key!r} is set by the gateway itself")
        if not isinstance(value, str) or not _VALUE.match(value.encode("utf-8")):
            raise ValueError(f"call_metadata value for {key!r} must be printable ASCII")
