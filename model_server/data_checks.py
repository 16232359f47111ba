"""Per-request data checks: each served example's features against the training statistics.

An export that carries ``assets.extra/training_statistics.pb`` (and the raw feature
contract ``assets.extra/raw_feature_spec.json``) gets, per served feature, a rule:

- ``unseen_category``: a string value training never had (only when the statistics
  hold the whole vocabulary, i.e. it has at most ``monitoring.top_k`` values);
- ``out_of_range``: a number below the training minimum or above its maximum;
- ``missing``: the feature absent (or empty) while training had values of it (the
  share of such examples is what ``tfbake drift`` compares with training's);
- ``not_finite``: a NaN or infinite number.

Each (example, feature, check) found counts once in
``:tfbake:serving:feature_check_total{model_name,version,feature,check}``; every checked
example in ``:tfbake:serving:checked_example_total{model_name,version}``. The checks run
in the server after the model answered, on what the server decoded anyway (the
``Input`` protos of classify/regress, the ``predict_raw`` columns), so they can neither
change nor fail an answer; the model graph stays exactly the exported one. The counters
are prometheus-client's own, which its multiprocess mode aggregates.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections import Counter as Tally
from collections.abc import Iterable, Mapping

import numpy as np
from prometheus_client import CollectorRegistry, Counter
from tensorflow.core.example import example_pb2

from tfbake.serving_input.feature_spec import (
    feature_lists_of,
    read_raw_feature_spec,
    spec_of_contract,
)
from tfbake.serving_input.receivers import count_input
from tfbake.serving_input.sequence_example import example_of_record
from tfbake.serving_input.training_statistics import (
    EXPORT_STATISTICS_FILE,
    common_stats,
    features_by_name,
    quantile_bounds,
    read_statistics,
    vocabulary,
)

log = logging.getLogger(__name__)

UNSEEN_CATEGORY = "unseen_category"
OUT_OF_RANGE = "out_of_range"
MISSING = "missing"
NOT_FINITE = "not_finite"

FEATURE_CHECKS = ":tfbake:serving:feature_check"
CHECKED_EXAMPLES = ":tfbake:serving:checked_example"


@dataclasses.dataclass(frozen=True)
class _Rule:
    name: str
    is_string: bool
    vocabulary: frozenset[bytes] | None
    low: float
    high: float
    trained: bool

    def check_values(self, values, found: list) -> None:
        """Adds ``(feature, check)`` for a present feature's values."""
        if self.is_string:
            vocab = self.vocabulary
            if vocab is not None and any(v not in vocab for v in values):
                found.append((self.name, UNSEEN_CATEGORY))
            return
        finite = True
        outside = False
        for v in values:
            if not math.isfinite(v):
                finite = False
            elif v < self.low or v > self.high:
                outside = True
        if not finite:
            found.append((self.name, NOT_FINITE))
        if outside:
            found.append((self.name, OUT_OF_RANGE))


class FeatureChecks:
    """The rules of one export; :meth:`examples` and :meth:`columns` return the flags."""

    def __init__(self, statistics, contract: Mapping[str, Mapping]):
        self._spec, _ = spec_of_contract(contract)
        self._feature_lists = feature_lists_of(contract)
        by_name = features_by_name(statistics)
        self.rules: list[_Rule] = []
        for name, entry in contract.items():
            feature = by_name.get(name)
            if feature is None or entry.get("media"):
                continue
            common = common_stats(feature)
            is_string = entry["type"] == "string"
            numbers = feature.num_stats
            has_range = not is_string and bool(quantile_bounds(feature))
            self.rules.append(_Rule(
                name,
                is_string,
                vocabulary(feature) if is_string else None,
                numbers.min if has_range else -math.inf,
                numbers.max if has_range else math.inf,
                common.num_non_missing > 0,
            ))
        self._by_name = {rule.name: rule for rule in self.rules}

    @classmethod
    def of_export(cls, export_dir: str) -> FeatureChecks | None:
        """The checks of an export, or None when it carries no training statistics."""
        path = os.path.join(export_dir, EXPORT_STATISTICS_FILE)
        contract = read_raw_feature_spec(export_dir)
        if contract is None or not os.path.exists(path):
            return None
        return cls(read_statistics(path), contract)

    def parse(self, serialized: Iterable[bytes]) -> list[example_pb2.Example] | None:
        """A Predict request's serialized examples as tf.Examples (a SequenceExample, when
        the export takes them, as the tf.Example it stands for), or None when one is not
        a record of the export's format: nothing to check."""
        try:
            return [example_of_record(s, self._spec, self._feature_lists) for s in serialized]
        except ValueError:
            return None

    def examples(self, examples: Iterable[example_pb2.Example]) -> list[tuple[str, str]]:
        """``(feature, check)`` once per example where a check fires."""
        found: list[tuple[str, str]] = []
        for example in examples:
            features = example.features.feature
            for rule in self.rules:
                values = None
                if rule.name in features:
                    feature = features[rule.name]
                    kind = feature.WhichOneof("kind")
                    values = getattr(feature, kind).value if kind else None
                if not values:
                    if rule.trained:
                        found.append((rule.name, MISSING))
                    continue
                rule.check_values(values, found)
        return found

    def columns(self, inputs: Mapping[str, np.ndarray]) -> list[tuple[str, str]]:
        """``(feature, check)`` per example of ``predict_raw`` inputs (a column per
        feature, ``<name>_count`` values of each example for a nullable or list one)."""
        found: list[tuple[str, str]] = []
        for name, array in inputs.items():
            rule = self._by_name.get(name)
            if rule is None:
                continue
            counts = inputs.get(count_input(name))
            rows = array.reshape(len(array), -1).tolist()
            for i, row in enumerate(rows):
                count = len(row) if counts is None else int(counts[i])
                if count == 0:
                    if rule.trained:
                        found.append((name, MISSING))
                    continue
                rule.check_values(row[:count], found)
        return found

    def is_raw_input(self, aliases: Iterable[str]) -> bool:
        """Whether a signature's inputs are raw feature columns (``predict_raw``)."""
        return any(alias in self._by_name for alias in aliases)


class DataCheckCounters:
    """The checks' Prometheus counters, in the server's registry."""

    def __init__(self, registry: CollectorRegistry | None):
        self._flags = Counter(
            FEATURE_CHECKS,
            "Served examples whose feature failed a check against the training statistics.",
            ("model_name", "version", "feature", "check"),
            registry=registry,
        )
        self._examples = Counter(
            CHECKED_EXAMPLES,
            "Served examples checked against the training statistics.",
            ("model_name", "version"),
            registry=registry,
        )

    def record(self, model_name: str, version: int, examples: int,
               found: list[tuple[str, str]]) -> None:
        """Counts ``examples`` checked and what :class:`FeatureChecks` found in them."""
        version_label = str(version)
        self._examples.labels(model_name, version_label).inc(examples)
        for (feature, check), count in Tally(found).items():
            self._flags.labels(model_name, version_label, feature, check).inc(count)
