"""``serving_input_fn`` builders: the two ways a request becomes raw features.

The Estimator contract, on TF2: a ``serving_input_fn`` takes no argument and returns a
:class:`ServingInputReceiver`: the signature's input tensors and how they become the
raw features that the tf.Transform graph expects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

import tensorflow as tf

from serving_input.feature_spec import FeatureSpec

# The receiver key of a parsing serving_input_fn, as Estimator's
# build_parsing_serving_input_receiver_fn named it.
EXAMPLES_KEY = "examples"

Features = dict[str, "tf.Tensor | tf.SparseTensor"]


@dataclasses.dataclass(frozen=True)
class ServingInputReceiver:
    """What a ``serving_input_fn`` returns.

    Attributes:
      receiver_tensors: the signature's inputs, name -> ``tf.TensorSpec``.
      features_fn: receiver tensors -> raw features (as ``tf.io.parse_example`` would
        give them: dense for ``FixedLenFeature``, sparse for ``VarLenFeature``).
      feature_spec: the raw feature spec the features follow (labels excluded).
      list_features: the ``VarLenFeature``s of the spec that are lists (multi-valued),
        not nullable values; :func:`build_raw_serving_input_fn` takes them padded.
    """

    receiver_tensors: Mapping[str, tf.TensorSpec]
    features_fn: Callable[[Mapping[str, tf.Tensor]], Features]
    feature_spec: FeatureSpec
    list_features: frozenset[str] = frozenset()

    @property
    def parses_examples(self) -> bool:
        """True when the only input is a batch of serialized ``tf.Example``s."""
        return list(self.receiver_tensors) == [EXAMPLES_KEY] and (
            self.receiver_tensors[EXAMPLES_KEY].dtype == tf.string
        )


def build_parsing_serving_input_fn(
    feature_spec: FeatureSpec,
    default_batch_size: int | None = None,
    *,
    list_features: Iterable[str] = (),
) -> Callable[[], ServingInputReceiver]:
    """A ``serving_input_fn`` taking serialized ``tf.Example``s under ``examples``.

    ``VarLenFeature`` (nullable) features may be absent from an example; a missing
    required feature fails the request with TensorFlow's own parse error. A list
    feature (named in ``list_features``, a ``VarLenFeature``) carries any number of values.
    """
    spec = dict(feature_spec)
    lists = _list_features(spec, list_features)

    def serving_input_fn() -> ServingInputReceiver:
        return ServingInputReceiver(
            receiver_tensors={
                EXAMPLES_KEY: tf.TensorSpec([default_batch_size], tf.string, name=EXAMPLES_KEY)
            },
            features_fn=lambda received: tf.io.parse_example(received[EXAMPLES_KEY], spec),
            feature_spec=spec,
            list_features=lists,
        )

    return serving_input_fn


def _list_features(spec: FeatureSpec, list_features: Iterable[str]) -> frozenset[str]:
    lists = frozenset(list_features)
    for name in lists:
        if not isinstance(spec.get(name), tf.io.VarLenFeature):
            raise ValueError(f'list feature "{name}" must be a VarLenFeature of the spec')
    return lists


# The padding of a list feature's predict_raw input (a [batch, n] tensor).
LIST_PADDING = {tf.string: "", tf.int64: -1}


def _missing_mask(values: tf.Tensor) -> tf.Tensor:
    """Which entries of a nullable raw input mean "no value" (NaN, or an empty string),
    and of a list input are padding (the empty string, or -1)."""
    if values.dtype == tf.string:
        return tf.equal(values, "")
    if values.dtype.is_floating:
        return tf.math.is_nan(values)
    if len(values.shape) == 2:
        return tf.equal(values, LIST_PADDING[tf.int64])
    return tf.zeros_like(values, dtype=tf.bool)


def _list_to_sparse(values: tf.Tensor) -> tf.SparseTensor:
    """A padded [batch, n] list input as the SparseTensor parse_example gives a list."""
    return tf.ragged.boolean_mask(values, tf.logical_not(_missing_mask(values))).to_sparse()


def _to_sparse(values: tf.Tensor) -> tf.SparseTensor:
    """A nullable scalar per row, as the [batch, 0 or 1] SparseTensor parse_example gives."""
    present = tf.logical_not(_missing_mask(values))
    rows = tf.where(present)[:, 0]
    indices = tf.stack([rows, tf.zeros_like(rows)], axis=1)
    dense_shape = tf.stack(
        [tf.shape(values, out_type=tf.int64)[0], tf.reduce_max(tf.cast(present, tf.int64))]
    )
    return tf.SparseTensor(indices, tf.boolean_mask(values, present), dense_shape)


def build_raw_serving_input_fn(
    feature_spec: FeatureSpec,
    default_batch_size: int | None = None,
    *,
    list_features: Iterable[str] = (),
) -> Callable[[], ServingInputReceiver]:
    """A ``serving_input_fn`` taking one named tensor per raw feature (JSON-friendly).

    A ``FixedLenFeature`` of shape ``s`` is an input of shape ``[batch] + s``. A
    ``VarLenFeature`` is a nullable scalar input of shape ``[batch]`` where NaN (float)
    or the empty string (string) means the value is missing; an int input has no such
    marker, so every row carries a value. A list feature (``list_features``) is a
    ``[batch, n]`` input, each row padded to the longest with ``""`` (strings) or
    ``-1`` (ints); padding is dropped wherever it stands, so an int list cannot hold -1.
    """
    spec = dict(feature_spec)
    lists = _list_features(spec, list_features)
    tensors = {}
    for name, feature in spec.items():
        shape = [default_batch_size]
        if isinstance(feature, tf.io.FixedLenFeature):
            shape += list(feature.shape)
        elif name in lists:
            shape += [None]
        tensors[name] = tf.TensorSpec(shape, feature.dtype, name=name)

    def features_fn(received: Mapping[str, tf.Tensor]) -> Features:
        features = {}
        for name, feature in spec.items():
            if name in lists:
                features[name] = _list_to_sparse(received[name])
            elif isinstance(feature, tf.io.VarLenFeature):
                features[name] = _to_sparse(received[name])
            else:
                features[name] = received[name]
        return features

    def serving_input_fn() -> ServingInputReceiver:
        return ServingInputReceiver(tensors, features_fn, spec, lists)

    return serving_input_fn
