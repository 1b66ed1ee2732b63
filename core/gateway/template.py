"""google.api.http path templates: parsing, spec-correct percent-decoding, overlap tests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

LITERAL, STAR, DSTAR = "lit", "*", "**"

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Literal segments and verbs: RFC 3986 pchar minus the characters the grammar itself uses.
_LITERAL = re.compile(r"[A-Za-z0-9\-._~!$&'()+,;=@]+\Z")
_SLASH_ESCAPE = re.compile(r"(%2[fF])")


class TemplateError(ValueError):
    """A path template that does not follow the google.api.http grammar."""


@dataclass(frozen=True, slots=True)
class Segment:
    kind: str  # LITERAL, STAR or DSTAR
    value: str = ""  # the literal text for LITERAL


@dataclass(frozen=True, slots=True)
class Variable:
    field_path: tuple[str, ...]
    start: int  # first segment index covered
    end: int | None  # one past the last index; None when it ends in `**` (to the path's end)
    multi: bool  # multi-segment variables keep %2F undecoded (http.proto)
    pattern: tuple[Segment, ...]

    @property
    def name(self) -> str:
        return ".".join(self.field_path)


@dataclass(frozen=True, slots=True)
class Template:
    text: str
    segments: tuple[Segment, ...]
    verb: str
    variables: tuple[Variable, ...]

    @property
    def has_dstar(self) -> bool:
        return bool(self.segments) and self.segments[-1].kind == DSTAR


def parse_template(text: str) -> Template:
    """Parse `"/" Segments [":" Verb]`; raises TemplateError naming the problem."""
    if not text.startswith("/"):
        raise TemplateError(f"path template {text!r} must start with '/'")
    body, verb = text[1:], ""
    # The verb is the text after the last ':' that lies outside every `{...}`.
    depth, colon = 0, -1
    for i, ch in enumerate(body):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == ":" and depth == 0:
            colon = i
    if colon >= 0:
        body, verb = body[:colon], body[colon + 1 :]
        if not _LITERAL.match(verb):
            raise TemplateError(f"path template {text!r} has an invalid verb {verb!r}")
    segments: list[Segment] = []
    variables: list[Variable] = []
    for token in _split_top(body, text):
        if token.startswith("{"):
            if not token.endswith("}") or "{" in token[1:] or "}" in token[:-1]:
                raise TemplateError(f"path template {text!r} has a malformed variable {token!r}")
            inner = token[1:-1]
            field, _, sub = inner.partition("=")
            parts = tuple(field.split("."))
            if not all(_IDENT.match(p) for p in parts):
                raise TemplateError(f"path template {text!r} has an invalid field path {field!r}")
            pattern = tuple(_segment(s, text) for s in sub.split("/")) if sub else (Segment(STAR),)
            start = len(segments)
            segments.extend(pattern)
            has_dstar = pattern[-1].kind == DSTAR
            variables.append(
                Variable(
                    field_path=parts,
                    start=start,
                    end=None if has_dstar else len(segments),
                    multi=len(pattern) > 1 or has_dstar,
                    pattern=pattern,
                )
            )
        else:
            segments.append(_segment(token, text))
    for i, seg in enumerate(segments):
        if seg.kind == DSTAR and i != len(segments) - 1:
            raise TemplateError(f"path template {text!r}: '**' must be the last segment")
    names = [v.field_path for v in variables]
    if len(set(names)) != len(names):
        raise TemplateError(f"path template {text!r} binds a field more than once")
    return Template(text, tuple(segments), verb, tuple(variables))


def _split_top(body: str, text: str) -> list[str]:
    """Split on '/' outside braces."""
    tokens, depth, current = [], 0, []
    for ch in body:
        if ch == "{":
            depth += 1
            if depth > 1:
                raise TemplateError(f"path template {text!r} nests variables")
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise TemplateError(f"path template {text!r} has an unbalanced '}}'")
        if ch == "/" and depth == 0:
            tokens.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth:
        raise TemplateError(f"path template {text!r} has an unclosed '{{'")
    tokens.append("".join(current))
    return tokens


def _segment(token: str, text: str) -> Segment:
    if token == "*":
        return Segment(STAR)
    if token == "**":
        return Segment(DSTAR)
    if not token:
        raise TemplateError(f"path template {text!r} has an empty segment")
    if not _LITERAL.match(token):
        raise TemplateError(f"path template {text!r} has an invalid segment {token!r}")
    return Segment(LITERAL, token)


def decode_single(raw: str) -> str:
    """Single-segment captures are fully percent-decoded."""
    return unquote(raw, errors="strict") if "%" in raw else raw


def decode_multi(raw: str) -> str:
    """Multi-segment captures decode everything except %2F (which would be ambiguous with '/')."""
    if "%" not in raw:
        return raw
    parts = _SLASH_ESCAPE.split(raw)
    return "".join(p if i % 2 else unquote(p, errors="strict") for i, p in enumerate(parts))


def capture(var: Variable, segments: list[str]) -> str:
    """The raw (still encoded) text a variable covers in a matched path."""
    chosen = segments[var.start : var.end] if var.end is not None else segments[var.start :]
    return "/".join(chosen)


def overlap(a: Template, b: Template) -> bool:
    """True when some request path matches both templates (their verbs assumed equal)."""
    sa, sb = a.segments, b.segments
    for i in range(max(len(sa), len(sb))):
        x = sa[i] if i < len(sa) else None
        y = sb[i] if i < len(sb) else None
        if (x is not None and x.kind == DSTAR) or (y is not None and y.kind == DSTAR):
            return True  # `**` absorbs whatever the other side still needs
        if x is None or y is None:
            return False
        if x.kind == LITERAL and y.kind == LITERAL and x.value != y.value:
            return False
    return True


def openapi_path(t: Template) -> tuple[str, list[tuple[Variable, list[str]]]]:
    """OpenAPI path with one `{param}` per wildcard (literal parts of captures stay literal).

    A capture like `{name=shelves/*/books/*}` becomes `shelves/{name_1}/books/{name_2}` so that
    documentation tools never have to send an encoded '/'. Returns the path and, per variable,
    the parameter names it was split into.
    """
    out: list[str] = []
    params: list[tuple[Variable, list[str]]] = []
    by_start = {v.start: v for v in t.variables}
    i = 0
    while i < len(t.segments):
        var = by_start.get(i)
        if var is None:
            seg = t.segments[i]
            out.append(seg.value if seg.kind == LITERAL else seg.kind)
            i += 1
            continue
        wild = [s for s in var.pattern if s.kind != LITERAL]
        names = [var.name] if len(wild) == 1 else [f"{var.name}_{n + 1}" for n in range(len(wild))]
        it = iter(names)
        for seg in var.pattern:
            out.append(seg.value if seg.kind == LITERAL else "{" + next(it) + "}")
        params.append((var, names))
        i += len(var.pattern)
    path = "/" + "/".join(out)
    return (path + ":" + t.verb if t.verb else path), params
