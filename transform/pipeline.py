"""The Beam job: read -> analyze -> transform -> write, for the train and eval splits.

``artifacts/<name>/transform/`` receives the raw ``metadata/``,
``transform_fn/``, ``transformed_metadata/``, ``data/{train,eval}-*.tfrecord.gz``,
``rejects/{train,eval}-*.jsonl``, ``stats.json`` and (unless turned off)
``training_statistics.pb``: per-feature statistics of the raw training data
(:mod:`transform.statistics`).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import uuid
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
from apache_beam.transforms.window import GlobalWindows
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils
from tfx_bsl.coders import example_coder
from tfx_bsl.tfxio import tensor_adapter, tensor_representation_util

from serving_input.csv_rows import CsvFormat, column_names
from transform.csv_source import ReadCsv, arrow_schema
from transform.rejects import COUNTER_NAMESPACE, HOLDOUT_REJECTS_TAG, HOLDOUT_TAG, Holdout
from transform.statistics import DEFAULT_TOP_K, ComputeStatistics
from transform.tfrecord_source import ReadExamples
from transform.token_alignment import REJECTS_TAG as ALIGNMENT_REJECTS
from transform.token_alignment import KeepAlignedRows, TokenAlignment
from transform.unknown_labels import (
    CountUnknownLabels,
    unknown_label_counts,
    unknown_labels_message,
)

_LOG = logging.getLogger(__name__)
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
    train_pattern: str
    eval_pattern: str
    output_dir: str
    data_format: str = "csv"
    csv: CsvFormat = dataclasses.field(default_factory=CsvFormat)
    max_reject_fraction: float = 0.05
    beam_args: Sequence[str] = ()
    # Which VarLenFeatures are lists (a CSV cell holds several values) rather than
    # nullable values, and which features hold encoded images (name -> channels).
    list_features: Sequence[str] = ()
    image_features: Mapping[str, int] = dataclasses.field(default_factory=dict)
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


def _column_names(job: TransformJob) -> list[str]:
    files = sorted(glob.glob(job.train_pattern)) or sorted(tf.io.gfile.glob(job.train_pattern))
    if not files and not job.csv.column_names:
        raise TransformError(f"no file matches {job.train_pattern!r}")
    names = column_names(files[0] if files else "", job.csv)
    missing = [name for name in job.raw_feature_spec if name not in names]
    if missing:
        raise TransformError(f"feature(s) {missing} are not CSV columns; the columns are {names}")
    return names


def _read(pipeline, job: TransformJob, split: str, column_names):
    """A split's source outputs: ``record_batches``, ``rejects`` and, for train with a
    validation fraction, the held-out ones."""
    pattern = {"train": job.train_pattern, "eval": job.eval_pattern,
               VALIDATION: job.validation_pattern}[split]
    holdout = None
    if split == "train" and job.validation_fraction:
        holdout = Holdout(VALIDATION, job.validation_fraction)
    label = split.capitalize()
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
        source = ReadExamples(pattern, job.raw_feature_spec, split, job.image_features, holdout)
    return pipeline | f"Read{label}" >> source


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


class _WriteShards(beam.DoFn):
    """Batches of serialized examples -> one gzip TFRecord file per bundle, in ``temp_dir``.

    TensorFlow's writer compresses and checksums in C++; Beam's ``WriteToTFRecord``
    does both in Python, one element per record. Yields the file written.
    """

    def __init__(self, temp_dir: str, split: str):
        self._temp_dir = temp_dir
        self._split = split

    def setup(self):
        self._written = beam.metrics.Metrics.counter(COUNTER_NAMESPACE, f"{self._split}_written")
        self._options = tf.io.TFRecordOptions(compression_type="GZIP")

    def start_bundle(self):
        self._path = None
        self._writer = None
        self._count = 0

    def process(self, examples: list[bytes]):
        if self._writer is None:
            tf.io.gfile.makedirs(self._temp_dir)
            self._path = os.path.join(self._temp_dir, f"{uuid.uuid4().hex}.tfrecord.gz")
            self._writer = tf.io.TFRecordWriter(self._path, self._options)
        write = self._writer.write
        for example in examples:
            write(example)
        self._written.inc(len(examples))
        self._count += len(examples)

    def finish_bundle(self):
        if self._writer is not None:
            self._writer.close()
            # Which worker wrote what: on a distributed runner, the job's log shows how
            # the work was spread.
            _LOG.info(
                "%s: %d examples -> %s (worker pid %d)",
                self._split, self._count, self._path, os.getpid(),
            )
            yield GlobalWindows.windowed_value(self._path)
            self._writer = None


def _name_shards(temp_files: list[str], prefix: str, temp_dir: str) -> list[str]:
    """Moves the bundles' files to ``<prefix>-SSSSS-of-NNNNN.tfrecord.gz`` (at least one)."""
    temp_files = sorted(temp_files)
    if not temp_files:  # no rows: one empty file, as WriteToTFRecord writes
        tf.io.gfile.makedirs(temp_dir)
        empty = os.path.join(temp_dir, "empty.tfrecord.gz")
        tf.io.TFRecordWriter(empty, tf.io.TFRecordOptions(compression_type="GZIP")).close()
        temp_files = [empty]
    tf.io.gfile.makedirs(os.path.dirname(prefix))
    names = []
    for i, path in enumerate(temp_files):
        name = f"{prefix}-{i:05d}-of-{len(temp_files):05d}.tfrecord.gz"
        tf.io.gfile.rename(path, name, overwrite=True)
        names.append(name)
    tf.io.gfile.rmtree(temp_dir)
    return names


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
        temp_dir = os.path.join(self._output_dir, ".write", self._split)
        prefix = os.path.join(self._output_dir, "data", self._split)
        return (
            transformed
            # Each element is (RecordBatch, passthrough features); the latter are unused.
            | "Encode"
            >> beam.Map(
                lambda batch, coder: coder.encode(batch[0]), coder=beam.pvalue.AsSingleton(encoder)
            )
            | "WriteShards" >> beam.ParDo(_WriteShards(temp_dir, self._split))
            | "Gather" >> beam.combiners.ToList()
            | "NameShards" >> beam.Map(_name_shards, prefix, temp_dir)
        )


