"""SdkError: a failed coordinator call, decoded from the gRPC status and its rich details."""

from __future__ import annotations

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from core.errors import AitbcError


def _one_line(text: str) -> str:
    return " ".join(text.split())


class SdkError(AitbcError):
    """The coordinator (or the channel to it) answered a call with an error.

    Part of the shared hierarchy: `code` is the gRPC status code of this instance, `reason`
    the google.rpc.ErrorInfo reason, `field_violations` the google.rpc.BadRequest pairs.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: str = "",
        field_violations: list[tuple[str, str]] | None = None,
    ):
        super().__init__(_one_line(message), reason=reason)
        self.code = code
        self.field_violations: list[tuple[str, str]] = list(field_violations or [])
        # When known (a rate-limited job of a batch or stream): seconds until a retry passes.
        self.retry_after_s: float | None = None

    def details(self) -> list[Message]:
        out = super().details()
        if self.field_violations:
            out.insert(
                0,
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                        for f, d in self.field_violations
                    ]
                ),
            )
        return out

    @property
    def fields(self) -> list[str]:
        return [f for f, _ in self.field_violations]

    def __str__(self) -> str:
        text = self.message or self.code.name.lower()
        missing = [f for f in self.fields if f not in text]
        if missing:  # the message does not name every violated field: add them
            text += " (" + "; ".join(f"{f}: {d}" for f, d in self.field_violations) + ")"
        return _one_line(text)

    def __repr__(self) -> str:
        return f"SdkError({self.code.name}, {self.message!r}, reason={self.reason!r})"

    @classmethod
    def from_rpc_error(
        cls, exc: grpc.RpcError, *, endpoint: str = "", timeout_s: float | None = None
    ) -> SdkError:
        """Decode `grpc-status-details-bin` (ErrorInfo, BadRequest) of a failed call."""
        code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
        message = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
        status: status_pb2.Status | None = None
        if isinstance(exc, grpc.Call):
            try:
                status = rpc_status.from_call(exc)
            except ValueError:  # the trailer disagrees with the status line: ignore it
                status = None
        reason, violations = "", []
        for any_msg in status.details if status is not None else ():
            if any_msg.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                any_msg.Unpack(info)
                reason = info.reason
            elif any_msg.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                any_msg.Unpack(bad)
                violations += [(v.field, v.description) for v in bad.field_violations]
        if status is None and endpoint:
            # Raised by the channel, not by the coordinator: say where we tried to go.
            if code is grpc.StatusCode.UNAVAILABLE:
                message = f"cannot reach the coordinator at {endpoint}: {message}"
            elif code is grpc.StatusCode.DEADLINE_EXCEEDED and timeout_s is not None:
                message = f"no answer from {endpoint} within {timeout_s:g} s"
        return cls(code, message, reason, violations)
