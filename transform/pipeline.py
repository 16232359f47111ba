"""The Beam job: read -> analyze -> transform -> write, for the train and eval splits.

``artifacts/<name>/transform/`` receives the raw ``metadata/``,
``transform_fn/``, ``transformed_metadata/``, ``data/{train,eval}-*.tfrecord.gz``,
``rejects/{train,eval}-*.jsonl``, ``stats.json`` and (unless turned off)
``training_statistics.pb``: per-feature statistics of the raw training data
(:mod:`tfbake.transform.statistics`).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections.abc import Callable, Mapping, Sequence

import apache_beam as beam
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    PortableOptions,
    StandardOptions,
)
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from tensorflow_transform.beam.common import METRICS_NAMESPACE as TFT_METRICS_NAMESPACE
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils
from tfx_bsl.coders import example_coder
from tfx_bsl.tfxio import tensor_adapter

from tfbake.serving_input.csv_rows import CsvFormat, column_names
from tfbake.transform.analysis_cache import (
    AnalysisCache,
    TracedAnalyzers,
    span_key,
    trace_analyzers,
)
from tfbake.transform.beam_overhead import (
    cut_overhead,
    older_objects_left_out_of_collection,
    pipeline_options,
)
from tfbake.transform.csv_source import ReadCsv, raw_adapter_config
from tfbake.transform.job_record import JobRecord, code_fingerprint
from tfbake.transform.rejects import COUNTER_NAMESPACE, HOLDOUT_REJECTS_TAG, HOLDOUT_TAG, Holdout
from tfbake.transform.session_config import graphs_run_as_built
from tfbake.transform.shared_graph import share_loaded_graph
from tfbake.transform.statistics import DEFAULT_TOP_K, ComputeStatistics
from tfbake.transform.tfrecord_shards import WriteTFRecordShards
from tfbake.transform.tfrecord_source import ReadExamples
from tfbake.transform.token_alignment import REJECTS_TAG as ALIGNMENT_REJECTS
from tfbake.transform.token_alignment import KeepAlignedRows, TokenAlignment
from tfbake.transform.trace_errors import trace_error_message
from tfbake.transform.trace_once import reusing_trace
from tfbake.transform.unknown_labels import (
    CountUnknownLabels,
    unknown_label_counts,
    unknown_labels_message,
)
from tfbake.transform.vocabulary_steps import lean_vocabulary_steps

SPLITS = ("train", "eval")
# The split that picks the early-stopping epoch, when the job has one.
VALIDATION = "validation"
# Runner names that mean "this machine": run them on the FnApiRunner, so Beam never
# tries to download the Prism runner (since Beam 2.6x the DirectRunner does, and fails
# slowly offline).
LOCAL_RUNNERS = (None, "direct", "directrunner", "fnapirunner")


class TransformError(RuntimeError):
    """The job ran but its result cannot be used (too many rejects, no rows)."""


@dataclasses.dataclass(frozen=True)
class TransformJob:
    """Everything the Beam job needs; :func:`tfbake.config` builds one from YAML."""

    raw_feature_spec: Mapping
    preprocessing_fn: Callable[[dict], dict]
    # One span (a file or a glob), or several (e.g. one a day): each is analyzed and
    # cached on its own (see analysis_cache_dir).
    train_pattern: str | Sequence[str]
    eval_pattern: str
    output_dir: str
    data_format: str = "csv"
    csv: CsvFormat = dataclasses.field(default_factory=CsvFormat)
    max_reject_fraction: float = 0.05
    beam_args: Sequence[str] = ()
    # Which VarLenFeatures are lists (a CSV cell holds several values) rather than
    # nullable values, and which features hold encoded images (name -> channels).
    list_features: Sequence[str] = ()
    # data_format "sequence_example": the columns its records carry as feature_lists.
    feature_lists: Sequence[str] = ()
    image_features: Mapping[str, int] = dataclasses.field(default_factory=dict)
    # tf.Transform's analyzer cache, per training span (transform.analysis_cache); it
    # must outlive output_dir, which each run empties. None: no cache.
    analysis_cache_dir: str | None = None
    # Class labels whose eval values must all be classes of the training data.
    class_labels: Sequence[str] = ()
    # A validation split: its own files, or a deterministic fraction of the train
    # files' records (held out before analysis). At most one of the two.
    validation_pattern: str | None = None
    validation_fraction: float | None = None
    # Sequence-tagging labels whose rows need one tag per token (others are rejects).
    token_alignments: Sequence[TokenAlignment] = ()
    # Statistics of the raw training data (and how many top values a string keeps).
    statistics: bool = True
    statistics_top_k: int = DEFAULT_TOP_K

    @property
    def train_spans(self) -> list[str]:
        """The training spans' patterns, in order."""
        pattern = self.train_pattern
        return [pattern] if isinstance(pattern, str) else list(pattern)

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits the job writes: train, eval and, when asked for, validation."""
        has_validation = self.validation_pattern or self.validation_fraction
        return (*SPLITS, VALIDATION) if has_validation else SPLITS


# The layout of a transform output directory.
def transform_fn_dir(output_dir: str) -> str:
    return os.path.join(output_dir, "transform_fn")


def data_pattern(output_dir: str, split: str) -> str:
    """The glob of a split's transformed TFRecords (gzip)."""
    return os.path.join(output_dir, "data", f"{split}-*.tfrecord.gz")


