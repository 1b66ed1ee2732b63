"""Server streaming as NDJSON: results, mid-stream errors, early errors, a real socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpx
import pytest

from core.testing import serve_asgi
from tests.gateway.conftest import make_app


def lines(body: bytes) -> list[dict]:
    assert body.endswith(b"\n")
    return [json.loads(line) for line in body.decode().splitlines()]


async def test_stream_results_one_per_line(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/ticks/3")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    assert r.headers["grpc-metadata-x-stream"] == "ticks"
    assert lines(r.content) == [
        {"result": {"n": 0, "note": "tick 0"}},
        {"result": {"n": 1, "note": "tick 1"}},
        {"result": {"n": 2, "note": "tick 2"}},
    ]


async def test_stream_with_response_body(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/ticks/2/numbers")
    assert lines(r.content) == [{"result": 0}, {"result": 1}]


async def test_empty_stream_is_200_with_no_lines(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/ticks/0")
    assert r.status_code == 200 and r.content == b""


async def test_mid_stream_error_is_the_last_line(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/ticks/5?fail_after=2&fail_code=8")
    assert r.status_code == 200  # already committed when the error came
    got = lines(r.content)
    assert [g["result"]["n"] for g in got[:2]] == [0, 1]
    assert got[2] == {
        "error": {"code": 8, "message": "failed at 2", "details": got[2]["error"]["details"]}
    }
    assert got[2]["error"]["details"][0]["reason"] == "test_reason"
    assert len(got) == 3


async def test_error_before_first_message_uses_the_status_table(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/ticks/5?fail_after=0&fail_code=7")
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/json"
    assert r.json()["code"] == 7 and r.json()["message"] == "failed at 0"


async def test_unprintable_message_ends_the_stream_with_an_error(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/v1/ticks/5?unprintable_at=2")
    got = lines(r.content)
    assert got[0]["result"]["n"] == 0
    assert got[1] == {"error": {"code": 13, "message": "cannot render the response", "details": []}}
    assert len(got) == 2


async def test_bad_stream_request_is_400(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/ticks/x")
    assert r.status_code == 400 and r.json()["message"].startswith("count: ")


@pytest.fixture
async def live_gateway(gw: SimpleNamespace, grpc_server: SimpleNamespace) -> AsyncIterator[str]:
    """The gateway under a real uvicorn server on 127.0.0.1 (port 0)."""
    async with serve_asgi(make_app(gw, grpc_server.target), lifespan="on") as url:
        yield url


async def test_chunked_stream_over_a_real_socket(live_gateway: str) -> None:
    async with (
        httpx.AsyncClient(base_url=live_gateway) as c,
        c.stream("GET", "/v1/ticks/4?fail_after=3&fail_code=14") as r,
    ):
        assert r.status_code == 200
        assert r.headers["transfer-encoding"] == "chunked"
        got = [json.loads(line) async for line in r.aiter_lines() if line]
    assert [g["result"]["n"] for g in got[:3]] == [0, 1, 2]
    assert got[3]["error"]["code"] == 14


async def test_client_going_away_cancels_the_rpc(
    live_gateway: str, grpc_server: SimpleNamespace
) -> None:
    servicer = grpc_server.servicer
    async with httpx.AsyncClient(base_url=live_gateway) as c:
        async with c.stream("GET", "/v1/ticks/10?hang_after=2") as r:
            it = r.aiter_lines()
            assert json.loads(await anext(it))["result"]["n"] == 0
            await servicer.stream_hanging.wait()
        # Leaving the block closes the connection mid-stream.
    await asyncio.wait_for(servicer.stream_cancelled.wait(), timeout=10)


async def test_client_going_away_cancels_a_unary_rpc(
    live_gateway: str, grpc_server: SimpleNamespace
) -> None:
    servicer = grpc_server.servicer
    async with httpx.AsyncClient(base_url=live_gateway) as c:
        request = asyncio.create_task(c.get("/v1/sleep"))
        await servicer.sleep_started.wait()
        request.cancel()  # closes the connection mid-request
        with pytest.raises(asyncio.CancelledError):
            await request
    await asyncio.wait_for(servicer.sleep_cancelled.wait(), timeout=10)


async def test_unary_over_a_real_socket(live_gateway: str) -> None:
    async with httpx.AsyncClient(base_url=live_gateway) as c:
        r = await c.get("/v1/echo/sock?num=2")
        assert r.status_code == 200 and r.json()["request"]["num"] == 2
        r = await c.post("/v1/echo", content=b"x" * 10_000)
        assert r.status_code == 413


async def test_http_body_stream_is_raw(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/downloads/f?chunks=3")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert r.content == b"f,0\nf,1\nf,2\n"


async def test_http_body_stream_error_before_first_chunk(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/downloads/f?chunks=3&fail_after=0&fail_code=5")
    assert r.status_code == 404 and r.json()["code"] == 5


async def test_http_body_stream_error_mid_stream_aborts_the_response(live_gateway: str) -> None:
    # Raw bytes have no framing for an error: the connection is cut, never a clean end.
    async with httpx.AsyncClient(base_url=live_gateway) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.get("/v1/downloads/f?chunks=3&fail_after=2&fail_code=14")
