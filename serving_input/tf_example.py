"""Plain Python rows to ``tf.Example``s, typed by the raw feature spec.

The demo, the tests and the model-server client all encode requests here, so a
client cannot build an example that the exported ``serving_input_fn`` would parse
differently. Pure protobuf: no TensorFlow op runs per row.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from tfbake.serving_input.feature_spec import FeatureSpec, type_name


class ExampleEncodingError(ValueError):
    """A row that cannot become a tf.Example under the raw feature spec."""


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def coerce_value(value: Any, dtype: tf.dtypes.DType, name: str, where: str = ""):
    """One scalar checked against feature ``name``'s dtype (no silent conversions):
    bytes for a string (text is UTF-8 encoded), an int, or a float; ``where`` ends the
    error message (e.g. " in example 3")."""
    if dtype == tf.string:
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("utf-8")
    elif dtype == tf.int64:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
    elif dtype == tf.float32:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
    raise ExampleEncodingError(
        f'Expected feature "{name}" as {type_name(dtype)}, got {_describe(value)}{where}'
    )


def encode_example(
    row: Mapping[str, Any], feature_spec: FeatureSpec, *, index: int | None = None
) -> tf.train.Example:
    """Encodes one row (feature name -> value or list of values) as a ``tf.Example``.

    A missing key or ``None`` leaves an optional (``VarLenFeature``) feature out of
    the example; a required feature must be present. Unknown keys are refused.
    ``index`` only serves the error messages ("in example 3").
    """
    where = "" if index is None else f" in example {index}"
    unknown = sorted(set(row) - set(feature_spec))
    if unknown:
        raise ExampleEncodingError(
            f"Unknown feature(s) {unknown}{where}; expected some of {sorted(feature_spec)}"
        )
    example = tf.train.Example()
    features = example.features.feature
    for name, spec in feature_spec.items():
        value = row.get(name)
        if value is None:
            if isinstance(spec, tf.io.VarLenFeature) or spec.default_value is not None:
                continue
            raise ExampleEncodingError(f'Missing required feature "{name}"{where}')
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if hasattr(value, "tolist") and not isinstance(value, (bytes, str)):
            values = value.tolist() if getattr(value, "ndim", 0) else [value.tolist()]
        if isinstance(spec, tf.io.FixedLenFeature):
            expected = 1
            for dim in spec.shape:
                expected *= int(dim)
            if len(values) != expected:
                raise ExampleEncodingError(
                    f'Expected feature "{name}" with {expected} value(s), got {len(values)}{where}'
                )
        coerced = [coerce_value(v, spec.dtype, name, where) for v in values]
        if spec.dtype == tf.string:
            features[name].bytes_list.value.extend(coerced)
        elif spec.dtype == tf.int64:
            features[name].int64_list.value.extend(coerced)
        else:
            features[name].float_list.value.extend(coerced)
    return example
