"""Model inputs derived from the transformed feature spec and TFT's metadata.

No feature list is written by hand: every transformed feature (the labels aside)
becomes an input. An integer feature with an ``int_domain`` (vocabulary ids, buckets)
is categorical: one-hot when it has few ids, an embedding otherwise. Every other
feature is a number and enters as it is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras
from tensorflow_transform.tf_metadata import schema_utils

# Up to this many ids a categorical feature is one-hot; above, an embedding.
MAX_ONE_HOT_IDS = 16


@dataclasses.dataclass(frozen=True)
class TransformedFeature:
    """One model input: its name, dtype and, when categorical, how many ids it has."""

    name: str
    dtype: tf.dtypes.DType
    num_ids: int | None  # None: a number
    min_id: int = 0

    @property
    def embedding_dim(self) -> int:
        """The classic rule of thumb: about 6 * num_ids ** 0.25."""
        return max(2, int(math.ceil(6 * self.num_ids**0.25)))


def transformed_features(
    tft_output: tft.TFTransformOutput, exclude: Iterable[str] = ()
) -> list[TransformedFeature]:
    """The model's inputs, read from the transformed metadata (sorted by name)."""
    skip = set(exclude)
    schema = tft_output.transformed_metadata.schema
    parsed = schema_utils.schema_as_feature_spec(schema)
    features = []
    for name, spec in sorted(parsed.feature_spec.items()):
        if name in skip:
            continue
        if not isinstance(spec, tf.io.FixedLenFeature) or list(spec.shape) != []:
            raise ValueError(
                f'transformed feature "{name}" is not a scalar per example ({spec}); '
                "the canned models take scalar features"
            )
        domain = parsed.domains.get(name)
        if spec.dtype == tf.int64 and domain is not None and hasattr(domain, "max"):
            lo = min(int(domain.min), 0)
            features.append(TransformedFeature(name, spec.dtype, int(domain.max) - lo + 1, lo))
        else:
            features.append(TransformedFeature(name, spec.dtype, None))
    return features


def select_features(
    features: list[TransformedFeature], names: Iterable[str] | None, what: str
) -> list[TransformedFeature]:
    """The features named in ``names`` (all when None), in ``features``' order.

    Raises ``ValueError`` naming ``what`` (e.g. ``linear_features``) for an unknown name.
    """
    if names is None:
        return list(features)
    wanted = set(names)
    unknown = sorted(wanted - {f.name for f in features})
    if unknown:
        raise ValueError(
            f"{what}: {unknown} are not transformed features "
            f"(the transformed features are {[f.name for f in features]})"
        )
    return [f for f in features if f.name in wanted]


def make_inputs(features: list[TransformedFeature]) -> dict[str, tf.Tensor]:
    """One Keras ``Input`` per feature, named after it (the export feeds them by name)."""
    return {f.name: tf_keras.Input(shape=(), name=f.name, dtype=f.dtype) for f in features}


def _number(x: tf.Tensor, name: str) -> tf.Tensor:
    return tf_keras.layers.Reshape((1,), name=name)(tf.cast(x, tf.float32))


def _ids(x: tf.Tensor, feature: TransformedFeature) -> tf.Tensor:
    return x - feature.min_id if feature.min_id else x


def encode_dense(
    inputs: dict[str, tf.Tensor], features: list[TransformedFeature], name: str = "features"
) -> tf.Tensor:
    """The DNN encoding: categorical ids one-hot (up to ``MAX_ONE_HOT_IDS``) or embedded,
    numbers as they are; concatenated into one [N, D] tensor named ``name``."""
    encoded = []
    for feature in features:
        x = inputs[feature.name]
        if feature.num_ids is None:
            encoded.append(_number(x, f"{feature.name}_number"))
            continue
        if feature.num_ids <= MAX_ONE_HOT_IDS:
            layer = tf_keras.layers.CategoryEncoding(
                num_tokens=feature.num_ids, output_mode="one_hot", name=f"{feature.name}_one_hot"
            )
        else:
            layer = tf_keras.layers.Embedding(
                feature.num_ids, feature.embedding_dim, name=f"{feature.name}_embedding"
            )
        encoded.append(layer(_ids(x, feature)))
    return tf_keras.layers.Concatenate(name=name)(encoded)


def encode_sparse(
    inputs: dict[str, tf.Tensor], features: list[TransformedFeature], name: str = "wide_features"
) -> tf.Tensor:
    """The linear (wide) encoding: every categorical feature one-hot whatever its size
    (a linear model learns one weight per id, as a ``categorical_column`` did), numbers
    as they are; concatenated into one [N, D] tensor named ``name``."""
    encoded = []
    for feature in features:
        x = inputs[feature.name]
        if feature.num_ids is None:
            encoded.append(_number(x, f"{feature.name}_wide_number"))
        else:
            layer = tf_keras.layers.CategoryEncoding(
                num_tokens=feature.num_ids,
                output_mode="one_hot",
                name=f"{feature.name}_wide_one_hot",
            )
            encoded.append(layer(_ids(x, feature)))
    return tf_keras.layers.Concatenate(name=name)(encoded)


def build_inputs(features: list[TransformedFeature]) -> tuple[dict, tf.Tensor]:
    """Keras ``Input``s, one per feature, and their DNN encoding (:func:`encode_dense`)."""
    inputs = make_inputs(features)
    return inputs, encode_dense(inputs, features)
