"""Reading CSV into Arrow RecordBatches typed by the raw feature spec, with rejects.

tfx_bsl's CSV decoder fails the whole job on one bad row, so rows are decoded here:
each line is checked against the raw feature spec (column count, required values,
numbers that parse) and a bad line goes to the rejects output with its reason. Good
rows become RecordBatches in the layout tfxio's CsvTFXIO produces (``large_list``
columns), so tf.Transform takes its fast RecordBatch path.

For speed, files are read in byte ranges (not one Beam element per line) and each
block of lines is decoded column by column, in Arrow (:meth:`CsvRowDecoder.decode_block`:
split, missing values and numbers without a Python object per cell); the lines it
flags are decoded again one by one (:meth:`CsvRowDecoder.decode`), so a reject's
reason is the same whichever path found it.
"""

from __future__ import annotations

import csv
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.tfxio import tensor_adapter, tensor_representation_util

from tfbake.serving_input.csv_rows import (
    BYTE_ORDER_MARK,
    CsvFormat,
    CsvLineDecoder,
    csv_reader,
    join_records,
    split_lines,
)
from tfbake.serving_input.text_values import TEXT_PARSERS, with_decimal_point
from tfbake.transform.rejects import HOLDOUT_TAGS, Holdout, SplitOutput

REJECTS_TAG = "rejects"

ARROW_TYPES = {
    tf.float32: pa.large_list(pa.float32()),
    tf.int64: pa.large_list(pa.int64()),
    tf.string: pa.large_list(pa.large_binary()),
}


def arrow_schema(raw_feature_spec: Mapping) -> pa.Schema:
    """The Arrow schema of the RecordBatches decoded for ``raw_feature_spec``."""
    return pa.schema([(name, ARROW_TYPES[spec.dtype]) for name, spec in raw_feature_spec.items()])


def raw_adapter_config(raw_feature_spec: Mapping) -> tensor_adapter.TensorAdapterConfig:
    """tfxio's adapter config of those RecordBatches: how tf.Transform turns each column
    into the tensor the ``preprocessing_fn`` gets (dense, or sparse when nullable)."""
    schema = schema_utils.schema_from_feature_spec(dict(raw_feature_spec))
    return tensor_adapter.TensorAdapterConfig(
        arrow_schema(raw_feature_spec),
        tensor_representation_util.InferTensorRepresentationsFromSchema(schema),
    )


_NUMPY_TYPES = {tf.float32: np.float32, tf.int64: np.int64}
_ARROW_NUMBERS = {tf.float32: pa.float64(), tf.int64: pa.int64()}
# Number texts that Python's float() / int() read (the parsers of CsvLineDecoder.decode)
# and Arrow's cast reads to the same value (both round a decimal correctly); others,
# e.g. "1_000", " 5 ", "0x1F", "+7" as an int, are parsed by Python one by one.
_NUMBER_TEXTS = {
    tf.float32: r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$",
    tf.int64: r"^-?[0-9]+$",
}


