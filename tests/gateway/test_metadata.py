"""Headers <-> metadata, custom HTTP status via x-http-code, Grpc-Timeout."""

from __future__ import annotations

import base64
import hashlib
from types import SimpleNamespace

import httpx
import pytest

from core.hmac_auth import string_to_sign_rest
from tests.gateway.conftest import make_app

SIGNED = {"X-Signature": "ab" * 32, "X-Timestamp": "1700000000", "X-Nonce": "n" * 16}


async def test_known_headers_and_grpc_metadata_are_forwarded(client: httpx.AsyncClient) -> None:
    headers = {
        "X-Api-Key": "k1",
        "Authorization": "Bearer t",
        "Idempotency-Key": "idem-1",
        "X-Signature": "sig",
        "X-Timestamp": "1700000000",
        "X-Nonce": "n1",
        "Grpc-Metadata-Foo": "bar",
        "Grpc-Metadata-Trace-Bin": base64.b64encode(b"\x00\xff").decode(),
        "X-Other": "not forwarded",
        "Cookie": "c=1",
    }
    r = await client.get("/v1/echo/m", headers=headers)
    assert r.status_code == 200
    md = r.json()["metadata"]
    assert md["x-api-key"] == "k1"
    assert md["authorization"] == "Bearer t"
    assert md["idempotency-key"] == "idem-1"
    assert (md["x-signature"], md["x-timestamp"], md["x-nonce"]) == ("sig", "1700000000", "n1")
    assert md["foo"] == "bar"
    assert md["trace-bin"] == "b64:" + base64.b64encode(b"\x00\xff").decode()
    assert "x-other" not in md and "cookie" not in md
    assert md["x-forwarded-for"] == "203.0.113.9" and md["x-forwarded-host"] == "gw.test"


async def test_forwarded_for_is_appended(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/echo/m", headers={"X-Forwarded-For": "198.51.100.1"})
    assert r.json()["metadata"]["x-forwarded-for"] == "198.51.100.1, 203.0.113.9"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Grpc-Metadata-Bad-Bin", "%%%"),
        ("Grpc-Metadata-Grpc-Status", "0"),
        ("Grpc-Metadata-Foo", "caf\u00e9"),
        ("X-Api-Key", "caf\u00e9"),
        ("Grpc-Metadata-X-Aitbc-Http-Path", "/forged"),
        ("Grpc-Metadata-X-Forwarded-For", "10.9.9.9"),
    ],
)
async def test_invalid_metadata_is_400_naming_the_header(
    client: httpx.AsyncClient, name: str, value: str
) -> None:
    r = await client.get("/v1/echo/m", headers=[(name.encode(), value.encode("latin-1"))])
    assert r.status_code == 400
    assert r.json()["details"][0]["field_violations"][0]["field"] == f"header {name.lower()}"


@pytest.mark.parametrize("code", [201, 202, 425])
async def test_status_from_response_metadata(client: httpx.AsyncClient, code: int) -> None:
    r = await client.post(f"/v1/status/{code}")
    assert r.status_code == code
    assert r.json() == {"note": "status set"}
    assert r.headers["grpc-metadata-x-extra"] == "yes"
    assert "grpc-metadata-x-http-code" not in r.headers
    assert not any(h.endswith("-bin") for h in r.headers)


