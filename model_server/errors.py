"""Canonical error codes, as TF Serving reports them over REST and gRPC.

Every failure inside the server is a :class:`ServingError` carrying a
``grpc.StatusCode`` and TF Serving's message; the REST adapter maps the code to an
HTTP status (``http_rest_api_handler``'s table) and the gRPC adapter aborts with it,
so a message is written once and both protocols show it.
"""

from __future__ import annotations

import re

import grpc
import numpy as np
import tensorflow as tf

from tfbake.serving_input import tf_errors

# The HTTP status TF Serving's REST server answers for each canonical error code.
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


_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


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


# ParseExample's own messages, which name the feature but not as a request sentence.
_REQUIRED = re.compile(r"Feature: (.+?) \(data type: (\w+)\) is required but could not be found")
_WRONG_TYPE = re.compile(
    r"Key: (.+?), Index: (\d+)\.\s+Data types don't match\. Data type: (\w+) but expected "
    r"type: (\w+)"
)
_WRONG_COUNT = re.compile(
    r"Key: (.+?), Index: (\d+)\.\s+Number of (\w+) values != expected\.\s+Values size: (\d+) "
    r"but output shape: \[(.*?)\]"
)
# The same for a VarLenFeature (a nullable or list feature), in other words.
_WRONG_TYPE_VAR_LEN = re.compile(
    r"Key: (.+?), Index: (\d+)\.\s+Data types don't match\. Expected type: (\w+), Actual "
    r"type: (\w+)"
)
# ParseSequenceExample's, for a feature_list (its Index is the step's).
_STEP_COUNT = re.compile(
    r"Key: (.+?), Index: (\d+)\.\s+Number of values != expected\.\s+values size: (\d+)"
)
# ParseSequenceExample's, for a context feature of another value count (0: missing).
_CONTEXT_COUNT = re.compile(
    r"Inconsistent max number of elements for feature (.+?): expected (\d+), but found (\d+)"
)
_STEP_TYPE = re.compile(
    r"Feature list: (.+?), Index: (\d+)\.\s+Data types don't match\. Expected type: (\w+)"
)
_TYPE_NAMES = {"float": "float", "int64": "int", "string": "string"}


def _wrong_type(message: str) -> tuple[str, str, str, str] | None:
    """(feature, example index, expected type, type sent) of a type mismatch, if any."""
    if match := _WRONG_TYPE.search(message):
        name, index, got, expected = match.groups()
        return name, index, expected, got
    if match := _WRONG_TYPE_VAR_LEN.search(message):
        name, index, expected, got = match.groups()
        return name, index, expected, got
    return None


def _missing_in(name: str, inputs) -> str:
    """`` in example N``: the first serialized example of ``inputs`` without ``name``."""
    values = list(inputs.values())
    if len(values) != 1 or not isinstance(values[0], np.ndarray) or values[0].dtype.kind != "O":
        return ""
    for i, serialized in enumerate(values[0].reshape(-1).tolist()):
        try:
            feature = tf.train.Example.FromString(serialized).features.feature.get(name)
        except Exception:  # noqa: BLE001 - not an example: not the one
            continue
        kind = feature.WhichOneof("kind") if feature is not None else None
        if not kind or not getattr(feature, kind).value:
            return f" in example {i}"
    return ""


def from_tf_error(error: tf.errors.OpError, inputs=None) -> ServingError:
    """A TensorFlow runtime error as one sentence, with its canonical code.

    A failed ``tf.debugging.Assert`` (the export's own checks: an image that does not
    decode, a ``predict_raw`` count out of range) gives the sentence it carries;
    ParseExample's (and ParseSequenceExample's) errors are said as request errors
    (``Feature "weight" (float) is required but missing in example 0``: the example is
    found in ``inputs``, the request's serialized examples); anything else is
    TensorFlow's message without the graph noise (function and node names, where the
    node was defined).
    """
    code = _GRPC_CODES.get(error.error_code, grpc.StatusCode.UNKNOWN)
    message = error.message
    sentence = tf_errors.assertion_text(message)
    if sentence is None and (match := _REQUIRED.search(message)):
        name, dtype = match.groups()
        sentence = (
            f'Feature "{name}" ({_TYPE_NAMES.get(dtype, dtype)}) is required but missing'
            + (_missing_in(name, inputs) if inputs is not None else "")
        )
    elif sentence is None and (wrong := _wrong_type(message)):
        name, index, expected, got = wrong
        sentence = (
            f'Expected feature "{name}" as {_TYPE_NAMES.get(expected, expected)}, got '
            f"{_TYPE_NAMES.get(got, got)} in example {index}"
        )
    elif sentence is None and (match := _WRONG_COUNT.search(message)):
        name, index, _, got, shape = match.groups()
        expected = 1
        for dim in (int(d) for d in shape.split(",") if d.strip()):
            expected *= dim
        plural = "" if expected == 1 else "s"
        sentence = (
            f'Expected feature "{name}" with {expected} value{plural}, got {got} in example '
            f"{index}"
        )
    elif sentence is None and (match := _CONTEXT_COUNT.search(message)):
        # A SequenceExample's context is a tf.Example's features (both field 1), so the
        # example is found in ``inputs`` as for ParseExample.
        name, expected, got = match.groups()
        plural = "" if expected == "1" else "s"
        sentence = (
            f'Feature "{name}" is required but missing'
            + (_missing_in(name, inputs) if inputs is not None else "")
            if got == "0"
            else f'Expected feature "{name}" with {expected} value{plural}, got {got}'
        )
    elif sentence is None and (match := _STEP_COUNT.search(message)):
        name, step, got = match.groups()
        sentence = (
            f'Feature list "{name}": step {step} has {got} values; a SequenceExample\'s '
            "feature_list holds one value per step"
        )
    elif sentence is None and (match := _STEP_TYPE.search(message)):
        name, step, expected = match.groups()
        sentence = (
            f'Expected feature list "{name}" as {_TYPE_NAMES.get(expected, expected)}, got '
            f"another type at step {step}"
        )
    return ServingError(code, sentence or tf_errors.error_text(message))
