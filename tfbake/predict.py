"""``tfbake predict``: a CSV or JSONL file of raw rows through a model server (REST or
gRPC), JSONL results out. The rows are read as the Beam job reads training data
(:func:`tfbake.serving_input.raw_rows.read_raw_rows`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence

import numpy as np
import orjson

from tfbake.model_server.client import Client, ServingRequestError
from tfbake.serving_input.csv_format import CsvFormat
from tfbake.serving_input.raw_rows import JSONL_SUFFIXES, read_raw_rows


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()] if value.ndim else _jsonable(value.item())
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (np.generic,)):
        return value.item()
    return value


def predict_file(
    server: str,
    model: str,
    input_path: str,
    output_path: str | None = None,
    *,
    protocol: str | None = None,
    signature_name: str | None = None,
    batch_size: int = 128,
    feature_spec: Mapping | None = None,
    progress: bool = True,
    csv_format: CsvFormat | None = None,
    feature_lists: Sequence[str] = (),
) -> int:
    """Streams a CSV or JSONL file of raw rows through a server; writes JSONL results.

    Each output line is the signature's outputs for one input row (name -> value;
    strings as text). Columns that are not raw features (a label) are dropped. A CSV
    file is read as the Beam job reads training data laid out as ``csv_format`` (a
    config's ``data.csv``; default the config defaults). ``feature_lists``: the
    features the model takes as a SequenceExample's feature_lists (a config's with
    ``data.format: sequence_example``). Returns the number of rows written.
    """
    from tqdm import tqdm

    client = Client(server, protocol, batch_size=batch_size, feature_spec=feature_spec,
                    feature_lists=feature_lists)
    spec = client.raw_feature_spec(model)
    lists = [] if feature_spec is not None else client.list_features(model)
    out = open(output_path, "w", encoding="utf-8") if output_path else sys.stdout
    written = 0
    try:
        with tqdm(desc=f"predict {model}", unit="rows", disable=not progress,
                  file=sys.stderr) as bar:
            batch: list[dict] = []

            def flush():
                nonlocal written
                outputs = client.predict(model, batch, signature_name=signature_name)
                for i in range(len(batch)):
                    record = {name: _jsonable(values[i]) for name, values in outputs.items()}
                    out.write(orjson.dumps(record).decode() + "\n")
                written += len(batch)
                bar.update(len(batch))
                batch.clear()

            data_format = "jsonl" if input_path.endswith(JSONL_SUFFIXES) else "csv"
            for row, _ in read_raw_rows(input_path, spec, data_format=data_format,
                                        csv_format=csv_format, list_features=lists,
                                        bad_rows="raise"):
                batch.append(row)
                if len(batch) >= batch_size:
                    flush()
            if batch:
                flush()
    finally:
        if output_path:
            out.close()
        client.close()
    return written


def cli_predict(argv: list[str] | None = None, csv_format: CsvFormat | None = None,
                feature_lists: Sequence[str] = ()) -> int:
    """``tfbake predict --server URL --model NAME --input FILE [--protocol grpc] ...``;
    ``csv_format``: how a CSV input file is laid out, ``feature_lists``: what a request
    carries as a SequenceExample's feature_lists (both from ``tfbake predict --config``)."""
    p = argparse.ArgumentParser(prog="tfbake predict",
                                description="Send a CSV/JSONL file to a model server.")
    p.add_argument("--server", required=True, help="http://host:8501 (REST) or host:8500 (gRPC)")
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True, help="rows.csv or rows.jsonl")
    p.add_argument("--output", default=None, help="JSONL results (default: stdout)")
    p.add_argument("--protocol", choices=("rest", "grpc"), default=None)
    p.add_argument("--signature", default=None, help="signature name (default serving_default)")
    p.add_argument("--batch_size", type=int, default=128)
    args = p.parse_args(argv)
    try:
        predict_file(args.server, args.model, args.input, args.output,
                     protocol=args.protocol, signature_name=args.signature,
                     batch_size=args.batch_size, csv_format=csv_format,
                     feature_lists=feature_lists)
    except (ServingRequestError, ValueError, OSError) as e:
        print(f"tfbake predict: {e}", file=sys.stderr)
        return 1
    return 0
