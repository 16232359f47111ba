"""tfbake.model_server.Client over REST and gRPC, and tfbake.predict.predict_file, against the
shared server."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from tfbake import model_server, predict

SPEC = {"x": tf.io.FixedLenFeature([1], tf.float32)}


@pytest.fixture(scope="module", params=["rest", "grpc"])
def client(request, server):
    url = server.rest_url if request.param == "rest" else server.grpc_target
    with model_server.Client(url, request.param, batch_size=4) as c:
        yield c


def test_predict_dicts_derive_spec_from_predict_raw(client):
    rows = [{"x": float(i)} for i in range(10)]  # 10 rows: three chunks of <= 4
    outputs = client.predict("hpt", rows, signature_name="classify")
    np.testing.assert_array_equal(outputs["scores"][:, 0], 0.5 * np.arange(10) + 2)
    assert outputs["classes"][0].tolist() == [b"neg", b"pos"]


def test_predict_tensors(client):
    outputs = client.predict("hpt", {"x": np.array([1.0, 2.0], np.float32)})
    np.testing.assert_array_equal(outputs["y"], [2.5, 3.0])


def test_classify_and_regress_take_dicts_and_examples(client):
    example = tf.train.Example()
    example.features.feature["x"].float_list.value.append(3.0)
    assert client.classify("hpt", [{"x": 1.0}, example], signature_name="classify") == [
        [("neg", 2.5), ("pos", 3.5)], [("neg", 3.5), ("pos", 4.5)]]
    assert client.regress("hpt", [{"x": 2.0}] * 6, signature_name="regress_x_to_y") == [3.0] * 6


def test_status_and_metadata_have_the_rest_shape(client):
    assert client.status("hpt")["model_version_status"][0]["version"] == "123"
    meta = client.metadata("hpt")
    assert meta["model_spec"]["version"] == "123"
    assert "classify" in meta["metadata"]["signature_def"]["signature_def"]


def test_errors_carry_the_server_message(client):
    with pytest.raises(model_server.client.ServingRequestError, match="Latest\\(nope\\)"):
        client.predict("nope", {"x": np.ones(1, np.float32)})


def test_predict_file_csv_to_jsonl(server, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("x,label\n1.0,a\n3.0,b\n5,c\n")
    out = tmp_path / "out.jsonl"
    written = predict.predict_file(server.rest_url, "hpt", str(rows), str(out),
                                        signature_name="classify", batch_size=2,
                                        progress=False, feature_spec=SPEC)
    assert written == 3
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["scores"][0] for line in lines] == [2.5, 3.5, 4.5]
    assert lines[0]["classes"] == ["neg", "pos"]


def test_predict_file_names_the_row_and_feature_of_a_bad_csv_cell(server, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("x,label\n1.0,a\nabc,b\n")
    with pytest.raises(ValueError, match=r'rows.csv line 3: feature "x": expected a finite '
                                         r"float, got 'abc'"):
        predict.predict_file(server.rest_url, "hpt", str(rows), str(tmp_path / "o.jsonl"),
                                  signature_name="classify", progress=False, feature_spec=SPEC)


def test_cli_predict_jsonl_over_grpc(server, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"x": 2.0}\n{"x": 4.0}\n')
    out = tmp_path / "out.jsonl"
    assert predict.cli_predict([
        "--server", server.grpc_target, "--model", "hpt", "--input", str(rows),
        "--output", str(out), "--protocol", "grpc", "--signature", "classify",
    ]) == 0
    assert [json.loads(line)["scores"] for line in out.read_text().splitlines()] == [
        [3.0, 4.0], [4.0, 5.0]]


def test_serve_in_process(model_dirs):
    with model_server.serve(model_dirs["hpt"], model_name="m") as running:
        client = model_server.Client(running.rest_url)
        np.testing.assert_array_equal(
            client.predict("m", {"x": np.array([0.0], np.float32)})["y"], [2.0])
