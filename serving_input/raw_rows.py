"""Raw rows from a data file, read as the Beam job reads them, for every reader outside
the Beam job: the export's warm-up and check examples, ``tfbake check``, the client's
``predict_file`` (``tfbake predict``).

A CSV file is split into lines and records as Beam's text source and the job's CSV
source split it (``\\r\\n`` line ends, a quoted field's line breaks, ``.gz``/``.bz2``
files), and each record decoded by the job's own row decoder
(:class:`~tfbake.serving_input.csv_rows.CsvLineDecoder`: ``na_values``, ``skipinitialspace``,
list cells, number parsing). A TFRecord file holds ``tf.Example``s (``tfrecord``) or
``tf.SequenceExample``s (``sequence_example``: the list features are its feature_lists);
a JSONL file one JSON object a line. A row the Beam job would reject (a bad value, a
required feature missing) is skipped, or, with ``bad_rows="raise"``, a ``ValueError``
naming the file, the line and what was wrong. (The job also rejects an image that does not decode;
this reader leaves images to the model.)
"""

from __future__ import annotations

import bz2
import gzip
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Literal

import tensorflow as tf

from tfbake.serving_input.csv_format import CsvFormat
from tfbake.serving_input.csv_rows import (
    BYTE_ORDER_MARK,
    CsvLineDecoder,
    column_names,
    join_records,
    split_lines,
)
from tfbake.serving_input.sequence_example import example_of_record

DataFormat = Literal["csv", "tfrecord", "sequence_example", "jsonl"]
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_DECOMPRESS = {".gz": gzip.decompress, ".bz2": bz2.decompress}


def read_raw_rows(
    path: str,
    raw_feature_spec: Mapping,
    *,
    data_format: DataFormat = "csv",
    csv_format: CsvFormat | None = None,
    list_features: Iterable[str] = (),
    bad_rows: Literal["skip", "raise"] | Callable[[str, str], object] = "skip",
) -> Iterator[tuple[dict, str]]:
    """``(row, source)`` for each row of the file ``path``: the row's raw feature values
    (``{feature: value}``, a list feature's a list, a missing value left out; other
    columns dropped) and where it comes from (``file:line``, ``file#record``).

    ``csv_format``: the config's ``data.csv`` (default its defaults); ``list_features``:
    the multi-valued columns (a ``sequence_example`` record's feature_lists). A CSV
    file may lack the column of a feature a row may omit; one without a required
    feature's column is a ``ValueError``. ``bad_rows``: what to do with a row the Beam
    job would reject: ``"skip"`` it, ``"raise"`` a ``ValueError``, or call
    ``bad_rows(source, reason)`` and go on.
    """
    rows = {"csv": _csv_rows, "tfrecord": _example_rows, "sequence_example": _sequence_rows,
            "jsonl": _jsonl_rows}[data_format]
    records = data_format in ("tfrecord", "sequence_example")
    for row, n, error in rows(path, raw_feature_spec, csv_format or CsvFormat(),
                              frozenset(list_features)):
        source = f"{path}#{n}" if records else f"{path}:{n}"
        if error is None:
            yield row, source
        elif bad_rows == "raise":
            where = f"record {n}" if records else f"line {n}"
            raise ValueError(f"{path} {where}: {error}")
        elif callable(bad_rows):
            bad_rows(source, error)


def _read_bytes(path: str) -> bytes:
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    for suffix, decompress in _DECOMPRESS.items():
        if path.endswith(suffix):
            return decompress(data)
    return data


# Each reader yields (row, line or record number, why the Beam job would reject it).


def _csv_rows(path, spec, fmt: CsvFormat, lists) -> Iterator[tuple[dict, int, str | None]]:
    columns = column_names(path, fmt)
    absent = [name for name in spec if name not in columns]
    required = [n for n in absent if isinstance(spec[n], tf.io.FixedLenFeature)]
    if required:
        raise ValueError(f"{path}: no column for required feature(s) {required}")
    present = {name: s for name, s in spec.items() if name in columns}
    decoder = CsvLineDecoder(present, columns, fmt, [n for n in lists if n in present])
    data = _read_bytes(path)
    last = not data.endswith(b"\n")  # the last line has no newline
    block = data if last else data[:-1]
    n = 1
    for record, _ in join_records(split_lines(block, last), iter(()), inside=False):
        line, n = n, n + (record or "").count("\n") + 1
        if line == 1 and record is not None:
            record = record.removeprefix(BYTE_ORDER_MARK)
        if (fmt.header and line == 1) or (record is not None and not record.strip()):
            continue  # the header; a blank line holds no row
        if record is None:
            yield {}, line, "not valid UTF-8"
            continue
        try:
            yield decoder.decode_dict(record), line, None
        except ValueError as err:
            yield {}, line, str(err)


def _sequence_rows(path, spec, fmt, lists) -> Iterator[tuple[dict, int, str | None]]:
    return _example_rows(path, spec, fmt, lists, feature_lists=lists)


def _example_rows(path, spec, fmt, lists, feature_lists=()) -> Iterator[
        tuple[dict, int, str | None]]:
    for n, record in enumerate(tf.data.TFRecordDataset(path)):
        try:
            example = example_of_record(record.numpy(), spec, feature_lists)
        except ValueError as err:
            yield {}, n, str(err)
            continue
        row: dict = {}
        error = None
        for name, feature_spec in spec.items():
            feature = example.features.feature.get(name)
            kind = feature.WhichOneof("kind") if feature is not None else None
            values = list(getattr(feature, kind).value) if kind else []
            required = isinstance(feature_spec, tf.io.FixedLenFeature)
            if not values:
                if required:
                    error = f'missing value for required feature "{name}"'
                    break
                continue
            row[name] = values[0] if required and not feature_spec.shape else values
        yield row, n, error


def _jsonl_rows(path, spec, fmt, lists) -> Iterator[tuple[dict, int, str | None]]:
    text = _read_bytes(path).decode("utf-8")
    for n, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            row = json.loads(line)
            yield {k: v for k, v in row.items() if k in spec}, n, None
