"""The analysis cache: tf.Transform's analyzer cache per training span, keyed so that
it is correct.

tf.Transform caches each analyzer's accumulator per dataset (``DatasetKey``) under a key
made of the analyzer's label and a hash of the graph path that feeds it. That hash
covers the ops' attributes and the graph's shape but not the ops' types, so
``tft.mean(x * 2.0)`` and ``tft.mean(x + 2.0)`` share a key and a changed
``preprocessing_fn`` reuses stale statistics. Two things are added here:

- a span's ``DatasetKey`` is :func:`span_key`: a hash of its files' bytes and of how they
  are read (format, CSV settings, raw feature spec), so changed data, a changed reader
  or a changed raw schema is a new span;
- each cache entry is read only when the *analyzer fingerprint* it was written with
  equals the current one (:func:`trace_analyzers`: tf.Transform's own path hash with
  each op's type added, plus the tf.Transform version). The fingerprints live beside
  tf.Transform's manifest, in ``FINGERPRINTS_FILE``.

A change to one feature's preprocessing thus re-runs that feature's analyzers only, and
a change after the analyzers (what is done with a mean, not what it is a mean of)
re-runs none. Analyzers of a later phase (a statistic of something computed from another
statistic, e.g. a z-score of an imputed column) are not cached by tf.Transform; they
read every span again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence

import apache_beam as beam
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.io.filesystems import FileSystems
from tensorflow_transform import analyzer_nodes, graph_tools, impl_helper, nodes

from tfbake.transform.tfrecord_shards import WriteTFRecordShards

FINGERPRINTS_FILE = "tfbake_analyzer_fingerprints.json"
_MANIFEST = "MANIFEST"
# tf.Transform's cache entry key: a version prefix, the analyzer's label, "-", and the
# SHA-1 digest of its graph path.
_ENTRY_PREFIX = tft_beam.analyzer_cache.make_cache_entry_key("")
_DIGEST_SUFFIX = 1 + hashlib.sha1().digest_size
_READ_CHUNK = 1 << 22


def _file_digest(path: str) -> bytes:
    h = hashlib.sha256()
    with FileSystems.open(path, compression_type="uncompressed") as f:
        while chunk := f.read(_READ_CHUNK):
            h.update(chunk)
    return h.digest()


def span_files(pattern: str) -> list[str]:
    """The files of a span (a file or a glob), sorted; ``ValueError`` when none match."""
    (match,) = FileSystems.match([pattern])
    files = sorted(m.path for m in match.metadata_list)
    if not files:
        raise ValueError(f"no file matches {pattern!r}")
    return files


def span_key(pattern: str, reader: str) -> str:
    """A span's ``DatasetKey`` name: SHA-256 of its files' contents (each file's SHA-256,
    in sorted order: the rows, whatever the files are called) and of ``reader`` (how
    the files are read). Renamed files keep the key; an edited one, a file added to a
    glob or another reader make a new one."""
    h = hashlib.sha256(reader.encode())
    for digest in sorted(_file_digest(path) for path in span_files(pattern)):
        h.update(digest)
    return f"span-{h.hexdigest()[:40]}"


def _strong_path(x, parents=None):
    """tf.Transform's path hash of a graph node, with the node's op type added."""
    weak = graph_tools.describe_path_as_analyzer_cache_hash(x, parents)
    if weak is None:
        return None
    kind = x.type if isinstance(x, tf.Operation) else ""
    return hashlib.sha256(weak + kind.encode()).digest()


class _AnalyzerFingerprints(nodes.Visitor):
    """Hashes each node of tf.Transform's analyzer graph from its inputs: a tensor source
    from its tensors' strong paths, an operation from its type, fields and inputs.
    Records the hash of every cacheable operation by label (its cache entry's label)."""

    def __init__(self, graph_analyzer, salt: bytes):
        self._graph_analyzer = graph_analyzer
        self._salt = salt
        self.by_label: dict[str, str] = {}

    def visit(self, operation_def, input_values):
        h = hashlib.sha256(self._salt + type(operation_def).__name__.encode())
        if isinstance(operation_def, analyzer_nodes.TensorSource):
            inputs = [self._graph_analyzer.get_unique_path(t) for t in operation_def.tensors]
        else:
            inputs = list(input_values)
            for field in operation_def._fields:
                if field != "label":
                    h.update(repr((field, operation_def.get_field_str(field))).encode())
        if any(value is None for value in inputs):  # depends on another analyzer's result
            return (None,) * operation_def.num_outputs
        for value in inputs:
            h.update(value)
        if operation_def.cache_coder is not None:
            self.by_label[operation_def.label] = h.hexdigest()
        return tuple(
            hashlib.sha256(h.digest() + bytes([i])).digest()
            for i in range(operation_def.num_outputs)
        )

    def validate_value(self, value):
        pass


@dataclasses.dataclass(frozen=True)
class TF1Trace:
    """What tf.Transform's TF1 trace of a ``preprocessing_fn`` returns, and the input
    type specs it was traced with."""

    graph: tf.Graph
    inputs: dict
    outputs: dict
    type_specs: dict


@dataclasses.dataclass(frozen=True)
class TracedAnalyzers:
    """A ``preprocessing_fn``'s trace: whether it traced in TF1 graph mode
    (``tf_compat_v1``; deterministic, so the whole graph has a fingerprint), and each
    cacheable analyzer's fingerprint (by label) in that graph."""

    fingerprints: dict[str, str]
    # SHA-256 of the whole TF1 graph (deterministic); None for a TF2 trace, whose
    # graph holds temporary paths and process-wide function names.
    graph_fingerprint: str | None = None
    # The TF1 trace itself, for tf.Transform to use rather than trace the function
    # again (transform.trace_once); None for a TF2 trace.
    trace: TF1Trace | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def tf_compat_v1(self) -> bool:
        return self.trace is not None


def trace_analyzers(
    preprocessing_fn: Callable[[dict], dict], type_specs: Mapping[str, tf.TypeSpec]
) -> TracedAnalyzers:
    """Traces ``preprocessing_fn`` as tf.Transform does, in TF1 graph mode when the
    function allows it (a graph that serializes the same in every process: the job
    record's fingerprint), else as a ``tf.function``. An analyzer's fingerprint covers
    everything that feeds it: the traced graph from the raw inputs to it (op types,
    attributes, constants, the inputs' names) and its own settings. Its label is the
    one tf.Transform's own trace gives the analyzer, in either mode."""
    try:
        graph, inputs, outputs = _trace(preprocessing_fn, type_specs, tf_compat_v1=True)
        trace = TF1Trace(graph, inputs, outputs, dict(type_specs))
    except Exception:  # noqa: BLE001 - TF2-only code (tf.function, Keras layers...)
        logging.info("preprocessing_fn does not trace in TF1 graph mode; tracing it in TF2")
        graph, inputs, _ = _trace(preprocessing_fn, type_specs, tf_compat_v1=False)
        trace = None
    tf_compat_v1 = trace is not None
    # Every analyzer of a fresh trace is still to be computed: a replacement to make.
    sinks = graph.get_collection(analyzer_nodes.TENSOR_REPLACEMENTS)
    graph_analyzer = graph_tools.InitializableGraphAnalyzer(
        graph, inputs, [(sink.tensor, False) for sink in sinks], _strong_path
    )
    salt = f"tft {tft.__version__} tf1 {tf_compat_v1}".encode()
    visitor = _AnalyzerFingerprints(graph_analyzer, salt)
    traverser = nodes.Traverser(visitor)
    with graph.as_default():
        for sink in sinks:
            traverser.visit_value_node(sink.future)
    graph_fingerprint = (
        hashlib.sha256(graph.as_graph_def().SerializeToString(deterministic=True)).hexdigest()
        if tf_compat_v1
        else None
    )
    return TracedAnalyzers(visitor.by_label, graph_fingerprint, trace)


def _trace(preprocessing_fn, type_specs, *, tf_compat_v1: bool):
    with tempfile.TemporaryDirectory() as temp_dir:
        return impl_helper.trace_preprocessing_function(
            preprocessing_fn, type_specs, use_tf_compat_v1=tf_compat_v1, base_temp_dir=temp_dir
        )


def _entry_label(entry_key: bytes) -> str:
    """The analyzer label inside one of tf.Transform's cache entry keys."""
    if not entry_key.startswith(_ENTRY_PREFIX):  # another tf.Transform version's
        return ""
    return entry_key[len(_ENTRY_PREFIX) : -_DIGEST_SUFFIX].decode("utf-8", "replace")


def _read_manifest(span_dir: str) -> dict[bytes, int]:
    # The format tf.Transform's WriteAnalysisCacheToFS writes: a pickled dict.
    path = os.path.join(span_dir, _MANIFEST)
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path, "rb") as f:
        try:
            manifest = pickle.loads(f.read())
        except Exception:  # noqa: BLE001 - a broken manifest is an empty cache
            return {}
    return manifest if isinstance(manifest, dict) else {}


