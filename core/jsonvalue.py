"""JSON values as they travel in protobuf Struct/Value, and their canonical sha256.

Struct stores every number as a double, so both the coordinator and the miners normalise a
value the same way (integral doubles back to ints) before hashing it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from google.protobuf import json_format, struct_pb2

_MAX_EXACT = 2**53


def plain(value: Any) -> Any:
    """JSON from a Struct/Value: integral numbers come back as ints (Struct stores doubles)."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < _MAX_EXACT else value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def from_value(v: struct_pb2.Value) -> Any:
    """A google.protobuf.Value as plain JSON (same result as plain(MessageToDict(v)), faster)."""
    kind = v.WhichOneof("kind")
    if kind == "number_value":
        n = v.number_value
        return int(n) if n.is_integer() and abs(n) < _MAX_EXACT else n
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "struct_value":
        return from_struct(v.struct_value)
    if kind == "list_value":
        return [from_value(x) for x in v.list_value.values]
    return None


def from_struct(s: struct_pb2.Struct) -> dict[str, Any]:
    return {k: from_value(v) for k, v in s.fields.items()}


def as_transmitted(value: Any) -> Any:
    """`value` after a trip through google.protobuf.Value (what the other side will see)."""
    msg = struct_pb2.Value()
    json_format.ParseDict(value, msg)
    return plain(json_format.MessageToDict(msg))


def canonical_sha256(value: Any) -> str:
    """Hex sha256 of the canonical JSON (sorted keys, compact, ASCII escapes) of `value`."""
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(data.encode()).hexdigest()
