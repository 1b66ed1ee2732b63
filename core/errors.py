"""One error hierarchy: each class carries its gRPC code and google.rpc rich details."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2


class AitbcError(Exception):
    """Base class. Subclasses set `code`; `details()` yields google.rpc detail messages."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    # Machine-readable reason (e.g. "stale_lease"), sent as google.rpc.ErrorInfo when set.
    reason: str = ""
    # REST status when the gRPC->HTTP table's answer is not the one the API documents (e.g.
    # 409 for cancelling a finished job, a FAILED_PRECONDITION). Sent as `x-http-code`.
    http_status: int | None = None

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        http_status: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason
        if http_status is not None:
            self.http_status = http_status
        self.metadata = dict(metadata or {})

    def details(self) -> list[Message]:
        out: list[Message] = []
        if self.reason:
            out.append(
                error_details_pb2.ErrorInfo(
                    reason=self.reason, domain="aitbc", metadata=self.metadata
                )
            )
        return out

    def to_status(self) -> status_pb2.Status:
        packed = []
        for detail in self.details():
            any_msg = any_pb2.Any()
            any_msg.Pack(detail)
            packed.append(any_msg)
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=packed)


class InvalidArgument(AitbcError):
    """Bad input. `violations` are (field, description) pairs sent as google.rpc.BadRequest."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, violations: Iterable[tuple[str, str]] = (), **kw):
        super().__init__(message, **kw)
        self.violations: list[tuple[str, str]] = list(violations)

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls(f"{field}: {description}", [(field, description)])

    def details(self) -> list[Message]:
        out = super().details()
        if self.violations:
            out.insert(
                0,
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                        for f, d in self.violations
                    ]
                ),
            )
        return out


class NotFound(AitbcError):
    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, resource_type: str, resource_name: str, message: str = "", **kw):
        super().__init__(message or f"{resource_type} {resource_name!r} not found", **kw)
        self.resource_type = resource_type
        self.resource_name = resource_name

    def details(self) -> list[Message]:
        return [
            error_details_pb2.ResourceInfo(
                resource_type=self.resource_type, resource_name=self.resource_name
            ),
            *super().details(),
        ]


class _Retryable(AitbcError):
    """An error after which the same call may succeed; carries google.rpc.RetryInfo."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw):
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s

    def details(self) -> list[Message]:
        out = super().details()
        if self.retry_after_s is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(int(self.retry_after_s * 1e9))
            out.append(error_details_pb2.RetryInfo(retry_delay=delay))
        return out


class AlreadyExists(AitbcError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Aborted(_Retryable):
    code = grpc.StatusCode.ABORTED


class FailedPrecondition(AitbcError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfRange(AitbcError):
    code = grpc.StatusCode.OUT_OF_RANGE


class PermissionDenied(AitbcError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(AitbcError):
    code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(_Retryable):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(_Retryable):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(_Retryable):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unimplemented(AitbcError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(AitbcError):
    code = grpc.StatusCode.INTERNAL


def collect(violations: Sequence[tuple[str, str]]) -> None:
    """Raise one InvalidArgument naming every violated field, if there are any."""
    if violations:
        summary = "; ".join(f"{f}: {d}" for f, d in violations)
        raise InvalidArgument(f"invalid request: {summary}", violations)


# google.rpc.Code numbers equal grpc.StatusCode values; kept explicit for readers.
assert code_pb2.NOT_FOUND == grpc.StatusCode.NOT_FOUND.value[0]
