"""HMAC-SHA256 request signing: the REST and gRPC strings-to-sign, signers and one verifier."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from urllib.parse import quote_from_bytes, unquote_to_bytes

from core.errors import Unauthenticated
from core.nonces import NonceStore

ALGORITHM = "AITBC1-HMAC-SHA256"
DEFAULT_SKEW_S = 300

# REST headers (the gateway forwards them as the lower-case gRPC metadata keys below).
HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE = "X-Timestamp", "X-Nonce", "X-Signature"
MD_TIMESTAMP, MD_NONCE, MD_SIGNATURE = "x-timestamp", "x-nonce", "x-signature"
# Set by the trusted gateway only: the original HTTP request the client signed.
MD_HTTP_METHOD, MD_HTTP_PATH = "x-aitbc-http-method", "x-aitbc-http-path"
MD_HTTP_QUERY, MD_BODY_SHA256 = "x-aitbc-http-query", "x-aitbc-body-sha256"

REASONS = frozenset(
    {
        "missing_signature",
        "malformed_timestamp",
        "stale_timestamp",
        "bad_signature",
        "replayed_nonce",
        "malformed_nonce",
    }
)

_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}")
_METHOD_RE = re.compile(r"[A-Z]{1,16}")
_FULL_METHOD_RE = re.compile(r"/[A-Za-z_][A-Za-z0-9_.]*/[A-Za-z_][A-Za-z0-9_]*")


class HmacFailure(Unauthenticated):
    """A signed request was refused; `reason` is one of REASONS (sent as ErrorInfo, HTTP 401)."""

    def __init__(self, reason: str, message: str = ""):
        if reason not in REASONS:
            raise ValueError(f"reason: unknown HMAC failure reason {reason!r}")
        super().__init__(message or reason.replace("_", " "), reason=reason)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_path(path: str) -> str:
    """Percent-decode each '/'-separated segment, then re-encode all but RFC 3986 unreserved.

    Clients may encode a path differently (`%7E` or `~`); both sides sign one spelling.
    An encoded slash (`%2F`) stays distinct from a real `/` because segments are split first.
    """
    if not path.startswith("/") or "?" in path or "#" in path:
        raise ValueError(f"path: must start with '/' and hold no query or fragment: {path!r}")
    return "/".join(quote_from_bytes(unquote_to_bytes(seg), safe="") for seg in path.split("/"))


def canonical_query(query: Iterable[tuple[str, str]] | str) -> str:
    """`k=v` pairs, each side percent-encoded (unreserved kept), sorted by key then value.

    A raw query string is decoded the way the gateway reads it (`+` is a space, as in HTML
    forms); send a literal `+` as `%2B`. Pairs given as a list are taken as decoded values.
    """
    if isinstance(query, str):
        pairs = []
        for part in query.lstrip("?").split("&"):
            if not part:
                continue
            key, _, value = part.partition("=")
            pairs.append((_decode_form(key), _decode_form(value)))
    else:
        pairs = [(_enc_text(k, "query key"), _enc_text(v, "query value")) for k, v in query]
    encoded = sorted((quote_from_bytes(k, safe=""), quote_from_bytes(v, safe="")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _decode_form(text: str) -> bytes:
    return unquote_to_bytes(text.replace("+", " "))


def _enc_text(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{field}: must be a str, got {type(value).__name__}")
    return value.encode()


def string_to_sign_rest(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]] | str,
    body_sha256: str,
    timestamp: int | str,
    nonce: str,
) -> str:
    """The REST form; `body_sha256` is the hex SHA-256 of the exact HTTP body bytes."""
    method = method.upper()
    if not _METHOD_RE.fullmatch(method):
        raise ValueError(f"method: not an HTTP method: {method!r}")
    return "\n".join(
        (
            ALGORITHM,
            method,
            canonical_path(path),
            canonical_query(query),
            _check_timestamp(timestamp),
            _check_nonce(nonce),
            _check_hash(body_sha256),
        )
    )


def string_to_sign_grpc(
    full_method: str, body_sha256: str, timestamp: int | str, nonce: str
) -> str:
    """The gRPC form; `body_sha256` is the hex SHA-256 of the serialized request message."""
    if not _FULL_METHOD_RE.fullmatch(full_method):
        raise ValueError(f"full_method: expected '/pkg.Service/Method', got {full_method!r}")
    ts, nonce, digest = _check_timestamp(timestamp), _check_nonce(nonce), _check_hash(body_sha256)
    return "\n".join((ALGORITHM, "GRPC", full_method, "", ts, nonce, digest))


def _check_timestamp(timestamp: int | str) -> str:
    text = str(timestamp)
    if not _TIMESTAMP_RE.fullmatch(text):
        raise ValueError(f"timestamp: expected unix seconds (digits only), got {text!r}")
    return text


def _check_nonce(nonce: str) -> str:
    if not isinstance(nonce, str) or not _NONCE_RE.fullmatch(nonce):
        raise ValueError(f"nonce: expected 16-128 chars of [A-Za-z0-9_-], got {nonce!r}")
    return nonce


def _check_hash(digest: str) -> str:
    if not isinstance(digest, str) or not _HEX64_RE.fullmatch(digest):
        raise ValueError(f"body_sha256: expected 64 hex digits, got {digest!r}")
    return digest.lower()


def compute_signature(secret: bytes, string_to_sign: str) -> str:
    """Lower-case hex HMAC-SHA256 of the UTF-8 string-to-sign."""
    if not secret:
        raise ValueError("secret: must not be empty")
    return hmac.new(secret, string_to_sign.encode(), hashlib.sha256).hexdigest()


def new_nonce() -> str:
    return secrets.token_urlsafe(18)  # 24 chars of [A-Za-z0-9_-], 144 random bits


def sign_rest(
    secret: bytes,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]] | str,
    body: bytes,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Headers X-Timestamp, X-Nonce and X-Signature for one HTTP request."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = new_nonce() if nonce is None else nonce
    sts = string_to_sign_rest(method, path, query, sha256_hex(body), ts, nonce)
    return {
        HEADER_TIMESTAMP: ts,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: compute_signature(secret, sts),
    }


def sign_grpc(
    secret: bytes,
    full_method: str,
    request_bytes: bytes,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> list[tuple[str, str]]:
    """Call metadata for one gRPC call; `request_bytes` is the serialized request (b"" for
    client-streaming and bidi calls: the signature then covers the call's start only)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = new_nonce() if nonce is None else nonce
    sts = string_to_sign_grpc(full_method, sha256_hex(request_bytes), ts, nonce)
    return [(MD_TIMESTAMP, ts), (MD_NONCE, nonce), (MD_SIGNATURE, compute_signature(secret, sts))]


Metadata = Sequence[tuple[str, str | bytes]] | Mapping[str, str | bytes]
_WANTED = {
    MD_SIGNATURE: "bad_signature",
    MD_TIMESTAMP: "malformed_timestamp",
    MD_NONCE: "malformed_nonce",
    MD_HTTP_METHOD: "bad_signature",
    MD_HTTP_PATH: "bad_signature",
    MD_HTTP_QUERY: "bad_signature",
    MD_BODY_SHA256: "bad_signature",
}


def _pick(metadata: Metadata) -> dict[str, str]:
    """Our keys from call metadata; a repeated or non-text value is refused, never guessed."""
    items = metadata.items() if isinstance(metadata, Mapping) else metadata
    out: dict[str, str] = {}
    for key, value in items:
        key = key.lower()
        if key not in _WANTED:
            continue
        if key in out or not isinstance(value, str):
            raise HmacFailure(_WANTED[key], f"metadata {key}: must be sent once, as text")
        out[key] = value
    return out


class HmacVerifier:
    """Checks a signature, its timestamp window and its nonce; one instance per process.

    A nonce is remembered for 2 x skew_s: a timestamp is accepted for at most that long, and
    processes sharing a Redis store may disagree on the time by up to about skew_s.
    """

    def __init__(
        self,
        nonce_store: NonceStore,
        skew_s: int = DEFAULT_SKEW_S,
        clock: Callable[[], float] = time.time,
    ):
        if skew_s < 1:
            raise ValueError(f"skew_s: must be >= 1, got {skew_s}")
        self._nonces = nonce_store
        self._skew_s = skew_s
        self._clock = clock
        self._nonce_ttl_s = 2 * skew_s

    def _check_headers(
        self, signature: str | None, timestamp: str | None, nonce: str | None
    ) -> tuple[str, str, str]:
        """Format and freshness checks, cheapest first; returns the three values as text."""
        if not signature:
            raise HmacFailure("missing_signature", "X-Signature is missing")
        if not _HEX64_RE.fullmatch(signature):
            raise HmacFailure("bad_signature", "X-Signature must be 64 hex digits")
        if not timestamp or not _TIMESTAMP_RE.fullmatch(timestamp):
            raise HmacFailure("malformed_timestamp", "X-Timestamp must be unix seconds")
        if not nonce or not _NONCE_RE.fullmatch(nonce):
            raise HmacFailure("malformed_nonce", "X-Nonce must be 16-128 chars of [A-Za-z0-9_-]")
        skew = int(timestamp) - self._clock()
        if abs(skew) > self._skew_s:
            raise HmacFailure(
                "stale_timestamp",
                f"X-Timestamp is {abs(skew):.0f}s in the {'future' if skew > 0 else 'past'};"
                f" the window is +-{self._skew_s}s",
            )
        return signature, timestamp, nonce

    async def verify(
        self,
        secret: bytes,
        *,
        key_id: str,
        signature: str | None,
        timestamp: str | None,
        nonce: str | None,
        string_to_sign: str,
    ) -> None:
        """Raise HmacFailure unless the signature is good, fresh and not a replay.

        `string_to_sign` must have been built from this same timestamp and nonce. Nonces are
        scoped per `key_id`, and recorded only once the signature verifies (so nobody can
        burn another client's nonces).
        """
        if not key_id:
            raise ValueError("key_id: must not be empty")
        signature, timestamp, nonce = self._check_headers(signature, timestamp, nonce)
        expected = compute_signature(secret, string_to_sign)
        if not hmac.compare_digest(expected, signature.lower()):
            raise HmacFailure("bad_signature", "signature does not match the request")
        if not await self._nonces.add_once(f"{key_id}:{nonce}", self._nonce_ttl_s):
            raise HmacFailure("replayed_nonce", "X-Nonce was already used")

    async def verify_call(
        self,
        secret: bytes,
        *,
        key_id: str,
        full_method: str,
        request_bytes: bytes,
        metadata: Metadata,
        via_gateway: bool,
    ) -> None:
        """Verify one gRPC call. The REST form is used iff the call came from the trusted
        gateway (`via_gateway`, decided by the caller) AND carries x-aitbc-http-method;
        otherwise the gRPC form over the serialized request the server actually received,
        so forged x-aitbc-http-* metadata on a direct gRPC call is simply ignored."""
        md = _pick(metadata)
        sig, ts, nonce = self._check_headers(
            md.get(MD_SIGNATURE), md.get(MD_TIMESTAMP), md.get(MD_NONCE)
        )
        try:
            if via_gateway and MD_HTTP_METHOD in md:
                sts = string_to_sign_rest(
                    md[MD_HTTP_METHOD],
                    md.get(MD_HTTP_PATH, ""),
                    md.get(MD_HTTP_QUERY, ""),
                    md.get(MD_BODY_SHA256, ""),
                    ts,
                    nonce,
                )
            else:
                sts = string_to_sign_grpc(full_method, sha256_hex(request_bytes), ts, nonce)
        except ValueError as exc:
            raise HmacFailure("bad_signature", f"cannot rebuild the signed request: {exc}") from exc
        await self.verify(
            secret, key_id=key_id, signature=sig, timestamp=ts, nonce=nonce, string_to_sign=sts
        )
