"""Plain Python rows to ``predict_raw`` inputs: one array per raw feature, plus counts.

The counterpart of :func:`tfbake.serving_input.build_raw_serving_input_fn`, as
:mod:`tfbake.serving_input.tf_example` is of the parsing receiver: the client, ``tfbake
check``, the request samples and the export's serving check all build ``predict_raw``
requests here. A ``VarLenFeature`` (nullable or a list) is sent as its values and
``<name>_count`` (how many of them the example has), so nothing is a marker: a
missing int, an empty string and a ``-1`` in an int list pass as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfbake.serving_input.feature_spec import FeatureSpec
from tfbake.serving_input.receivers import COUNT_SUFFIX, count_input
from tfbake.serving_input.tf_example import ExampleEncodingError, coerce_value

# What fills the unused places of a values input (its count says they are not values).
_FILLER = {tf.float32: 0.0, tf.int64: 0, tf.string: b""}


def raw_feature_spec_of(inputs: Mapping[str, tuple[tf.dtypes.DType, int]]) -> tuple[dict, list]:
    """The raw feature spec and list features that ``predict_raw`` inputs stand for.

    ``inputs``: input name -> (dtype, rank). An input with a ``<name>_count`` companion
    is a ``VarLenFeature`` (a list when its values have rank 2); any other is a
    required scalar.
    """
    spec, lists = {}, []
    for name, (dtype, rank) in inputs.items():
        if name.endswith(COUNT_SUFFIX) and name[: -len(COUNT_SUFFIX)] in inputs:
            continue
        if count_input(name) in inputs:
            spec[name] = tf.io.VarLenFeature(dtype)
            if rank == 2:
                lists.append(name)
        else:
            spec[name] = tf.io.FixedLenFeature([], dtype)
    return spec, lists


def _values(value: Any) -> list:
    if isinstance(value, np.ndarray):
        return value.tolist() if value.ndim else [value.item()]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def raw_columns(
    rows: Sequence[Mapping[str, Any]],
    feature_spec: FeatureSpec,
    list_features: Iterable[str] = (),
) -> dict[str, np.ndarray]:
    """Rows (feature name -> value, a list for a list feature; ``None`` or an absent key:
    missing) as the ``predict_raw`` inputs: name -> numpy array (strings as bytes).

    Raises :class:`~tfbake.serving_input.ExampleEncodingError` naming the feature and the
    example, as :func:`tfbake.serving_input.encode_example` does.
    """
    lists = frozenset(list_features)
    columns: dict[str, np.ndarray] = {}
    for i, row in enumerate(rows):
        unknown = sorted(set(row) - set(feature_spec))
        if unknown:
            raise ExampleEncodingError(
                f"Unknown feature(s) {unknown} in example {i}; expected some of "
                f"{sorted(feature_spec)}"
            )
    for name, spec in feature_spec.items():
        where = [f" in example {i}" for i in range(len(rows))]
        cells = [row.get(name) for row in rows]
        if isinstance(spec, tf.io.FixedLenFeature):
            for i, cell in enumerate(cells):
                if cell is None:
                    raise ExampleEncodingError(f'Missing required feature "{name}"{where[i]}')
            values = [coerce_value(v, spec.dtype, name, w) for v, w in zip(cells, where)]
            columns[name] = _array(values, spec.dtype)
            continue
        items = [
            [] if cell is None else [coerce_value(v, spec.dtype, name, w) for v in _values(cell)]
            for cell, w in zip(cells, where)
        ]
        counts = np.array([len(v) for v in items], dtype=np.int64)
        if name in lists:
            width = int(counts.max()) if len(counts) else 0
            padded = [v + [_FILLER[spec.dtype]] * (width - len(v)) for v in items]
            columns[name] = _array(padded, spec.dtype).reshape(len(items), width)
        else:
            for i, v in enumerate(items):
                if len(v) > 1:
                    raise ExampleEncodingError(
                        f'Expected feature "{name}" with at most 1 value, got {len(v)}{where[i]}'
                    )
            columns[name] = _array([v[0] if v else _FILLER[spec.dtype] for v in items],
                                   spec.dtype)
        columns[count_input(name)] = counts
    return columns


def _array(values: list, dtype: tf.dtypes.DType) -> np.ndarray:
    if dtype == tf.string:
        array = np.empty(np.shape(values) if values else (0,), dtype=object)
        array[...] = values
        return array
    return np.array(values, dtype=dtype.as_numpy_dtype)