@dataclasses.dataclass
class AnalysisCache:
    """The cache of one job: its spans (pattern -> ``DatasetKey``), the current analyzer
    fingerprints, and what was read and written.

    :meth:`read` before the analysis, :meth:`write` after it, :meth:`commit` once the
    pipeline has succeeded (only then are the new entries' fingerprints recorded, so a
    failed run never validates an entry it did not finish writing).
    """

    cache_dir: str
    spans: dict[str, tft_beam.analyzer_cache.DatasetKey]
    traced: TracedAnalyzers
    entries_read: dict[str, int] = dataclasses.field(default_factory=dict)
    entries_written: dict[str, list[bytes]] = dataclasses.field(default_factory=dict)

    @classmethod
    def for_spans(
        cls,
        cache_dir: str,
        patterns: Sequence[str],
        reader: str,
        traced: TracedAnalyzers,
    ) -> AnalysisCache:
        """The cache at ``cache_dir`` for training spans ``patterns`` read as ``reader``,
        of the analyzers ``traced``."""
        spans = {}
        for pattern in patterns:
            key = tft_beam.analyzer_cache.DatasetKey(span_key(pattern, reader))
            if key in spans.values():
                raise ValueError(f"span {pattern!r} holds the same data as another span")
            spans[pattern] = key
        return cls(cache_dir, spans, traced)

    @property
    def fingerprints(self) -> dict[str, str]:
        return self.traced.fingerprints

    def _span_dir(self, key) -> str:
        return os.path.join(self.cache_dir, key.key)

    def _recorded(self, key) -> dict[str, str]:
        path = os.path.join(self._span_dir(key), FINGERPRINTS_FILE)
        if not tf.io.gfile.exists(path):
            return {}
        with tf.io.gfile.GFile(path) as f:
            return json.load(f)

    def valid_entries(self, key) -> list[bytes]:
        """The entries of span ``key`` written with the current analyzer fingerprints."""
        span_dir = self._span_dir(key)
        recorded = self._recorded(key)
        valid = []
        for entry, index in _read_manifest(span_dir).items():
            fingerprint = self.fingerprints.get(_entry_label(entry))
            if fingerprint is None or recorded.get(entry.hex()) != fingerprint:
                continue
            if tf.io.gfile.glob(os.path.join(span_dir, f"{index}-*-of-*")):
                valid.append(entry)
        return valid

    def read(self, pipeline: beam.Pipeline) -> dict:
        """The valid cache entries of every span, as tf.Transform's input cache."""
        cache = {}
        for i, key in enumerate(sorted(self.spans.values())):
            valid = self.valid_entries(key)
            self.entries_read[key.key] = len(valid)
            if valid:
                cache.update(
                    pipeline
                    | f"ReadAnalysisCache[{i}]"
                    >> tft_beam.analyzer_cache.ReadAnalysisCacheFromFS(
                        self.cache_dir, [key], cache_entry_keys=valid
                    )
                )
        return cache

    def write(self, output_cache: Mapping, pipeline: beam.Pipeline) -> None:
        """Writes the entries the analysis computed (tf.Transform's output cache)."""
        self.entries_written = {
            key.key: list(dataset_cache.keys()) for key, dataset_cache in output_cache.items()
        }
        if not output_cache:
            return
        sink = _BatchedSink()
        write = tft_beam.analyzer_cache.WriteAnalysisCacheToFS(
            pipeline, self.cache_dir, sorted(self.spans.values()), sink=sink
        )
        _ = output_cache | "WriteAnalysisCache" >> write
        _ = (
            sink.entries
            | "FlattenAnalysisCacheEntries" >> beam.Flatten(pipeline=pipeline)
            | "WriteAnalysisCacheEntries"
            >> WriteTFRecordShards(sink.paths, os.path.join(self.cache_dir, ".write"))
        )

    def commit(self) -> None:
        """Records the fingerprints of the entries written and deletes the entries they
        replaced; call after the pipeline succeeded."""
        for name, entries in self.entries_written.items():
            key = tft_beam.analyzer_cache.DatasetKey(name)
            recorded = self._recorded(key)
            recorded.update({e.hex(): self.fingerprints[_entry_label(e)] for e in entries})
            span_dir = self._span_dir(key)
            with tf.io.gfile.GFile(os.path.join(span_dir, FINGERPRINTS_FILE), "w") as f:
                json.dump(recorded, f, indent=1, sort_keys=True)
            _delete_unlisted(span_dir, _read_manifest(span_dir).values())

    def report(self, analyzed_spans: Iterable[str], *, up_to_date: bool = False) -> dict:
        """What the cache did, for ``analysis_cache.json`` and the log; ``up_to_date``:
        the job kept its previous output (nothing it depends on changed)."""
        analyzed = set(analyzed_spans)
        spans = [
            {
                "span": pattern,
                "key": key.key,
                "analyzed": key.key in analyzed,
                "entries_read": self.entries_read.get(key.key, 0),
                "entries_written": len(self.entries_written.get(key.key, [])),
            }
            for pattern, key in self.spans.items()
        ]
        report = {"cache_dir": self.cache_dir, "up_to_date": up_to_date, "spans": spans}
        logging.info("%s", describe(report))
        return report