def rejects_pattern(output_dir: str, split: str) -> str:
    return os.path.join(output_dir, "rejects", f"{split}-*.jsonl")


def stats_path(output_dir: str) -> str:
    return os.path.join(output_dir, "stats.json")


def analysis_cache_report_path(output_dir: str) -> str:
    """What the analysis cache did in the last run: each span, analyzed or read back."""
    return os.path.join(output_dir, "analysis_cache.json")


def _column_names(job: TransformJob) -> list[str]:
    """The CSV columns: declared, or the header of the first span's first file (every
    other span's first file must have the same header)."""
    if job.csv.column_names:
        names = list(job.csv.column_names)
    else:
        headers = {}
        for pattern in job.train_spans:
            files = sorted(glob.glob(pattern)) or sorted(tf.io.gfile.glob(pattern))
            if not files:
                raise TransformError(f"no file matches {pattern!r}")
            headers[files[0]] = column_names(files[0], job.csv)
        (first, names), *others = headers.items()
        for path, header in others:
            if header != names:
                raise TransformError(
                    f"{path}: the header {header} differs from {first}'s {names}; "
                    "every training span needs the same columns"
                )
    missing = [name for name in job.raw_feature_spec if name not in names]
    if missing:
        raise TransformError(f"feature(s) {missing} are not CSV columns; the columns are {names}")
    return names


def _read(pipeline, job: TransformJob, split: str, pattern: str, column_names, label: str):
    """A source's outputs: ``record_batches``, ``rejects`` and, for train with a
    validation fraction, the held-out ones."""
    holdout = None
    if split == "train" and job.validation_fraction:
        holdout = Holdout(VALIDATION, job.validation_fraction)
    if job.data_format == "csv":
        source = ReadCsv(
            pattern,
            job.raw_feature_spec,
            column_names,
            job.csv,
            split,
            list_features=job.list_features,
            holdout=holdout,
        )
    else:
        source = ReadExamples(pattern, job.raw_feature_spec, split, job.image_features, holdout,
                              job.feature_lists)
    return pipeline | label >> source


def _reader(job: TransformJob, column_names) -> str:
    """How the training files are read: part of each span's cache key."""
    return json.dumps(
        {
            "format": job.data_format,
            "csv": job.csv.model_dump() if job.data_format == "csv" else None,
            "columns": column_names,
            "raw_feature_spec": {k: repr(v) for k, v in sorted(job.raw_feature_spec.items())},
            "lists": sorted(job.list_features),
            "feature_lists": sorted(job.feature_lists),
            "images": dict(sorted(job.image_features.items())),
            # The records held out of each span are not analyzed.
            "validation_fraction": job.validation_fraction,
            # Rows whose tags do not align with their tokens are not analyzed.
            "token_alignments": repr(list(job.token_alignments)),
        },
        sort_keys=True,
    )


def _is_local(runner: str | None) -> bool:
    return runner is None or runner.lower() in LOCAL_RUNNERS


def runner_name(beam_args: Sequence[str]) -> str:
    """The runner that pipeline flags select (``DirectRunner`` when none is given)."""
    return PipelineOptions(list(beam_args)).view_as(StandardOptions).runner or "DirectRunner"


def workers_on_this_machine(beam_args: Sequence[str]) -> bool:
    """Whether the job's SDK workers surely see this machine's files: a local runner, or
    a portable one with ``--environment_type=LOOPBACK`` (the workers run in the
    launching process)."""
    options = PipelineOptions(list(beam_args))
    if _is_local(options.view_as(StandardOptions).runner):
        return True
    environment = options.view_as(PortableOptions).environment_type or ""
    return environment.upper() == "LOOPBACK"


