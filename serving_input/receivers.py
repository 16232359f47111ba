"""``serving_input_fn`` builders: the two ways a request becomes raw features.

The Estimator contract, on TF2: a ``serving_input_fn`` takes no argument and returns a
:class:`ServingInputReceiver`: the signature's input tensors and how they become the
raw features that the tf.Transform graph expects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

import tensorflow as tf

from tfbake.serving_input.export_layout import EXAMPLES_KEY
from tfbake.serving_input.feature_spec import FeatureSpec
from tfbake.serving_input.sequence_example import parse_sequence_examples

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
        not nullable values; :func:`build_raw_serving_input_fn` takes them as
        ``[batch, n]`` values with a count per example.
      feature_lists: the list features that a parsing receiver reads from the
        feature_lists of serialized ``tf.SequenceExample``s (empty: it parses tf.Examples).
    """

    receiver_tensors: Mapping[str, tf.TensorSpec]
    features_fn: Callable[[Mapping[str, tf.Tensor]], Features]
    feature_spec: FeatureSpec
    list_features: frozenset[str] = frozenset()
    feature_lists: frozenset[str] = frozenset()

    @property
    def parses_examples(self) -> bool:
        """True when the only input is a batch of serialized examples (``tf.Example``s,
        or ``tf.SequenceExample``s: :attr:`feature_lists`)."""
        return list(self.receiver_tensors) == [EXAMPLES_KEY] and (
            self.receiver_tensors[EXAMPLES_KEY].dtype == tf.string
        )


def build_parsing_serving_input_fn(
    feature_spec: FeatureSpec,
    default_batch_size: int | None = None,
    *,
    list_features: Iterable[str] = (),
    feature_lists: Iterable[str] = (),
) -> Callable[[], ServingInputReceiver]:
    """A ``serving_input_fn`` taking serialized ``tf.Example``s under ``examples``.

    ``VarLenFeature`` (nullable) features may be absent from an example; a missing
    required feature fails the request with TensorFlow's own parse error. A list
    feature (named in ``list_features``, a ``VarLenFeature``) carries any number of values.
    With ``feature_lists`` (list features), the input is serialized
    ``tf.SequenceExample``s instead: those features are feature_lists, one value per
    step, the others context features
    (:func:`tfbake.serving_input.sequence_example.parse_sequence_examples`).
    """
    spec = dict(feature_spec)
    lists = _list_features(spec, list_features)
    sequences = frozenset(feature_lists)
    if not sequences <= lists:
        raise ValueError(f"feature_lists {sorted(sequences - lists)} are not list features")

    def parse(received: Mapping[str, tf.Tensor]) -> Features:
        if sequences:
            return parse_sequence_examples(received[EXAMPLES_KEY], spec, sequences)
        return tf.io.parse_example(received[EXAMPLES_KEY], spec)

    def serving_input_fn() -> ServingInputReceiver:
        return ServingInputReceiver(
            receiver_tensors={
                EXAMPLES_KEY: tf.TensorSpec([default_batch_size], tf.string, name=EXAMPLES_KEY)
            },
            features_fn=parse,
            feature_spec=spec,
            list_features=lists,
            feature_lists=sequences,
        )

    return serving_input_fn


def _list_features(spec: FeatureSpec, list_features: Iterable[str]) -> frozenset[str]:
    lists = frozenset(list_features)
    for name in lists:
        if not isinstance(spec.get(name), tf.io.VarLenFeature):
            raise ValueError(f'list feature "{name}" must be a VarLenFeature of the spec')
    return lists


# A VarLenFeature (a nullable value or a list) is two predict_raw inputs: its values
# and "<name>_count", how many of them the example has (0: missing, or an empty list).
# No value is reserved as a "missing" marker, so a missing int, an empty string and a
# -1 in an int list all pass as sent. Dense tensors only, with the batch first, so the
# real tensorflow_model_server takes them (gRPC, and REST in row or columnar form) and
# its batching can merge requests (padding lists with pad_variable_length_inputs).
COUNT_SUFFIX = "_count"


