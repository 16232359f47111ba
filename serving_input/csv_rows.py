"""CSV rows to raw feature values, read the way the Beam job reads training data.

Beam-free, so that every reader outside the Beam job (the warm-up samples, ``tfbake
check``, the demo, the model-server client) decodes a row as the job does: the same
columns, missing values (``na_values``, compared after stripping), spaces after the
delimiter (``skipinitialspace``), list cells and number parsing. The Beam job's block
decoder (:class:`tfbake.transform.csv_source.CsvRowDecoder`) extends :class:`CsvLineDecoder`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping, Sequence

import tensorflow as tf

from tfbake.serving_input.csv_format import CsvFormat
from tfbake.serving_input.text_values import (
    TEXT_PARSERS,
    bad_text_message,
    parse_list_text,
    with_decimal_point,
)

# What spreadsheet programs write before the first line of a UTF-8 file ("CSV UTF-8"):
# a mark of the encoding, not part of the first column's name or value.
BYTE_ORDER_MARK = "\ufeff"


def read_header(path: str, delimiter: str = ",", *, skipinitialspace: bool = False) -> list[str]:
    """Column names from the first line of a CSV file."""
    with tf.io.gfile.GFile(path) as f:
        line = f.readline().removeprefix(BYTE_ORDER_MARK)
    fmt = CsvFormat(delimiter=delimiter, skipinitialspace=skipinitialspace)
    return next(csv_reader([line.rstrip("\r\n")], fmt))


def csv_reader(lines: Iterable[str], fmt: CsvFormat):
    """``csv.reader`` over ``lines`` with the format's delimiter and
    ``skipinitialspace`` (strict: a malformed line is an error, not a guess)."""
    return csv.reader(
        lines, delimiter=fmt.delimiter, skipinitialspace=fmt.skipinitialspace, strict=True
    )


def column_names(path: str, fmt: CsvFormat) -> list[str]:
    """The columns of a CSV file: ``fmt.column_names``, or its header line."""
    if fmt.column_names:
        return list(fmt.column_names)
    return read_header(path, fmt.delimiter, skipinitialspace=fmt.skipinitialspace)


class CsvLineDecoder:
    """One CSV line -> the raw feature values in spec order (``None`` = missing).

    The Beam job decodes with it, and so do the demo and the tests when they turn CSV
    rows into serving requests, so both read a line the same way. A feature named in
    ``list_features`` is a list (its cell: values joined by ``fmt.list_delimiter``).
    """

    def __init__(
        self,
        raw_feature_spec: Mapping,
        column_names: list[str],
        fmt: CsvFormat,
        list_features: Iterable[str] = (),
    ):
        self.feature_names = list(raw_feature_spec)
        self._lists = frozenset(list_features)
        self._format = fmt
        self._num_columns = len(column_names)
        self._na = frozenset(fmt.na_values)
        index = {name: i for i, name in enumerate(column_names)}
        self.columns = [
            (
                name,
                index[name],
                TEXT_PARSERS[spec.dtype],
                isinstance(spec, tf.io.VarLenFeature),
                spec.dtype,
            )
            for name, spec in raw_feature_spec.items()
        ]

    def decode(self, line: str) -> list:
        """The row's values; ``ValueError`` says why the line cannot be used."""
        try:
            fields = next(csv_reader([line], self._format))
        except (csv.Error, StopIteration) as err:
            raise ValueError(f"not a valid CSV line: {err}") from None
        return self.decode_fields(fields)

    def decode_fields(self, fields: Sequence[str]) -> list:
        """A row's values from its fields (as ``csv.reader`` split them)."""
        if len(fields) != self._num_columns:
            raise ValueError(f"expected {self._num_columns} columns, got {len(fields)}")
        values = []
        for name, i, parse, nullable, dtype in self.columns:
            text = fields[i]
            na = text.strip() in self._na
            if name in self._lists:
                values.append([] if na else parse_list_text(
                    name, text, dtype, self._format.list_delimiter, self._format.decimal))
                continue
            if na:
                if not nullable:
                    raise ValueError(f'missing value for required feature "{name}"')
                values.append(None)
                continue
            if self._format.decimal != "." and dtype == tf.float32:
                text = with_decimal_point(text, self._format.decimal)
            try:
                values.append(parse(text))
            except ValueError:
                raise ValueError(bad_text_message(name, fields[i], dtype)) from None
        return values

    def decode_dict(self, line: str) -> dict:
        """The row as ``{feature: value}`` (a list feature: a list), strings as ``str``,
        missing values left out."""
        return self.as_dict(self.decode(line))

    def as_dict(self, values: list) -> dict:
        """Decoded values (:meth:`decode`) as ``{feature: value}``, strings as ``str``,
        missing values left out."""

        def text(value):
            return value.decode("utf-8") if isinstance(value, bytes) else value

        return {
            name: [text(v) for v in value] if isinstance(value, list) else text(value)
            for name, value in zip(self.feature_names, values)
            if value is not None
        }


# Lines and records, split as Beam's text source splits a file and as the Beam job
# joins a quoted field's lines (transform.csv_source reads byte ranges with them).


def split_lines(block: bytes, last: bool) -> Iterator[tuple[str | None, bytes | str]]:
    """Lines of a block as ``(text, None)``, or ``(None, raw)`` for a line that is not UTF-8.

    Like Beam's text source: split at ``\\n``, a ``\\r`` before it dropped.
    """
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        pieces = block.split(b"\n")
        for k, raw in enumerate(pieces):
            if raw.endswith(b"\r") and not (last and k == len(pieces) - 1):
                raw = raw[:-1]
            try:
                yield raw.decode("utf-8"), None
            except UnicodeDecodeError:
                yield None, raw
        return
    lines = text.split("\n")
    if "\r" in text:
        final = len(lines) - 1
        lines = [
            line[:-1] if line.endswith("\r") and not (last and k == final) else line
            for k, line in enumerate(lines)
        ]
    for line in lines:
        yield line, None


def join_records(
    own: Iterator[tuple[str | None, bytes]],
    after: Iterator[tuple[str | None, bytes]],
    inside: bool,
) -> Iterator[tuple[str | None, bytes]]:
    """CSV records from lines: a quoted field with line breaks joins its lines into one
    record (joined with ``\\n``), so no piece of it is read as a row of its own.

    ``inside``: the first lines continue a record of the range before; they are
    skipped up to the line that closes it. A record open when ``own`` ends is completed
    from ``after``. A line that is not UTF-8 ends up as ``(None, raw)``.
    """
    parts: list[str | None] = []
    raws: list[bytes] = []
    for source in (own, after):
        for line, raw in source:
            if source is after and not parts:
                return
            quotes = (line or "").count('"') % 2
            if inside:
                inside = not quotes
                continue
            if parts or quotes:
                parts.append(line)
                raws.append(raw if line is None else line.encode("utf-8"))
                if not (len(parts) > 1 and quotes):
                    continue  # the quoted field is still open
                line, raw = None, b"\n".join(raws)
                if None not in parts:
                    line = "\n".join(parts)
                parts, raws = [], []
            yield line, raw
    if parts:  # a quote left open at the end of the file: the decoder says so
        yield ("\n".join(parts) if None not in parts else None), b"\n".join(raws)


def csv_records(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """``(line number, record)`` of CSV text lines (no line ends), as the Beam job reads
    them: a quoted field's line breaks keep its lines in one record."""
    records = join_records(((line, b"") for line in lines), iter(()), inside=False)
    n = 1
    for record, _ in records:
        yield n, record
        n += record.count("\n") + 1