def _pipeline(options: PipelineOptions) -> beam.Pipeline:
    if _is_local(options.view_as(StandardOptions).runner):
        return beam.Pipeline(runner=FnApiRunner(), options=options)
    return beam.Pipeline(options=options)


class WriteExamples(beam.PTransform):
    """Transformed RecordBatches (``TransformDataset(output_record_batches=True)``'s output
    and metadata) -> ``data/<split>-*.tfrecord.gz`` of tf.Examples; counts ``<split>_written``.

    Encodes whole RecordBatches with tfx_bsl's encoder, as ``EncodeTransformedDataset``
    does, but keeps each batch one element to the writer rather than one per example.
    """

    def __init__(self, output_dir: str, split: str):
        super().__init__()
        self._output_dir = output_dir
        self._split = split

    def _extract_input_pvalues(self, transformed_and_metadata):
        return transformed_and_metadata, [transformed_and_metadata[0]]

    def expand(self, transformed_and_metadata):
        transformed, metadata = transformed_and_metadata
        encoder = metadata.deferred_metadata | "Encoder" >> beam.Map(
            lambda m: example_coder.RecordBatchToExamplesEncoder(m.schema)
        )
        prefix = os.path.join(self._output_dir, "data", self._split)
        return (
            transformed
            # Each element is (RecordBatch, passthrough features); the latter are unused.
            | "Encode"
            >> beam.Map(
                lambda batch, coder: (prefix, coder.encode(batch[0])),
                coder=beam.pvalue.AsSingleton(encoder),
            )
            | "WriteShards"
            >> WriteTFRecordShards(
                [prefix],
                os.path.join(self._output_dir, ".write", self._split),
                suffix=".tfrecord.gz",
                counter=(COUNTER_NAMESPACE, f"{self._split}_written"),
            )
        )


def _aligned(job: TransformJob, split: str, label: str, batches, rejects):
    """A split's (RecordBatches, rejects) with the rows whose tags do not align with
    their tokens (``job.token_alignments``) moved to the rejects."""
    if not job.token_alignments:
        return batches, rejects
    kept = batches | f"Align{label}Tags" >> KeepAlignedRows(job.token_alignments, split)
    return kept.record_batches, (
        (rejects, kept[ALIGNMENT_REJECTS]) | f"{label}Rejects" >> beam.Flatten()
    )


def _flatten(name: str, pcolls: list):
    """One PCollection of ``pcolls``' elements (the one itself when alone)."""
    return pcolls[0] if len(pcolls) == 1 else pcolls | name >> beam.Flatten()


def _counter_totals(result, namespace: str) -> dict[tuple[str, str], int]:
    """(step, counter name) -> value, of the job's counters in ``namespace``."""
    counters = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(namespace))
    return {
        (c.key.step, c.key.metric.name): int(c.committed or c.attempted or 0)
        for c in counters["counters"]
    }


def _stats(result, splits: Sequence[str]) -> dict:
    values: dict[str, int] = {}
    for (_, name), value in _counter_totals(result, COUNTER_NAMESPACE).items():
        values[name] = values.get(name, 0) + value  # a split read in several spans
    return {
        split: {kind: values.get(f"{split}_{kind}", 0) for kind in ("read", "written", "rejected")}
        for split in splits
    }


def _analyzed_spans(result, span_keys: Sequence[str]) -> list[str]:
    """The spans whose rows went through tf.Transform's analysis (not all from cache).

    tf.Transform counts the rows each analysis graph takes (``num_instances``), per
    step; a span's step is ``[AnalysisIndex<i>]`` (i: its place among the sorted keys);
    a step without one reads every span (an analyzer of a later phase, not cached).
    """
    steps = [
        step
        for (step, name), value in _counter_totals(result, TFT_METRICS_NAMESPACE).items()
        if name == "num_instances" and value and "ApplySavedModel[Phase" in step
    ]
    if any("[AnalysisIndex" not in step for step in steps):  # a later phase: all data
        return list(span_keys)
    ordered = sorted(span_keys)
    return [key for i, key in enumerate(ordered) if any(f"[AnalysisIndex{i}]" in s for s in steps)]


def _check_rejects(stats: dict, job: TransformJob) -> None:
    for split, counts in stats.items():
        if counts["read"] == 0:
            raise TransformError(f"{split}: no rows were read")
        fraction = counts["rejected"] / counts["read"]
        if fraction > job.max_reject_fraction:
            raise TransformError(
                f"{split}: {counts['rejected']} of {counts['read']} rows ({fraction:.1%}) were "
                f"rejected, more than max_reject_fraction {job.max_reject_fraction:.1%}; "
                f"see {rejects_pattern(job.output_dir, split)}"
            )


