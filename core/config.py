"""Frozen-dataclass config loaded once from AITBC_* environment variables and an optional .env.

Keys: a field `heartbeat_interval_s` reads `AITBC_HEARTBEAT_INTERVAL_S` (prefix + NAME).
`field(metadata={...})` may give:
  env     the exact key (no prefix), e.g. "RECEIPT_SIGNING_KEY_HEX"
  doc     a sentence for .env.example
  min/max inclusive bounds for int/float (and each element of a tuple)
  choices allowed values for str (and each element of a tuple)
  secret  True: the value never appears in errors or in .env.example

Nested frozen dataclasses are flattened into the same key space: a field
`server: ServerConfig` contributes ServerConfig's keys unchanged (AITBC_GRPC_PORT, ...),
so sharing a group of settings between services does not rename them. Give the nested field
`metadata={"env_prefix": "AITBC_POOLHUB_"}` to put its keys under another prefix.
A key defined twice is a programming error (TypeError).

Supported field types: str, int, float, bool, Path, Enum, Literal[...], tuple[X, ...]
(comma-separated), X | None (empty value -> None), nested frozen dataclasses.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import os
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from dotenv import dotenv_values

T = TypeVar("T")

# Set by the test harness and CI for the whole process; never a component's own setting.
HARNESS_KEYS = ("AITBC_TEST_", "AITBC_REQUIRE_SERVICES")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_MISSING = dataclasses.MISSING


class ConfigError(ValueError):
    """Every problem found in one load, one line each: `KEY: expected ..., got '...'`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


class _Bad(Exception):
    """A raw value did not parse; carries what was expected."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One environment key of a config class (as rendered into .env.example)."""

    key: str
    type: Any
    default: Any
    doc: str
    meta: Mapping[str, Any]

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    @property
    def expected(self) -> str:
        return _describe(self.type, self.meta)


def _field_default(f: dataclasses.Field[Any], parent: Any) -> Any:
    if parent is not _MISSING:
        return getattr(parent, f.name)
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    return _MISSING


def _walk(cls: type, prefix: str, parent: Any) -> Iterator[tuple[tuple[str, ...], Setting]]:
    """Yield (field path, Setting) for every leaf field; nested dataclasses flattened."""
    if not (dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen):  # type: ignore[attr-defined]
        raise TypeError(f"{cls!r} must be a frozen dataclass")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        default = _field_default(f, parent)
        if dataclasses.is_dataclass(tp):
            sub_prefix = f.metadata.get("env_prefix", prefix)
            for path, setting in _walk(tp, sub_prefix, default):  # type: ignore[arg-type]
                yield (f.name, *path), setting
            continue
        key = f.metadata.get("env") or prefix + f.name.upper()
        yield (f.name,), Setting(key, tp, default, f.metadata.get("doc", ""), f.metadata)


def settings(cls: type, *, prefix: str = "AITBC_") -> list[Setting]:
    """The keys `cls` reads, in field order."""
    out, seen = [], set()
    for _, setting in _walk(cls, prefix, _MISSING):
        if setting.key in seen:
            raise TypeError(f"{cls.__name__}: environment key {setting.key} is defined twice")
        seen.add(setting.key)
        out.append(setting)
    return out


def _optional_inner(tp: Any) -> Any | None:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
        raise TypeError(f"unsupported union type {tp!r} (only X | None)")
    return None


def _bounds(meta: Mapping[str, Any], noun: str) -> str:
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        return f"{noun} between {lo} and {hi}"
    if lo is not None:
        return f"{noun} >= {lo}"
    if hi is not None:
        return f"{noun} <= {hi}"
    return noun


def _describe(tp: Any, meta: Mapping[str, Any]) -> str:
    inner = _optional_inner(tp)
    if inner is not None:
        return f"{_describe(inner, meta)} (or empty for none)"
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"a comma-separated list of {_describe(typing.get_args(tp)[0], meta)}"
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(m.name.lower() for m in tp)
    if tp is bool:
        return "a boolean (true/false, 1/0, yes/no, on/off)"
    if tp is int:
        return _bounds(meta, "an integer")
    if tp is float:
        return _bounds(meta, "a number")
    if tp is Path:
        return "a path"
    if tp is str:
        choices = meta.get("choices")
        return "one of " + ", ".join(map(str, choices)) if choices else "a string"
    raise TypeError(f"unsupported config field type {tp!r}")


def _check_bounds(value: float, meta: Mapping[str, Any]) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _Bad


