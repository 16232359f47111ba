"""Reading a raw feature spec: the one description of what a serving tf.Example carries.

A raw feature spec is the Estimator-era ``dict`` of ``tf.io.FixedLenFeature`` (a
required value) and ``tf.io.VarLenFeature`` (a nullable value or a list). Every
other part of tfbake derives its behaviour from it rather than restating it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import tensorflow as tf

from tfbake.serving_input.export_layout import FEATURE_DTYPES, FEATURE_LIST, RAW_FEATURE_SPEC_FILE

FeatureSpec = Mapping[str, "tf.io.FixedLenFeature | tf.io.VarLenFeature"]

_TYPE_NAMES = {tf.as_dtype(dtype): name for name, dtype in FEATURE_DTYPES.items()}


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


def write_raw_feature_spec(
    export_dir: str, feature_spec: FeatureSpec, annotations: Mapping[str, Mapping] | None = None
) -> str:
    """Writes ``assets.extra/raw_feature_spec.json``: name -> type, shape, nullable, plus
    the feature's ``annotations`` (what a client needs beyond the spec, e.g. that a
    ``VarLenFeature`` is a list rather than a nullable value, or that a string holds an
    encoded image). Returns its path."""
    annotations = annotations or {}
    contract = {
        name: {
            "type": type_name(spec.dtype),
            "shape": list(spec.shape) if isinstance(spec, tf.io.FixedLenFeature) else None,
            "nullable": is_optional(spec),
            **annotations.get(name, {}),
        }
        for name, spec in feature_spec.items()
    }
    path = os.path.join(export_dir, RAW_FEATURE_SPEC_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(contract, f, indent=2)
    return path


def read_raw_feature_spec(export_dir: str) -> dict | None:
    """``assets.extra/raw_feature_spec.json`` of an export, or None when it has none."""
    path = os.path.join(export_dir, RAW_FEATURE_SPEC_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def spec_of_contract(contract: Mapping[str, Mapping]) -> tuple[dict, list[str]]:
    """The raw feature spec a contract (:func:`read_raw_feature_spec`) describes, and
    its list features."""
    spec = {}
    for name, entry in contract.items():
        dtype = tf.as_dtype(FEATURE_DTYPES[entry["type"]])
        if entry["shape"] is None:
            spec[name] = tf.io.VarLenFeature(dtype)
        else:
            spec[name] = tf.io.FixedLenFeature(entry["shape"], dtype)
    return spec, [name for name, entry in contract.items() if entry.get("list")]


def feature_lists_of(contract: Mapping[str, Mapping] | None) -> list[str]:
    """The features a serving record of the contract's export carries as a
    ``tf.SequenceExample``'s feature_lists (none: it takes ``tf.Example``s, as does an
    export without a contract)."""
    return [name for name, entry in (contract or {}).items() if entry.get(FEATURE_LIST)]
