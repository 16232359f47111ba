"""A preprocessing_fn that fails while tf.Transform traces it fails the job with the
line of the user's code, the raw features that line reads and, for a feature it gets
as a tf.SparseTensor, what that feature is and how to make it dense."""

from __future__ import annotations

import inspect

import pytest

from tests.custom_preprocessing import failing
from tfbake import stages
from tfbake.config import config_from_dict
from tfbake.transform import TransformError


def _line_of(text: str) -> int:
    """The line of tests/custom_preprocessing/failing.py that holds ``text``."""
    lines, _ = inspect.getsourcelines(failing)  # a module's: from its first line
    (number,) = [i for i, line in enumerate(lines, start=1) if text in line]
    return number


def _job_error(tmp_path, function: str) -> str:
    (tmp_path / "train.csv").write_text("x,c,y\n1.5,a,p\nNA,b,q\n2.0,a,q\n")
    config = config_from_dict({
        "name": "trace_errors",
        "artifacts": str(tmp_path / "artifacts"),
        "data": {"train": str(tmp_path / "train.csv"), "eval": str(tmp_path / "train.csv")},
        "features": {"x": {"type": "float", "nullable": True}, "c": {"type": "string"}},
        "label": {"name": "y"},
        "preprocessing_fn": f"tests.custom_preprocessing.failing:{function}",
    })
    with pytest.raises(TransformError) as raised:
        stages.run_transform(config)
    return str(raised.value)


def test_a_dense_op_on_a_nullable_feature_names_the_line_and_the_feature(tmp_path):
    message = _job_error(tmp_path, "dense_op_on_nullable")
    assert f"failing.py:{_line_of('tf.math.log1p(inputs')}:" in message
    assert 'tft.scale_to_z_score(tf.math.log1p(inputs["x"]))' in message
    assert "That line reads raw feature(s) ['x']." in message
    assert '"x" is nullable (a row may have no value), so preprocessing_fn gets it as a ' \
        "tf.SparseTensor" in message
    assert 'tft.sparse_tensor_to_dense_with_shape(inputs["x"], [None, 1]' in message
    assert '"c" is' not in message  # a dense feature the line does not read


def test_a_line_that_reads_no_feature_names_every_sparse_feature(tmp_path):
    message = _job_error(tmp_path, "dense_op_in_a_helper")
    # The deepest line of the user's code: the helper's.
    assert f"failing.py:{_line_of('tft.scale_to_0_1(tf.math.log1p(value))')}:" in message
    assert "That line reads" not in message
    assert '"x" is nullable' in message and '"c" is' not in message


def test_a_misspelled_feature_names_the_line_and_no_sparse_tensor(tmp_path):
    message = _job_error(tmp_path, "misspelled_feature")
    line = _line_of('inputs["cc"]')
    assert f"failing.py:{line}:" in message
    assert "KeyError: 'cc'" in message
    assert "SparseTensor" not in message
