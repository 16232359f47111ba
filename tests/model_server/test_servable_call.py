"""The flat graph-function call gives the structured ConcreteFunction call's outputs."""

from __future__ import annotations

import os

import numpy as np

from tests.model_server.conftest import HPT_VERSION
from tfbake.model_server.loader import SavedModelLoader


def test_flat_call_matches_structured_call(model_dirs):
    path = os.path.join(model_dirs["hpt"], str(HPT_VERSION))
    servable = SavedModelLoader("hpt", HPT_VERSION, path, warmup=False).load()
    signature = servable.signatures["serving_default"]
    assert signature._flat is not None, "serving_default should take the flat call"
    (alias, info), = signature.inputs.items()
    x = np.array([[1.0], [2.0], [5.0]], dtype=info.np_dtype).reshape(
        [3] + [1] * (info.shape.rank - 1))
    flat = signature({alias: x})
    structured = {k: v.numpy() for k, v in signature._fn(**{alias: x}).items()}
    assert flat.keys() == structured.keys() == signature.outputs.keys()
    for key in flat:
        np.testing.assert_array_equal(flat[key], structured[key])
    assert signature.mean_call_s < float("inf")
