"""The compiled JSON printer prints exactly what json_format.MessageToDict prints."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aitbc.coordinator.v1 import job_pb2 as job_pb
from google.protobuf import any_pb2, json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from core.gateway.jsonprint import JsonPrinter

OPTIONS = {"preserving_proto_field_name": True, "always_print_fields_with_no_presence": True}


def same(msg: Message) -> object:
    expected = json_format.MessageToDict(msg, **OPTIONS)
    got = JsonPrinter()(msg)
    assert got == expected
    assert repr(got) == repr(expected) or _loose_equal(got, expected)
    return got


def _loose_equal(a: object, b: object) -> bool:
    # Key order may differ; value types may not (1 vs 1.0 vs "1").
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_loose_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_loose_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def full_request(pb) -> Message:
    extra = any_pb2.Any()
    extra.Pack(error_details_pb2.ErrorInfo(reason="r", domain="d"))
    req = pb.EchoRequest(
        id="i",
        name="n",
        num=-3,
        big=-(2**63),
        small=2**32 - 1,
        flag=True,
        ratio=float("nan"),
        raw=b"\x00\xff",
        color=pb.COLOR_GREEN,
        tags=["a", ""],
        nums=[0, -1],
        colors=[pb.COLOR_RED, 77],  # 77: an unknown number of an open enum
        nested=pb.Nested(label="l", child=pb.Nested(level=2, child=pb.Nested())),
        at=timestamp_pb2.Timestamp(seconds=1, nanos=5000),
        maybe_str={"value": ""},
        pick_num=0,
        items=[pb.Nested(label="x"), pb.Nested()],
        times=[timestamp_pb2.Timestamp()],
        f32=0.1,
        maybe_big={"value": 5},
        extra=extra,
        opt=0,
    )
    req.wait.FromJsonString("-1.5s")
    req.mask.paths.extend(["a.b", "c"])
    req.attrs.update({"k": [1, {"z": None}, "s", True]})
    req.any_value.number_value = 2.5
    req.list.extend([1, "two", None])
    req.counts["a"] = 1
    req.by_id[-5].label = "neg"
    req.by_id[7].CopyFrom(pb.Nested())
    req.flags[True] = "yes"
    req.flags[False] = "no"
    return req


def test_every_field_kind(gw: SimpleNamespace) -> None:
    got = same(full_request(gw.pb))
    assert got["ratio"] == "NaN" and got["f32"] == 0.1 and got["colors"] == ["COLOR_RED", 77]
    assert got["by_id"]["-5"]["label"] == "neg" and got["flags"] == {"true": "yes", "false": "no"}


def test_empty_messages(gw: SimpleNamespace) -> None:
    got = same(gw.pb.EchoRequest())
    assert "opt" not in got and "nested" not in got and got["by_id"] == {}
    same(gw.pb.EchoResponse())
    same(gw.pb.Tick())


def test_special_floats(gw: SimpleNamespace) -> None:
    same(gw.pb.EchoRequest(ratio=float("inf"), f32=float("-inf")))
    same(gw.pb.EchoRequest(ratio=-0.0, f32=3.4e38))


def test_product_messages_and_status() -> None:
    params = struct_pb2.Struct()
    params.update({"a": {"b": [1.5, "x"]}})
    job = job_pb.Job(
        job_id="j",
        state=job_pb.JOB_STATE_FAILED,
        payload=job_pb.JobPayload(service="s", parameters=params),
        result=job_pb.JobResult(inline=struct_pb2.Value(string_value="ok")),
        attempts=[job_pb.JobAttempt(attempt=1)],
    )
    same(job)
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ResourceInfo(resource_name="x"))
    same(status_pb2.Status(code=5, message="m", details=[detail]))


def test_value_that_json_cannot_hold_raises_like_json_format(gw: SimpleNamespace) -> None:
    msg = gw.pb.EchoRequest()
    msg.any_value.number_value = float("inf")
    with pytest.raises(json_format.SerializeToJsonError, match="Infinity"):
        json_format.MessageToDict(msg, **OPTIONS)
    with pytest.raises(ValueError, match="Infinity"):
        JsonPrinter()(msg)
