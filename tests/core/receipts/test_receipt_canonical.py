"""one_shot_encoder: the text and the errors of JSONEncoder(**options).encode."""

from __future__ import annotations

import json
import math

import pytest

from core.receipts.canonical import one_shot_encoder

OPTIONS = [
    {"sort_keys": True, "separators": (",", ":"), "allow_nan": False},
    {"separators": (",", ":"), "allow_nan": False},
    {"separators": (",", ":"), "ensure_ascii": False},
    {},
]
VALUES = [
    {"b": [1, 2.5, None, True], "a": {"é": '中😀\n"\\', "z": -0.0}, "n": 10**30},
    [],
    "plain \u2028 text",
    1.1,
    None,
    {"x": (1, 2)},
]


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("value", VALUES)
def test_same_text_as_json_encoder(options, value):
    assert one_shot_encoder(**options)(value) == json.JSONEncoder(**options).encode(value)


@pytest.mark.parametrize("options", OPTIONS)
def test_same_errors_as_json_encoder(options):
    encode, reference = one_shot_encoder(**options), json.JSONEncoder(**options).encode
    loop: list = []
    loop.append(loop)
    bad = [loop, {"x": object()}, {1j: 1}, [math.nan], {"n": math.inf}]
    for value in bad:
        try:
            expected = reference(value)
        except (TypeError, ValueError) as exc:
            with pytest.raises(type(exc)):
                encode(value)
        else:
            assert encode(value) == expected
    # A refused value leaves nothing behind: the next call is unaffected.
    assert encode({"a": [1]}) == reference({"a": [1]})
