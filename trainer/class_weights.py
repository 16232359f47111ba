"""Class weights for an imbalanced single-label classifier, from the counts that the
Beam job already stored beside the label vocabulary (no second pass over the data)."""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow_transform as tft

from tfbake.transform.labels import FREQUENCY_SUFFIX


def class_counts(tft_output: tft.TFTransformOutput, label_key: str) -> dict[str, int]:
    """Class name -> training examples, from ``<label_key>_frequency`` (``count name``
    lines, written by :func:`tfbake.transform.labels.transform_label`; the count an
    integer written as a float)."""
    counts = {}
    for line in tft_output.vocabulary_by_name(f"{label_key}{FREQUENCY_SUFFIX}"):
        count, _, name = line.decode().partition(" ")
        # "363.0": the Beam job counts with weights of 1 (ones_per_value); "363" before.
        counts[name] = int(float(count))
    return counts


def class_weights(
    tft_output: tft.TFTransformOutput, label_key: str, weights: str | Mapping[str, float]
) -> list[float]:
    """One weight per class, in label vocabulary order (the order of the label ids).

    ``"balanced"``: ``examples / (classes * examples of the class)``, so every class
    weighs as much in the loss (scikit-learn's rule). A mapping gives weights by class
    name; a class it does not name weighs 1. A name that is not a class is an error.
    """
    vocabulary = [v.decode() for v in tft_output.vocabulary_by_name(label_key)]
    if weights == "balanced":
        counts = class_counts(tft_output, label_key)
        total = sum(counts.values())
        return [total / (len(vocabulary) * counts[name]) for name in vocabulary]
    if isinstance(weights, str):
        raise ValueError(f'class_weights: expected "balanced" or a mapping, got {weights!r}')
    unknown = sorted(set(weights) - set(vocabulary))
    if unknown:
        raise ValueError(
            f'class_weights: {unknown} are not classes of label "{label_key}" '
            f"(classes: {vocabulary})"
        )
    return [float(weights.get(name, 1.0)) for name in vocabulary]
