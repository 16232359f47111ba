"""Per-feature statistics of raw data, in TFDV's ``DatasetFeatureStatisticsList`` proto.

The Beam job computes them over the raw training data (``training_statistics.pb``
beside ``stats.json``; the export carries a copy in ``assets.extra/``); the model
server checks each request against them and ``tfbake drift`` compares served traffic
with them. tfx_bsl's sketches do the counting (quantiles, top-k, distinct values), so
the accumulator is mergeable and bounded in size whatever the data's size:

- every feature: examples with and without it, values per example (min, max, mean);
- numbers: min, max, mean, standard deviation, zeros, a ``QUANTILES`` histogram of
  :data:`NUM_QUANTILES` buckets;
- strings: distinct values (``unique``) and the ``top_k`` most frequent with their
  counts (``top_values`` and ``rank_histogram``) when that is the whole vocabulary,
  else the 20 most frequent (free text stays small).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx_bsl.sketches import KmvSketch, MisraGriesSketch, QuantilesSketch

from serving_input.training_statistics import statistics_path, write_statistics

NUM_QUANTILES = 100
DEFAULT_TOP_K = 1000
_QUANTILES_EPS = 0.001
_MAX_ELEMENTS = 1 << 32
_KMV_BUCKETS = 4096
# Top values kept when they are not the whole vocabulary (free text): TFDV's default.
_TOP_VALUES_OF_OPEN_VOCABULARY = 20

_TYPES = {
    tf.float32: statistics_pb2.FeatureNameStatistics.FLOAT,
    tf.int64: statistics_pb2.FeatureNameStatistics.INT,
    tf.string: statistics_pb2.FeatureNameStatistics.STRING,
}


class _Feature:
    """What one feature's statistics need, mergeable (sketches pickle)."""

    def __init__(self, is_string: bool, top_k: int):
        self.is_string = is_string
        self.present = 0
        self.missing = 0
        self.values = 0
        self.min_values = math.inf
        self.max_values = 0
        if is_string:
            self.top = MisraGriesSketch(top_k)
            self.distinct = KmvSketch(_KMV_BUCKETS)
        else:
            self.quantiles = QuantilesSketch(_QUANTILES_EPS, _MAX_ELEMENTS, 1)
            self.low = math.inf
            self.high = -math.inf
            self.sum = 0.0
            self.sum_squares = 0.0
            self.zeros = 0
            self.not_finite = 0

    def add(self, column: pa.Array) -> None:
        lengths = pc.list_value_length(column)
        present = len(column) - column.null_count
        self.missing += column.null_count
        self.present += present
        if present:
            counts = lengths.drop_null()
            self.min_values = min(self.min_values, pc.min(counts).as_py())
            self.max_values = max(self.max_values, pc.max(counts).as_py())
        values = pc.list_flatten(column)
        self.values += len(values)
        if not len(values):
            return
        if self.is_string:
            self.top.AddValues(values)
            self.distinct.AddValues(values)
            return
        array = values.to_numpy(zero_copy_only=False).astype(np.float64)
        finite = np.isfinite(array)
        self.not_finite += int(len(array) - finite.sum())
        array = array[finite]
        if not len(array):
            return
        self.quantiles.AddValues(pa.array(array))
        self.low = min(self.low, float(array.min()))
        self.high = max(self.high, float(array.max()))
        self.sum += float(array.sum())
        self.sum_squares += float(np.square(array).sum())
        self.zeros += int((array == 0).sum())

    def merge(self, other: _Feature) -> None:
        self.present += other.present
        self.missing += other.missing
        self.values += other.values
        self.min_values = min(self.min_values, other.min_values)
        self.max_values = max(self.max_values, other.max_values)
        if self.is_string:
            self.top.Merge(other.top)
            self.distinct.Merge(other.distinct)
            return
        self.quantiles.Merge(other.quantiles)
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)
        self.sum += other.sum
        self.sum_squares += other.sum_squares
        self.zeros += other.zeros
        self.not_finite += other.not_finite

    def proto(self, name: str, dtype) -> statistics_pb2.FeatureNameStatistics:
        feature = statistics_pb2.FeatureNameStatistics(type=_TYPES[tf.as_dtype(dtype)])
        feature.path.step.append(name)
        if self.is_string:
            common = feature.string_stats.common_stats
            top = self.top.Estimate().to_pylist()
            unique = min(int(self.distinct.Estimate()), self.values)
            feature.string_stats.unique = unique
            if unique > len(top):  # not a vocabulary: a few values show what it holds
                top = top[:_TOP_VALUES_OF_OPEN_VOCABULARY]
            for rank, entry in enumerate(top):
                value = entry["values"].decode("utf-8", "replace")
                feature.string_stats.top_values.add(value=value, frequency=entry["counts"])
                feature.string_stats.rank_histogram.buckets.add(
                    low_rank=rank, high_rank=rank, label=value, sample_count=entry["counts"]
                )
            if self.values:
                lengths = sum(len(e["values"]) * e["counts"] for e in top)
                feature.string_stats.avg_length = lengths / self.values
        else:
            numbers = feature.num_stats
            common = numbers.common_stats
            finite = self.values - self.not_finite
            histogram = numbers.histograms.add(
                type=statistics_pb2.Histogram.QUANTILES, num_nan=self.not_finite
            )
            if finite:
                mean = self.sum / finite
                numbers.mean = mean
                numbers.std_dev = math.sqrt(max(self.sum_squares / finite - mean * mean, 0.0))
                numbers.min, numbers.max = self.low, self.high
                numbers.num_zeros = self.zeros
                bounds = self.quantiles.GetQuantiles(NUM_QUANTILES).flatten().to_pylist()
                numbers.median = bounds[len(bounds) // 2]
                for low, high in zip(bounds, bounds[1:]):
                    histogram.buckets.add(
                        low_value=low, high_value=high, sample_count=finite / NUM_QUANTILES
                    )
        common.num_non_missing = self.present
        common.num_missing = self.missing
        common.tot_num_values = self.values
        if self.present:
            common.min_num_values = int(self.min_values)
            common.max_num_values = int(self.max_values)
            common.avg_num_values = self.values / self.present
        return feature


class StatisticsAccumulator:
    """Statistics of RecordBatches of raw features (``feature_spec``'s names and types)."""

    def __init__(self, feature_spec: Mapping, top_k: int = DEFAULT_TOP_K):
        self.feature_spec = dict(feature_spec)
        self.examples = 0
        self.features = {
            name: _Feature(tf.as_dtype(spec.dtype) == tf.string, top_k)
            for name, spec in self.feature_spec.items()
        }

    def add(self, batch: pa.RecordBatch) -> StatisticsAccumulator:
        """Counts one RecordBatch (tfxio's raw layout: a list column per feature)."""
        self.examples += batch.num_rows
        for name, feature in self.features.items():
            index = batch.schema.get_field_index(name)
            if index < 0:  # no example of the batch has the feature
                feature.missing += batch.num_rows
            else:
                feature.add(batch.column(index))
        return self

    def merge(self, other: StatisticsAccumulator) -> StatisticsAccumulator:
        """Adds ``other``'s counts into this accumulator."""
        self.examples += other.examples
        for name, feature in self.features.items():
            feature.merge(other.features[name])
        return self

    def proto(self, name: str = "train") -> statistics_pb2.DatasetFeatureStatisticsList:
        """The statistics as TFDV writes them (one dataset named ``name``)."""
        result = statistics_pb2.DatasetFeatureStatisticsList()
        dataset = result.datasets.add(name=name, num_examples=self.examples)
        for feature_name, feature in self.features.items():
            dtype = self.feature_spec[feature_name].dtype
            dataset.features.append(feature.proto(feature_name, dtype))
        return result


class _StatisticsFn(beam.CombineFn):
    def __init__(self, feature_spec: Mapping, top_k: int):
        self._feature_spec = dict(feature_spec)
        self._top_k = top_k

    def create_accumulator(self):
        return StatisticsAccumulator(self._feature_spec, self._top_k)

    def add_input(self, accumulator, batch):
        return accumulator.add(batch)

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        first = next(accumulators)
        for other in accumulators:
            first.merge(other)
        return first

    def extract_output(self, accumulator):
        return accumulator.proto()


class ComputeStatistics(beam.PTransform):
    """Raw RecordBatches -> ``training_statistics.pb`` in ``output_dir`` (one file)."""

    def __init__(self, feature_spec: Mapping, output_dir: str, top_k: int = DEFAULT_TOP_K):
        super().__init__()
        self._feature_spec = dict(feature_spec)
        self._path = statistics_path(output_dir)
        self._top_k = top_k

    def expand(self, record_batches):
        return (
            record_batches
            | "Combine" >> beam.CombineGlobally(_StatisticsFn(self._feature_spec, self._top_k))
            | "Write" >> beam.Map(write_statistics, self._path)
        )


def accumulate(feature_spec: Mapping, batches: Iterable[pa.RecordBatch],
               top_k: int = DEFAULT_TOP_K) -> StatisticsAccumulator:
    """Statistics of RecordBatches in this process (what the Beam job does, without Beam)."""
    accumulator = StatisticsAccumulator(feature_spec, top_k)
    for batch in batches:
        accumulator.add(batch)
    return accumulator
