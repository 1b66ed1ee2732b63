"""Per-key rate limits by route class, and HMAC request signing, as pipeline hooks.

Both hold identically for REST and gRPC: the gateway calls the gRPC services, so every
request passes the same ServerPipeline. With AITBC_REDIS_URL set, buckets and nonces are
shared by every coordinator process through Redis; otherwise they live in process memory.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from coordinator.auth import KeyEntry
from coordinator.domain.validation import submit_batch_size
from core.context import Principal
from core.errors import InvalidArgument
from core.hmac_auth import HmacFailure, HmacVerifier
from core.ratelimit import MemoryRateLimiter, RedisRateLimiter

# Trusted-gateway marker: the in-process gateway adds this metadata with a per-process random
# token; only then are the x-aitbc-http-* values (REST method, path, query, body hash) trusted.
GATEWAY_TOKEN_KEY = "x-aitbc-gateway"

SUBMIT_ONE = "/aitbc.coordinator.v1.JobService/SubmitJob"
SUBMIT_MANY = "/aitbc.coordinator.v1.JobService/SubmitJobs"
SUBMIT = {SUBMIT_ONE, SUBMIT_MANY}
CLASS_BY_SERVICE = {
    "aitbc.coordinator.v1.JobService": "read",
    "aitbc.coordinator.v1.ReceiptService": "read",
    "aitbc.coordinator.v1.MinerService": "miner",
    "aitbc.coordinator.v1.AdminService": "admin",
}


def route_class(method: str) -> str:
    if method in SUBMIT:
        return "submit"
    service = method.split("/")[1] if method.count("/") >= 2 else ""
    return CLASS_BY_SERVICE.get(service, "other")


class MethodRateLimiter:
    """The pipeline's RateLimiter: one bucket per (API key, route class). A SubmitJobs call
    costs one submit token per job in it, like as many SubmitJob calls."""

    def __init__(self, limiter: MemoryRateLimiter | RedisRateLimiter):
        self.limiter = limiter

    async def check(self, principal: Principal | None, method: str, request: Any = None) -> None:
        if principal is None:
            return
        cls = route_class(method)
        cost = 1
        if method == SUBMIT_MANY and request is not None:
            cost = submit_batch_size(len(request.items))  # 1..100, else refused
            rule = self.limiter.rule(cls)
            if rule is not None and cost > rule.burst:
                raise InvalidArgument.field(
                    "items",
                    f"{cost} jobs exceed this key's submit burst of {rule.burst}; "
                    f"send at most {rule.burst} per call",
                )
        await self.limiter.acquire(principal.key_id, cls, cost)


class HmacRequestVerifier:
    """The pipeline's RequestVerifier: keys that carry an HMAC secret must sign every call."""

    def __init__(
        self, entries: list[KeyEntry], verifier: HmacVerifier, *, gateway_token: str, required: bool
    ):
        self._secrets = {e.key_id: e.hmac_secret for e in entries if e.hmac_secret}
        if required:
            unsigned = sorted(e.key_id for e in entries if e.role == "client" and not e.hmac_secret)
            if unsigned:
                raise ValueError(
                    "AITBC_HMAC_REQUIRED=1 but these client keys have no HMAC secret "
                    f"(write id=secret:hmac_secret): {', '.join(unsigned)}"
                )
        self._verifier = verifier
        self._gateway_token = gateway_token

    @property
    def active(self) -> bool:
        return bool(self._secrets)

    async def verify(
        self,
        principal: Principal | None,
        method: str,
        metadata: Mapping[str, str],
        request_bytes: bytes,
    ) -> None:
        if principal is None:
            return
        secret = self._secrets.get(principal.key_id)
        if secret is None:
            return
        via_gateway = hmac.compare_digest(metadata.get(GATEWAY_TOKEN_KEY, ""), self._gateway_token)
        try:
            await self._verifier.verify_call(
                secret,
                key_id=principal.key_id,
                full_method=method,
                request_bytes=request_bytes,
                metadata=metadata,
                via_gateway=via_gateway,
            )
        except HmacFailure:
            raise
        except ValueError as exc:  # malformed signing metadata
            raise HmacFailure("bad_signature", str(exc)) from None


__all__ = ["GATEWAY_TOKEN_KEY", "HmacRequestVerifier", "MethodRateLimiter", "route_class"]
