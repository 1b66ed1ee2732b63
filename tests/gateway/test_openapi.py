"""OpenAPI 3.1 from the route table, /docs with local assets, and write_openapi --check."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from core.gateway import build_openapi, compile_routes
from tests.gateway.conftest import ROOT

STATUS_REF = {"$ref": "#/components/schemas/google.rpc.Status"}


@pytest.fixture
async def doc(client: httpx.AsyncClient) -> dict:
    r = await client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    return r.json()


def params(op: dict) -> dict[str, dict]:
    return {p["name"]: p for p in op.get("parameters", [])}


async def test_document_header_and_every_operation(doc: dict) -> None:
    assert doc["openapi"] == "3.1.0"
    assert doc["info"] == {"title": "gwtest", "version": "1.2.3"}
    ops = [op for item in doc["paths"].values() for op in item.values()]
    assert len(ops) == 18  # 10 Echo bindings, Fail, SetStatus, 2 Ticks, Upload, Mirror,
    # Download, Sleep
    ids = [op["operationId"] for op in ops]
    assert len(set(ids)) == len(ids)
    assert "EchoService_Echo" in ids and "EchoService_Echo10" in ids
    for op in ops:
        default = op["responses"]["default"]
        assert default["content"]["application/json"]["schema"] == STATUS_REF
    assert "/v1/chat" not in doc["paths"]


async def test_get_with_path_and_query_params(doc: dict) -> None:
    op = doc["paths"]["/v1/echo/{id}"]["get"]
    p = params(op)
    assert p["id"]["in"] == "path" and p["id"]["required"] is True
    assert p["id"]["description"] == "Identifier of the thing."
    assert p["num"] == {
        "name": "num",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "format": "int32"},
    }
    assert p["big"]["schema"] == {"type": "string", "format": "int64"}
    assert p["tags"]["schema"] == {"type": "array", "items": {"type": "string"}}
    assert p["tags"]["explode"] is True and p["tags"]["style"] == "form"
    assert p["nested.label"]["description"] == "A label."
    assert p["nested.color"]["schema"] == {"$ref": "#/components/schemas/gwtest.v1.Color"}
    assert p["at"]["schema"] == {"type": "string", "format": "date-time"}
    assert p["maybe_num"]["schema"] == {"type": "integer", "format": "int32"}
    assert p["attrs"]["schema"]["contentMediaType"] == "application/json"
    assert p["times"]["schema"]["items"] == {"type": "string", "format": "date-time"}
    for absent in ("counts", "items", "nested", "nested.child.label"):
        assert absent not in p  # maps, repeated messages, messages, recursion
    assert "requestBody" not in op
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/gwtest.v1.EchoResponse"}
    assert op["summary"] == "Echoes the request it received, with the metadata and deadline it saw."
    assert op["description"].startswith("Echoes the request")
    assert op["tags"] == ["EchoService"]


async def test_request_bodies(doc: dict) -> None:
    star = doc["paths"]["/v1/echo"]["post"]
    assert star["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/gwtest.v1.EchoRequest"
    }
    assert "parameters" not in star  # body "*": no query parameters
    field = doc["paths"]["/v1/echo/{id}/nested"]["post"]
    assert field["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "gwtest.v1.Nested"
    )
    assert "nested.label" not in params(field) and "num" in params(field)
    verb = doc["paths"]["/v1/echo/{id}:activate"]["post"]
    inline = verb["requestBody"]["content"]["application/json"]["schema"]
    assert inline["type"] == "object" and "id" not in inline["properties"]
    assert "num" in inline["properties"]
    raw = doc["paths"]["/v1/blobs/{name}"]["post"]
    assert raw["requestBody"]["content"] == {
        "*/*": {"schema": {"type": "string", "format": "binary"}}
    }
    assert raw["responses"]["200"]["content"] == {
        "*/*": {"schema": {"type": "string", "format": "binary"}}
    }


async def test_multi_segment_capture_is_split_into_params(doc: dict) -> None:
    op = doc["paths"]["/v1/shelves/{name_1}/books/{name_2}"]["get"]
    p = params(op)
    assert p["name_1"]["required"] and p["name_2"]["in"] == "path"
    assert "`shelves/{name_1}/books/{name_2}`" in p["name_1"]["description"]
    files = doc["paths"]["/v1/files/{name}"]["get"]
    assert "May contain '/'" in params(files)["name"]["description"]


async def test_response_body_and_streaming(doc: dict) -> None:
    op = doc["paths"]["/v1/echo/{id}/request"]["get"]
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"] == "#/components/schemas/gwtest.v1.EchoRequest"
    stream = doc["paths"]["/v1/ticks/{count}"]["get"]["responses"]["200"]
    schema = stream["content"]["application/x-ndjson"]["schema"]
    assert schema["title"] == "Stream result of gwtest.v1.Tick"
    assert schema["properties"] == {
        "result": {"$ref": "#/components/schemas/gwtest.v1.Tick"},
        "error": STATUS_REF,
    }
    raw = doc["paths"]["/v1/downloads/{name}"]["get"]["responses"]["200"]
    assert raw["content"] == {"*/*": {"schema": {"type": "string", "format": "binary"}}}
    numbers = doc["paths"]["/v1/ticks/{count}/numbers"]["get"]["responses"]["200"]
    schema = numbers["content"]["application/x-ndjson"]["schema"]
    assert schema["properties"]["result"] == {"type": "integer", "format": "int32"}


async def test_component_schemas(doc: dict) -> None:
    schemas = doc["components"]["schemas"]
    req = schemas["gwtest.v1.EchoRequest"]
    assert req["description"] == "Carries one field of every kind the gateway converts."
    props = req["properties"]
    assert "display_name" in props and "displayName" not in props  # proto names
    assert props["big"] == {"type": "string", "format": "int64"}
    assert props["wait"]["type"] == "string" and props["at"]["format"] == "date-time"
    assert props["maybe_str"] == {"type": ["string", "null"]}
    assert props["attrs"] == {"type": "object", "additionalProperties": True}
    assert props["counts"] == {
        "type": "object",
        "additionalProperties": {"type": "integer", "format": "int32"},
    }
    assert props["items"]["items"] == {"$ref": "#/components/schemas/gwtest.v1.Nested"}
    color = schemas["gwtest.v1.Color"]
    assert color["enum"] == ["COLOR_UNSPECIFIED", "COLOR_RED", "COLOR_GREEN"]
    assert "COLOR_RED: The color red." in color["description"]
    assert schemas["google.rpc.Status"]["properties"]["details"]["items"] == {
        "$ref": "#/components/schemas/google.protobuf.Any"
    }
    assert schemas["google.protobuf.Any"]["properties"] == {"@type": {"type": "string"}}


def test_without_source_info_there_are_no_descriptions(gw: SimpleNamespace) -> None:
    doc = build_openapi(compile_routes([gw.service]), title="t", version="v")
    assert '"description": "Identifier' not in str(doc)
    assert "description" not in doc["components"]["schemas"]["gwtest.v1.EchoRequest"]
    assert doc == build_openapi([gw.service], title="t", version="v")  # deterministic


async def test_docs_page_uses_local_assets(client: httpx.AsyncClient) -> None:
    r = await client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "/docs/static/swagger-ui-bundle.js" in page and "/docs/static/swagger-ui.css" in page
    assert '"/openapi.json"' in page
    assert "http://" not in page and "https://" not in page  # no CDN
    js = await client.get("/docs/static/swagger-ui-bundle.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert b"SwaggerUIBundle" in js.content
    css = await client.get("/docs/static/swagger-ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def run_writer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "write_openapi.py"), *args],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


def test_write_openapi_check_detects_a_stale_copy(tmp_path: Path) -> None:
    fresh = tmp_path / "openapi.json"
    assert run_writer("--output", str(fresh)).returncode == 0
    text = fresh.read_text()
    assert text.endswith("}\n") and '"openapi": "3.1.0"' in text
    assert "/v1/jobs/{job_id}/watch" in text and "AdminService" in text
    assert run_writer("--check", "--output", str(fresh)).returncode == 0
    stale = tmp_path / "stale.json"
    shutil.copy(fresh, stale)
    stale.write_text(text.replace("/v1/jobs/{job_id}/watch", "/v1/jobs/{job_id}/follow"))
    result = run_writer("--check", "--output", str(stale))
    assert result.returncode == 1
    assert "contracts/openapi.json is stale: run make proto" in result.stderr
    assert stale.read_text() != text  # --check never writes
