"""Canonical error codes, as TF Serving reports them over REST and gRPC.

Every failure inside the server is a :class:`ServingError` carrying a
``grpc.StatusCode`` and TF Serving's message; the REST adapter maps the code to an
HTTP status (``http_rest_api_handler``'s table) and the gRPC adapter aborts with it,
so a message is written once and both protocols show it.
"""

from __future__ import annotations

import grpc

# From SERVING_API.md ("HTTP status from the canonical code").
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


class ServingError(Exception):
    """A request failure with its canonical code and TF Serving's message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def code_name(self) -> str:
        """The canonical name (``INVALID_ARGUMENT``), as in ``error_code`` and metrics."""
        return self.code.name

    @property
    def http_status(self) -> int:
        """The HTTP status TF Serving's REST API answers for this code."""
        return HTTP_STATUS.get(self.code, 500)

    def __str__(self) -> str:
        # absl::Status::ToString(), used when TF Serving nests one error in another.
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


def invalid_argument(message: str) -> ServingError:
    """INVALID_ARGUMENT (HTTP 400)."""
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    """NOT_FOUND (HTTP 404)."""
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    """FAILED_PRECONDITION (HTTP 400)."""
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)


def unavailable(message: str) -> ServingError:
    """UNAVAILABLE (HTTP 503)."""
    return ServingError(grpc.StatusCode.UNAVAILABLE, message)


def internal(message: str) -> ServingError:
    """INTERNAL (HTTP 500)."""
    return ServingError(grpc.StatusCode.INTERNAL, message)


def unimplemented(message: str) -> ServingError:
    """UNIMPLEMENTED (HTTP 501)."""
    return ServingError(grpc.StatusCode.UNIMPLEMENTED, message)


def deadline_exceeded(message: str) -> ServingError:
    """DEADLINE_EXCEEDED (HTTP 504)."""
    return ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, message)
