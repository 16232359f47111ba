"""The Beam job: raw CSV / TFRecord -> tf.Transform analyze + transform -> TFRecords.

- :func:`run` (a :class:`TransformJob`): the job itself;
- :mod:`transform.preprocessing`: the declarative building blocks; a user's
  ``preprocessing_fn(inputs) -> dict`` is accepted as is.
"""

from transform.csv_source import CsvFormat, CsvRowDecoder, csv_records, read_header
from transform.pipeline import (
    TransformError,
    TransformJob,
    analysis_cache_report_path,
    data_pattern,
    rejects_pattern,
    run,
    stats_path,
    transform_fn_dir,
)
from transform.preprocessing import (
    FeaturePreprocessing,
    build_preprocessing_fn,
    load_preprocessing_fn,
)

__all__ = [
    "CsvFormat",
    "CsvRowDecoder",
    "FeaturePreprocessing",
    "TransformError",
    "TransformJob",
    "analysis_cache_report_path",
    "build_preprocessing_fn",
    "csv_records",
    "data_pattern",
    "load_preprocessing_fn",
    "read_header",
    "rejects_pattern",
    "run",
    "stats_path",
    "transform_fn_dir",
]
