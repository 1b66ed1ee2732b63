"""Route compilation (start-up errors, conflicts) and HTTP routing (404, 405, decoding, verbs)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import httpx
import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor

from core.gateway import GatewayConfig, RouteError, compile_routes, create_gateway_app

_files = itertools.count()


def service_with(gw: SimpleNamespace, rules: dict[str, http_pb2.HttpRule]) -> ServiceDescriptor:
    """A throwaway service (own file in the default pool) whose RPCs take gwtest messages."""
    assert gw.pb.DESCRIPTOR  # gwtest.v1 is in the default pool
    n = next(_files)
    f = descriptor_pb2.FileDescriptorProto(
        name=f"gwbad{n}.proto",
        package=f"gwbad{n}",
        syntax="proto3",
        dependency=["google/api/annotations.proto", "gwtest/v1/gwtest.proto"],
    )
    svc = f.service.add(name="BadService")
    for name, rule in rules.items():
        method = svc.method.add(
            name=name, input_type=".gwtest.v1.EchoRequest", output_type=".gwtest.v1.EchoResponse"
        )
        method.options.Extensions[annotations_pb2.http].CopyFrom(rule)
    descriptor_pool.Default().AddSerializedFile(f.SerializeToString())
    return descriptor_pool.Default().FindServiceByName(f"gwbad{n}.BadService")


def rule(**kw) -> http_pb2.HttpRule:
    return http_pb2.HttpRule(**kw)


def test_every_binding_of_the_test_service_compiles(gw: SimpleNamespace) -> None:
    table = compile_routes([gw.service])
    described = {r.describe() for r in table.routes}
    assert "GET /v1/echo/{id} (gwtest.v1.EchoService.Echo)" in described
    assert "POST /v1/echo/{id}:activate (gwtest.v1.EchoService.Echo)" in described
    rpcs = {r.method.name for r in table.routes}
    assert "Chat" not in rpcs  # bidi: gRPC only, even with a rule
    assert "Hidden" not in rpcs  # no rule
    assert len([r for r in table.routes if r.method.name == "Echo"]) == 10


def test_conflict_names_both_rpcs(gw: SimpleNamespace) -> None:
    svc = service_with(
        gw, {"One": rule(get="/v1/things/{id}"), "Two": rule(get="/v1/things/special")}
    )
    with pytest.raises(RouteError, match=r"route conflict: GET /v1/things/\{id\}") as info:
        compile_routes([svc])
    assert "BadService.One" in str(info.value) and "BadService.Two" in str(info.value)


def test_conflict_across_services_with_double_star(gw: SimpleNamespace) -> None:
    a = service_with(gw, {"Files": rule(get="/v1/{name=**}")})
    with pytest.raises(RouteError, match=r"overlaps GET /v1/echo/\{id\}"):
        compile_routes([a, gw.service])


def test_same_path_other_verb_or_custom_verb_is_no_conflict(gw: SimpleNamespace) -> None:
    svc = service_with(
        gw,
        {
            "Get": rule(get="/v1/things/{id}"),
            "Delete": rule(delete="/v1/things/{id}"),
            "Run": rule(get="/v1/things/{id}:run"),
        },
    )
    assert len(compile_routes([svc]).routes) == 3


def test_verb_only_method_still_routes(gw: SimpleNamespace) -> None:
    svc = service_with(gw, {"Run": rule(post="/v1/jobs/{id}:run")})
    table = compile_routes([svc])
    found = table.match("POST", ["v1", "jobs", "a:b:run"])
    assert found is not None and found[1] == ["v1", "jobs", "a:b"]
    assert table.match("POST", ["v1", "jobs", "a"]) is None
    assert table.match("POST", ["v1", "jobs", ":run"]) is None


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (rule(get="/v1/{tags}"), "binds repeated field 'tags'"),
        (rule(get="/v1/{counts}"), "binds map field 'counts'"),
        (rule(get="/v1/{nested}"), "binds message field 'nested'"),
        (rule(get="/v1/{at}"), "binds message field 'at'"),
        (rule(get="/v1/{items.label}"), "binds repeated field 'items.label'"),
        (rule(get="/v1/{missing}"), "unknown field 'missing'"),
        (rule(get="/v1/{num=**}"), "multi-segment value to non-string field 'num'"),
        (rule(get="v1/x"), "must start with '/'"),
        (rule(post="/v1/x", body="nope"), "body 'nope' is not a top-level field"),
        (rule(post="/v1/x", body="nested.label"), "body 'nested.label' is not a top-level"),
        (rule(post="/v1/{id}", body="id"), "body field 'id' is also bound by the path"),
        (rule(get="/v1/x", response_body="nope"), "response_body 'nope' is not a top-level"),
        (rule(body="*"), "has no pattern"),
        (
            rule(
                get="/v1/x",
                additional_bindings=[rule(get="/v1/y", additional_bindings=[rule(get="/v1/z")])],
            ),
            "additional_bindings may not be nested",
        ),
    ],
)
def test_bad_rules_fail_at_startup_naming_the_rpc(
    gw: SimpleNamespace, bad: http_pb2.HttpRule, problem: str
) -> None:
    svc = service_with(gw, {"Broken": bad})
    with pytest.raises(RouteError) as info:
        compile_routes([svc])
    assert problem in str(info.value)
    assert "BadService.Broken" in str(info.value)


def test_route_shadowing_the_docs_is_rejected(gw: SimpleNamespace) -> None:
    svc = service_with(gw, {"Docs": rule(get="/docs")})
    with pytest.raises(RouteError, match="shadowed by the gateway's own /docs"):
        create_gateway_app([svc], target="127.0.0.1:1")
    app = create_gateway_app([svc], target="127.0.0.1:1", config=GatewayConfig(docs_path=None))
    assert app.state.gateway.table.routes[0].method.name == "Docs"


async def test_unknown_path_is_404_status(client: httpx.AsyncClient) -> None:
    r = await client.get("/v2/nothing/here")
    assert r.status_code == 404
    assert r.json() == {"code": 5, "message": "Not Found", "details": []}


async def test_wrong_verb_is_405_with_allow(client: httpx.AsyncClient) -> None:
    r = await client.delete("/v1/echo/abc")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET"
    assert r.json()["code"] == 12
    r = await client.get("/v1/echo")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


async def test_unrouted_rpcs_are_404(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/chat", json={})).status_code == 404


async def test_trailing_slash_and_empty_segment_do_not_match(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/echo/")).status_code == 404
    assert (await client.get("/v1/echo//x")).status_code == 404


async def test_single_segment_capture_is_fully_decoded(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/echo/a%2Fb%20c%3Ad%25")
    assert r.status_code == 200
    assert r.json()["request"]["id"] == "a/b c:d%"


async def test_literal_including_capture(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/shelves/s%201/books/b%2F2")
    assert r.status_code == 200
    # Multi-segment: literal parts included, everything decoded except %2F.
    assert r.json()["request"]["name"] == "shelves/s 1/books/b%2F2"
    assert (await client.get("/v1/shelves/1/novels/2")).status_code == 404


async def test_double_star_capture_keeps_slashes(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/files/a/b%20c/d%2Fe.txt")
    assert r.json()["request"]["name"] == "a/b c/d%2Fe.txt"  # `files` is outside the variable
    r = await client.get("/v1/files")
    assert r.status_code == 200 and r.json()["request"]["name"] == ""  # `**` matches nothing


async def test_literal_segments_match_when_percent_encoded(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/%65cho/abc")  # %65 is "e"
    assert r.status_code == 200 and r.json()["request"]["id"] == "abc"


async def test_custom_verb_routes_to_its_binding(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/echo/job%3A7:activate", json={"num": 3})
    assert r.status_code == 200
    assert r.json()["request"]["id"] == "job:7" and r.json()["request"]["num"] == 3
    # Without a matching verb binding the colon is part of the segment: no POST route here.
    assert (await client.post("/v1/echo/job:other", json={})).status_code == 405
    assert (await client.get("/v1/echo/job:other")).json()["request"]["id"] == "job:other"


async def test_typed_path_params(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/typed/-12/true/COLOR_RED/9007199254740993")
    req = r.json()["request"]
    assert (req["num"], req["flag"], req["color"], req["big"]) == (
        -12,
        True,
        "COLOR_RED",
        "9007199254740993",
    )
    r = await client.get("/v1/typed/1/0/2/5")
    assert r.json()["request"]["color"] == "COLOR_GREEN"  # enum by number


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/v1/typed/x/true/COLOR_RED/1", "num"),
        ("/v1/typed/99999999999/true/COLOR_RED/1", "num"),
        ("/v1/typed/1/maybe/COLOR_RED/1", "flag"),
        ("/v1/typed/1/true/PURPLE/1", "color"),
        ("/v1/typed/1/true/7/1", "color"),
        ("/v1/typed/1/true/1/1.5", "big"),
        ("/v1/echo/%ff", "id"),
    ],
)
async def test_bad_path_values_are_400_naming_the_param(
    client: httpx.AsyncClient, path: str, param: str
) -> None:
    r = await client.get(path)
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == 3 and body["message"].startswith(f"{param}: ")
    (detail,) = body["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert detail["field_violations"][0]["field"] == param


async def test_nested_path_field(client: httpx.AsyncClient) -> None:
    r = await client.patch("/v1/labels/hello%20world", json={"level": 4, "label": "ignored"})
    assert r.json()["request"]["nested"] == {
        "label": "hello world",  # the path wins over the body
        "level": 4,
        "color": "COLOR_UNSPECIFIED",
    }
