"""Labels in the ``preprocessing_fn``: what the trainer's heads learn from.

Kept apart from the feature steps (:mod:`transform.preprocessing`): a feature is
replayed at serving time, a label only ever exists in training data.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft


def transform_label(label: tf.Tensor, label_key: str, classification: bool) -> tf.Tensor:
    """A class label becomes its id in the label vocabulary (named ``label_key``; its
    order is the order of the exported ``classes``); a regression target a float."""
    if classification:
        return tft.compute_and_apply_vocabulary(label, vocab_filename=label_key)
    return tf.cast(label, tf.float32)
