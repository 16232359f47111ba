"""Model inputs derived from the transformed feature spec and TFT's metadata.

No feature list is written by hand: every transformed feature (the labels aside)
becomes an input, of one of the kinds of the transformed-feature contract (read off
its dtype, shape and ``int_domain``):

- number: float (or int without a domain) ``[]``: as it is;
- categorical: int64 ``[]`` with an ``int_domain`` (vocabulary ids, buckets): one-hot
  when it has few ids, an embedding otherwise;
- id sequence: int64 ``[L]`` with an ``int_domain`` ``[0, V]``, 0 = padding (tokens
  of a text, items of a list): DNN: an embedding averaged over the real ids; linear:
  multi-hot over the ids;
- dense vector: float ``[V]`` (multi-hot, bag of words, tf-idf): as it is;
- image: float ``[H, W, C]``: flattened (the image classifier convolves it instead).
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

# The kinds of transformed features (the contract's table).
NUMBER = "number"
CATEGORICAL = "categorical"
ID_SEQUENCE = "id sequence"
DENSE_VECTOR = "dense vector"
IMAGE = "image"


@dataclasses.dataclass(frozen=True)
class TransformedFeature:
    """One model input: its name, dtype, shape per example and, for ids (categorical or
    id sequence), how many ids it has (padding id 0 included)."""

    name: str
    dtype: tf.dtypes.DType
    num_ids: int | None  # None: numbers (a number, a dense vector, an image)
    min_id: int = 0
    shape: tuple[int, ...] = ()

    @property
    def kind(self) -> str:
        """One of NUMBER, CATEGORICAL, ID_SEQUENCE, DENSE_VECTOR, IMAGE."""
        if not self.shape:
            return NUMBER if self.num_ids is None else CATEGORICAL
        if len(self.shape) == 1:
            return DENSE_VECTOR if self.num_ids is None else ID_SEQUENCE
        return IMAGE

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
        features.append(_transformed_feature(name, spec, parsed.domains.get(name)))
    return features


def _transformed_feature(name: str, spec, domain) -> TransformedFeature:
    """The feature of one schema entry, or ``ValueError`` naming it and the contract."""
    shape = tuple(spec.shape) if isinstance(spec, tf.io.FixedLenFeature) else None
    has_domain = spec.dtype == tf.int64 and domain is not None and hasattr(domain, "max")
    fits = shape is not None and (
        len(shape) == 0
        or (len(shape) == 1 and (has_domain or spec.dtype == tf.float32))
        or (len(shape) == 3 and spec.dtype == tf.float32)
    )
    if not fits:
        raise ValueError(
            f'transformed feature "{name}" is {spec.dtype.name} {list(shape or [])} '
            f"({type(spec).__name__}); the models take a fixed-shape number or id [], "
            "an id sequence (int64 [L] with an int_domain), a dense vector (float32 [V]) "
            "or an image (float32 [H, W, C])"
        )
    if not has_domain:
        return TransformedFeature(name, spec.dtype, None, shape=shape)
    lo = min(int(domain.min), 0)
    return TransformedFeature(name, spec.dtype, int(domain.max) - lo + 1, lo, shape)


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
    return {f.name: tf_keras.Input(shape=f.shape, name=f.name, dtype=f.dtype) for f in features}


def _number(x: tf.Tensor, name: str) -> tf.Tensor:
    return tf_keras.layers.Reshape((1,), name=name)(tf.cast(x, tf.float32))


def _ids(x: tf.Tensor, feature: TransformedFeature) -> tf.Tensor:
    return x - feature.min_id if feature.min_id else x


class MaskedPooling1D(tf_keras.layers.Layer):
    """Mean or max over the steps that the mask keeps; zeros for a row of padding only.

    ``GlobalAveragePooling1D`` divides by the mask's sum (an empty text would give NaN)
    and ``GlobalMaxPooling1D`` ignores the mask (padding would win the max).
    """

    def __init__(self, mode: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("mean", "max"):
            raise ValueError(f'pooling mode must be "mean" or "max", got {mode!r}')
        self.mode = mode
        self.supports_masking = True

    def call(self, inputs: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
        if mask is None:
            mask = tf.ones(tf.shape(inputs)[:2], tf.bool)
        keep = tf.cast(mask, inputs.dtype)[:, :, tf.newaxis]
        if self.mode == "mean":
            return tf.math.divide_no_nan(
                tf.reduce_sum(inputs * keep, axis=1), tf.reduce_sum(keep, axis=1)
            )
        lowest = tf.fill(tf.shape(inputs), inputs.dtype.min)
        maximum = tf.reduce_max(tf.where(keep > 0, inputs, lowest), axis=1)
        return maximum * tf.minimum(tf.reduce_sum(keep, axis=1), 1.0)

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}


def embed_sequence(x: tf.Tensor, feature: TransformedFeature, dim: int) -> tf.Tensor:
    """[N, L] ids -> [N, L, dim] embeddings, masking the padding id 0."""
    return tf_keras.layers.Embedding(
        feature.num_ids, dim, mask_zero=True, name=f"{feature.name}_embedding"
    )(_ids(x, feature))


def _as_is(x: tf.Tensor, feature: TransformedFeature, name: str) -> tf.Tensor:
    """A dense vector as it is, an image flattened: [N, D] floats."""
    x = tf.cast(x, tf.float32)
    return tf_keras.layers.Flatten(name=name)(x) if feature.kind == IMAGE else x


def encode_dense(
    inputs: dict[str, tf.Tensor], features: list[TransformedFeature], name: str = "features"
) -> tf.Tensor:
    """The DNN encoding, concatenated into one [N, D] tensor named ``name``: categorical
    ids one-hot (up to ``MAX_ONE_HOT_IDS``) or embedded, id sequences embedded and
    averaged over their real ids, numbers and dense vectors as they are, images
    flattened."""
    encoded = []
    for feature in features:
        x = inputs[feature.name]
        kind = feature.kind
        if kind == NUMBER:
            encoded.append(_number(x, f"{feature.name}_number"))
        elif kind == ID_SEQUENCE:
            embedded = embed_sequence(x, feature, feature.embedding_dim)
            encoded.append(MaskedPooling1D("mean", name=f"{feature.name}_mean")(embedded))
        elif kind == CATEGORICAL and feature.num_ids <= MAX_ONE_HOT_IDS:
            layer = tf_keras.layers.CategoryEncoding(
                num_tokens=feature.num_ids, output_mode="one_hot", name=f"{feature.name}_one_hot"
            )
            encoded.append(layer(_ids(x, feature)))
        elif kind == CATEGORICAL:
            layer = tf_keras.layers.Embedding(
                feature.num_ids, feature.embedding_dim, name=f"{feature.name}_embedding"
            )
            encoded.append(layer(_ids(x, feature)))
        else:
            encoded.append(_as_is(x, feature, f"{feature.name}_flat"))
    return tf_keras.layers.Concatenate(name=name)(encoded)


def encode_sparse(
    inputs: dict[str, tf.Tensor], features: list[TransformedFeature], name: str = "wide_features"
) -> tf.Tensor:
    """The linear (wide) encoding, concatenated into one [N, D] tensor named ``name``:
    every categorical feature one-hot whatever its size (a linear model learns one
    weight per id, as a ``categorical_column`` did), id sequences multi-hot over their
    ids (the padding id left out), numbers and dense vectors as they are, images
    flattened."""
    encoded = []
    for feature in features:
        x = inputs[feature.name]
        kind = feature.kind
        if kind == NUMBER:
            encoded.append(_number(x, f"{feature.name}_wide_number"))
        elif kind in (CATEGORICAL, ID_SEQUENCE):
            layer = tf_keras.layers.CategoryEncoding(
                num_tokens=feature.num_ids,
                output_mode="one_hot" if kind == CATEGORICAL else "multi_hot",
                name=f"{feature.name}_wide_{'one' if kind == CATEGORICAL else 'multi'}_hot",
            )
            hot = layer(_ids(x, feature))
            encoded.append(hot if kind == CATEGORICAL else hot[:, 1:])  # id 0 is padding
        else:
            encoded.append(_as_is(x, feature, f"{feature.name}_wide_flat"))
    return tf_keras.layers.Concatenate(name=name)(encoded)

