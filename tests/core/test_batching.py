"""take_ready: the first item plus what is queued now, within item and byte limits."""

from __future__ import annotations

import asyncio

from google.protobuf import wrappers_pb2

from core.batching import take_ready

STOP = object()


def msg(text: str) -> wrappers_pb2.StringValue:
    return wrappers_pb2.StringValue(value=text)


def queued(*items) -> asyncio.Queue:
    q: asyncio.Queue = asyncio.Queue()
    for i in items:
        q.put_nowait(i)
    return q


def take(q, first, **kw):
    return take_ready(q, first, convert=msg, is_stop=lambda i: i is STOP, **kw)


async def test_takes_what_is_queued_without_waiting():
    q = queued("b", "c")
    out, held = take(q, "a")
    assert [m.value for m in out] == ["a", "b", "c"] and held is None and q.empty()
    out, held = take(q, "x")  # nothing queued: the first alone, at once
    assert [m.value for m in out] == ["x"] and held is None


async def test_stop_item_is_held_back_and_order_kept():
    q = queued("b", STOP, "c")
    out, held = take(q, "a")
    assert [m.value for m in out] == ["a", "b"] and held is STOP
    assert q.get_nowait() == "c"  # untouched after the stop


async def test_item_limit():
    q = queued(*"bcdef")
    out, held = take(q, "a", max_items=3)
    assert [m.value for m in out] == ["a", "b", "c"] and held is None and q.qsize() == 3


async def test_byte_budget_holds_the_item_that_does_not_fit():
    big = "x" * 100
    q = queued(big, "c")
    out, held = take(q, "a" * 100, max_bytes=150)
    assert [m.value for m in out] == ["a" * 100] and held == big
    assert q.get_nowait() == "c"
    out, _ = take(queued(), "y" * 500, max_bytes=150)  # the first goes whatever its size
    assert len(out) == 1
