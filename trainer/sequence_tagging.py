"""Token classification (NER, POS tagging): one tag per token of a text.

The label is the tag ids of :func:`tfbake.transform.labels.transform_tags` (int64 [L], tag
vocabulary id + 1, 0 = padding), aligned with the token ids of the token feature (0 =
padding too). The model answers [N, L, K + 1] logits; column 0, padding, is never
predicted, and the loss and metrics skip padded positions.

The export answers every example with the tags of its own tokens: per-token outputs
are padded to L beside ``token_count`` (signature outputs cannot be ragged), and the
project's server and client cut each row at its count (:mod:`tfbake.serving_input.signatures`).
TF Serving's Classify answers one list of (class, score) per example, so a per-token
answer has no Classify form: the head exports ``predict`` only (also as
``serving_default``), and the warm-up replays it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from tfbake.serving_input import signatures as sig
from tfbake.trainer.heads import (
    Head,
    Outputs,
    SignatureSpec,
    _all_classes,
    _class_names,
    _predict_signature,
)

# Raw features -> each example's tokens as the model saw them ([N, None] strings).
Tokenize = Callable[[Mapping], tf.RaggedTensor]


class TokenAccuracy(tf_keras.metrics.Mean):
    """The share of real tokens (label id != 0) whose predicted tag is right; the
    padding column of the logits never wins."""

    def __init__(self, name: str = "token_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.cast(y_true, tf.int64)
        predicted = tf.argmax(y_pred[..., 1:], axis=-1) + 1
        weight = tf.cast(tf.not_equal(y_true, 0), tf.float32)
        if sample_weight is not None:
            weight *= tf.cast(sample_weight, tf.float32)
        return super().update_state(tf.cast(tf.equal(predicted, y_true), tf.float32), weight)


class SequenceTaggingHead(Head):
    """One tag per token from ``tag_vocabulary`` (the label vocabulary, in its order).

    Args:
      tag_vocabulary: the tags; tag id k + 1 of the transformed label is tag k.
      token_feature: the transformed id sequence the tags are aligned with (its
        non-zero ids are the example's tokens).
      tokenize: raw features -> the tokens the model saw, to answer them beside the
        tags (``tokens``); None: no ``tokens`` output.
    """

    def __init__(
        self,
        tag_vocabulary: Sequence[str | bytes],
        token_feature: str,
        tokenize: Tokenize | None = None,
    ):
        self.tags = _class_names(tag_vocabulary)
        if not self.tags:
            raise ValueError("a tagging head needs at least 1 tag")
        self.token_feature = token_feature
        self.tokenize = tokenize

    def __repr__(self) -> str:
        return f"SequenceTaggingHead(tags={self.tags}, tokens={self.token_feature!r})"

    @property
    def logits_dimension(self) -> int:
        return len(self.tags) + 1  # column 0: padding

    def loss(self) -> tf_keras.losses.Loss:
        return tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)

    def metrics(self) -> list:
        return [TokenAccuracy()]

    def predictions(self, logits: tf.Tensor) -> Outputs:
        """Every position taken for a token (no token count known): see
        :meth:`predictions_for`."""
        length = tf.shape(logits)[1]
        counts = tf.fill(tf.shape(logits)[:1], tf.cast(length, tf.int64))
        return self._outputs(logits, counts)

    def predictions_for(self, logits, features, raw_features=None) -> Outputs:
        """``tags`` [N, L] (``""`` past the example's tokens), ``tag_ids`` [N, L] (-1 past
        them), ``tag_scores`` [N, L, K] (0 past them), ``token_count`` [N],
        ``all_classes`` [N, K] (the order of ``tag_scores``) and, with ``tokenize`` and
        raw features, ``tokens`` [N, L]."""
        counts = tf.math.count_nonzero(features[self.token_feature], axis=1, dtype=tf.int64)
        outputs = self._outputs(logits, counts)
        if self.tokenize is not None and raw_features is not None:
            length = logits.shape[1] or tf.shape(logits)[1]
            outputs[sig.TOKENS] = self.tokenize(raw_features).to_tensor("", shape=[None, length])
        return outputs

    def _outputs(self, logits: tf.Tensor, counts: tf.Tensor) -> Outputs:
        real = tf.sequence_mask(counts, tf.shape(logits)[1])
        scores = tf.nn.softmax(logits[..., 1:]) * tf.cast(real, logits.dtype)[..., tf.newaxis]
        tag_ids = tf.where(real, tf.argmax(logits[..., 1:], axis=-1), tf.constant(-1, tf.int64))
        tags = tf.where(real, tf.gather(tf.constant(self.tags), tf.maximum(tag_ids, 0)), "")
        return {
            sig.TAGS: tags,
            sig.TAG_IDS: tag_ids,
            sig.TAG_SCORES: scores,
            sig.TOKEN_COUNT: counts,
            **_all_classes(self.tags, tf.shape(logits)[0]),
        }

    def signatures(self) -> list[SignatureSpec]:
        """``predict`` only: Classify answers one class list per example, not per token."""
        return [_predict_signature()]

    def label_for_loss(self, label: tf.Tensor) -> tf.Tensor:
        return tf.cast(label, tf.int64)


def entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The entities of a BIO (IOB2) tag sequence as (type, start, end) spans.

    ``B-X`` starts an entity of type X, ``I-X`` continues one of type X (an ``I-X``
    after anything else starts one, as conlleval reads it), any other tag (``O``)
    ends it.
    """
    spans, kind, start = set(), None, 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, name = tag.partition("-")
        continues = prefix == "I" and name == kind
        if kind is not None and not continues:
            spans.add((kind, start, i))
            kind = None
        if prefix == "B" or (prefix == "I" and not continues):
            kind, start = name, i
    return spans


def _f1(true_positive: int, predicted: int, actual: int) -> dict[str, float]:
    precision = true_positive / predicted if predicted else 0.0
    recall = true_positive / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": actual}


def tagging_report(
    true_tags: Iterable[Sequence[str]], predicted_tags: Iterable[Sequence[str]]
) -> dict:
    """Token accuracy, per-tag precision/recall/F1 and, when the tags are BIO,
    entity-level precision/recall/F1 (an entity counts only with its exact span and
    type), of sentences' true and predicted tags (one list per sentence)."""
    pairs = [(list(t), list(p)) for t, p in zip(true_tags, predicted_tags, strict=True)]
    for n, (t, p) in enumerate(pairs):
        if len(t) != len(p):
            raise ValueError(f"sentence {n}: {len(t)} true tags but {len(p)} predicted")
    tokens = [(t, p) for ts, ps in pairs for t, p in zip(ts, ps)]
    right = Counter(t for t, p in tokens if t == p)
    actual, predicted = Counter(t for t, _ in tokens), Counter(p for _, p in tokens)
    report: dict = {
        "token_accuracy": sum(right.values()) / len(tokens) if tokens else 0.0,
        "per_tag": {tag: _f1(right[tag], predicted[tag], actual[tag]) for tag in sorted(actual)},
    }
    if any(tag.startswith(("B-", "I-")) for tag in actual):
        found = [(entities(t), entities(p)) for t, p in pairs]
        report["entity"] = _f1(
            sum(len(t & p) for t, p in found),
            sum(len(p) for _, p in found),
            sum(len(t) for t, _ in found),
        )
    return report


def tags_of(outputs: Mapping[str, np.ndarray]) -> list[list[str]]:
    """Each example's own tags from a tagging head's (padded) predictions."""
    return [
        [t.decode() if isinstance(t, bytes) else str(t) for t in row[:count]]
        for row, count in zip(outputs[sig.TAGS], outputs[sig.TOKEN_COUNT])
    ]
