"""Raw feature values written as text (a CSV cell), read back by their dtype.

The Beam job's CSV decoder and the model-server client read CSV through these, so a
cell means the same thing in training data and in a prediction request. A list
feature's cell holds its values joined by ``data.csv.list_delimiter`` (default ``|``;
an empty cell is an empty list).
"""

from __future__ import annotations

import math

import tensorflow as tf

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError
    return value


def _parse_int(text: str) -> int:
    value = int(text)
    if not _INT64_MIN <= value <= _INT64_MAX:  # an int64 feature: larger ints are bad
        raise ValueError
    return value


# dtype -> parser; each raises ValueError on text that is not a valid value.
TEXT_PARSERS = {
    tf.float32: _parse_float,
    tf.int64: _parse_int,
    tf.string: lambda text: text.encode("utf-8"),
}


def bad_text_message(name: str, text: str, dtype: tf.dtypes.DType) -> str:
    """Why ``text`` is no value of feature ``name`` (the reason given to users)."""
    expected = "a finite float" if dtype == tf.float32 else "an int"
    return f'feature "{name}": expected {expected}, got {text!r}'


def parse_list_text(name: str, text: str, dtype: tf.dtypes.DType, delimiter: str,
                    decimal: str = ".") -> list:
    """A list feature's values from its cell (``"a|b"``; ``""``: no values); ValueError
    names the feature and the bad item."""
    if text == "":
        return []
    items = text.split(delimiter)
    if "" in items:
        raise ValueError(
            f'feature "{name}": empty item in list {text!r} (items are joined by {delimiter!r})'
        )
    parse = TEXT_PARSERS[tf.as_dtype(dtype)]
    point = decimal != "." and tf.as_dtype(dtype) == tf.float32
    values = []
    for item in items:
        try:
            values.append(parse(with_decimal_point(item, decimal) if point else item))
        except ValueError:
            raise ValueError(bad_text_message(name, item, dtype)) from None
    return values


def with_decimal_point(text: str, decimal: str) -> str:
    """A float cell written with another decimal mark (``"1,5"``), as Python reads it."""
    return text.replace(decimal, ".")
