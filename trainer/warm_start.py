"""Warm start: a new model initialized from a previous model, rows remapped by token.

Estimator's ``WarmStartSettings``/``VocabInfo`` did this for feature columns; here it is
done on the tf_keras model. Weights are matched by variable name (``hidden_0/kernel:0``).
A weight whose rows stand for the ids of a vocabulary (an embedding's rows, the rows a
one-hot, multi-hot or bag-of-words segment feeds into a ``Dense`` kernel: linear
weights and the first hidden layer) is remapped by token: a token in both vocabularies
keeps its row exactly, a token only in the new one keeps its fresh initial row, OOV
buckets and the missing-value id keep theirs. Other weights are copied when their shape
is unchanged and left fresh otherwise. :class:`WarmStartReport` says which was which.

A transformed feature's vocabulary is the one named after it (every declarative
vocabulary, text and list op names it so); the previous vocabularies are read from the
previous run's ``transform_fn/assets/`` or the export's ``assets/``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from trainer.feature_inputs import (
    CATEGORICAL,
    DENSE_VECTOR,
    ID_SEQUENCE,
    TransformedFeature,
    transformed_features,
)
from trainer.heads import MultiHead
from trainer.model import Model

WARM_START_REPORT = "warm_start.json"


@dataclasses.dataclass
class PreviousModel:
    """The weights of a previous model by variable name, and where its vocabularies are."""

    source: str
    weights: dict[str, np.ndarray]
    vocabulary_dir: str

    @classmethod
    def from_export(cls, export_dir: str) -> PreviousModel:
        """An export version folder (``saved_model.pb``, ``variables/``, ``assets/``)."""
        servable = tf.saved_model.load(export_dir)
        if not hasattr(servable, "model"):
            raise ValueError(f"{export_dir}: not an export of this project (no model in it)")
        weights = {v.name: v.numpy() for v in servable.model.variables}
        return cls(export_dir, weights, os.path.join(export_dir, "assets"))

    @classmethod
    def from_keras(cls, model: tf_keras.Model, vocabulary_dir: str, source: str) -> PreviousModel:
        """A previous model rebuilt and loaded in this process."""
        return cls(source, {w.name: w.numpy() for w in model.weights}, vocabulary_dir)

    def vocabulary(self, name: str) -> list[bytes] | None:
        path = os.path.join(self.vocabulary_dir, name)
        return _read_vocabulary(path) if tf.io.gfile.exists(path) else None


def _read_vocabulary(path: str) -> list[bytes]:
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read().splitlines()


@dataclasses.dataclass
class WarmStartReport:
    """What a warm start did, weight by weight: ``remapped`` (by token, with the tokens
    kept, new and dropped per feature), ``copied``, and ``fresh`` (with the reason)."""

    source: str
    remapped: dict[str, dict[str, dict[str, int]]] = dataclasses.field(default_factory=dict)
    copied: list[str] = dataclasses.field(default_factory=list)
    fresh: dict[str, str] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """One line per weight, for the log."""
        lines = [f"warm start from {self.source}:"]
        for name, features in self.remapped.items():
            parts = ", ".join(
                f"{f} {c['kept']} kept, {c['new']} new, {c['dropped']} dropped"
                for f, c in features.items()
            )
            lines.append(f"  {name}: remapped by token ({parts})")
        lines += [f"  {name}: copied" for name in self.copied]
        lines += [f"  {name}: not warm-started ({why})" for name, why in self.fresh.items()]
        return "\n".join(lines)

    def write(self, directory: str) -> None:
        tf.io.gfile.makedirs(directory)
        with tf.io.gfile.GFile(os.path.join(directory, WARM_START_REPORT), "w") as f:
            json.dump(self.as_dict(), f, indent=2)


@dataclasses.dataclass
class _Axis:
    """How one axis of a weight maps onto the previous weight's: the old index of each
    new index (-1: a fresh one), the old length this expects, and, per feature or
    label remapped by token, the tokens kept, new and dropped."""

    index: np.ndarray
    old_length: int
    counts: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    # -1 where the old value is taken negated (a binary logit whose classes swapped).
    sign: np.ndarray | None = None

    @classmethod
    def identity(cls, length: int) -> _Axis:
        return cls(np.arange(length), length)

    @property
    def is_identity(self) -> bool:
        return not self.counts and self.old_length == len(self.index)


def _token_axis(
    name: str,
    tokens: tuple[Sequence[bytes], Sequence[bytes]],
    offset: int,
    width: int,
    *,
    fixed: bool = False,
) -> _Axis:
    """``width`` indices over the (new, old) vocabulary ``tokens`` of ``name``, of which
    ``offset`` come before the tokens (padding, an unseen-value id) and the rest after
    them (OOV buckets, the missing-value id, unused room): those keep their place
    relative to the tokens, and a token keeps its old index. ``fixed``: the previous
    width was the same (a vector of ``top_k`` + OOV); otherwise it was wider or narrower
    by the vocabularies' difference."""
    new_tokens, old_tokens = tokens
    old_index = {token: i for i, token in enumerate(old_tokens)}
    shift = len(old_tokens) - len(new_tokens)
    old_length = width if fixed else width + shift
    index = np.full(width, -1)
    for r in range(width):
        if r < offset:
            index[r] = r
        elif r < offset + len(new_tokens):
            index[r] = offset + old_index.get(new_tokens[r - offset], -1 - offset)
        elif r + shift < old_length:
            index[r] = r + shift
    kept = len(set(new_tokens) & set(old_tokens))
    counts = {"kept": kept, "new": len(new_tokens) - kept, "dropped": len(old_tokens) - kept}
    return _Axis(index, old_length, {name: counts})


