"""The Beam job: raw CSV / TFRecord -> tf.Transform analyze + transform -> TFRecords.

- :func:`run` (a :class:`TransformJob`): the job itself;
- :mod:`tfbake.transform.preprocessing`: the declarative building blocks (declared in
  :mod:`tfbake.transform.preprocessing_config`); a user's ``preprocessing_fn(inputs) -> dict``
  is accepted as is.

Each name is imported on first use: ``import tfbake.transform`` loads neither Beam nor
TensorFlow.
"""

from tfbake.serving_input.lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "tfbake.serving_input.csv_rows": ["CsvFormat", "column_names", "csv_records", "read_header"],
    ".csv_source": ["CsvRowDecoder"],
    ".pipeline": [
        "VALIDATION",
        "TransformError",
        "TransformJob",
        "analysis_cache_report_path",
        "data_pattern",
        "rejects_pattern",
        "run",
        "runner_name",
        "stats_path",
        "transform_fn_dir",
        "workers_on_this_machine",
    ],
    ".preprocessing": ["build_preprocessing_fn"],
    ".preprocessing_config": ["FeaturePreprocessing", "load_preprocessing_fn"],
})
__all__ = __dir__()
