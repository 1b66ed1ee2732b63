"""Structured logging: one JSON object (or text line) per event, with request/job/miner ids."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import time
import traceback
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Literal

# Set by the gRPC pipeline (request_id) and by domain code through bind() (job_id, miner_id).
request_id: ContextVar[str | None] = ContextVar("aitbc_request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("aitbc_job_id", default=None)
miner_id: ContextVar[str | None] = ContextVar("aitbc_miner_id", default=None)
_BINDABLE: dict[str, ContextVar[str | None]] = {
    "request_id": request_id,
    "job_id": job_id,
    "miner_id": miner_id,
}

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

# Extra fields whose names look like secrets are masked even if a caller forgets redact().
_SECRET_NAME = re.compile(
    r"(api_?key|secret|token|password|passwd|authorization|private_?key|signing_?key|credential)",
    re.IGNORECASE,
)

_HANDLER_NAME = "aitbc"
# (level, format) of the last setup_logging() call: helper processes repeat it.
configured: tuple[str, str] | None = None


def redact(value: object, *, keep: int = 4) -> str:
    """Mask a secret for logs: at most `keep` leading characters of a long value survive.

    Values shorter than 16 characters are masked completely (a prefix of a short secret
    gives too much of it away); None and "" become "<unset>".
    """
    if value is None or value == "":
        return "<unset>"
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if len(text) < 16 or keep <= 0:
        return "***"
    return text[:keep] + "***"


@contextlib.contextmanager
def bind(**ids: str | None) -> Iterator[None]:
    """Set request_id / job_id / miner_id for every log line emitted inside the block."""
    unknown = set(ids) - set(_BINDABLE)
    if unknown:
        raise TypeError(f"bind() accepts {sorted(_BINDABLE)}, not {sorted(unknown)}")
    tokens = [(_BINDABLE[k], _BINDABLE[k].set(v)) for k, v in ids.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, var in _BINDABLE.items():
        value = var.get()
        if value is not None:
            out[name] = value
    for key, value in record.__dict__.items():
        if key in _RECORD_ATTRS or key.startswith("_"):
            continue
        out[key] = redact(value) if _SECRET_NAME.search(key) else value
    return out


def _timestamp(record: logging.LogRecord) -> str:
    secs = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{secs}.{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, bound ids, extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        doc.update(_fields(record))
        if record.exc_info:
            doc["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.stack_info:
            doc["stack"] = record.stack_info
        return json.dumps(doc, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-oriented single line: `ts LEVEL logger: event key=value ...` (+ traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        pairs = " ".join(f"{k}={v!r}" for k, v in _fields(record).items())
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if pairs:
            line += " " + pairs
        if record.exc_info:
            line += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return line


def setup_logging(
    level: str = "INFO",
    fmt: Literal["json", "text"] = "json",
    *,
    stream: Any = None,
) -> logging.Handler:
    """Configure the root logger once per process; calling again replaces our handler."""
    if fmt not in ("json", "text"):
        raise ValueError(f"log format must be 'json' or 'text', got {fmt!r}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(numeric)
    global configured
    configured = (level.upper(), fmt)
    return handler