def _joined(axes: Sequence[_Axis]) -> _Axis:
    """Axes of consecutive parts (e.g. the encodings a Dense layer's input concatenates)
    as one axis."""
    index, counts, old_start = [], {}, 0
    for axis in axes:
        index.append(np.where(axis.index >= 0, axis.index + old_start, -1))
        counts.update(axis.counts)
        old_start += axis.old_length
    return _Axis(np.concatenate(index) if index else np.arange(0), old_start, counts)


def _history_layer(tensor):
    # tf_keras records the layer that made a symbolic tensor here.
    return tensor._keras_history.layer


def _layer_inputs(layer) -> list:
    try:
        inputs = layer.input
    except (AttributeError, RuntimeError):  # a layer shared by several inputs
        return []
    return list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]


def _source_feature(tensor) -> tuple[str | None, bool]:
    """The one model input a tensor is computed from (None: none or several) and
    whether an embedding lies on the way."""
    names, embedded, stack = set(), False, [tensor]
    while stack:
        layer = _history_layer(stack.pop())
        if isinstance(layer, tf_keras.layers.InputLayer):
            names.add(layer.name)
            continue
        embedded |= isinstance(layer, tf_keras.layers.Embedding)
        inputs = _layer_inputs(layer)
        if not inputs:
            return None, embedded
        stack.extend(inputs)
    return (names.pop() if len(names) == 1 else None), embedded


def _token_offset(feature: TransformedFeature, width: int) -> int | None:
    """Where a feature's tokens start in an encoding ``width`` wide whose positions are
    its ids (None: they are not)."""
    if feature.kind == CATEGORICAL and width == feature.num_ids:  # one-hot
        return -feature.min_id
    if feature.kind == ID_SEQUENCE and width == feature.num_ids - 1:  # multi-hot, no padding
        return 0
    if feature.kind == DENSE_VECTOR and width == feature.shape[0]:  # multi-hot, bag of words
        return 0
    return None


class _Vocabularies:
    """The new and the previous vocabulary of a name, when both exist."""

    def __init__(self, tft_output, previous: PreviousModel):
        self._tft_output = tft_output
        self._previous = previous

    def __call__(self, name: str | None) -> tuple[list[bytes], list[bytes]] | None:
        if name is None:
            return None
        path = self._tft_output.vocabulary_file_by_name(name)
        old = self._previous.vocabulary(name)
        return None if path is None or old is None else (_read_vocabulary(path), old)


def _feature_axis(tensor, features, vocabularies: _Vocabularies) -> _Axis:
    """The axis of a Dense kernel's rows that one input encoding feeds."""
    width = int(tensor.shape[-1])
    name, embedded = _source_feature(tensor)
    feature = features.get(name)
    offset = None if feature is None or embedded else _token_offset(feature, width)
    tokens = vocabularies(name) if offset is not None else None
    if tokens is None:
        return _Axis.identity(width)
    return _token_axis(name, tokens, offset, width, fixed=feature.kind == DENSE_VECTOR)


