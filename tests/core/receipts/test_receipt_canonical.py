"""Canonical bytes: null pruning, key order, escapes, exclusions, refusals; money()."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from types import MappingProxyType

import pytest

from core.receipts import ReceiptError, canonical_bytes, content_hash, money
from core.receipts.canonical import drop_nulls


def naive(doc: dict) -> bytes:
    """The reference definition, written the slow, obvious way."""
    body = {k: v for k, v in doc.items() if k not in ("signature", "attestations")}
    return json.dumps(drop_nulls(body), sort_keys=True, separators=(",", ":")).encode()


def test_null_valued_keys_dropped_at_every_level():
    doc = {
        "b": None,
        "a": {"z": None, "y": {"x": None, "w": 1}},
        "list": [None, {"k": None, "j": 2}],
    }
    assert canonical_bytes(doc) == b'{"a":{"y":{"w":1}},"list":[null,{"j":2}]}'


def test_keys_sorted_compact_and_floats_as_python_repr():
    doc = {"b": 1.0, "a": [3, 2], "c": {"y": 0.1, "x": 1e-07}, "B": True}
    assert canonical_bytes(doc) == b'{"B":true,"a":[3,2],"b":1.0,"c":{"x":1e-07,"y":0.1}}'


def test_non_ascii_escaped_as_in_json_dumps():
    doc = {"model": "café", "emoji": "😀", "ctl": 'a\nb"c\\'}
    out = canonical_bytes(doc)
    assert out == b'{"ctl":"a\\nb\\"c\\\\","emoji":"\\ud83d\\ude00","model":"caf\\u00e9"}'
    assert out.isascii()


def test_signature_and_attestations_excluded_at_top_level_only():
    doc = {"a": 1, "signature": {"sig": "x"}, "attestations": [], "m": {"signature": 2}}
    assert canonical_bytes(doc) == b'{"a":1,"m":{"signature":2}}'
    assert canonical_bytes(doc, exclude=()) == (
        b'{"a":1,"attestations":[],"m":{"signature":2},"signature":{"sig":"x"}}'
    )


def test_mappings_and_tuples_are_accepted():
    doc = MappingProxyType({"t": (1, 2), "m": MappingProxyType({"k": None, "v": "x"})})
    assert canonical_bytes(doc) == b'{"m":{"v":"x"},"t":[1,2]}'


def test_a_string_that_looks_like_a_null_key_stays():
    # The fast path keys on the bytes '":null'; a string holding them must survive intact.
    doc = {"s": 'x":null', "t": '":null,', "n": None}
    assert json.loads(canonical_bytes(doc)) == {"s": 'x":null', "t": '":null,'}


@pytest.mark.parametrize(
    "doc", [{"x": float("nan")}, {"x": float("inf")}, {"x": object()}, {"x": Decimal(1)}]
)
def test_non_json_values_refused(doc):
    with pytest.raises(ReceiptError, match="not canonicalizable"):
        canonical_bytes(doc)


def test_non_mapping_refused():
    with pytest.raises(ReceiptError, match="JSON object"):
        canonical_bytes([1, 2])  # type: ignore[arg-type]


def _random_value(rng: random.Random, depth: int) -> object:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.randint(-(10**12), 10**12)
    if kind == 3:
        return rng.uniform(-1e6, 1e6) * rng.choice([1, 1e-9, 1e9])
    if kind in (4, 5):
        alphabet = 'abcXYZ09 ":,{}[]\\\n\t/éß中😀\x00\x7f'
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
    if kind in (6, 7):
        return {_random_key(rng): _random_value(rng, depth + 1) for _ in range(rng.randrange(5))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def _random_key(rng: random.Random) -> str:
    return "".join(rng.choice('akz_":é null') for _ in range(rng.randrange(1, 6)))


def test_seeded_random_documents_match_reference_and_round_trip():
    rng = random.Random(20250926)
    for _ in range(400):
        doc = {_random_key(rng): _random_value(rng, 0) for _ in range(rng.randrange(1, 8))}
        out = canonical_bytes(doc)
        assert out == naive(doc)
        # Canonical form is a fixed point: parse and re-canonicalize gives the same bytes.
        assert canonical_bytes(json.loads(out)) == out


def test_content_hash():
    assert content_hash(b"") == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("4.2"), 4.2),
        (Decimal("2"), 2),
        (Decimal("2.0000004"), 2),
        (Decimal("0.0000125"), 0.000012),  # half-to-even
        (Decimal("0.0000135"), 0.000014),
        (Decimal("1.9"), 1.9),
        (7, 7),
        (Decimal("123456789.123456"), 123456789.123456),
    ],
)
def test_money_rounds_to_six_decimals(value, expected):
    out = money(value)
    assert out == expected
    assert type(out) is type(expected)


@pytest.mark.parametrize(
    "value", [1.5, True, "1", Decimal("NaN"), Decimal("Infinity"), Decimal("123456789012.123456")]
)
def test_money_refuses(value):
    with pytest.raises(ReceiptError, match="money"):
        money(value)
