"""Compile google.api.http rules into a route table: validation, conflicts, trie dispatch."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from google.api import annotations_pb2, http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)

from core.gateway.fields import FieldIndex, is_map, scalar_parser
from core.gateway.template import (
    DSTAR,
    LITERAL,
    Template,
    TemplateError,
    Variable,
    overlap,
    parse_template,
)

HTTP_BODY = "google.api.HttpBody"


class RouteError(ValueError):
    """An http rule the gateway cannot serve; raised at start-up, naming the RPC."""


@dataclass(frozen=True, slots=True)
class PathParam:
    name: str  # dotted field path, as in the template
    chain: tuple[FieldDescriptor, ...]
    var: Variable
    parse: Any  # str -> value, for the leaf field


@dataclass(eq=False, repr=False, slots=True)
class Route:
    """One binding (an RPC may have several) with every per-request lookup precomputed."""

    method: MethodDescriptor
    http_method: str
    template: Template
    body: str  # "", "*", or a top-level request field name
    response_body: str  # "" or a top-level response field name
    binding_index: int  # 0 for the main rule, 1.. for additional_bindings
    request_class: Any
    response_class: Any
    path_params: tuple[PathParam, ...]
    body_field: FieldDescriptor | None
    request_body_is_raw: bool  # the body target is google.api.HttpBody
    response_field: FieldDescriptor | None
    response_is_raw: bool  # the selected response is google.api.HttpBody
    bound: frozenset[tuple[str, ...]]  # field paths the query string may not set
    grpc_path: str = field(init=False)

    def __post_init__(self) -> None:
        self.grpc_path = f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def server_streaming(self) -> bool:
        return self.method.server_streaming

    @property
    def rpc(self) -> str:
        return f"{self.method.containing_service.full_name}.{self.method.name}"

    @property
    def query_allowed(self) -> bool:
        return self.body != "*"

    def describe(self) -> str:
        return f"{self.http_method} {self.template.text} ({self.rpc})"

    def __repr__(self) -> str:
        return f"<Route {self.describe()}>"


class _Node:
    __slots__ = ("dstar", "leaf", "literals", "star")

    def __init__(self) -> None:
        self.literals: dict[str, _Node] = {}
        self.star: _Node | None = None
        self.leaf: Route | None = None
        self.dstar: Route | None = None  # a template ending in `**` here


def _insert(root: _Node, route: Route) -> None:
    node = root
    for seg in route.template.segments:
        if seg.kind == DSTAR:
            node.dstar = route
            return
        if seg.kind == LITERAL:
            node = node.literals.setdefault(seg.value, _Node())
        else:
            node.star = node.star or _Node()
            node = node.star
    node.leaf = route


def _walk(node: _Node, keys: list[str], i: int) -> Route | None:
    if i == len(keys):
        return node.leaf or node.dstar
    key = keys[i]
    child = node.literals.get(key)
    if child is not None:
        found = _walk(child, keys, i + 1)
        if found is not None:
            return found
    if node.star is not None and key:
        found = _walk(node.star, keys, i + 1)
        if found is not None:
            return found
    return node.dstar


class RouteTable:
    """Routes grouped by HTTP method and custom verb, each group a segment trie."""

    def __init__(self, routes: Sequence[Route], index: FieldIndex) -> None:
        self.routes = tuple(routes)
        self.index = index
        self._tries: dict[str, dict[str, _Node]] = {}
        for r in self.routes:
            by_verb = self._tries.setdefault(r.http_method, {})
            _insert(by_verb.setdefault(r.template.verb, _Node()), r)

    def match(self, http_method: str, segments: list[str]) -> tuple[Route, list[str]] | None:
        """Find the route for raw (still percent-encoded) path segments.

        Returns the route and the segments its variables index (verb split off). A route with a
        custom verb wins over a verbless one for the same path.
        """
        tries = self._tries.get(http_method)
        if tries is None:
            return None
        keys = [_literal_key(s) for s in segments]
        last = segments[-1]
        colon = last.rfind(":")
        if colon > 0:
            root = tries.get(last[colon + 1 :])
            if root is not None:
                head = [*segments[:-1], last[:colon]]
                found = _walk(root, [*keys[:-1], _literal_key(head[-1])], 0)
                if found is not None:
                    return found, head
        root = tries.get("")
        if root is not None:
            found = _walk(root, keys, 0)
            if found is not None:
                return found, segments
        return None

    def allowed_methods(self, segments: list[str]) -> list[str]:
        return sorted(m for m in self._tries if self.match(m, segments) is not None)


def _literal_key(raw: str) -> str:
    # Literals compare against the decoded segment; a decoded '/' can never equal a literal.
    return unquote(raw, errors="replace") if "%" in raw else raw


def compile_routes(services: Iterable[ServiceDescriptor]) -> RouteTable:
    """Read the http rules of every unary and server-streaming RPC; raise RouteError on any
    invalid template, body, response_body, or two bindings that can match the same request."""
    index = FieldIndex()
    routes: list[Route] = []
    for service in services:
        for method in service.methods:
            if method.client_streaming:
                continue  # client-streaming and bidi RPCs are gRPC-only
            opts = method.GetOptions()
            if not opts.HasExtension(annotations_pb2.http):
                continue
            rule = opts.Extensions[annotations_pb2.http]
            bindings = [rule, *rule.additional_bindings]
            for i, binding in enumerate(bindings):
                if i and binding.additional_bindings:
                    raise RouteError(f"{_rpc(method)}: additional_bindings may not be nested")
                routes.append(_compile(method, binding, i, index))
    _check_conflicts(routes)
    return RouteTable(routes, index)


def _rpc(method: MethodDescriptor) -> str:
    return f"{method.containing_service.full_name}.{method.name}"


def _compile(method: MethodDescriptor, rule: http_pb2.HttpRule, i: int, index: FieldIndex) -> Route:
    who = _rpc(method) + (f" (additional_bindings[{i - 1}])" if i else "")
    kind = rule.WhichOneof("pattern")
    if kind is None:
        raise RouteError(f"{who}: http rule has no pattern (get/put/post/delete/patch/custom)")
    if kind == "custom":
        verb, path = rule.custom.kind.upper(), rule.custom.path
        if not verb.isalpha():
            raise RouteError(f"{who}: invalid custom kind {rule.custom.kind!r}")
    else:
        verb, path = kind.upper(), getattr(rule, kind)
    try:
        template = parse_template(path)
    except TemplateError as exc:
        raise RouteError(f"{who}: {exc}") from None
    req, resp = method.input_type, method.output_type
    params = tuple(_path_param(who, req, v, template) for v in template.variables)
    body_field = _top_field(who, "body", req, rule.body) if rule.body not in ("", "*") else None
    bound = {tuple(fd.name for fd in p.chain) for p in params}
    if body_field is not None:
        # A path variable inside the body message is fine (`{book.name}` + `body: "book"`).
        if (body_field.name,) in bound:
            raise RouteError(f"{who}: body field {body_field.name!r} is also bound by the path")
        bound.add((body_field.name,))
    resp_field = _top_field(who, "response_body", resp, rule.response_body)
    if rule.body == "*":
        raw_request = req.full_name == HTTP_BODY
    else:
        raw_request = body_field is not None and _is_http_body(body_field)
    raw_response = (
        _is_http_body(resp_field) if resp_field is not None else resp.full_name == HTTP_BODY
    )
    return Route(
        method=method,
        http_method=verb,
        template=template,
        body=rule.body,
        response_body=rule.response_body,
        binding_index=i,
        request_class=message_factory.GetMessageClass(req),
        response_class=message_factory.GetMessageClass(resp),
        path_params=params,
        body_field=body_field,
        request_body_is_raw=raw_request,
        response_field=resp_field,
        response_is_raw=raw_response,
        bound=frozenset(bound),
    )


def _is_http_body(fd: FieldDescriptor) -> bool:
    return (
        fd.message_type is not None
        and not fd.is_repeated
        and fd.message_type.full_name == HTTP_BODY
    )


def _top_field(who: str, what: str, desc: Descriptor, name: str) -> FieldDescriptor | None:
    if not name:
        return None
    fd = desc.fields_by_name.get(name)
    if fd is None:
        raise RouteError(f"{who}: {what} {name!r} is not a top-level field of {desc.full_name}")
    return fd


def _path_param(who: str, desc: Descriptor, var: Variable, t: Template) -> PathParam:
    chain: list[FieldDescriptor] = []
    current: Descriptor | None = desc
    for depth, part in enumerate(var.field_path):
        fd = current.fields_by_name.get(part) if current is not None else None
        if fd is None:
            raise RouteError(
                f"{who}: path template {t.text!r} names unknown field {var.name!r} of {desc.full_name}"
            )
        last = depth == len(var.field_path) - 1
        if is_map(fd) or fd.is_repeated:
            what = "map" if is_map(fd) else "repeated"
            raise RouteError(f"{who}: path template {t.text!r} binds {what} field {var.name!r}")
        if last and fd.message_type is not None:
            raise RouteError(f"{who}: path template {t.text!r} binds message field {var.name!r}")
        chain.append(fd)
        current = fd.message_type
    leaf = chain[-1]
    if var.multi and leaf.type != FieldDescriptor.TYPE_STRING:
        raise RouteError(
            f"{who}: path template {t.text!r} binds a multi-segment value to non-string field "
            f"{var.name!r}"
        )
    return PathParam(var.name, tuple(chain), var, scalar_parser(leaf))


def _check_conflicts(routes: list[Route]) -> None:
    for i, a in enumerate(routes):
        for b in routes[i + 1 :]:
            if (
                a.http_method == b.http_method
                and a.template.verb == b.template.verb
                and overlap(a.template, b.template)
            ):
                raise RouteError(f"route conflict: {a.describe()} overlaps {b.describe()}")
