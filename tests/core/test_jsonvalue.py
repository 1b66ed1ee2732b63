"""JSON values through protobuf Struct/Value: normalisation, fast conversion, canonical hash."""

import random

from google.protobuf import json_format, struct_pb2

from core.jsonvalue import as_transmitted, canonical_sha256, from_value, plain


def _random_json(rng: random.Random, depth: int = 0):
    kinds = ["int", "float", "str", "bool", "null"] + (["list", "dict"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, 1, -7, 2**40, 2**53 + 1])
    if kind == "float":
        return rng.choice([1.5, -0.25, 1e300, 3.0])
    if kind == "str":
        return rng.choice(["", "a", "ünï", "x" * 20])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {f"k{i}": _random_json(rng, depth + 1) for i in range(rng.randint(0, 3))}


def test_fast_conversion_matches_json_format():
    rng = random.Random(7)
    for _ in range(300):
        value = _random_json(rng)
        msg = struct_pb2.Value()
        json_format.ParseDict(value, msg)
        assert from_value(msg) == plain(json_format.MessageToDict(msg)) == as_transmitted(value)


def test_integral_doubles_come_back_as_ints_and_hash_alike():
    assert as_transmitted({"crf": 23, "f": 1.5}) == {"crf": 23, "f": 1.5}
    assert canonical_sha256({"a": 1.0}) != canonical_sha256({"a": 1})
    assert canonical_sha256(as_transmitted({"a": 1.0})) == canonical_sha256({"a": 1})