async def test_204_sends_no_body(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/status/204")
    assert r.status_code == 204
    assert r.content == b"" and "content-type" not in r.headers
    assert r.headers["grpc-metadata-x-extra"] == "yes"


async def test_out_of_range_status_metadata_is_ignored(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/status/99")).status_code == 200
    assert (await client.post("/v1/status/600")).status_code == 200


async def test_grpc_timeout_sets_a_deadline(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/echo/t")).json()["has_deadline"] is False
    r = await client.get("/v1/echo/t", headers={"Grpc-Timeout": "5S"})
    assert r.json()["has_deadline"] is True
    r = await client.get("/v1/echo/t", headers={"Grpc-Timeout": "99999999H"})  # clamped
    assert r.status_code == 200 and r.json()["has_deadline"] is True
    assert "grpc-timeout" not in r.json()["metadata"]


async def test_expired_deadline_is_504(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/sleep", headers={"Grpc-Timeout": "50m"})
    assert r.status_code == 504 and r.json()["code"] == 4


@pytest.mark.parametrize("value", ["5s", "abc", "123456789S", "-1S", "1.5S", ""])
async def test_malformed_grpc_timeout_is_400(client: httpx.AsyncClient, value: str) -> None:
    r = await client.get("/v1/echo/t", headers={"Grpc-Timeout": value})
    assert r.status_code == 400
    assert r.json()["details"][0]["field_violations"][0]["field"] == "header Grpc-Timeout"


async def test_default_timeout_from_config(gw: SimpleNamespace, grpc_server) -> None:
    app = make_app(gw, grpc_server.target, default_timeout_s=30.0)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as c:
            assert (await c.get("/v1/echo/t")).json()["has_deadline"] is True


async def test_error_responses_carry_initial_metadata(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/ticks/3?fail_after=0&fail_code=5")
    assert r.status_code == 404
    assert r.headers["grpc-metadata-x-stream"] == "ticks"


async def test_signed_requests_carry_the_original_http_request(client: httpx.AsyncClient) -> None:
    body = b'{"id": "s1", "num": 2}'
    r = await client.post("/v1/echo/a%7Eb:activate?z=1&a=x+y", content=body, headers=SIGNED)
    md = r.json()["metadata"]
    assert md["x-aitbc-http-method"] == "POST"
    assert md["x-aitbc-http-path"] == "/v1/echo/a%7Eb:activate"
    assert md["x-aitbc-http-query"] == "z=1&a=x+y"
    assert md["x-aitbc-body-sha256"] == hashlib.sha256(body).hexdigest()
    # What the verifier rebuilds from the metadata is what the client signed.
    rebuilt = string_to_sign_rest(
        md["x-aitbc-http-method"],
        md["x-aitbc-http-path"],
        md["x-aitbc-http-query"],
        md["x-aitbc-body-sha256"],
        md["x-timestamp"],
        md["x-nonce"],
    )
    signed = string_to_sign_rest(
        "POST",
        "/v1/echo/a~b:activate",
        [("z", "1"), ("a", "x y")],
        hashlib.sha256(body).hexdigest(),
        1700000000,
        "n" * 16,
    )
    assert rebuilt == signed


async def test_signed_get_hashes_the_body_it_was_sent(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/echo/g", headers=SIGNED)
    assert r.json()["metadata"]["x-aitbc-body-sha256"] == hashlib.sha256(b"").hexdigest()


async def test_unsigned_requests_carry_no_signing_metadata(client: httpx.AsyncClient) -> None:
    md = (await client.get("/v1/echo/u")).json()["metadata"]
    assert not any(k.startswith("x-aitbc-") for k in md)


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"max_body_bytes": 0}, "max_body_bytes"),
        ({"default_timeout_s": -1.0}, "default_timeout_s"),
        ({"default_timeout_s": 1e12}, "default_timeout_s"),
        ({"openapi_path": "openapi.json"}, "openapi_path"),
        ({"docs_path": "/docs/"}, "docs_path"),
        ({"openapi_path": None}, "docs_path needs openapi_path"),
        ({"forwarded_headers": ("grpc-timeout",)}, "forwarded_headers"),
        ({"auth_challenge": "a\nb"}, "auth_challenge"),
        ({"call_metadata": (("Bad Key", "v"),)}, "call_metadata"),
        ({"call_metadata": (("x-forwarded-for", "v"),)}, "call_metadata"),
        ({"call_metadata": (("x-token", "caf\u00e9"),)}, "call_metadata"),
    ],
)
def test_bad_config_names_the_key(kw: dict, key: str) -> None:
    from core.gateway import GatewayConfig

    with pytest.raises(ValueError, match=key):
        GatewayConfig(**kw)


async def test_call_metadata_is_added_and_cannot_be_forged(
    gw: SimpleNamespace, grpc_server
) -> None:
    from core.gateway import GatewayConfig

    app = make_app(gw, grpc_server.target, call_metadata=(("x-aitbc-gateway", "s3cret"),))
    assert "s3cret" not in repr(app.state.gateway.config)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as c:
            assert (await c.get("/v1/echo/t")).json()["metadata"]["x-aitbc-gateway"] == "s3cret"
            r = await c.get("/v1/echo/t", headers={"Grpc-Metadata-X-Aitbc-Gateway": "guess"})
            assert r.status_code == 400
    assert GatewayConfig().call_metadata == ()
