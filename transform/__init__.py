"""The Beam job: raw CSV / TFRecord -> tf.Transform analyze + transform -> TFRecords.

- :func:`run` (a :class:`TransformJob`): the job itself;
- :mod:`transform.preprocessing`: the declarative building blocks; a user's
  ``preprocessing_fn(inputs) -> dict`` is accepted as is.
"""

from serving_input.csv_rows import CsvFormat, column_names, read_header
from transform.csv_source import CsvRowDecoder, csv_records
from transform.pipeline import (
    VALIDATION,
    TransformError,
    TransformJob,
    analysis_cache_report_path,
    data_pattern,
    rejects_pattern,
    run,
    runner_name,
    stats_path,
    transform_fn_dir,
    workers_on_this_machine,
)
from transform.preprocessing import (
    FeaturePreprocessing,
    build_preprocessing_fn,
    load_preprocessing_fn,
)

__all__ = [
    "VALIDATION",
    "CsvFormat",
    "CsvRowDecoder",
    "FeaturePreprocessing",
    "TransformError",
    "TransformJob",
    "analysis_cache_report_path",
    "build_preprocessing_fn",
    "column_names",
    "csv_records",
    "data_pattern",
    "load_preprocessing_fn",
    "read_header",
    "rejects_pattern",
    "run",
    "runner_name",
    "stats_path",
    "transform_fn_dir",
    "workers_on_this_machine",
]