class CsvRowDecoder(CsvLineDecoder):
    """:class:`tfbake.serving_input.csv_rows.CsvLineDecoder` with a fast path for blocks of lines
    (:meth:`decode_block`) into Arrow RecordBatches, for the Beam job."""

    def decode_block(self, lines: list[str], schema: pa.Schema) -> tuple[pa.RecordBatch, list]:
        """Non-blank lines -> (a RecordBatch of the good rows, ``[(line, reason)]`` of the bad).

        Equivalent to :meth:`decode` on each line, column by column, in Arrow: missing
        values are the stripped texts among ``na_values``, numbers are read as Python
        reads them (:data:`_NUMBER_TEXTS`), and each line flagged bad here is decoded
        again by :meth:`decode` for its reason.
        """
        split = None if self._lists else self._split_fields(lines)
        if split is None:  # a list column is read line by line
            return self._decode_lines(lines, schema)
        field_of, bad = split
        na_values = pa.array(sorted(self._na), type=pa.large_string())
        parsed = []
        for _, i, _, nullable, dtype in self.columns:
            texts = field_of(i)
            # Arrow's whitespace is str.strip()'s (tests/test_csv_source.py checks).
            stripped = pc.utf8_trim_whitespace(texts)
            present = ~pc.is_in(stripped, value_set=na_values).to_numpy(zero_copy_only=False)
            if not nullable:
                bad |= ~present
            if dtype == tf.float32 and self._format.decimal != ".":
                decimal = self._format.decimal
                texts = pa.array(
                    [with_decimal_point(t, decimal) for t in texts.to_pylist()],
                    type=pa.large_string(),
                )
            values, ok = _parse_column(texts, present, dtype)
            bad |= ~ok
            parsed.append((present, values))
        rejects = []
        if bad.any():
            for j in np.flatnonzero(bad):
                try:
                    self.decode(lines[j])
                except ValueError as err:
                    rejects.append((lines[j], str(err)))
                else:  # pragma: no cover - the two paths disagree: a bug here
                    raise AssertionError(f"line flagged bad but decodes: {lines[j]!r}")
        good = ~bad
        arrays = []
        for present, values in parsed:
            keep = present[good]
            offsets = np.zeros(len(keep) + 1, dtype=np.int64)
            np.cumsum(keep, out=offsets[1:])
            selected = present & good
            if isinstance(values, np.ndarray):
                flat = pa.array(values[selected])
            else:  # strings: an Arrow string array of every row, bytes of the kept ones
                flat = values.filter(pa.array(selected)).cast(pa.large_binary())
            arrays.append(pa.LargeListArray.from_arrays(pa.array(offsets), flat))
        return pa.RecordBatch.from_arrays(arrays, schema=schema), rejects

    def _split_fields(self, lines: list[str]) -> tuple[Callable, np.ndarray] | None:
        """A function of a column index to the lines' fields in that column (an Arrow
        string array), and which lines have the wrong number of fields; ``None`` when
        only :meth:`decode`, line by line, can tell."""
        n, width, delimiter = len(lines), self._num_columns, self._format.delimiter
        joined = "\n".join(lines)
        if (
            '"' in joined
            or "\r" in joined
            or "\0" in joined
            or max(map(len, lines)) > csv.field_size_limit()
        ):
            try:
                reader = csv_reader(lines, self._format)
                rows = list(reader)
            except csv.Error:
                return None
            if len(rows) != n or reader.line_num != n:  # a quoted field ran over a line end
                return None
        else:
            # Without quotes (or CR, NUL, huge fields) csv.reader splits at the delimiter.
            counts = np.fromiter(map(operator.methodcaller("count", delimiter), lines), np.int64, n)
            bad = counts != width - 1
            if not bad.any():
                # Every line's fields, one after the other, split by Arrow.
                text = pa.array([joined.replace("\n", delimiter)], type=pa.large_string())
                fields = pc.split_pattern(text, delimiter).flatten()
                if self._format.skipinitialspace:
                    fields = pc.utf8_ltrim(fields, " ")
                return lambda i: fields.take(np.arange(i, n * width, width)), bad
            rows = [line.split(delimiter) for line in lines]
            if self._format.skipinitialspace:
                rows = [[field.lstrip(" ") for field in row] for row in rows]
        bad = np.fromiter((len(r) != width for r in rows), dtype=bool, count=n)
        if bad.any():  # rows of the wrong width are rejects; parse a good row in their place
            filler = next((r for r in rows if len(r) == width), None)
            if filler is None:
                return None
            rows = [r if len(r) == width else filler for r in rows]
        columns = list(zip(*rows))
        return lambda i: pa.array(columns[i], type=pa.large_string()), bad

    def _decode_lines(self, lines: list[str], schema: pa.Schema) -> tuple[pa.RecordBatch, list]:
        rows, rejects = [], []
        for line in lines:
            try:
                rows.append(self.decode(line))
            except ValueError as err:
                rejects.append((line, str(err)))
        return _rows_to_record_batch(rows, schema), rejects


def _parse_column(texts: pa.Array, present: np.ndarray, dtype) -> tuple:
    """A column's values (numbers: an array over all rows, 0 where absent; strings: the
    Arrow array) and which rows parsed, as the parsers of :meth:`CsvRowDecoder.decode`
    parse them."""
    n = len(texts)
    if dtype == tf.string:
        return texts, np.ones(n, dtype=bool)
    all_present = bool(present.all())
    kept = texts if all_present else texts.filter(pa.array(present))
    numbers = None
    if pc.all(pc.match_substring_regex(kept, _NUMBER_TEXTS[dtype])).as_py() is not False:
        try:
            numbers = pc.cast(kept, _ARROW_NUMBERS[dtype]).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:  # e.g. an int beyond int64: Python says which
            pass
    if numbers is not None:
        ok_kept = np.isfinite(numbers) if dtype == tf.float32 else np.ones(len(kept), dtype=bool)
    else:
        numbers, ok_kept = _parse_texts(kept.to_pylist(), dtype)
    with np.errstate(over="ignore"):
        numbers = numbers.astype(_NUMPY_TYPES[dtype])
    if all_present:
        return numbers, ok_kept
    values = np.zeros(n, dtype=numbers.dtype)
    values[present] = numbers
    ok = np.ones(n, dtype=bool)
    ok[present] = ok_kept
    return values, ok


