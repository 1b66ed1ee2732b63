"""gRPC status -> HTTP: the standard code table and google.rpc.Status JSON bodies."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from core.errors import AitbcError

# Identical in grpc-gateway v2 (runtime.HTTPStatusFromCode), Envoy and google/rpc/code.proto.
HTTP_STATUS = {
    0: 200,
    1: 499,
    2: 500,
    3: 400,
    4: 504,
    5: 404,
    6: 409,
    7: 403,
    8: 429,
    9: 400,
    10: 409,
    11: 400,
    12: 501,
    13: 500,
    14: 503,
    15: 500,
    16: 401,
}
_DETAILS_KEY = "grpc-status-details-bin"
_RETRY_INFO = "type.googleapis.com/" + error_details_pb2.RetryInfo.DESCRIPTOR.full_name
_RETRY_CODES = frozenset({8, 14})  # RESOURCE_EXHAUSTED, UNAVAILABLE


def http_status(code: int) -> int:
    return HTTP_STATUS.get(code, 500)


def status_from_rpc_error(err: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The rich status of a failed call: the details trailer when present and consistent."""
    code = err.code().value[0]
    for key, value in err.trailing_metadata() or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            try:
                rich = status_pb2.Status.FromString(value)
            except DecodeError:
                break
            if rich.code == code:
                return rich
            break  # a trailer disagreeing with the real code is ignored (grpcio-status does too)
    return status_pb2.Status(code=code, message=err.details() or "")


def status_from_error(err: AitbcError) -> status_pb2.Status:
    return err.to_status()


def status_dict(status: status_pb2.Status) -> dict:
    """google.rpc.Status as JSON (proto field names, `details` always present, `@type`s)."""
    details = []
    for any_msg in status.details:
        try:
            details.append(
                json_format.MessageToDict(
                    any_msg,
                    preserving_proto_field_name=True,
                    always_print_fields_with_no_presence=True,
                )
            )
        except (TypeError, KeyError, json_format.Error):
            # A detail type this process does not know: still show what it is.
            details.append(
                {"@type": any_msg.type_url, "value": base64.b64encode(any_msg.value).decode()}
            )
    return {"code": status.code, "message": status.message, "details": details}


def status_json(status: status_pb2.Status) -> bytes:
    return json.dumps(status_dict(status), separators=(",", ":"), ensure_ascii=False).encode()


def retry_after_s(status: status_pb2.Status) -> int | None:
    """Seconds from a google.rpc.RetryInfo detail, rounded up (for `Retry-After`)."""
    if status.code not in _RETRY_CODES:
        return None
    for any_msg in status.details:
        if any_msg.type_url == _RETRY_INFO:
            info = error_details_pb2.RetryInfo()
            if any_msg.Unpack(info):
                delay = info.retry_delay
                return max(0, math.ceil(delay.seconds + delay.nanos / 1e9))
    return None


def error_headers(status: status_pb2.Status, auth_challenge: str) -> Iterable[tuple[bytes, bytes]]:
    if status.code == 16:  # UNAUTHENTICATED
        yield b"www-authenticate", auth_challenge.encode("latin-1")
    seconds = retry_after_s(status)
    if seconds is not None:
        yield b"retry-after", str(seconds).encode()