def _cache_and_record(job: TransformJob, column_names, traced: TracedAnalyzers):
    """The job's analysis cache and the record of its inputs (both None without a
    cache dir; the record None also when the graph has no stable fingerprint)."""
    if not job.analysis_cache_dir:
        return None, None
    reader = _reader(job, column_names)
    try:
        cache = AnalysisCache.for_spans(job.analysis_cache_dir, job.train_spans, reader, traced)
        eval_key = span_key(job.eval_pattern, reader)
        validation_key = (
            span_key(job.validation_pattern, reader) if job.validation_pattern else None
        )
    except ValueError as err:  # a span matches no file or repeats another
        raise TransformError(f"data.train: {err}") from None
    if traced.graph_fingerprint is None:
        return cache, None
    record = JobRecord.of(
        {
            "graph": traced.graph_fingerprint,
            "train": [cache.spans[pattern].key for pattern in job.train_spans],
            "eval": eval_key,
            "validation": validation_key,
            "class_labels": list(job.class_labels),
            "statistics": [job.statistics, job.statistics_top_k],
            "code": code_fingerprint(),
            "versions": [tf.__version__, tft.__version__, beam.__version__],
        }
    )
    return cache, record


def _write_json(path: str, value) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(value, f, indent=2)


def _kept(job: TransformJob, cache: AnalysisCache) -> dict:
    """The stats of the previous, up-to-date output, which is kept."""
    _write_json(analysis_cache_report_path(job.output_dir), cache.report([], up_to_date=True))
    with tf.io.gfile.GFile(stats_path(job.output_dir)) as f:
        stats = json.load(f)
    _check_rejects(stats, job)
    return stats


def run(job: TransformJob) -> dict:
    """Runs the Beam job and returns the per-split row counts written to ``stats.json``.

    With ``job.analysis_cache_dir``, each training span's analyzer results are read
    from and written to the cache, and ``analysis_cache.json`` says which spans were
    analyzed; when nothing the output depends on changed since the last run (spans,
    eval data, the traced graph, this code: ``transform.job_record``), the output is
    kept as it is. Raises :class:`TransformError` when a split's rejects exceed
    ``job.max_reject_fraction`` (``stats.json`` is written first, to show why), or when
    an eval (or validation) value of one of ``job.class_labels`` is no class of the
    training data.
    """
    # Python's full garbage collections walked every object that importing TensorFlow
    # and Beam had made: about a tenth of a small job (transform.beam_overhead).
    with older_objects_left_out_of_collection():
        return _run(job)