def _parse_texts(texts: list[str], dtype) -> tuple[np.ndarray, np.ndarray]:
    """Number texts parsed by Python (float64 or int64) and which of them parsed."""
    raw = float if dtype == tf.float32 else int
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            numbers = np.fromiter(map(raw, texts), dtype=np.float64 if raw is float else np.int64)
        return numbers, (np.isfinite(numbers) if raw is float else np.ones(len(texts), dtype=bool))
    except (ValueError, OverflowError):  # some value does not parse: find which, one by one
        parse = TEXT_PARSERS[dtype]
        numbers = np.zeros(len(texts), dtype=np.float64 if raw is float else np.int64)
        ok = np.ones(len(texts), dtype=bool)
        for k, text in enumerate(texts):
            try:
                numbers[k] = parse(text)
            except ValueError:
                ok[k] = False
        return numbers, ok


def _rows_to_record_batch(rows: list[list], schema: pa.Schema) -> pa.RecordBatch:
    """Decoded rows (a value, ``None`` when missing, or a list) -> a RecordBatch."""
    arrays = []
    for j in range(len(schema)):
        cells = [row[j] for row in rows]
        lengths = np.fromiter(
            (0 if v is None else len(v) if isinstance(v, list) else 1 for v in cells),
            dtype=np.int64,
            count=len(cells),
        )
        column = [x for v in cells if v is not None for x in (v if isinstance(v, list) else [v])]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        list_type = schema.field(j).type
        arrays.append(
            pa.LargeListArray.from_arrays(
                pa.array(offsets), pa.array(column, type=list_type.value_type)
            )
        )
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


# Reading: files -> byte ranges -> blocks of lines.
RANGE_BYTES = 8 << 20  # an uncompressed file is read in ranges of this size, in parallel
CHUNK_BYTES = 4 << 20
QUOTE = b'"'


def _split_file(metadata, range_bytes: int) -> Iterator[tuple[str, int, int | None]]:
    """(path, start, end) ranges of a file; a compressed file is one range, to its end."""
    path, size = metadata.path, metadata.size_in_bytes
    if CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED:
        yield path, 0, None
        return
    for start in range(0, max(size, 1), range_bytes):
        yield path, start, min(start + range_bytes, size)


def _blocks_in_range(handle, start: int, end: int | None) -> Iterator[tuple[bytes, bool]]:
    """Blocks of whole lines (without the final newline) of the lines that start in
    ``[start, end)``, as Beam's text source assigns lines to ranges; the flag is True
    for the file's last line when it has no newline."""
    pos = start
    buffer = b""
    if start > 0:  # the line under way at `start` belongs to the range before
        handle.seek(start - 1)
        pos = start - 1
        while True:
            data = handle.read(CHUNK_BYTES)
            if not data:
                return
            cut = data.find(b"\n")
            if cut >= 0:
                buffer, pos = data[cut + 1 :], pos + cut + 1
                break
            pos += len(data)
    while end is None or pos < end:
        cut = buffer.rfind(b"\n")
        if cut < 0:
            data = handle.read(CHUNK_BYTES)
            if not data:  # the file's last line, without a newline
                if buffer:
                    yield buffer, True
                return
            buffer += data
            continue
        block, buffer = buffer[:cut], buffer[cut + 1 :]
        if end is not None:
            # The first newline at or after end - 1 ends the range's last line.
            stop = block.find(b"\n", end - pos - 1)
            if stop >= 0:
                yield block[:stop], False
                return
        yield block, False
        pos += cut + 1


def _lines_in_range(handle, start: int, end: int | None) -> Iterator[tuple[str | None, bytes]]:
    """The lines that start in ``[start, end)`` (see
    :func:`~tfbake.serving_input.csv_rows.split_lines`)."""
    for block, last in _blocks_in_range(handle, start, end):
        yield from split_lines(block, last)


def _starts_inside_quotes(handle, start: int) -> bool:
    """Whether the first line of the range at ``start`` continues a quoted field: an odd
    number of quote characters (``""`` escapes count twice) comes before it. Reads the
    file up to there, counting quotes only."""
    handle.seek(0)
    count, pos = 0, 0
    while pos < start - 1:
        data = handle.read(min(CHUNK_BYTES, start - 1 - pos))
        if not data:
            return False
        count += data.count(QUOTE)
        pos += len(data)
    while data := handle.read(CHUNK_BYTES):  # the line under way at start - 1
        cut = data.find(b"\n")
        count += data[: cut if cut >= 0 else len(data)].count(QUOTE)
        if cut >= 0:
            break
    return count % 2 == 1


