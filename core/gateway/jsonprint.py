"""Proto3 JSON printing compiled per message type (json_format's output, several times faster).

Output equals `json_format.MessageToDict(m, preserving_proto_field_name=True,
always_print_fields_with_no_presence=True)`: proto field names, unpopulated fields printed,
64-bit integers as strings, enums by name, bytes as base64, NaN/Infinity as strings, float32
at its shortest round-trip form. json_format walks descriptors in Python on every call; here
each message type gets its field converters once. Well-known types, extensions and closed
enums with unknown numbers go to json_format itself, so their rules stay its rules.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message

FD = FieldDescriptor
_OPTIONS = {"preserving_proto_field_name": True, "always_print_fields_with_no_presence": True}
_INT64 = frozenset({FD.CPPTYPE_INT64, FD.CPPTYPE_UINT64})
Convert = Callable[[Any], Any]


def _wkt(desc: Descriptor) -> bool:
    return desc.file.name.startswith("google/protobuf/")


def _json_format(value: Message) -> Any:
    return json_format.MessageToDict(value, **_OPTIONS)


def _to_json_string(value: Message) -> str:
    return value.ToJsonString()  # what json_format does for Timestamp, Duration, FieldMask


def _value(value: Message) -> Any:
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "number_value":
        number = value.number_value
        return number if math.isfinite(number) else _json_format(value)  # json_format raises
    if kind == "struct_value":
        return _struct(value.struct_value)
    if kind == "list_value":
        return [_value(v) for v in value.list_value.values]
    return getattr(value, kind)  # string_value, bool_value


def _struct(value: Message) -> dict:
    fields = value.fields
    return {key: _value(fields[key]) for key in fields}


_P = "google.protobuf."
_WKT: dict[str, Callable[[Any], Any]] = {
    _P + "Timestamp": _to_json_string,
    _P + "Duration": _to_json_string,
    _P + "FieldMask": _to_json_string,
    _P + "Struct": _struct,
    _P + "Value": _value,
    _P + "ListValue": lambda v: [_value(x) for x in v.values],
    _P + "Empty": lambda v: {},
}


def _double(value: float) -> Any:
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    return "NaN" if math.isnan(value) else value


def _float(value: float) -> Any:
    if math.isinf(value) or math.isnan(value):
        return _double(value)
    return type_checkers.ToShortestFloat(value)


def _bytes(value: bytes) -> str:
    return base64.b64encode(value).decode()


class JsonPrinter:
    """Message -> JSON-ready Python value; one compiled function per message type."""

    def __init__(self) -> None:
        self._compiled: dict[Descriptor, Callable[[Message], Any]] = {}

    def __call__(self, msg: Message) -> Any:
        fn = self._compiled.get(msg.DESCRIPTOR)
        if fn is None:
            fn = self._compile(msg.DESCRIPTOR)
        return fn(msg)

    def _compile(self, desc: Descriptor) -> Callable[[Message], Any]:
        if _wkt(desc) or _needs_json_format(desc):
            fn = _WKT.get(desc.full_name, _json_format)  # wrappers, Any: json_format
            self._compiled[desc] = fn
            return fn
        converters: dict[int, tuple[str, Convert]] = {}
        defaults: list[tuple[str, int, Any]] = []  # (name, 0 value | 1 list | 2 dict, value)

        def to_dict(msg: Message) -> Any:
            out: dict[str, Any] = {}
            for fd, value in msg.ListFields():
                entry = converters.get(fd.number)
                if entry is None or fd.is_extension:
                    return _json_format(msg)  # extensions: json_format's naming rules
                out[entry[0]] = entry[1](value)
            for name, kind, value in defaults:
                if name not in out:
                    out[name] = value if kind == 0 else [] if kind == 1 else {}
            return out

        # Registered before the fields so that recursive types find themselves.
        self._compiled[desc] = to_dict
        for fd in desc.fields:
            converters[fd.number] = (fd.name, self._field(fd))
            if fd.has_presence:
                continue
            if fd.is_repeated:
                defaults.append((fd.name, 2 if self._is_map(fd) else 1, None))
            else:
                default = self._value(fd)(fd.default_value)
                defaults.append((fd.name, 0, default))
        return to_dict

    @staticmethod
    def _is_map(fd: FieldDescriptor) -> bool:
        return fd.message_type is not None and fd.message_type.GetOptions().map_entry

    def _field(self, fd: FieldDescriptor) -> Convert:
        if self._is_map(fd):
            value = self._value(fd.message_type.fields_by_name["value"])
            if fd.message_type.fields_by_name["key"].type == FD.TYPE_BOOL:
                return lambda m: {("true" if k else "false"): value(m[k]) for k in m}
            return lambda m: {str(k): value(m[k]) for k in m}
        one = self._value(fd)
        if fd.is_repeated:
            return lambda values: [one(v) for v in values]
        return one

    def _value(self, fd: FieldDescriptor) -> Convert:
        cpp = fd.cpp_type
        if cpp == FD.CPPTYPE_MESSAGE:
            return self
        if cpp == FD.CPPTYPE_ENUM:
            return self._enum(fd)
        if fd.type == FD.TYPE_BYTES:
            return _bytes
        if cpp in _INT64:
            return str
        if cpp == FD.CPPTYPE_DOUBLE:
            return _double
        if cpp == FD.CPPTYPE_FLOAT:
            return _float
        if cpp == FD.CPPTYPE_BOOL:
            return bool
        return lambda v: v  # int32 family, string

    def _enum(self, fd: FieldDescriptor) -> Convert:
        enum = fd.enum_type
        if enum.full_name == "google.protobuf.NullValue":
            return lambda v: None
        names = {v.number: v.name for v in enum.values}
        return lambda v: names.get(v, v)  # open enums print unknown numbers as numbers


def _needs_json_format(desc: Descriptor) -> bool:
    """Closed enums (unknown numbers are errors) and per-value JSON options: json_format's."""
    for fd in desc.fields:
        enum = fd.enum_type
        if enum is not None and (
            enum.is_closed or any(v.GetOptions().ListFields() for v in enum.values)
        ):
            return True
    return False