def count_input(name: str) -> str:
    """The name of the ``predict_raw`` input that says how many values of ``name`` an
    example has (a ``VarLenFeature``'s)."""
    return f"{name}{COUNT_SUFFIX}"


def _checked_counts(name: str, counts: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """``counts`` after checking that each is within ``[0, width]``; the failure is one
    sentence naming the input and the example (INVALID_ARGUMENT at serving)."""
    bad = tf.logical_or(counts < 0, counts > width)
    # The first bad example (0 when none: the message is then never shown).
    first = tf.concat([tf.where(bad)[:, 0], [0]], axis=0)[0]
    message = tf.strings.format(
        f'Input "{count_input(name)}" is {{}} in example {{}}, but must be between 0 and '
        f'{{}} (the values sent for "{name}" per example)',
        (tf.concat([counts, [0]], axis=0)[first], first, width),
    )
    check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [message])
    with tf.control_dependencies([check]):
        return tf.identity(counts)


def _nullable_to_sparse(name: str, values: tf.Tensor, counts: tf.Tensor) -> tf.SparseTensor:
    """A nullable value per row (present where its count is 1) as the [batch, 0 or 1]
    SparseTensor that parsing a tf.Example gives."""
    present = tf.equal(_checked_counts(name, counts, tf.constant(1, tf.int64)), 1)
    rows = tf.where(present)[:, 0]
    indices = tf.stack([rows, tf.zeros_like(rows)], axis=1)
    dense_shape = tf.stack(
        [tf.shape(values, out_type=tf.int64)[0], tf.reduce_max(tf.cast(present, tf.int64))]
    )
    return tf.SparseTensor(indices, tf.boolean_mask(values, present), dense_shape)


def _list_to_sparse(name: str, values: tf.Tensor, counts: tf.Tensor) -> tf.SparseTensor:
    """A [batch, n] list input, each row's first ``count`` values its items, as the
    SparseTensor that parsing a tf.Example gives."""
    counts = _checked_counts(name, counts, tf.shape(values, out_type=tf.int64)[1])
    return tf.RaggedTensor.from_tensor(values, lengths=counts).to_sparse()


def build_raw_serving_input_fn(
    feature_spec: FeatureSpec,
    default_batch_size: int | None = None,
    *,
    list_features: Iterable[str] = (),
) -> Callable[[], ServingInputReceiver]:
    """A ``serving_input_fn`` taking one named tensor per raw feature (JSON-friendly).

    A ``FixedLenFeature`` of shape ``s`` is an input of shape ``[batch] + s``. A
    ``VarLenFeature`` is two inputs: its values and :func:`count_input` (``<name>_count``,
    int64 ``[batch]``), how many of them each example has. A nullable value is
    ``[batch]`` with a count of 0 (missing) or 1; a list feature (``list_features``)
    is ``[batch, n]``, each row's first ``count`` values its items (the rest is any
    padding). No value means "missing", so every value of every type passes as sent.
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
        if isinstance(feature, tf.io.VarLenFeature):
            count = count_input(name)
            if count in spec:
                raise ValueError(
                    f'predict_raw input "{count}" (how many values of "{name}" an example has) '
                    f'clashes with the feature "{count}"; rename one of them'
                )
            tensors[count] = tf.TensorSpec([default_batch_size], tf.int64, name=count)

    def features_fn(received: Mapping[str, tf.Tensor]) -> Features:
        features = {}
        for name, feature in spec.items():
            if name in lists:
                features[name] = _list_to_sparse(name, received[name], received[count_input(name)])
            elif isinstance(feature, tf.io.VarLenFeature):
                features[name] = _nullable_to_sparse(
                    name, received[name], received[count_input(name)]
                )
            else:
                features[name] = received[name]
        return features

    def serving_input_fn() -> ServingInputReceiver:
        return ServingInputReceiver(tensors, features_fn, spec, lists)

    return serving_input_fn
