"""JSON Schema (OpenAPI 3.1) for messages, enums and well-known types; proto comments."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, FileDescriptor
from google.protobuf.descriptor_pb2 import DescriptorProto, FileDescriptorProto

from core.gateway.fields import JSON_TEXT_TYPES, WRAPPERS, is_map

FD = FieldDescriptor
REF = "#/components/schemas/"
ANY = "google.protobuf.Any"
_INT32 = {"type": "integer", "format": "int32"}
_UINT32 = {"type": "integer", "format": "int64", "minimum": 0}
_INT64 = {"type": "string", "format": "int64"}  # proto3 JSON prints 64-bit integers as strings
_UINT64 = {"type": "string", "format": "uint64"}
_BYTES = {"type": "string", "format": "byte", "contentEncoding": "base64"}
_SCALARS: dict[int, dict] = {
    FD.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FD.TYPE_FLOAT: {"type": "number", "format": "float"},
    FD.TYPE_INT32: _INT32,
    FD.TYPE_SINT32: _INT32,
    FD.TYPE_SFIXED32: _INT32,
    FD.TYPE_UINT32: _UINT32,
    FD.TYPE_FIXED32: _UINT32,
    FD.TYPE_INT64: _INT64,
    FD.TYPE_SINT64: _INT64,
    FD.TYPE_SFIXED64: _INT64,
    FD.TYPE_UINT64: _UINT64,
    FD.TYPE_FIXED64: _UINT64,
    FD.TYPE_BOOL: {"type": "boolean"},
    FD.TYPE_STRING: {"type": "string"},
    FD.TYPE_BYTES: _BYTES,
}
_P = "google.protobuf."
WKT_SCHEMAS: dict[str, dict] = {
    _P + "Timestamp": {"type": "string", "format": "date-time"},
    _P + "Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
        "examples": ["1.5s"],
    },
    _P + "FieldMask": {"type": "string", "description": "Comma-separated field paths."},
    _P + "Struct": {"type": "object", "additionalProperties": True},
    _P + "Value": {"description": "Any JSON value."},
    _P + "ListValue": {"type": "array", "items": {}},
    _P + "Empty": {"type": "object"},
    _P + "DoubleValue": {"type": ["number", "null"], "format": "double"},
    _P + "FloatValue": {"type": ["number", "null"], "format": "float"},
    _P + "Int64Value": {"type": ["string", "null"], "format": "int64"},
    _P + "UInt64Value": {"type": ["string", "null"], "format": "uint64"},
    _P + "Int32Value": {"type": ["integer", "null"], "format": "int32"},
    _P + "UInt32Value": {"type": ["integer", "null"], "format": "int64", "minimum": 0},
    _P + "BoolValue": {"type": ["boolean", "null"]},
    _P + "StringValue": {"type": ["string", "null"]},
    _P + "BytesValue": {"type": ["string", "null"], "format": "byte", "contentEncoding": "base64"},
}
ANY_SCHEMA = {
    "type": "object",
    "description": "A message of any type, named by its `@type` URL; its fields sit beside it.",
    "properties": {"@type": {"type": "string"}},
    "required": ["@type"],
    "additionalProperties": True,
}


class Comments:
    """Proto comments by element full name, read from source_code_info where a file has it."""

    def __init__(self, files: Iterable[FileDescriptorProto] = ()) -> None:
        self._given = {f.name: f for f in files if f.HasField("source_code_info")}
        self._loaded: dict[str, dict[str, str]] = {}

    def get(self, file: FileDescriptor, full_name: str) -> str:
        table = self._loaded.get(file.name)
        if table is None:
            proto = self._given.get(file.name)
            if proto is None:
                # Generated _pb2 modules strip source info; a pool fed from a descriptor set
                # built with --include_source_info keeps it.
                embedded = FileDescriptorProto.FromString(file.serialized_pb)
                proto = embedded if embedded.HasField("source_code_info") else None
            table = _file_comments(proto) if proto is not None else {}
            self._loaded[file.name] = table
        return table.get(full_name, "")


def _file_comments(f: FileDescriptorProto) -> dict[str, str]:
    where = {tuple(loc.path): loc for loc in f.source_code_info.location}
    out: dict[str, str] = {}

    def note(name: str, path: tuple[int, ...]) -> None:
        loc = where.get(path)
        if loc is not None:
            text = loc.leading_comments or loc.trailing_comments
            lines = [line.strip() for line in text.strip().splitlines()]
            if any(lines):
                out[name] = "\n".join(lines)

    def enums(prefix: str, items: Iterable, path: tuple[int, ...]) -> None:
        for i, e in enumerate(items):
            name = f"{prefix}.{e.name}"
            note(name, (*path, i))
            for j, v in enumerate(e.value):
                note(f"{name}.{v.name}", (*path, i, 2, j))

    def messages(prefix: str, items: Iterable[DescriptorProto], path: tuple[int, ...]) -> None:
        for i, m in enumerate(items):
            name = f"{prefix}.{m.name}"
            note(name, (*path, i))
            for j, fld in enumerate(m.field):
                note(f"{name}.{fld.name}", (*path, i, 2, j))
            messages(name, m.nested_type, (*path, i, 3))
            enums(name, m.enum_type, (*path, i, 4))

    pkg = f.package
    messages(pkg, f.message_type, (4,))
    enums(pkg, f.enum_type, (5,))
    for i, s in enumerate(f.service):
        note(f"{pkg}.{s.name}", (6, i))
        for j, m in enumerate(s.method):
            note(f"{pkg}.{s.name}.{m.name}", (6, i, 2, j))
    return {k.lstrip("."): v for k, v in out.items()}


class SchemaBuilder:
    """Builds components.schemas on demand; returns `$ref`s for messages and enums."""

    def __init__(self, comments: Comments) -> None:
        self.comments = comments
        self.components: dict[str, dict] = {}

    def describe(self, schema: dict, file: FileDescriptor, full_name: str) -> dict:
        text = self.comments.get(file, full_name)
        if text:
            schema = {**schema, "description": text}
        return schema

    def message(self, desc: Descriptor) -> dict:
        """Schema of a message used as a whole value: a WKT's JSON form, else a $ref."""
        wkt = WKT_SCHEMAS.get(desc.full_name)
        if wkt is not None:
            return dict(wkt)
        name = desc.full_name
        if name not in self.components:
            self.components[name] = {}  # placeholder: recursive messages stop here
            if name == ANY:
                self.components[name] = dict(ANY_SCHEMA)
            else:
                props = {f.name: self.field(f) for f in desc.fields}
                schema = {"type": "object", "properties": props}
                self.components[name] = self.describe(schema, desc.file, name)
        return {"$ref": REF + name}

    def enum(self, desc: EnumDescriptor) -> dict:
        name = desc.full_name
        if name not in self.components:
            schema: dict = {"type": "string", "enum": [v.name for v in desc.values]}
            lines = [self.comments.get(desc.file, name)]
            for v in desc.values:
                text = self.comments.get(desc.file, f"{name}.{v.name}")
                if text:
                    lines.append(f" - {v.name}: {' '.join(text.splitlines())}")
            text = "\n".join(line for line in lines if line)
            self.components[name] = {**schema, "description": text} if text else schema
        return {"$ref": REF + name}

    def value(self, fd: FieldDescriptor) -> dict:
        """Schema of one element of a field (ignoring repeated)."""
        if fd.message_type is not None:
            return self.message(fd.message_type)
        if fd.enum_type is not None:
            return self.enum(fd.enum_type)
        return dict(_SCALARS[fd.type])

    def field(self, fd: FieldDescriptor, *, described: bool = True) -> dict:
        if is_map(fd):
            schema = {
                "type": "object",
                "additionalProperties": self.value(fd.message_type.fields_by_name["value"]),
            }
        elif fd.is_repeated:
            schema = {"type": "array", "items": self.value(fd)}
        else:
            schema = self.value(fd)
        return self.describe(schema, fd.file, fd.full_name) if described else schema

    def query_value(self, fd: FieldDescriptor) -> dict:
        """Schema of a field's value as a URL string (JSON-text types are strings there)."""
        if fd.message_type is not None:
            mt = fd.message_type
            if mt.full_name in JSON_TEXT_TYPES:
                return {"type": "string", "contentMediaType": "application/json"}
            if mt.full_name in WRAPPERS:
                return self.value(mt.fields_by_name["value"])  # the wrapped scalar
        return self.value(fd)