def _stats(result, splits: Sequence[str]) -> dict:
    counters = result.metrics().query(
        beam.metrics.MetricsFilter().with_namespace(COUNTER_NAMESPACE)
    )["counters"]
    # One result per step: a split's rejects are counted where rows are decoded and
    # where tags are checked against tokens, under the same name.
    values: dict[str, int] = {}
    for c in counters:
        values[c.key.metric.name] = values.get(c.key.metric.name, 0) + (
            c.committed or c.attempted or 0
        )
    return {
        split: {
            kind: int(values.get(f"{split}_{kind}", 0)) for kind in ("read", "written", "rejected")
        }
        for split in splits
    }


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


def run(job: TransformJob) -> dict:
    """Runs the Beam job and returns the per-split row counts written to ``stats.json``.

    Raises :class:`TransformError` when a split's rejects exceed
    ``job.max_reject_fraction`` (``stats.json`` is written first, to show why), or when
    an eval (or validation) value of one of ``job.class_labels`` is no class of the
    training data.
    """
    out = job.output_dir
    if tf.io.gfile.exists(out):
        tf.io.gfile.rmtree(out)  # stale shards of an earlier run would be read as data
    tf.io.gfile.makedirs(out)
    column_names = _column_names(job) if job.data_format == "csv" else None
    raw_metadata = dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec(dict(job.raw_feature_spec))
    )
    adapter_config = tensor_adapter.TensorAdapterConfig(
        arrow_schema(job.raw_feature_spec),
        tensor_representation_util.InferTensorRepresentationsFromSchema(raw_metadata.schema),
    )
    options = PipelineOptions(list(job.beam_args))
    temp_dir = os.path.join(out, ".tmp")
    pipeline = _pipeline(options)
    with tft_beam.Context(temp_dir=temp_dir):
        train = _read(pipeline, job, "train", column_names)
        evaluation = _read(pipeline, job, "eval", column_names)
        # Each split's (raw RecordBatches, rejects).
        reads = {
            "train": (train.record_batches, train.rejects),
            "eval": (evaluation.record_batches, evaluation.rejects),
        }
        if job.validation_pattern:
            validation = _read(pipeline, job, VALIDATION, column_names)
            reads[VALIDATION] = (validation.record_batches, validation.rejects)
        elif job.validation_fraction:
            reads[VALIDATION] = (train[HOLDOUT_TAG], train[HOLDOUT_REJECTS_TAG])
        if job.token_alignments:
            for split, (batches, rejects) in list(reads.items()):
                label = split.capitalize()
                aligned = batches | f"Align{label}Tags" >> KeepAlignedRows(
                    job.token_alignments, split
                )
                reads[split] = (
                    aligned.record_batches,
                    (rejects, aligned[ALIGNMENT_REJECTS]) | f"{label}Rejects" >> beam.Flatten(),
                )
        transformed = {}
        transformed["train"], transform_fn = (
            reads["train"][0],
            adapter_config,
        ) | "AnalyzeAndTransformTrain" >> tft_beam.AnalyzeAndTransformDataset(
            job.preprocessing_fn, output_record_batches=True
        )
        for split in job.splits[1:]:
            transformed[split] = (
                (reads[split][0], adapter_config),
                transform_fn,
            ) | f"Transform{split.capitalize()}" >> tft_beam.TransformDataset(
                output_record_batches=True
            )
        if job.statistics:
            # Encoded images are no values to count or compare.
            described = {name: spec for name, spec in job.raw_feature_spec.items()
                         if name not in job.image_features}
            _ = reads["train"][0] | "TrainStatistics" >> ComputeStatistics(
                described, out, job.statistics_top_k
            )
        for split in job.splits:
            label = split.capitalize()
            if job.class_labels and split != "train":
                _ = reads[split][0] | f"CountUnknown{label}Labels" >> CountUnknownLabels(
                    split, job.class_labels, adapter_config, transform_fn[0]
                )
            _ = transformed[split] | f"Write{label}" >> WriteExamples(out, split)
            _ = reads[split][1] | f"Write{label}Rejects" >> beam.io.WriteToText(
                os.path.join(out, "rejects", split), file_name_suffix=".jsonl"
            )
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(out)
        # TFTransformOutput.raw_feature_spec() reads metadata/, which WriteTransformFn
        # does not write.
        _ = raw_metadata | "WriteRawMetadata" >> tft_beam.WriteMetadata(
            os.path.join(out, "metadata"), pipeline
        )
        result = pipeline.run()
        result.wait_until_finish()
    if tf.io.gfile.exists(temp_dir):
        tf.io.gfile.rmtree(temp_dir)
    stats = _stats(result, job.splits)
    with tf.io.gfile.GFile(stats_path(out), "w") as f:
        json.dump(stats, f, indent=2)
    _check_rejects(stats, job)
    for (split, label), counts in unknown_label_counts(result).items():
        classes = tft.TFTransformOutput(out).vocabulary_by_name(label)
        raise TransformError(
            unknown_labels_message(split, label, counts, [c.decode() for c in classes])
        )
    return stats
