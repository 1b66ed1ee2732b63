"""Path template grammar, percent-decoding and overlap rules (pure functions)."""

from __future__ import annotations

import re

import pytest

from core.gateway.template import (
    DSTAR,
    LITERAL,
    STAR,
    TemplateError,
    decode_multi,
    decode_single,
    openapi_path,
    overlap,
    parse_template,
)


def test_simple_variable_is_one_segment() -> None:
    t = parse_template("/v1/jobs/{job_id}")
    assert [s.kind for s in t.segments] == [LITERAL, LITERAL, STAR]
    (var,) = t.variables
    assert var.field_path == ("job_id",) and var.start == 2 and var.end == 3 and not var.multi


def test_literal_including_capture_and_verb() -> None:
    t = parse_template("/v1/{name=shelves/*/books/*}:archive")
    assert t.verb == "archive"
    (var,) = t.variables
    assert (var.start, var.end, var.multi) == (1, 5, True)
    assert [s.value for s in var.pattern if s.kind == LITERAL] == ["shelves", "books"]


def test_double_star_runs_to_the_end() -> None:
    t = parse_template("/v1/files/{path=**}")
    assert t.has_dstar and t.variables[0].end is None and t.variables[0].multi
    assert t.segments[-1].kind == DSTAR


def test_nested_field_path() -> None:
    assert parse_template("/v1/{book.name}").variables[0].field_path == ("book", "name")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("v1/jobs", "must start with '/'"),
        ("/v1//jobs", "empty segment"),
        ("/v1/{a=**}/x", "'**' must be the last"),
        ("/v1/{a={b}}", "nests variables"),
        ("/v1/{a", "unclosed"),
        ("/v1/a}", "unbalanced"),
        ("/v1/{1a}", "invalid field path"),
        ("/v1/{a}/{a}", "more than once"),
        ("/v1/jo bs", "invalid segment"),
        ("/v1/jobs:", "invalid verb"),
        ("/v1/jobs:a/b", "invalid verb"),
    ],
)
def test_bad_templates_are_rejected(text: str, problem: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(problem)):
        parse_template(text)


def test_single_segment_decoding_is_complete() -> None:
    assert decode_single("a%2Fb%20c%3A") == "a/b c:"
    assert decode_single("plain") == "plain"


def test_multi_segment_decoding_keeps_encoded_slashes() -> None:
    assert decode_multi("a/b%20c/d%2Fe%2ff") == "a/b c/d%2Fe%2ff"
    assert decode_multi("x%252F") == "x%2F"  # an encoded '%' followed by "2F" is not a slash


def test_invalid_utf8_after_decoding_raises() -> None:
    with pytest.raises(UnicodeDecodeError):
        decode_single("%ff")


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("/v1/jobs/{id}", "/v1/jobs/special", True),
        ("/v1/jobs/{id}", "/v1/{parent}/{x}", True),
        ("/v1/jobs/{id}", "/v1/jobs/{id}/x", False),
        ("/v1/jobs/{id}", "/v1/miners/{id}", False),
        ("/v1/{name=**}", "/v1/jobs/{id}/x", True),
        ("/v1/files/{name=**}", "/v1/jobs/{id}", False),
        ("/v1/a/{x=**}", "/v1/a", True),  # `**` also matches zero segments
    ],
)
def test_overlap(a: str, b: str, expected: bool) -> None:
    assert overlap(parse_template(a), parse_template(b)) is expected
    assert overlap(parse_template(b), parse_template(a)) is expected


def test_openapi_path_expands_literal_captures() -> None:
    path, params = openapi_path(parse_template("/v1/{name=shelves/*/books/*}:archive"))
    assert path == "/v1/shelves/{name_1}/books/{name_2}:archive"
    assert params[0][1] == ["name_1", "name_2"]
    assert openapi_path(parse_template("/v1/jobs/{job_id}"))[0] == "/v1/jobs/{job_id}"
    assert openapi_path(parse_template("/v1/{name=jobs/*}"))[0] == "/v1/jobs/{name}"