def _input_axis(layer, features, vocabularies: _Vocabularies) -> _Axis | None:
    """The axis of the rows of a layer's first weight: an Embedding's ids, or the
    encodings a Dense layer's input concatenates; None for other layers."""
    inputs = _layer_inputs(layer)
    if len(inputs) != 1:
        return None
    if isinstance(layer, tf_keras.layers.Embedding):
        name, _ = _source_feature(inputs[0])
        feature = features.get(name)
        tokens = vocabularies(name)
        if feature is None or feature.num_ids is None or tokens is None:
            return None
        offset = -feature.min_id + (1 if feature.kind == ID_SEQUENCE else 0)
        return _token_axis(name, tokens, offset, feature.num_ids)
    if not isinstance(layer, tf_keras.layers.Dense):
        return None
    source = _history_layer(inputs[0])
    parts = _layer_inputs(source) if isinstance(source, tf_keras.layers.Concatenate) else inputs
    return _joined([_feature_axis(part, features, vocabularies) for part in parts])


def _logits_layers(tensor) -> list:
    """The Dense layers whose units are the columns of a model output (through Adds)."""
    layer = _history_layer(tensor)
    if isinstance(layer, tf_keras.layers.Dense):
        return [layer]
    if isinstance(layer, tf_keras.layers.Add):
        return [d for t in _layer_inputs(layer) for d in _logits_layers(t)]
    return []


def _class_axes(model: Model, vocabularies: _Vocabularies) -> dict[str, _Axis]:
    """Layer name -> the axis of its units, for the layers whose units are a
    classification head's classes (in the label vocabulary's order)."""
    keras_model = model.keras_model
    if isinstance(model.head, MultiHead):
        labels = sorted(model.head.heads)  # Keras flattens a dict output in key order
    else:
        labels = model.label_keys
    axes = {}
    for label, output in zip(labels, keras_model.outputs):
        tokens = vocabularies(label)
        if tokens is None:
            continue
        new_classes, old_classes = tokens
        for layer in _logits_layers(output):
            if layer.units == len(new_classes):
                axes[layer.name] = _token_axis(label, tokens, 0, layer.units)
            elif new_classes != old_classes:  # one logit: the log-odds of the second class
                swapped = new_classes == old_classes[::-1]
                counts = {"kept": 2 if swapped else 0, "new": 0 if swapped else 2, "dropped": 0}
                axes[layer.name] = _Axis(
                    np.zeros(1, int) if swapped else np.full(1, -1),
                    1,
                    {label: counts},
                    sign=np.full(1, -1.0),
                )
    return axes


def warm_start(model: Model, previous: PreviousModel) -> WarmStartReport:
    """Initializes ``model``'s weights from ``previous`` (see the module docstring)."""
    report = WarmStartReport(previous.source)
    vocabularies = _Vocabularies(model.tft_output, previous)
    features = {f.name: f for f in transformed_features(model.tft_output)}
    class_axes = _class_axes(model, vocabularies)
    for layer in model.keras_model.layers:
        if not layer.weights:
            continue
        rows = _input_axis(layer, features, vocabularies)
        units = class_axes.get(layer.name)
        for i, weight in enumerate(layer.weights):
            old = previous.weights.get(weight.name)
            if old is None:
                report.fresh[weight.name] = "not in the previous model"
                continue
            shape = tuple(weight.shape)
            axes = [_Axis.identity(n) for n in shape]
            if i == 0 and rows is not None and len(shape) >= 1:
                axes[0] = rows
            if units is not None and shape and shape[-1] == len(units.index):
                axes[-1] = units
            if tuple(a.old_length for a in axes) != old.shape:
                report.fresh[weight.name] = (
                    f"shape {list(shape)}, was {list(old.shape)} in the previous model"
                )
                continue
            if all(a.is_identity for a in axes):
                weight.assign(old)
                report.copied.append(weight.name)
                continue
            value = weight.numpy()
            new_index = [np.nonzero(a.index >= 0)[0] for a in axes]
            old_index = [a.index[n] for a, n in zip(axes, new_index)]
            taken = old[np.ix_(*old_index)]
            if axes[-1].sign is not None:
                taken = taken * axes[-1].sign[new_index[-1]]
            value[np.ix_(*new_index)] = taken
            weight.assign(value)
            report.remapped[weight.name] = {k: v for a in axes for k, v in a.counts.items()}
    return report
