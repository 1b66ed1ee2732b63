"""Request building (query string, JSON body, HttpBody) and response rendering."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.gateway.conftest import MAX_BODY


async def echo(client: httpx.AsyncClient, query: str) -> dict:
    r = await client.get(f"/v1/echo/abc?{query}")
    assert r.status_code == 200, r.text
    return r.json()["request"]


async def test_scalars_from_query_with_proto_or_json_names(client: httpx.AsyncClient) -> None:
    req = await echo(
        client,
        "num=-7&big=9223372036854775807&small=4000000000&flag=true&ratio=2.5"
        "&raw=aGk%2B&displayName=Ann&name=x+y",
    )
    assert req["num"] == -7
    assert req["big"] == "9223372036854775807"  # int64 prints as a string
    assert req["small"] == 4000000000
    assert req["flag"] is True and req["ratio"] == 2.5
    assert base64.b64decode(req["raw"]) == b"hi>"
    assert req["display_name"] == "Ann"  # json name accepted, proto name printed
    assert req["name"] == "x y"


async def test_unpopulated_fields_are_printed(client: httpx.AsyncClient) -> None:
    req = await echo(client, "")
    assert req["num"] == 0 and req["tags"] == [] and req["counts"] == {}
    assert req["color"] == "COLOR_UNSPECIFIED" and req["flag"] is False


async def test_repeated_and_nested_query_params(client: httpx.AsyncClient) -> None:
    req = await echo(
        client,
        "tags=a&tags=b&tags=a&nums=1&nums=2&colors=COLOR_RED&colors=2"
        "&nested.label=lbl&nested.level=3&nested.child.color=COLOR_GREEN",
    )
    assert req["tags"] == ["a", "b", "a"] and req["nums"] == [1, 2]
    assert req["colors"] == ["COLOR_RED", "COLOR_GREEN"]
    assert req["nested"]["label"] == "lbl" and req["nested"]["level"] == 3
    assert req["nested"]["child"]["color"] == "COLOR_GREEN"


async def test_well_known_types_from_strings(client: httpx.AsyncClient) -> None:
    attrs = json.dumps({"k": [1, "two"]})
    req = await echo(
        client,
        "at=2024-05-06T07:08:09.5%2B02:00&wait=1.5s&mask=a.b,c"
        f"&maybeNum=0&maybe_str=&attrs={attrs}&any_value=%22text%22"
        "&times=2024-01-01T00:00:00Z&times=1970-01-01T00:00:00Z",
    )
    assert req["at"] == "2024-05-06T05:08:09.500Z"
    assert req["wait"] == "1.500s"
    assert req["mask"] == "a.b,c"
    assert req["maybe_num"] == 0 and req["maybe_str"] == ""  # wrappers: set even when zero
    assert req["attrs"] == {"k": [1.0, "two"]}
    assert req["any_value"] == "text"
    assert req["times"] == ["2024-01-01T00:00:00Z", "1970-01-01T00:00:00Z"]


async def test_map_query_params(client: httpx.AsyncClient) -> None:
    req = await echo(client, "counts[a]=1&counts%5Bb%5D=2")
    assert req["counts"] == {"a": 1, "b": 2}


async def test_oneof_from_query(client: httpx.AsyncClient) -> None:
    assert (await echo(client, "pick_num=4"))["pick_num"] == 4
    r = await client.get("/v1/echo/abc?pick_num=4&pick_str=x")
    assert r.status_code == 400 and "oneof choice" in r.json()["message"]


async def test_unknown_keys_are_ignored(client: httpx.AsyncClient) -> None:
    req = await echo(client, "nope=1&nested.nope=2&num.deeper=3&at.seconds=4&num=1")
    assert req["num"] == 1


async def test_path_bound_field_is_not_overridden_by_query(client: httpx.AsyncClient) -> None:
    assert (await echo(client, "id=other"))["id"] == "abc"


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("num=abc", "num"),
        ("num=1_000", "num"),
        ("pageSize=x&num=3000000000", "num"),
        ("small=-1", "small"),
        ("flag=yes", "flag"),
        ("ratio=1e", "ratio"),
        ("raw=%%%", "raw"),
        ("color=PURPLE", "color"),
        ("colors=COLOR_RED&colors=9", "colors"),
        ("at=yesterday", "at"),
        ("wait=90", "wait"),
        ("attrs=[1]", "attrs"),
        ("any_value=not-json", "any_value"),
        ("maybeNum=1.5", "maybeNum"),
        ("num=1&num=2", "num"),
        ("nested=x", "nested"),
        ("items.label=x", "items.label"),
        ("counts=1", "counts"),
        ("counts[a]=x", "counts[a]"),
        ("tags[a]=x", "tags[a]"),
    ],
)
async def test_malformed_query_values_are_400_naming_the_param(
    client: httpx.AsyncClient, query: str, param: str
) -> None:
    r = await client.get(f"/v1/echo/abc?{query}")
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == 3
    assert body["details"][0]["field_violations"][0]["field"] == param
    assert body["message"].startswith(f"{param}: ")


async def test_body_star_accepts_both_names_and_ignores_unknown(client: httpx.AsyncClient) -> None:
    payload = {
        "id": "j1",
        "displayName": "camel",
        "nested": {"label": "n", "unknownInner": 1},
        "unknown": True,
        "at": "2024-01-01T00:00:00Z",
        "big": 12,
        "color": 1,
    }
    r = await client.post("/v1/echo", json=payload)
    assert r.status_code == 200
    req = r.json()["request"]
    assert req["id"] == "j1" and req["display_name"] == "camel" and req["nested"]["label"] == "n"
    assert (
        req["at"] == "2024-01-01T00:00:00Z" and req["big"] == "12" and req["color"] == "COLOR_RED"
    )


async def test_body_star_disables_query_parsing(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/echo?num=5&id=q", json={"id": "b"})
    assert r.json()["request"]["num"] == 0 and r.json()["request"]["id"] == "b"


async def test_body_field_plus_query_for_the_rest(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/echo/p1/nested?num=9&nested.level=7", json={"label": "L", "level": 2}
    )
    req = r.json()["request"]
    assert req["id"] == "p1" and req["num"] == 9
    assert req["nested"]["label"] == "L" and req["nested"]["level"] == 2  # body owns `nested`


async def test_repeated_body_field_and_response_body(client: httpx.AsyncClient) -> None:
    r = await client.put("/v1/echo/t1/tags", json=["x", "y"])
    assert r.status_code == 200
    assert r.json()["id"] == "t1" and r.json()["tags"] == ["x", "y"]  # response_body: request


async def test_empty_body_is_an_empty_message(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/echo", content=b"")
    assert r.status_code == 200 and r.json()["request"]["id"] == ""


@pytest.mark.parametrize(
    ("content", "field", "needle"),
    [
        (b"{not json", "body", "malformed JSON"),
        (b"[1, 2]", "body", "must be a JSON object"),
        (b'{"num": "abc"}', "num", "abc"),
        (b'{"tags": "x"}', "tags", "repeated field"),
        (b'{"nested": {"level": "high"}}', "nested.level", "high"),
        (b'{"nested": 5}', "nested", ""),
        (b'{"at": "soon"}', "at", "timezone"),
        (b'{"small": -1}', "small", "out of range"),
        (b'{"attrs": 3}', "attrs", "Struct"),
    ],
)
async def test_bad_json_is_400_naming_the_field(
    client: httpx.AsyncClient, content: bytes, field: str, needle: str
) -> None:
    r = await client.post("/v1/echo", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    body = r.json()
    violation = body["details"][0]["field_violations"][0]
    assert violation["field"] == field
    assert needle in violation["description"]


async def test_body_over_the_limit_is_413_by_content_length(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/echo", content=b" " * (MAX_BODY + 1))
    assert r.status_code == 413
    body = r.json()
    assert body["code"] == 8 and str(MAX_BODY) in body["message"]
    assert body["details"][0]["reason"] == "request_body_too_large"


async def test_chunked_body_over_the_limit_is_413_while_reading(client: httpx.AsyncClient) -> None:
    async def chunks():
        for _ in range(8):
            yield b"x" * (MAX_BODY // 4)

    r = await client.post("/v1/echo", content=chunks())
    assert "content-length" not in r.request.headers
    assert r.status_code == 413


async def test_body_at_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    text = json.dumps({"id": "x" * 100})
    r = await client.post("/v1/echo", content=text + " " * (MAX_BODY - len(text)))
    assert r.status_code == 200


async def test_http_body_request_field_and_response(client: httpx.AsyncClient) -> None:
    raw = bytes(range(256))
    r = await client.post("/v1/blobs/b1", content=raw, headers={"content-type": "image/x-test"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/x-test"
    assert r.content == b"b1:" + raw


async def test_http_body_whole_request(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/mirror", content=b"abc{", headers={"content-type": "text/plain"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain" and r.content == b"{cba"
    r = await client.post("/v1/mirror", content=b"")
    assert r.headers["content-type"] == "application/octet-stream" and r.content == b""