def _parse(tp: Any, raw: str, meta: Mapping[str, Any]) -> Any:
    inner = _optional_inner(tp)
    if inner is not None:
        return None if raw.strip() == "" else _parse(inner, raw, meta)
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"unsupported tuple type {tp!r} (use tuple[X, ...])")
        return tuple(_parse(args[0], part.strip(), meta) for part in raw.split(",") if part.strip())
    text = raw.strip()
    if origin is typing.Literal:
        for option in typing.get_args(tp):
            if str(option).lower() == text.lower():
                return option
        raise _Bad
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        for member in tp:
            if text.lower() in (member.name.lower(), str(member.value).lower()):
                return member
        raise _Bad
    if tp is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise _Bad
    if tp is int or tp is float:
        try:
            value = int(text, 10) if tp is int else float(text)
        except ValueError:
            raise _Bad from None
        if tp is float and not math.isfinite(value):
            raise _Bad
        _check_bounds(value, meta)
        return value
    if tp is Path:
        if not text:
            raise _Bad
        return Path(text).expanduser()
    if tp is str:
        choices = meta.get("choices")
        if choices and raw not in choices:
            raise _Bad
        return raw
    raise TypeError(f"unsupported config field type {tp!r}")


def _read_sources(env: Mapping[str, str] | None, env_file: str | Path | None) -> dict[str, str]:
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        merged.update({k: v or "" for k, v in dotenv_values(env_file).items()})
    merged.update(os.environ if env is None else env)  # the environment wins over .env
    return merged


def _allowed(key: str, allow: Iterable[str]) -> bool:
    return any(key == a or (a.endswith("_") and key.startswith(a)) for a in allow)


def load_config(
    cls: type[T],
    *,
    prefix: str = "AITBC_",
    env: Mapping[str, str] | None = None,
    env_file: str | Path | None = ".env",
    allow: Iterable[str] = (),
) -> T:
    """Build `cls` from the environment (default os.environ) over `env_file` (if it exists).

    `allow` lists other components' keys that may be present: exact keys, or prefixes ending
    in "_" (e.g. "AITBC_MINER_"); HARNESS_KEYS are always allowed. Any other unknown key with
    `prefix`, a malformed value or a missing required value raises one ConfigError that
    lists every problem.
    """
    source = _read_sources(env, env_file)
    allowed = (*HARNESS_KEYS, *allow)
    problems: list[str] = []
    values: dict[tuple[str, ...], Any] = {}
    known = set()
    for path, setting in _walk(cls, prefix, _MISSING):
        if setting.key in known:
            raise TypeError(f"{cls.__name__}: environment key {setting.key} is defined twice")
        known.add(setting.key)
        raw = source.get(setting.key)
        if raw is None:
            if setting.required:
                problems.append(f"{setting.key}: required, expected {setting.expected}, not set")
            values[path] = setting.default
            continue
        try:
            values[path] = _parse(setting.type, raw, setting.meta)
        except _Bad:
            shown = "<redacted>" if setting.meta.get("secret") else repr(raw)
            problems.append(f"{setting.key}: expected {setting.expected}, got {shown}")
    for key in sorted(source):
        if key.startswith(prefix) and key not in known and not _allowed(key, allowed):
            hint = difflib.get_close_matches(key, known, n=1)
            more = f" (did you mean {hint[0]}?)" if hint else ""
            problems.append(f"{key}: unknown setting{more}")
    if problems:
        raise ConfigError(problems)
    try:
        return _build(cls, (), values)
    except ValueError as exc:  # a __post_init__ cross-field check; it names its keys
        raise ConfigError([str(exc)]) from exc


def _build(cls: type[T], base: tuple[str, ...], values: Mapping[tuple[str, ...], Any]) -> T:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init:
            continue
        path = (*base, f.name)
        tp = hints[f.name]
        kwargs[f.name] = _build(tp, path, values) if dataclasses.is_dataclass(tp) else values[path]
    return cls(**kwargs)


def _render_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, tuple):
        return ",".join(_render_value(v) for v in value)
    return str(value)


def render_env_example(cls: type, *, prefix: str = "AITBC_") -> str:
    """A .env.example documenting every key: doc, constraints and default (commented out).

    Required keys are left uncommented and empty so that a copied file fails loudly
    until they are filled in.
    """
    lines = [
        f"# {cls.__name__}: settings read from the environment or .env (the environment wins).",
        "# Generated by core.config.render_env_example; do not edit by hand.",
    ]
    for s in settings(cls, prefix=prefix):
        lines.append("")
        lines.extend(f"# {line}".rstrip() for line in s.doc.splitlines())
        if {"min", "max", "choices"} & set(s.meta) or typing.get_origin(s.type) is typing.Literal:
            lines.append(f"# Expected: {s.expected}.")
        elif isinstance(s.type, type) and issubclass(s.type, enum.Enum):
            lines.append(f"# Expected: {s.expected}.")
        if s.required:
            lines.append("# Required.")
            lines.append(f"{s.key}=")
        else:
            value = "" if s.meta.get("secret") else _render_value(s.default)
            lines.append(f"# {s.key}={value}")
    return "\n".join(lines) + "\n"
