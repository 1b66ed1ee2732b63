"""The error hierarchy: codes and google.rpc rich details."""

import grpc
from google.rpc import error_details_pb2

from core import errors


def _unpack(status, cls):
    out = []
    for any_msg in status.details:
        if any_msg.Is(cls.DESCRIPTOR):
            msg = cls()
            any_msg.Unpack(msg)
            out.append(msg)
    return out


def test_invalid_argument_carries_field_violations():
    err = errors.InvalidArgument.field("payload.service", "unknown service 'x'")
    status = err.to_status()
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    (bad,) = _unpack(status, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("payload.service", "unknown service 'x'")
    ]


def test_not_found_carries_resource_info():
    status = errors.NotFound("job", "job_1").to_status()
    assert status.code == grpc.StatusCode.NOT_FOUND.value[0]
    (info,) = _unpack(status, error_details_pb2.ResourceInfo)
    assert (info.resource_type, info.resource_name) == ("job", "job_1")


def test_retryable_carries_retry_info_and_reason():
    status = errors.ResourceExhausted(
        "slow down", retry_after_s=1.5, reason="rate_limited"
    ).to_status()
    (retry,) = _unpack(status, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToNanoseconds() == 1_500_000_000
    (info,) = _unpack(status, error_details_pb2.ErrorInfo)
    assert info.reason == "rate_limited"


def test_collect_names_every_field():
    try:
        errors.collect([("a", "bad"), ("b.c", "worse")])
    except errors.InvalidArgument as err:
        assert [f for f, _ in err.violations] == ["a", "b.c"]
        assert "a: bad" in err.message and "b.c: worse" in err.message
    else:
        raise AssertionError("collect did not raise")
    errors.collect([])  # nothing to report: no error
