"""OpenAPI 3.1 from the compiled route table, so the documents cannot drift from the routing."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from google.protobuf.descriptor import Descriptor, ServiceDescriptor
from google.protobuf.descriptor_pb2 import FileDescriptorProto, FileDescriptorSet
from google.rpc import status_pb2

from core.gateway.fields import has_string_form, is_map
from core.gateway.routes import Route, RouteTable, compile_routes
from core.gateway.schemas import Comments, SchemaBuilder
from core.gateway.template import DSTAR, LITERAL, openapi_path

OPENAPI_VERSION = "3.1.0"
NDJSON = "application/x-ndjson"
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
_BINARY = {"type": "string", "format": "binary"}


def build_openapi(
    routes: RouteTable | Sequence[ServiceDescriptor],
    *,
    title: str,
    version: str,
    source_info: FileDescriptorSet | Iterable[FileDescriptorProto] | None = None,
) -> dict:
    """The OpenAPI 3.1 document of a route table (or of services, compiled here).

    Descriptions come from proto comments when a file's source_code_info is available: from
    `source_info` (e.g. `protoc --include_source_info --descriptor_set_out`) or embedded in the
    runtime descriptors; otherwise the document has no descriptions.
    """
    table = routes if isinstance(routes, RouteTable) else compile_routes(routes)
    files = source_info.file if isinstance(source_info, FileDescriptorSet) else source_info or ()
    builder = SchemaBuilder(Comments(files))
    status_ref = builder.message(status_pb2.Status.DESCRIPTOR)
    paths: dict[str, dict] = {}
    tags: dict[str, dict] = {}
    for route in table.routes:
        method = route.http_method.lower()
        if method not in _METHODS:
            continue  # OpenAPI cannot describe custom HTTP methods
        service = route.method.containing_service
        if service.name not in tags:
            tags[service.name] = builder.describe(
                {"name": service.name}, service.file, service.full_name
            )
        path, operation = _operation(builder, route, status_ref)
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version},
        "tags": list(tags.values()),
        "paths": paths,
        "components": {"schemas": builder.components},
    }


def _operation(builder: SchemaBuilder, route: Route, status_ref: dict) -> tuple[str, dict]:
    method = route.method
    service = method.containing_service
    suffix = str(route.binding_index + 1) if route.binding_index else ""
    op: dict = {"operationId": f"{service.name}_{method.name}{suffix}", "tags": [service.name]}
    comment = builder.comments.get(service.file, f"{service.full_name}.{method.name}")
    # Like protoc-gen-openapiv2 a first paragraph set off by a blank line is the summary;
    # otherwise the first sentence is (doc viewers show it on the collapsed row).
    summary, _, rest = comment.partition("\n\n")
    if rest:
        op.update(summary=summary.replace("\n", " "), description=rest)
    elif comment:
        first = re.split(r"(?<=\.)\s+(?=[A-Z])", comment, maxsplit=1)[0]
        op.update(summary=first.replace("\n", " "), description=comment)
    path, split = openapi_path(route.template)
    params = _path_params(builder, route, split)
    if route.query_allowed:
        top = frozenset({method.input_type.full_name})
        params += list(_query_params(builder, method.input_type, (), route.bound, top))
    if params:
        op["parameters"] = params
    if route.body:
        op["requestBody"] = _request_body(builder, route)
    op["responses"] = {
        "200": _ok_response(builder, route, status_ref),
        "default": {
            "description": "An unexpected error response (google.rpc.Status).",
            "content": {"application/json": {"schema": status_ref}},
        },
    }
    return path, op


def _path_params(builder: SchemaBuilder, route: Route, split: list) -> list[dict]:
    by_var = {p.var: p for p in route.path_params}
    out = []
    for var, names in split:
        leaf = by_var[var].chain[-1]
        base = builder.comments.get(leaf.file, leaf.full_name)
        pieces, it = [], iter(names)
        for seg in var.pattern:
            pieces.append(seg.value if seg.kind == LITERAL else "{" + next(it) + "}")
        form = "/".join(pieces)
        for name, seg in zip(names, [s for s in var.pattern if s.kind != LITERAL], strict=True):
            notes = [base] if base else []
            if var.multi:
                notes.append(f"Part of `{var.name}`, which is `{form}`.")
            if seg.kind == DSTAR:
                notes.append("May contain '/'.")
            param = {
                "name": name,
                "in": "path",
                "required": True,
                "schema": builder.value(leaf) if not var.multi else {"type": "string"},
            }
            if notes:
                param["description"] = " ".join(notes)
            out.append(param)
    return out


def _query_params(
    builder: SchemaBuilder,
    desc: Descriptor,
    prefix: tuple[str, ...],
    bound: frozenset,
    seen: frozenset[str],
) -> Iterable[dict]:
    for fd in desc.fields:
        path = (*prefix, fd.name)
        if any(path[:i] in bound for i in range(1, len(path) + 1)) or is_map(fd):
            continue
        if not has_string_form(fd):
            mt = fd.message_type
            # Repeated messages only travel in a body; recursive messages are listed once.
            if not fd.is_repeated and mt.full_name not in seen:
                yield from _query_params(builder, mt, path, bound, seen | {mt.full_name})
            continue
        schema = builder.query_value(fd)
        param: dict = {"name": ".".join(path), "in": "query", "required": False}
        if fd.is_repeated:
            param.update(schema={"type": "array", "items": schema}, style="form", explode=True)
        else:
            param["schema"] = schema
        text = builder.comments.get(fd.file, fd.full_name)
        if text:
            param["description"] = text
        yield param


def _request_body(builder: SchemaBuilder, route: Route) -> dict:
    if route.request_body_is_raw:
        return {"content": {"*/*": {"schema": _BINARY}}}
    desc = route.method.input_type
    if route.body_field is not None:
        schema = builder.field(route.body_field)
    elif any(len(b) == 1 for b in route.bound):
        # `body: "*"` minus the fields the path binds: a schema of its own.
        props = {f.name: builder.field(f) for f in desc.fields if (f.name,) not in route.bound}
        schema = {"type": "object", "properties": props}
    else:
        schema = builder.message(desc)
    return {"content": {"application/json": {"schema": schema}}}


def _ok_response(builder: SchemaBuilder, route: Route, status_ref: dict) -> dict:
    out = route.method.output_type
    if route.response_is_raw:
        content = {"*/*": {"schema": _BINARY}}
    else:
        f = route.response_field
        schema = builder.field(f) if f is not None else builder.message(out)
        if route.server_streaming:
            shown = f"{out.full_name}.{f.name}" if f is not None else out.full_name
            schema = {
                "type": "object",
                "title": f"Stream result of {shown}",
                "description": "One JSON object per line: `result` per message, or a final `error`.",
                "properties": {"result": schema, "error": status_ref},
            }
            content = {NDJSON: {"schema": schema}}
        else:
            content = {"application/json": {"schema": schema}}
    text = "A stream of responses." if route.server_streaming else "A successful response."
    return {"description": text, "content": content}
