"""The training statistics file: TFDV's ``DatasetFeatureStatisticsList``, read and written.

The Beam job writes it (:mod:`transform.statistics`), an export carries a copy
(:data:`EXPORT_STATISTICS_FILE`), the model server's data checks and ``tfbake drift``
read it. Only the proto is needed here (no Beam, no TFDV).
"""

from __future__ import annotations

import os

import tensorflow as tf
from tensorflow_metadata.proto.v0 import statistics_pb2

STATISTICS_FILE = "training_statistics.pb"
# The copy an export carries, beside the raw feature contract.
EXPORT_STATISTICS_FILE = os.path.join("assets.extra", STATISTICS_FILE)


def statistics_path(output_dir: str) -> str:
    """Where the Beam job writes the training statistics in its output folder."""
    return os.path.join(output_dir, STATISTICS_FILE)


def write_statistics(statistics: statistics_pb2.DatasetFeatureStatisticsList, path: str) -> str:
    """Writes the binary proto (TFDV's ``load_stats_binary`` reads it); returns ``path``."""
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(statistics.SerializeToString())
    return path


def read_statistics(path: str) -> statistics_pb2.DatasetFeatureStatistics:
    """The (first) dataset of a statistics file that :func:`write_statistics` wrote."""
    with tf.io.gfile.GFile(path, "rb") as f:
        statistics = statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())
    return statistics.datasets[0]


def features_by_name(
    statistics: statistics_pb2.DatasetFeatureStatistics,
) -> dict[str, statistics_pb2.FeatureNameStatistics]:
    """Feature name -> its statistics."""
    return {".".join(f.path.step) or f.name: f for f in statistics.features}


def common_stats(feature: statistics_pb2.FeatureNameStatistics):
    """The ``CommonStatistics`` of a number or a string feature."""
    kind = feature.WhichOneof("stats")
    return feature.string_stats.common_stats if kind == "string_stats" else (
        feature.num_stats.common_stats)


def vocabulary(feature: statistics_pb2.FeatureNameStatistics) -> frozenset[bytes] | None:
    """Every value a string feature had, or None when ``top_values`` does not hold them all
    (more distinct values than the top-k kept)."""
    strings = feature.string_stats
    if strings.unique > len(strings.top_values):
        return None
    return frozenset(v.value.encode() for v in strings.top_values)


def quantile_bounds(feature: statistics_pb2.FeatureNameStatistics) -> list[float]:
    """The boundaries of a number feature's ``QUANTILES`` histogram (empty if none)."""
    for histogram in feature.num_stats.histograms:
        if histogram.type == statistics_pb2.Histogram.QUANTILES and histogram.buckets:
            return [histogram.buckets[0].low_value, *(b.high_value for b in histogram.buckets)]
    return []
