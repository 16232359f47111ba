"""tf.data over the transformed TFRecords written by the Beam job."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.data.experimental import AutoShardPolicy


def make_input_fn(
    file_pattern: str,
    tft_output: tft.TFTransformOutput,
    label_key: str | Sequence[str] | None,
    *,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int | None = None,
) -> Callable[[], tf.data.Dataset]:
    """An Estimator-style ``input_fn``: a zero-argument callable returning a dataset.

    The dataset yields ``(features, label)`` batches parsed with the transformed
    feature spec (or just ``features`` when ``label_key`` is None; with several label
    keys, a multi-head model's, ``label`` is a dict by key). One pass per call: the
    trainer asks for a fresh dataset each epoch. Under a multi-worker strategy each
    worker trains on its own share of the records (tf.data's ``DATA`` auto-sharding).
    """
    feature_spec = tft_output.transformed_feature_spec()

    def input_fn() -> tf.data.Dataset:
        files = tf.io.gfile.glob(file_pattern)
        if not files:
            raise FileNotFoundError(f"no transformed data matches {file_pattern!r}")
        dataset = tf.data.TFRecordDataset(sorted(files), compression_type="GZIP")
        if shuffle:
            dataset = dataset.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.batch(batch_size).map(
            lambda records: tf.io.parse_example(records, feature_spec),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        if isinstance(label_key, str):
            dataset = dataset.map(lambda features: (features, features.pop(label_key)))
        elif label_key is not None:
            keys = list(label_key)
            dataset = dataset.map(lambda features: (features, {k: features.pop(k) for k in keys}))
        # Several workers each keep every n-th batch (the seeded shuffle gives every
        # worker the same order, so their shares are disjoint). Keras' default, one
        # file per worker, fails when the Beam job wrote fewer files than workers.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = AutoShardPolicy.DATA
        return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)

    return input_fn