class _BatchedSink:
    """The ``sink`` of ``WriteAnalysisCacheToFS``, batched: each entry's records are
    tagged with the entry's path here and all entries are written by one
    :class:`~tfbake.transform.tfrecord_shards.WriteTFRecordShards` (the default sink,
    ``WriteToTFRecord``, adds a dozen transforms per entry). The files are the ones
    tf.Transform's reader expects: ``<path>-SSSSS-of-NNNNN.gz``."""

    def __init__(self):
        self.entries: list[beam.PCollection] = []
        self.paths: list[str] = []

    def __call__(self, path: str) -> beam.PTransform:
        return _TagEntry(self, path)


class _TagEntry(beam.PTransform):
    def __init__(self, sink: _BatchedSink, path: str):
        super().__init__()
        self._sink = sink
        self._path = path

    def expand(self, records):
        self._sink.paths.append(self._path)
        self._sink.entries.append(
            records | "Tag" >> beam.Map(lambda record, path: (path, [record]), self._path)
        )
        return beam.pvalue.PDone(records.pipeline)


def describe(report: Mapping) -> str:
    """One line about an ``analysis_cache.json`` report, for the console."""
    spans = report["spans"]
    analyzed = [s["span"] for s in spans if s["analyzed"]]
    if report.get("up_to_date"):
        return (
            "analysis cache: nothing the output depends on changed since the last run; "
            "its output is kept (nothing analyzed or transformed)"
        )
    if not analyzed:
        return f"analysis cache: all {len(spans)} span(s) from the cache, none analyzed"
    return f"analysis cache: {len(analyzed)} of {len(spans)} span(s) analyzed: " + ", ".join(
        analyzed
    )


def _delete_unlisted(span_dir: str, indices: Iterable[int]) -> None:
    """Deletes the entry files of ``span_dir`` that its manifest no longer lists."""
    keep = {str(i) for i in indices}
    for name in tf.io.gfile.listdir(span_dir):
        prefix = name.split("-", 1)[0]
        if prefix.isdigit() and prefix not in keep:
            tf.io.gfile.remove(os.path.join(span_dir, name))
