"""core.logging: JSON/text lines, bound ids, extra fields, tracebacks, redaction."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from core.logging import bind, job_id, miner_id, redact, request_id, setup_logging

SECRET = "sk-live-0123456789abcdef0123"


@pytest.fixture
def capture():
    """setup_logging on a StringIO; restores the root logger afterwards."""
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handlers: list[logging.Handler] = []

    def configure(fmt: str = "json", lvl: str = "DEBUG") -> io.StringIO:
        handlers.append(setup_logging(lvl, fmt, stream=stream))  # type: ignore[arg-type]
        return stream

    yield configure
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_has_standard_fields_bound_ids_and_extra(capture):
    stream = capture()
    log = logging.getLogger("aitbc.test")
    log.info("plain")
    with bind(request_id="r-1", job_id="j-1"):
        with bind(miner_id="m-1"):
            log.warning("job %s assigned", "j-1", extra={"slot": 2, "price": 1.5})
        log.info("after inner")
    log.info("after outer")
    first, assigned, after_inner, after_outer = lines(stream)
    assert set(first) == {"ts", "level", "logger", "event"}
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert assigned == {
        "ts": assigned["ts"],
        "level": "WARNING",
        "logger": "aitbc.test",
        "event": "job j-1 assigned",
        "request_id": "r-1",
        "job_id": "j-1",
        "miner_id": "m-1",
        "slot": 2,
        "price": 1.5,
    }
    assert "miner_id" not in after_inner and after_inner["job_id"] == "j-1"
    assert "job_id" not in after_outer
    assert (request_id.get(), job_id.get(), miner_id.get()) == (None, None, None)


def test_exception_traceback_is_one_json_line(capture):
    stream = capture()
    try:
        raise ValueError("bad thing")
    except ValueError:
        logging.getLogger("aitbc.test").exception("failed", extra={"obj": object()})
    assert len(stream.getvalue().splitlines()) == 1
    (doc,) = lines(stream)
    assert doc["level"] == "ERROR"
    assert "Traceback" in doc["exc"] and "ValueError: bad thing" in doc["exc"]
    assert doc["obj"].startswith("<object object")  # non-JSON values fall back to str()


def test_text_format(capture):
    stream = capture("text")
    with bind(job_id="j-9"):
        logging.getLogger("aitbc.test").info("hello", extra={"n": 1})
    line = stream.getvalue().strip()
    assert line.endswith("INFO    aitbc.test: hello job_id='j-9' n=1")


def test_level_filters_and_setup_is_idempotent(capture):
    stream = capture(lvl="WARNING")
    capture(lvl="WARNING")  # a second call replaces, never duplicates, our handler
    ours = [h for h in logging.getLogger().handlers if h.get_name() == "aitbc"]
    assert len(ours) == 1
    log = logging.getLogger("aitbc.test")
    log.info("dropped")
    log.warning("kept")
    assert [d["event"] for d in lines(stream)] == ["kept"]


def test_setup_rejects_bad_arguments():
    with pytest.raises(ValueError, match="log level"):
        setup_logging("LOUD")
    with pytest.raises(ValueError, match="format"):
        setup_logging("INFO", "xml")  # type: ignore[arg-type]


def test_redact():
    assert redact(SECRET) == "sk-l***"
    assert redact(SECRET, keep=0) == "***"
    assert redact("short-secret") == "***"  # short values are masked entirely
    assert redact(None) == redact("") == "<unset>"
    assert redact(SECRET.encode()) == "sk-l***"


def test_secret_looking_extra_fields_are_masked(capture):
    stream = capture()
    logging.getLogger("aitbc.test").info(
        "auth", extra={"api_key": SECRET, "authorization": "Bearer " + SECRET, "key_id": "k1"}
    )
    raw = stream.getvalue()
    assert SECRET not in raw
    (doc,) = lines(stream)
    assert doc["api_key"] == "sk-l***" and doc["authorization"] == "Bear***"
    assert doc["key_id"] == "k1"


def test_bind_rejects_unknown_names():
    with pytest.raises(TypeError, match="bind"), bind(user="x"):  # type: ignore[arg-type]
        pass


async def test_bound_ids_are_per_task(capture):
    stream = capture()
    log = logging.getLogger("aitbc.test")
    gate = asyncio.Event()

    async def work(name: str) -> None:
        with bind(job_id=name):
            await gate.wait()
            log.info("step")

    tasks = [asyncio.ensure_future(work(n)) for n in ("j-a", "j-b")]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*tasks)
    assert sorted(d["job_id"] for d in lines(stream)) == ["j-a", "j-b"]
