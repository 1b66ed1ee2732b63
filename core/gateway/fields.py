"""Setting message fields from strings (path and query values): scalars, enums, well-known types."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

FD = FieldDescriptor
_INT = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")
_SPECIAL_FLOATS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
_TRUE = frozenset({"true", "True", "TRUE", "t", "T", "1"})
_FALSE = frozenset({"false", "False", "FALSE", "f", "F", "0"})
_RANGES = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
}
WRAPPERS = frozenset(
    f"google.protobuf.{n}Value"
    for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)
JSON_TEXT_TYPES = frozenset(
    {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
)
# Message types that have a string form in a URL (and so count as "primitive" in a query).
STRING_FORM_TYPES = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
    | WRAPPERS
    | JSON_TEXT_TYPES
)


class FieldValueError(ValueError):
    """A string that does not convert to the field's type; the text says why."""


def is_map(fd: FieldDescriptor) -> bool:
    mt = fd.message_type
    return mt is not None and fd.is_repeated and mt.GetOptions().map_entry


def has_string_form(fd: FieldDescriptor) -> bool:
    return fd.message_type is None or fd.message_type.full_name in STRING_FORM_TYPES


def scalar_parser(fd: FieldDescriptor) -> Callable[[str], Any]:
    """A function str -> Python value for a scalar or enum field (raises FieldValueError)."""
    t = fd.type
    if t == FD.TYPE_STRING:
        return _identity
    if t == FD.TYPE_BOOL:
        return _parse_bool
    if t in _RANGES:
        low, high = _RANGES[t]
        return lambda s: _parse_int(s, low, high)
    if t in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return _parse_float
    if t == FD.TYPE_BYTES:
        return _parse_bytes
    if t == FD.TYPE_ENUM:
        enum = fd.enum_type

        def parse_enum(s: str) -> int:
            value = enum.values_by_name.get(s)
            if value is None and _INT.match(s):
                value = enum.values_by_number.get(int(s))
            if value is None:
                raise FieldValueError(f"{s!r} is not a value of enum {enum.full_name}")
            return value.number

        return parse_enum
    raise TypeError(f"field {fd.full_name} is not a scalar")


def _identity(s: str) -> str:
    return s


def _parse_bool(s: str) -> bool:
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise FieldValueError(f"{s!r} is not a boolean (true or false)")


def _parse_int(s: str, low: int, high: int) -> int:
    if not _INT.match(s):
        raise FieldValueError(f"{s!r} is not an integer")
    n = int(s)
    if not low <= n <= high:
        raise FieldValueError(f"{s} is out of range [{low}, {high}]")
    return n


def _parse_float(s: str) -> float:
    if s in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[s]
    if not _FLOAT.match(s):
        raise FieldValueError(f"{s!r} is not a number")
    return float(s)


def _parse_bytes(s: str) -> bytes:
    # Query strings turn '+' into ' ', so accept both alphabets and missing padding.
    text = s.replace(" ", "+")
    text += "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text)
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FieldValueError(f"{s!r} is not base64") from None


def set_message_from_string(msg: Message, s: str) -> None:
    """Fill a well-known-type message from its URL string form."""
    name = msg.DESCRIPTOR.full_name
    try:
        if name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
            msg.FromJsonString(s)
        elif name == "google.protobuf.FieldMask":
            msg.paths.extend(p for p in s.split(",") if p)
        elif name in WRAPPERS:
            msg.value = scalar_parser(msg.DESCRIPTOR.fields_by_name["value"])(s)
        elif name in JSON_TEXT_TYPES:
            json_format.Parse(s, msg)
        else:
            raise FieldValueError(f"message {name} cannot be set from a string")
    except FieldValueError:
        raise
    except (ValueError, TypeError, json_format.ParseError) as exc:
        raise FieldValueError(f"{s!r} is not a valid {name}: {exc}") from None


def set_field(parent: Message, fd: FieldDescriptor, s: str) -> None:
    """Set (or append to, when repeated) one field of `parent` from a string."""
    mt = fd.message_type
    if mt is None:
        value = scalar_parser(fd)(s)
        if fd.is_repeated:
            getattr(parent, fd.name).append(value)
        else:
            _check_oneof(parent, fd)
            setattr(parent, fd.name, value)
        return
    if mt.full_name not in STRING_FORM_TYPES:
        raise FieldValueError(f"message field {fd.name} cannot be set from a string")
    if fd.is_repeated:
        set_message_from_string(getattr(parent, fd.name).add(), s)
        return
    if s == "null" and mt.full_name not in JSON_TEXT_TYPES:
        return  # grpc-gateway: "null" leaves a message-typed field unset
    _check_oneof(parent, fd)
    sub = getattr(parent, fd.name)
    sub.SetInParent()
    set_message_from_string(sub, s)


def _check_oneof(parent: Message, fd: FieldDescriptor) -> None:
    oneof = fd.containing_oneof
    if oneof is not None and not _is_synthetic(fd):
        current = parent.WhichOneof(oneof.name)
        if current is not None and current != fd.name:
            raise FieldValueError(f"oneof {oneof.name} already has field {current} set")


def _is_synthetic(fd: FieldDescriptor) -> bool:
    oneof = fd.containing_oneof
    return oneof is not None and len(oneof.fields) == 1 and oneof.name == "_" + fd.name


class FieldIndex:
    """Per-message maps from proto and JSON field names to descriptors (built once, cached)."""

    def __init__(self) -> None:
        # One index per route table, whose services share one descriptor pool.
        self._names: dict[str, dict[str, FieldDescriptor]] = {}

    def names(self, desc: Descriptor) -> dict[str, FieldDescriptor]:
        table = self._names.get(desc.full_name)
        if table is None:
            table = {}
            for f in desc.fields:
                table[f.json_name] = f
            for f in desc.fields:
                table[f.name] = f  # proto names win where a json_name collides
            self._names[desc.full_name] = table
        return table

    def resolve(self, desc: Descriptor, dotted: str) -> list[FieldDescriptor] | None:
        """Walk a dotted path of proto or JSON names; None when a name is unknown.

        Raises FieldValueError for a path through a repeated or map field (no query form).
        """
        chain: list[FieldDescriptor] = []
        parts = dotted.split(".")
        current: Descriptor | None = desc
        for i, part in enumerate(parts):
            if current is None:
                return None  # below a scalar or a well-known type: not a field
            fd = self.names(current).get(part)
            if fd is None:
                return None
            chain.append(fd)
            mt = fd.message_type
            if i < len(parts) - 1 and mt is not None and fd.is_repeated:
                what = "map" if is_map(fd) else "repeated message"
                raise FieldValueError(
                    f"{fd.name} is a {what} field; it cannot be set from the query"
                )
            current = mt if mt is not None and not has_string_form(fd) else None
        return chain