def _run(job: TransformJob) -> dict:
    out = job.output_dir
    column_names = _column_names(job) if job.data_format == "csv" else None
    raw_metadata = dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec(dict(job.raw_feature_spec))
    )
    adapter_config = raw_adapter_config(job.raw_feature_spec)
    type_specs = tensor_adapter.TensorAdapter(adapter_config).OriginalTypeSpecs()
    try:
        traced = trace_analyzers(job.preprocessing_fn, type_specs)
    except Exception as err:  # noqa: BLE001 - any error of the user's code, said in its terms
        raise TransformError(trace_error_message(err, type_specs, job.list_features)) from err
    cache, record = _cache_and_record(job, column_names, traced)
    if record is not None and record.matches(out):
        return _kept(job, cache)
    if tf.io.gfile.exists(out):
        tf.io.gfile.rmtree(out)  # stale shards of an earlier run would be read as data
    tf.io.gfile.makedirs(out)
    spans = job.train_spans
    span_keys = (
        [cache.spans[pattern] for pattern in spans]
        if cache
        else [tft_beam.analyzer_cache.DatasetKey(f"span-{i}") for i in range(len(spans))]
    )
    cut_overhead()
    temp_dir = os.path.join(out, ".tmp")
    pipeline = _pipeline(pipeline_options(job.beam_args))
    # tf.Transform runs in the mode the function traced in: TF1 graph mode where it
    # can (one trace, the fingerprints', for the whole job; every SavedModel cut from
    # that graph), else TF2 (a tf.function, traced again for each SavedModel). Its
    # vocabularies are written and counted in a few steps each, and its sessions run
    # their graphs without Grappler (transform.vocabulary_steps, .session_config).
    with tft_beam.Context(
        temp_dir=temp_dir, force_tf_compat_v1=traced.tf_compat_v1
    ), reusing_trace(job.preprocessing_fn, traced.trace), lean_vocabulary_steps(), (
        graphs_run_as_built()
    ):
        reads = [
            _read(
                pipeline,
                job,
                "train",
                pattern,
                column_names,
                "ReadTrain" if len(spans) == 1 else f"ReadTrain[{i}]",
            )
            for i, pattern in enumerate(spans)
        ]
        evaluation = _read(pipeline, job, "eval", job.eval_pattern, column_names, "ReadEval")
        # Each training span's (RecordBatches, rejects), rows whose tags do not align
        # with their tokens moved to the rejects before analysis.
        train = [
            _aligned(job, "train", "Train" if len(spans) == 1 else f"Train[{i}]",
                     read.record_batches, read.rejects)
            for i, read in enumerate(reads)
        ]
        transform_fn, output_cache = (
            {key: batches for key, (batches, _) in zip(span_keys, train)},
            cache.read(pipeline) if cache else None,
            adapter_config,
        ) | "AnalyzeTrain" >> tft_beam.AnalyzeDatasetWithCache(job.preprocessing_fn)
        if cache:
            cache.write(output_cache, pipeline)
        # Each split's (raw RecordBatches, rejects); the spans' flattened for train.
        reads_by_split = {
            "train": (
                _flatten("FlattenTrain", [batches for batches, _ in train]),
                _flatten("FlattenTrainRejects", [rejects for _, rejects in train]),
            ),
            "eval": (evaluation.record_batches, evaluation.rejects),
        }
        if job.validation_pattern:
            validation = _read(
                pipeline, job, VALIDATION, job.validation_pattern, column_names, "ReadValidation"
            )
            reads_by_split[VALIDATION] = (validation.record_batches, validation.rejects)
        elif job.validation_fraction:
            reads_by_split[VALIDATION] = (
                _flatten("FlattenHeldOut", [r[HOLDOUT_TAG] for r in reads]),
                _flatten("FlattenHeldOutRejects", [r[HOLDOUT_REJECTS_TAG] for r in reads]),
            )
        if job.statistics:
            # Encoded images are no values to count or compare.
            described = {name: spec for name, spec in job.raw_feature_spec.items()
                         if name not in job.image_features}
            _ = reads_by_split["train"][0] | "TrainStatistics" >> ComputeStatistics(
                described, out, job.statistics_top_k
            )
        transform_steps = []  # the splits' TransformDataset labels
        for split in job.splits:
            label = split.capitalize()
            batches, rejects = reads_by_split[split]
            if split != "train":
                batches, rejects = _aligned(job, split, label, batches, rejects)
            if job.class_labels and split != "train":
                _ = batches | f"CountUnknown{label}Labels" >> CountUnknownLabels(
                    split, job.class_labels, adapter_config, transform_fn[0]
                )
            transform_steps.append(f"Transform{label}")
            transformed = ((batches, adapter_config), transform_fn) | (
                transform_steps[-1] >> tft_beam.TransformDataset(output_record_batches=True)
            )
            _ = transformed | f"Write{label}" >> WriteExamples(out, split)
            _ = rejects | f"Write{label}Rejects" >> beam.io.WriteToText(
                os.path.join(out, "rejects", split), file_name_suffix=".jsonl"
            )
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(out)
        # TFTransformOutput.raw_feature_spec() reads metadata/, which WriteTransformFn
        # does not write.
        _ = raw_metadata | "WriteRawMetadata" >> tft_beam.WriteMetadata(
            os.path.join(out, "metadata"), pipeline
        )
        share_loaded_graph(pipeline, transform_steps)
        result = pipeline.run()
        result.wait_until_finish()
    if tf.io.gfile.exists(temp_dir):
        tf.io.gfile.rmtree(temp_dir)
    if cache:
        cache.commit()
        report = cache.report(_analyzed_spans(result, [k.key for k in span_keys]))
        _write_json(analysis_cache_report_path(out), report)
    stats = _stats(result, job.splits)
    _write_json(stats_path(out), stats)
    _check_rejects(stats, job)
    for (split, label), counts in unknown_label_counts(result).items():
        classes = tft.TFTransformOutput(out).vocabulary_by_name(label)
        raise TransformError(
            unknown_labels_message(split, label, counts, [c.decode() for c in classes])
        )
    # Last: an output that failed a check is made again by the next run, which fails
    # the same way (a kept output's rejects are checked again, against the job's limit).
    if record is not None:
        record.write(out, reports=(os.path.basename(analysis_cache_report_path(out)),))
    return stats
