"""Typed access to a job's parameters; every error is bad_params naming the field."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from miner.executors.base import bad_params

_MISSING: Any = object()
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class InputRef:
    """An input file: a URL, with the sha256 its bytes must have when it is an artifact."""

    url: str
    sha256: str | None = None


class Params:
    """Wraps the parameters (a google.protobuf.Struct as JSON: every number is a float)."""

    def __init__(self, raw: Any, allowed: Iterable[str]):
        if not isinstance(raw, Mapping):
            raise bad_params("params", f"must be an object, got {type(raw).__name__}")
        allowed = set(allowed)
        for key in raw:
            if key not in allowed:
                raise bad_params(
                    str(key), f"unknown parameter (known: {', '.join(sorted(allowed))})"
                )
        self.raw = raw

    def has(self, name: str) -> bool:
        return self.raw.get(name) is not None

    def _get(self, name: str, default: Any) -> Any:
        value = self.raw.get(name)
        if value is None:
            if default is _MISSING:
                raise bad_params(name, "is required")
            return default
        return value

    def text(
        self,
        name: str,
        default: Any = _MISSING,
        *,
        choices: Sequence[str] | None = None,
        max_len: int = 10_000,
        pattern: str | None = None,
        lower: bool = False,
    ) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise bad_params(name, f"must be a string, got {type(value).__name__}")
        if lower:
            value = value.lower()
        if choices is not None and value not in choices:
            raise bad_params(name, f"must be one of {', '.join(choices)}, got {value!r}")
        if len(value) > max_len:
            raise bad_params(name, f"must be at most {max_len} characters")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise bad_params(name, f"has an invalid format: {value!r}")
        return value

    def number(self, name: str, default: Any = _MISSING, *, lo: float, hi: float) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise bad_params(name, f"must be a number, got {value!r}")
        if not lo <= value <= hi:
            raise bad_params(name, f"must be between {lo:g} and {hi:g}, got {value:g}")
        return float(value)

    def integer(self, name: str, default: Any = _MISSING, *, lo: int, hi: int) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        return as_int(name, value, lo, hi)

    def flag(self, name: str, default: bool) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise bad_params(name, f"must be true or false, got {value!r}")
        return value

    def input_ref(self, name: str) -> InputRef:
        """A URL string, or {"url": ..., "sha256": ...} for an artifact."""
        value = self._get(name, _MISSING)
        if isinstance(value, str):
            url, sha256 = value, None
        elif isinstance(value, Mapping):
            extra = set(value) - {"url", "sha256"}
            if extra:
                raise bad_params(f"{name}.{sorted(extra)[0]}", "unknown field (known: url, sha256)")
            url, sha256 = value.get("url"), value.get("sha256")
            if sha256 is not None and not (isinstance(sha256, str) and _SHA256.match(sha256)):
                raise bad_params(f"{name}.sha256", "must be 64 hex digits")
            if not isinstance(url, str):
                raise bad_params(f"{name}.url", "is required and must be a string")
        else:
            raise bad_params(name, "must be a URL or an object {url, sha256}")
        if not re.match(r"^https?://[^/\s]+", url):
            raise bad_params(name, f"must be an http(s) URL, got {url[:100]!r}")
        return InputRef(url, sha256.lower() if sha256 else None)


def as_int(name: str, value: Any, lo: int, hi: int) -> int:
    """An integer in [lo, hi]; accepts integral floats, which is how Struct carries numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_params(name, f"must be an integer, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise bad_params(name, f"must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise bad_params(name, f"must be between {lo} and {hi}, got {int(value)}")
    return int(value)


def parse_size(name: str, value: Any, *, max_w: int = 8192, max_h: int = 8192) -> tuple[int, int]:
    """ "WIDTHxHEIGHT" -> (w, h)."""
    m = re.fullmatch(r"(\d{1,5})x(\d{1,5})", value) if isinstance(value, str) else None
    if not m:
        raise bad_params(name, f"must be WIDTHxHEIGHT like '1280x720', got {value!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if not (16 <= w <= max_w and 16 <= h <= max_h):
        raise bad_params(name, f"width must be 16..{max_w} and height 16..{max_h}, got {value}")
    return w, h
