"""Exceptions: every failed call raises a MixoptError carrying the gRPC code and, when the
coordinator's message names one, the offending field (``scales[0].params``)."""

from __future__ import annotations

import re
from typing import Optional

import grpc

__all__ = [
    "MixoptError", "InvalidArgumentError", "NotFoundError", "FailedPreconditionError",
    "UnavailableError", "UnauthenticatedError", "PermissionDeniedError", "LeaseLostError",
    "TrialStopped", "from_rpc_error",
]

# A field path as the coordinator writes it: name, name[3], a.b[0].c.
_FIELD = re.compile(r"^[a-z_][a-z0-9_]*(\[\d+\])?(\.[a-z_][a-z0-9_]*(\[\d+\])?)*$")


class MixoptError(Exception):
    """A refused or failed call. ``code`` is a grpc.StatusCode, ``field`` the input field
    the message names (None when it names none)."""

    default_code = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None, field: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.field = field if field is not None else field_of(message)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class InvalidArgumentError(MixoptError, ValueError):
    """Bad input: a spec, id or point the coordinator (or the client) refuses."""
    default_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(MixoptError, LookupError):
    """No such study, trial or worker."""
    default_code = grpc.StatusCode.NOT_FOUND


class FailedPreconditionError(MixoptError):
    """The call is not allowed in the current state (e.g. resuming a cancelled study)."""
    default_code = grpc.StatusCode.FAILED_PRECONDITION


class UnavailableError(MixoptError):
    """The coordinator cannot be reached or asks to retry later."""
    default_code = grpc.StatusCode.UNAVAILABLE


class UnauthenticatedError(MixoptError):
    """No token, or an unknown one."""
    default_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(MixoptError):
    """The token's role may not make this call."""
    default_code = grpc.StatusCode.PERMISSION_DENIED


class LeaseLostError(MixoptError):
    """The coordinator no longer holds this trial attempt for this worker (it was requeued or
    the worker fenced itself): stop the run and report nothing more."""
    default_code = grpc.StatusCode.FAILED_PRECONDITION


class TrialStopped(Exception):
    """Raised by ExternalTrial.check_stop() when the coordinator asked for the trial to stop
    at its current step (early stop or cancel). Leaving a ``with trial:`` block with it
    finishes the trial with the points reported so far."""


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
}


def field_of(message: str) -> Optional[str]:
    """The field a coordinator message starts with ("target.scale: ..."), or None."""
    head = message.split(": ", 1)[0].strip()
    return head if head != message and _FIELD.match(head) else None


def from_rpc_error(err: grpc.RpcError) -> MixoptError:
    """The MixoptError subclass for an RPC error, keeping its code and message."""
    code = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
    details = err.details() if callable(getattr(err, "details", None)) else str(err)
    cls = _BY_CODE.get(code, MixoptError)
    return cls(details or code.name, code)
