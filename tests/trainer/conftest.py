"""Fixtures of the trainer tests: tiny CSV data through a real Beam + tf.Transform run."""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest


def write_csv(path: Path, rows: Sequence[Mapping]) -> str:
    """Writes ``rows`` (dicts with the same keys) as a CSV with a header; returns the path."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


@pytest.fixture(scope="session")
def beam_transform() -> Callable:
    """``beam_transform(tmp_dir, raw_feature_spec, preprocessing_fn, train_rows, eval_rows)``:
    runs the project's Beam job over the rows and returns the ``TFTransformOutput``."""
    import tensorflow_transform as tft

    from tfbake import transform

    def run(
        tmp_dir: Path,
        raw_feature_spec: Mapping,
        preprocessing_fn: Callable,
        train_rows: Sequence[Mapping],
        eval_rows: Sequence[Mapping],
    ):
        output_dir = str(tmp_dir / "transform")
        transform.run(
            transform.TransformJob(
                raw_feature_spec=raw_feature_spec,
                preprocessing_fn=preprocessing_fn,
                train_pattern=write_csv(tmp_dir / "train.csv", train_rows),
                eval_pattern=write_csv(tmp_dir / "eval.csv", eval_rows),
                output_dir=output_dir,
            )
        )
        return tft.TFTransformOutput(output_dir)

    return run
