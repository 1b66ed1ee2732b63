"""gRPC status -> HTTP status and google.rpc.Status JSON bodies, end to end and unit."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest
from google.protobuf import any_pb2
from google.rpc import status_pb2

from core.gateway.status import status_dict
from tests.gateway.conftest import make_app

TABLE = {
    1: 499,
    2: 500,
    3: 400,
    4: 504,
    5: 404,
    6: 409,
    7: 403,
    8: 429,
    9: 400,
    10: 409,
    11: 400,
    12: 501,
    13: 500,
    14: 503,
    15: 500,
    16: 401,
}


@pytest.mark.parametrize(("code", "http"), sorted(TABLE.items()))
async def test_every_code_maps_to_its_http_status(
    client: httpx.AsyncClient, code: int, http: int
) -> None:
    r = await client.post(f"/v1/fail/{code}", json={"message": "boom"})
    assert r.status_code == http
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    types = [d["@type"].rsplit("/", 1)[1] for d in body["details"]]
    if code == 5:
        assert body["details"][0] == {
            "@type": "type.googleapis.com/google.rpc.ResourceInfo",
            "resource_type": "gwtest.v1.Thing",
            "resource_name": "boom",
            "owner": "",
            "description": "",
        }
    elif code == 3:
        assert body["message"] == "thing.size: boom"
        assert types == ["google.rpc.BadRequest"]
        assert body["details"][0]["field_violations"] == [
            {"field": "thing.size", "description": "boom", "reason": ""}
        ]
    elif code in (1, 2, 15):
        assert body == {"code": code, "message": "boom", "details": []}
    else:
        assert body["message"] == "boom"
        assert types == ["google.rpc.ErrorInfo"]
        assert body["details"][0]["reason"] == "test_reason"
        assert body["details"][0]["domain"] == "aitbc"


async def test_unauthenticated_sets_www_authenticate(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/fail/16", json={"message": "no key"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'ApiKey realm="aitbc"'
    r = await client.post("/v1/fail/7", json={"message": "not yours"})
    assert "www-authenticate" not in r.headers


@pytest.mark.parametrize(("code", "http"), [(8, 429), (14, 503)])
async def test_retry_info_sets_retry_after_rounded_up(
    client: httpx.AsyncClient, code: int, http: int
) -> None:
    r = await client.post(f"/v1/fail/{code}", json={"message": "slow down", "retry_after_s": 1.2})
    assert r.status_code == http
    assert r.headers["retry-after"] == "2"
    retry = [d for d in r.json()["details"] if d["@type"].endswith("RetryInfo")]
    assert retry[0]["retry_delay"] == "1.200s"


async def test_retry_after_only_for_exhausted_or_unavailable(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/fail/10", json={"message": "conflict", "retry_after_s": 3})
    assert r.status_code == 409 and "retry-after" not in r.headers
    r = await client.post("/v1/fail/8", json={"message": "quota"})
    assert r.status_code == 429 and "retry-after" not in r.headers


async def test_error_naming_its_own_http_status(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/fail/9", json={"message": "finished", "http_status": 409})
    assert r.status_code == 409  # the table would say 400 for FAILED_PRECONDITION
    assert r.json()["code"] == 9
    assert "grpc-metadata-x-http-code" not in r.headers


async def test_a_success_status_sent_before_an_error_is_not_the_answer(
    client: httpx.AsyncClient,
) -> None:
    # The RPC sent x-http-code=201 early (a waiting submit does), then failed: NOT_FOUND is 404.
    r = await client.post("/v1/fail/5", json={"message": "gone", "http_status": 201})
    assert r.status_code == 404 and r.json()["code"] == 5


async def test_unreachable_backend_is_503(gw: SimpleNamespace) -> None:
    app = make_app(gw, "127.0.0.1:1")  # nothing listens on port 1
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as c:
            r = await c.get("/v1/echo/x")
    assert r.status_code == 503 and r.json()["code"] == 14


async def test_calls_before_startup_are_503(gw: SimpleNamespace) -> None:
    app = make_app(gw, "127.0.0.1:1")  # lifespan not run: no channel
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as c:
        r = await c.get("/v1/echo/x")
    assert r.status_code == 503 and r.json()["message"] == "gateway is not started"


def test_unknown_detail_types_are_still_shown() -> None:
    status = status_pb2.Status(
        code=13,
        message="m",
        details=[any_pb2.Any(type_url="type.googleapis.com/acme.Unknown", value=b"\x08\x01")],
    )
    assert status_dict(status)["details"] == [
        {"@type": "type.googleapis.com/acme.Unknown", "value": "CAE="}
    ]


async def test_unprintable_response_is_500(client: httpx.AsyncClient) -> None:
    # JSON text "Infinity" parses into a Value that proto3 JSON cannot print back.
    r = await client.get("/v1/echo/x?any_value=Infinity")
    assert r.status_code == 500
    assert r.json() == {"code": 13, "message": "cannot render the response", "details": []}
