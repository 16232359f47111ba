"""The Estimator-era contract on tf_keras: ``train``, ``evaluate``, ``predict``,
``export_saved_model``, around a tf_keras model, a head and the transform output."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from serving_input import ServingInputReceiver
from trainer import export
from trainer.heads import Head

InputFn = Callable[[], tf.data.Dataset]


def as_tft_output(transform_output: str | tft.TFTransformOutput) -> tft.TFTransformOutput:
    """Accepts a transform output directory or an already open ``TFTransformOutput``."""
    if isinstance(transform_output, tft.TFTransformOutput):
        return transform_output
    return tft.TFTransformOutput(transform_output)


class Model:
    """A trainable, exportable model: a tf_keras model (transformed features -> logits)
    with a head, bound to the tf.Transform output it was trained on.

    Use it directly for a user's own tf_keras model; the canned models
    (:class:`trainer.DNNClassifier`, ...) build theirs from the transformed metadata.
    """

    def __init__(
        self,
        keras_model: tf_keras.Model,
        head: Head,
        transform_output: str | tft.TFTransformOutput,
        label_key: str,
        *,
        model_dir: str | None = None,
        optimizer: str | tf_keras.optimizers.Optimizer = "adam",
        learning_rate: float = 0.01,
    ):
        self.keras_model = keras_model
        self.head = head
        self.tft_output = as_tft_output(transform_output)
        self.label_key = label_key
        self.model_dir = model_dir
        if isinstance(optimizer, str):
            optimizer = tf_keras.optimizers.get(
                {"class_name": optimizer, "config": {"learning_rate": learning_rate}}
            )
        self.keras_model.compile(optimizer=optimizer, loss=head.loss(), metrics=head.metrics())

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(label={self.label_key!r}, head={self.head!r}, "
            f"inputs={list(self.keras_model.input_names)}, model_dir={self.model_dir!r})"
        )

    def _dataset(self, input_fn: InputFn) -> tf.data.Dataset:
        return input_fn().map(lambda x, y: (x, self.head.label_for_loss(y)))

    def train(
        self,
        input_fn: InputFn,
        *,
        eval_input_fn: InputFn | None = None,
        epochs: int = 1,
        early_stopping_patience: int | None = None,
        monitor: str = "val_loss",
    ) -> dict[str, list[float]]:
        """Fits the model; returns the Keras history (per-epoch metrics).

        With ``model_dir``, writes TensorBoard logs and the best checkpoint there; with
        ``early_stopping_patience``, stops when ``monitor`` stops improving and
        restores the best weights.
        """
        callbacks = []
        if early_stopping_patience is not None:
            callbacks.append(
                tf_keras.callbacks.EarlyStopping(
                    monitor=monitor,
                    patience=early_stopping_patience,
                    restore_best_weights=True,
                )
            )
        if self.model_dir:
            callbacks += [
                tf_keras.callbacks.TensorBoard(os.path.join(self.model_dir, "logs")),
                tf_keras.callbacks.ModelCheckpoint(
                    os.path.join(self.model_dir, "checkpoints", "best.weights.h5"),
                    monitor=monitor if eval_input_fn else "loss",
                    save_best_only=True,
                    save_weights_only=True,
                ),
            ]
        history = self.keras_model.fit(
            self._dataset(input_fn),
            validation_data=self._dataset(eval_input_fn) if eval_input_fn else None,
            epochs=epochs,
            callbacks=callbacks,
            verbose=0,
        )
        return {k: [float(v) for v in vs] for k, vs in history.history.items()}

    def evaluate(self, input_fn: InputFn) -> dict[str, float]:
        """Loss and metrics over one pass of ``input_fn``; also ``model_dir/metrics.json``."""
        metrics = self.keras_model.evaluate(self._dataset(input_fn), verbose=0, return_dict=True)
        metrics = {k: float(v) for k, v in metrics.items()}
        if self.model_dir:
            tf.io.gfile.makedirs(self.model_dir)
            with tf.io.gfile.GFile(os.path.join(self.model_dir, "metrics.json"), "w") as f:
                json.dump(metrics, f, indent=2)
        return metrics

    def predict(self, input_fn: InputFn) -> dict[str, np.ndarray]:
        """The ``predict`` outputs for every example of ``input_fn`` (transformed features)."""
        batches = []
        for batch in input_fn():
            features = batch[0] if isinstance(batch, tuple) else batch
            logits = self.keras_model(features, training=False)
            batches.append({k: v.numpy() for k, v in self.head.predictions(logits).items()})
        return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]} if batches else {}

    def export_saved_model(
        self,
        export_dir_base: str,
        serving_input_fn: Callable[[], ServingInputReceiver],
        *,
        version: int | None = None,
        warmup_examples: Sequence[bytes] = (),
        feature_annotations: Mapping[str, Mapping] | None = None,
    ) -> str:
        """Exports for TF Serving; returns ``export_dir_base/<version>``.

        With a parsing ``serving_input_fn``, the signatures are the head's canned-estimator
        set (``serving_default`` = ``classification`` for a classifier, ``regression``
        for a regressor; ``predict``) plus ``predict_raw`` and ``transform_features``;
        with a raw one, ``serving_default`` = ``predict``.
        ``warmup_examples`` (serialized raw tf.Examples) are written as TF Serving's
        warm-up requests; ``feature_annotations`` (feature -> e.g. ``{"list": True}``)
        go beside them into ``assets.extra/raw_feature_spec.json``.
        """
        return export.export_saved_model(
            self.keras_model,
            self.head,
            self.tft_output,
            export_dir_base,
            serving_input_fn,
            label_keys=[self.label_key],
            version=version,
            warmup_examples=warmup_examples,
            feature_annotations=feature_annotations,
        )
