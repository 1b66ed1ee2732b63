"""API keys and roles: `X-Api-Key` / `x-api-key` identifies a client, miner or admin.

Keys come from AITBC_CLIENT_KEYS / AITBC_MINER_KEYS / AITBC_ADMIN_KEYS as `id=secret` pairs.
Only sha256 digests of the secrets are kept; a presented key is hashed and looked up by digest,
then compared with `hmac.compare_digest` (the lookup reveals nothing about the secret itself).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from core import errors
from core.context import Principal

ROLES = ("client", "miner", "admin")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# Which role may call which service (package-qualified service name -> roles).
SERVICE_ROLES: dict[str, frozenset[str]] = {
    "aitbc.coordinator.v1.JobService": frozenset({"client"}),
    "aitbc.coordinator.v1.MinerService": frozenset({"miner"}),
    "aitbc.coordinator.v1.AdminService": frozenset({"admin"}),
    "aitbc.coordinator.v1.ReceiptService": frozenset({"client", "admin"}),
    "aitbc.coordinator.v1.ArtifactService": frozenset({"client", "miner", "admin"}),
}
# Services anyone may call without a key (receipt keys are public: anyone verifies offline).
PUBLIC_SERVICES = frozenset(
    {
        "aitbc.coordinator.v1.KeyService",
        # content-addressed: knowing the sha256 is the capability to download
        "/aitbc.coordinator.v1.ArtifactService/GetArtifact",
    }
)


@dataclass(frozen=True, slots=True)
class KeyEntry:
    id: str
    role: str
    digest: bytes
    # When set, every request made with this key must carry an HMAC signature by it.
    hmac_secret: bytes | None = None

    @property
    def key_id(self) -> str:
        """Unique across roles: rate limits and nonces are kept per key."""
        return f"{self.role}/{self.id}"


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_keys(text: str, role: str, *, name: str) -> list[KeyEntry]:
    """`id=secret[:hmac_secret],...` -> entries; ValueError naming `name` on a malformed pair."""
    out = []
    for i, part in enumerate(p.strip() for p in text.split(",")):
        if not part:
            continue
        ident, sep, secret = part.partition("=")
        ident = ident.strip()
        secret, has_hmac, hmac_secret = secret.partition(":")
        if not sep or not ID_RE.match(ident):
            raise ValueError(
                f"{name}: entry {i + 1} must be id=secret with a plain id (letters, digits, . _ -)"
            )
        if len(secret) < 16:
            raise ValueError(f"{name}: the secret of {ident!r} must be at least 16 characters")
        if has_hmac and len(hmac_secret) < 16:
            raise ValueError(f"{name}: the HMAC secret of {ident!r} must be at least 16 characters")
        hmac_bytes = hmac_secret.encode() if has_hmac else None
        out.append(KeyEntry(ident, role, _digest(secret), hmac_bytes))
    return out


class KeyAuthenticator:
    def __init__(
        self,
        entries: list[KeyEntry],
        *,
        service_roles: Mapping[str, frozenset[str]] = SERVICE_ROLES,
    ):
        self._by_digest: dict[bytes, KeyEntry] = {}
        seen: dict[tuple[str, str], KeyEntry] = {}
        for e in entries:
            if e.digest in self._by_digest:
                raise ValueError(
                    f"the same secret is configured twice ({self._by_digest[e.digest].id}, {e.id})"
                )
            if (e.role, e.id) in seen:
                raise ValueError(f"{e.role} id {e.id!r} is configured twice")
            seen[(e.role, e.id)] = e
            self._by_digest[e.digest] = e
        self._service_roles = dict(service_roles)

    async def authenticate(self, method: str, metadata: Mapping[str, str]) -> Principal:
        key = metadata.get("x-api-key", "")
        if not key:
            auth = metadata.get("authorization", "")
            if auth[:7].lower() == "bearer ":
                key = auth[7:].strip()
        if not key:
            raise errors.Unauthenticated(
                "missing API key (X-Api-Key header)", reason="missing_api_key"
            )
        digest = _digest(key)
        entry = self._by_digest.get(digest)
        if entry is None or not hmac.compare_digest(entry.digest, digest):
            raise errors.Unauthenticated("unknown API key", reason="unknown_api_key")
        service = method.split("/")[1] if method.count("/") >= 2 else ""
        allowed = self._service_roles.get(service)
        if allowed is None or entry.role not in allowed:
            raise errors.PermissionDenied(
                f"a {entry.role} key may not call {method}", reason="wrong_role"
            )
        return Principal(id=entry.id, role=entry.role, key_id=entry.key_id)
