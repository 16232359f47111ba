"""Why a ``preprocessing_fn`` failed while tf.Transform traced it, in terms of its features.

The job traces the ``preprocessing_fn`` before it reads any data, and a function that
works on the data it was written for can still fail there on a feature it gets in
another form than expected. The most common is a nullable or list feature, which it
gets as a ``tf.SparseTensor`` (no entry where a value is missing) where a dense-only op
wants a ``tf.Tensor``. TensorFlow's error then names a tensor like ``inputs_7_copy:0``,
never the feature or the line of the user's code; :func:`trace_error_message` names both.
"""

from __future__ import annotations

import os
import re
import sysconfig
import traceback
from collections.abc import Collection, Mapping

import tensorflow as tf

# Long TensorFlow messages are cut to this many characters (the traceback keeps them).
_MAX_ERROR_CHARS = 600
# Where installed packages and the standard library live: frames there are not the
# user's code.
_LIBRARY_DIRS = tuple(
    os.path.realpath(sysconfig.get_paths()[key]) + os.sep
    for key in ("purelib", "platlib", "stdlib", "platstdlib")
)


def _users_frame(error: BaseException) -> traceback.FrameSummary | None:
    """The deepest frame of ``error``'s traceback that tf.Transform called and that is not
    in an installed package or the standard library: the line of the
    ``preprocessing_fn`` (or of its helpers); None when the error is tf.Transform's own."""
    frames = traceback.extract_tb(error.__traceback__)
    in_library = [os.path.realpath(f.filename).startswith(_LIBRARY_DIRS) for f in frames]
    if True not in in_library:
        return None
    called = range(in_library.index(True), len(frames))  # from tf.Transform's first frame
    ours = [frames[i] for i in called if not in_library[i]]
    return ours[-1] if ours else None


def _features_read(line: str, names: Collection[str]) -> list[str]:
    """The features a line of code reads by name (``inputs["x"]``, ``inputs.get('x')``)."""
    quoted = set(re.findall(r"""["']([^"']+)["']""", line))
    return [name for name in names if name in quoted]


def trace_error_message(
    error: BaseException,
    type_specs: Mapping[str, tf.TypeSpec],
    list_features: Collection[str] = (),
) -> str:
    """What to tell the user when tracing the ``preprocessing_fn`` raised ``error``.

    Names the line of the user's code it failed on and the raw features that line reads;
    when the error is about a ``tf.SparseTensor``, says which of those features (or,
    when the line names none, which of all features) the function gets as one, and how
    to make it dense.
    """
    text = f"{type(error).__name__}: {error}"
    if len(text) > _MAX_ERROR_CHARS:
        text = text[:_MAX_ERROR_CHARS] + " ..."
    message = "preprocessing_fn failed while tf.Transform traced it (no data was read yet)"
    frame = _users_frame(error)
    read: list[str] = []
    if frame is not None:
        message += f", at {frame.filename}:{frame.lineno}"
        if frame.line:
            message += f":\n    {frame.line}"
            read = _features_read(frame.line, type_specs)
    message += f"\n{text}"
    if read:
        message += f"\nThat line reads raw feature(s) {read}."
    sparse = [
        name for name in (read or type_specs)
        if isinstance(type_specs[name], tf.SparseTensorSpec)
    ]
    if "SparseTensor" in str(error) and sparse:
        for name in sparse:
            kind = ("a list feature (any number of values per row)" if name in list_features
                    else "nullable (a row may have no value)")
            message += (
                f'\n"{name}" is {kind}, so preprocessing_fn gets it as a tf.SparseTensor, '
                "not a dense tf.Tensor."
            )
        message += (
            " Make it dense before a dense-only op, e.g. for one value per row: "
            f'tft.sparse_tensor_to_dense_with_shape(inputs["{sparse[0]}"], [None, 1], '
            "default_value=...), or use an op that takes a tf.SparseTensor."
        )
    return message
