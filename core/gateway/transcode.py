"""HTTP request -> gRPC request message (body, path, query) and gRPC response -> HTTP body."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from core.errors import InvalidArgument
from core.gateway.fields import (
    FieldIndex,
    FieldValueError,
    has_string_form,
    is_map,
    scalar_parser,
    set_field,
)
from core.gateway.jsonprint import JsonPrinter
from core.gateway.routes import Route
from core.gateway.template import capture, decode_multi, decode_single

MAX_QUERY_FIELDS = 1000
_FAILED = re.compile(r"Failed to parse (\S+) field: ")
_MAP_KEY = re.compile(r"(.+)\[(.*)\]\Z")
# json_format.MessageToDict(preserving_proto_field_name=True,
# always_print_fields_with_no_presence=True), compiled per message type.
PRINTER = JsonPrinter()
JSON_TYPE = b"application/json"


def build_request(
    route: Route,
    index: FieldIndex,
    segments: list[str],
    query: bytes,
    body: bytes,
    content_type: str,
) -> Message:
    """The request message: body first, then path variables (which win), then the query."""
    msg = route.request_class()
    if route.body:
        _apply_body(route, msg, body, content_type)
    for p in route.path_params:
        raw = capture(p.var, segments)
        try:
            text = decode_multi(raw) if p.var.multi else decode_single(raw)
            value = p.parse(text)
        except UnicodeDecodeError:
            raise InvalidArgument.field(p.name, "path value is not UTF-8 once decoded") from None
        except FieldValueError as exc:
            raise InvalidArgument.field(p.name, str(exc)) from None
        target = msg
        for fd in p.chain[:-1]:
            target = getattr(target, fd.name)
        setattr(target, p.chain[-1].name, value)
    if query and route.query_allowed:
        _apply_query(route, index, msg, query)
    return msg


def _apply_body(route: Route, msg: Message, body: bytes, content_type: str) -> None:
    if route.request_body_is_raw:
        target = msg if route.body_field is None else getattr(msg, route.body_field.name)
        target.content_type = content_type
        target.data = body
        return
    if not body.strip():
        return  # like grpc-gateway: an empty body leaves the message empty
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument.field("body", f"malformed JSON: {exc}") from None
    if route.body_field is None:
        if not isinstance(doc, dict):
            raise InvalidArgument.field("body", "must be a JSON object")
        _parse_json(doc, msg)
    else:
        _parse_json({route.body_field.name: doc}, msg)


def _parse_json(doc: dict, msg: Message) -> None:
    try:
        json_format.ParseDict(doc, msg, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        text, path = str(exc), []
        while (m := _FAILED.match(text)) is not None:
            path.append(m.group(1))
            text = text[m.end() :]
        field = ".".join(path) or "body"
        raise InvalidArgument.field(field, text.rstrip(".") or "invalid value") from None


def _apply_query(route: Route, index: FieldIndex, msg: Message, query: bytes) -> None:
    try:
        pairs = parse_qsl(
            query.decode("utf-8"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_QUERY_FIELDS,
        )
    except UnicodeDecodeError:
        raise InvalidArgument.field("query", "not UTF-8 once decoded") from None
    except ValueError as exc:
        raise InvalidArgument.field("query", str(exc)) from None
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    desc = route.method.input_type
    for key, values in grouped.items():
        name, map_key = key, None
        if key.endswith("]") and (m := _MAP_KEY.match(key)) is not None:
            name, map_key = m.group(1), m.group(2)
        try:
            chain = index.resolve(desc, name)
            if chain is None:
                continue  # unknown keys are ignored (grpc-gateway)
            names = tuple(fd.name for fd in chain)
            if any(names[:i] in route.bound for i in range(1, len(names) + 1)):
                continue  # the path or the body owns this field
            target = msg
            for fd in chain[:-1]:
                target = getattr(target, fd.name)
            _set_query_field(target, chain[-1], map_key, values)
        except FieldValueError as exc:
            raise InvalidArgument.field(key, str(exc)) from None


def _set_query_field(
    target: Message, leaf: FieldDescriptor, map_key: str | None, values: list[str]
) -> None:
    if map_key is not None or is_map(leaf):
        if map_key is None or not is_map(leaf):
            raise FieldValueError("map fields are set as name[key]=value")
        key_fd = leaf.message_type.fields_by_name["key"]
        value_fd = leaf.message_type.fields_by_name["value"]
        if value_fd.message_type is not None:
            raise FieldValueError("map values that are messages cannot come from the query")
        if len(values) > 1:
            raise FieldValueError("too many values for one map key")
        getattr(target, leaf.name)[scalar_parser(key_fd)(map_key)] = scalar_parser(value_fd)(
            values[0]
        )
        return
    if leaf.message_type is not None and not has_string_form(leaf):
        what = "repeated message" if leaf.is_repeated else "message"
        raise FieldValueError(f"a {what} field cannot be set from the query; set its fields")
    if not leaf.is_repeated and len(values) > 1:
        raise FieldValueError(f"too many values ({len(values)}) for a singular field")
    for value in values:
        set_field(target, leaf, value)


def response_body(route: Route, resp: Message) -> tuple[bytes, bytes]:
    """(body, content type) for one response message, honouring response_body and HttpBody."""
    if route.response_is_raw:
        hb = resp if route.response_field is None else getattr(resp, route.response_field.name)
        return hb.data, (hb.content_type or "application/octet-stream").encode("latin-1")
    return dumps(json_value(route, resp)), JSON_TYPE


def json_value(route: Route, resp: Message) -> object:
    f = route.response_field
    if f is None:
        return PRINTER(resp)
    if f.message_type is not None and not f.is_repeated:
        return PRINTER(getattr(resp, f.name))
    return PRINTER(resp).get(f.name)  # scalars and lists: printed even when empty


def dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
