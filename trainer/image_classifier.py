"""An image classifier: a small configurable CNN, as the classic satellite-image
tagging model (convolution blocks -> dense layers -> head).

The pixels come from the ``preprocessing_fn`` (an image of the transformed-feature
contract: float32 [H, W, C] in [0, 1], decoded and resized in the graph), so the
export takes encoded image bytes inside a ``tf.Example``.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from tfbake.trainer.encoder_classifier import EncoderClassifier
from tfbake.trainer.feature_inputs import IMAGE, TransformedFeature

POOLING = {"max": tf_keras.layers.MaxPooling2D, "average": tf_keras.layers.AveragePooling2D}


class ImageClassifier(EncoderClassifier):
    """Convolution blocks per image feature, then the dense layers.

    Args:
      transform_output, label_key: as every canned model.
      filters: one block per entry: a ``kernel_size`` convolution with that many
        filters (ReLU), then 2x2 ``pooling`` (``max`` or ``average``).
      Other keyword arguments: :class:`~tfbake.trainer.encoder_classifier.EncoderClassifier`
      (``hidden_units`` are the dense units after the blocks; ``dropout``, ``head``...).
    """

    _kind, _name = IMAGE, "image_classifier"

    def __init__(
        self,
        transform_output: str | tft.TFTransformOutput,
        label_key: str,
        *,
        filters: Sequence[int] = (32, 64),
        kernel_size: int = 3,
        pooling: str = "max",
        hidden_units: Sequence[int] = (64,),
        **kwargs,
    ):
        if pooling not in POOLING:
            raise ValueError(f"pooling must be one of {sorted(POOLING)}, got {pooling!r}")
        if not filters:
            raise ValueError("filters: an image classifier needs at least one block")
        self.filters, self.kernel_size, self.pooling = list(filters), kernel_size, pooling
        super().__init__(transform_output, label_key, hidden_units=hidden_units, **kwargs)

    def _encode(self, x: tf.Tensor, feature: TransformedFeature) -> tf.Tensor:
        for i, count in enumerate(self.filters):
            x = tf_keras.layers.Conv2D(
                count,
                self.kernel_size,
                padding="same",
                activation="relu",
                name=f"{feature.name}_conv_{i}",
            )(x)
            # "same": a block never shrinks a small image to nothing.
            x = POOLING[self.pooling](2, padding="same", name=f"{feature.name}_pool_{i}")(x)
        return tf_keras.layers.Flatten(name=f"{feature.name}_flat")(x)
