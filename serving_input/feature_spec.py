"""Reading a raw feature spec: the one description of what a serving tf.Example carries.

A raw feature spec is the Estimator-era ``dict`` of ``tf.io.FixedLenFeature`` (a
required value) and ``tf.io.VarLenFeature`` (a nullable value or a list). Every
other part of tfbake derives its behaviour from it rather than restating it.
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf

FeatureSpec = Mapping[str, "tf.io.FixedLenFeature | tf.io.VarLenFeature"]

_TYPE_NAMES = {tf.float32: "float", tf.int64: "int", tf.string: "string"}


def type_name(dtype: tf.dtypes.DType) -> str:
    """The user-facing name of a feature dtype: ``float``, ``int`` or ``string``."""
    try:
        return _TYPE_NAMES[tf.as_dtype(dtype)]
    except KeyError:
        raise ValueError(
            f"unsupported feature dtype {dtype!r}; expected float32, int64 or string"
        ) from None


def is_optional(spec: tf.io.FixedLenFeature | tf.io.VarLenFeature) -> bool:
    """Whether a tf.Example may omit the feature (nullable, or with a default)."""
    return isinstance(spec, tf.io.VarLenFeature) or spec.default_value is not None


def without(feature_spec: FeatureSpec, keys) -> dict:
    """The spec less some keys (e.g. the labels, which a serving example does not carry)."""
    drop = set(keys)
    return {name: spec for name, spec in feature_spec.items() if name not in drop}