class _DecodeCsvRange(beam.DoFn):
    """A file range -> RecordBatches of its good rows; each bad line -> a reject. With a
    ``holdout``, the lines it takes go to its split's outputs instead."""

    def __init__(
        self,
        raw_feature_spec: Mapping,
        column_names: list[str],
        fmt: CsvFormat,
        split: str,
        batch_size: int,
        list_features: Iterable[str] = (),
        holdout: Holdout | None = None,
    ):
        self._spec = dict(raw_feature_spec)
        self._column_names = list(column_names)
        self._format = fmt
        self._split = split
        self._batch_size = batch_size
        self._lists = list(list_features)
        self._holdout = holdout

    def setup(self):
        self._output = SplitOutput(self._split, REJECTS_TAG)
        self._counters = self._output.counters
        self._held_out = self._holdout.outputs() if self._holdout else None
        self._schema = arrow_schema(self._spec)
        self._decoder = CsvRowDecoder(self._spec, self._column_names, self._format, self._lists)

    def process(self, file_range: tuple[str, int, int | None]) -> Iterable:
        path, start, end = file_range
        skip_header = self._format.header and start == 0
        pending: list[str] = []
        with FileSystems.open(path) as handle, FileSystems.open(path) as following:
            inside = start > 0 and _starts_inside_quotes(handle, start)
            own = _lines_in_range(handle, start, end)
            # A record still open at the range's end runs on into the next range's lines.
            after = _lines_in_range(following, end, None) if end is not None else iter(())
            first = start == 0
            for line, raw in join_records(own, after, inside):
                if first and line is not None:
                    line = line.removeprefix(BYTE_ORDER_MARK)
                first = False
                if skip_header:
                    skip_header = False
                    continue
                if line is None:
                    self._counters.read.inc()
                    yield self._output.reject(
                        path, raw.decode("utf-8", "backslashreplace"), "not valid UTF-8"
                    )
                elif line.strip():  # a blank line holds no row
                    pending.append(line)
                if len(pending) == self._batch_size:
                    yield from self._decode(path, pending)
                    pending = []
        if pending:
            yield from self._decode(path, pending)

    def _decode(self, path: str, lines: list[str]) -> Iterable:
        groups = [(self._output, lines)]
        if self._holdout is not None:
            held = [self._holdout.takes(line.encode("utf-8")) for line in lines]
            groups = [
                (self._output, [line for line, h in zip(lines, held) if not h]),
                (self._held_out, [line for line, h in zip(lines, held) if h]),
            ]
        for output, group in groups:
            if not group:
                continue
            output.counters.read.inc(len(group))
            batch, rejects = self._decoder.decode_block(group, self._schema)
            for line, reason in rejects:
                yield output.reject(path, line, reason)
            if batch.num_rows:
                yield output.batch(batch)


class ReadCsv(beam.PTransform):
    """CSV files -> RecordBatches of the raw features (main) and rejects (``rejects``).

    Lines are split as Beam's text source splits them (``\\n`` or ``\\r\\n``; ``.gz`` and
    ``.bz2`` files are decompressed); ``batch_size`` lines make one RecordBatch.
    ``list_features`` are lists: their cells are split at ``fmt.list_delimiter``.
    With a ``holdout``, the records it takes are its split's RecordBatches and rejects
    (outputs ``holdout`` and ``holdout_rejects``).
    """

    def __init__(
        self,
        file_pattern: str,
        raw_feature_spec: Mapping,
        column_names: list[str],
        fmt: CsvFormat,
        split: str,
        batch_size: int = 8192,
        range_bytes: int = RANGE_BYTES,
        list_features: Iterable[str] = (),
        holdout: Holdout | None = None,
    ):
        super().__init__()
        self._lists = list(list_features)
        self._holdout = holdout
        self._pattern = file_pattern
        self._spec = raw_feature_spec
        self._column_names = column_names
        self._format = fmt
        self._split = split
        self._batch_size = batch_size
        self._range_bytes = range_bytes

    def expand(self, pipeline):
        return (
            pipeline
            | "MatchFiles" >> fileio.MatchFiles(self._pattern, fileio.EmptyMatchTreatment.DISALLOW)
            | "SplitFiles" >> beam.FlatMap(_split_file, self._range_bytes)
            | "Distribute" >> beam.Reshuffle()
            | "Decode"
            >> beam.ParDo(
                _DecodeCsvRange(
                    self._spec,
                    self._column_names,
                    self._format,
                    self._split,
                    self._batch_size,
                    self._lists,
                    self._holdout,
                )
            ).with_outputs(REJECTS_TAG, *HOLDOUT_TAGS, main="record_batches")
        )
