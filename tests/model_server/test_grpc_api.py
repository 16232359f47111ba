"""gRPC API through the official tensorflow-serving-api stubs."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2


@pytest.fixture(scope="module")
def stub(grpc_channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(grpc_channel)


@pytest.fixture(scope="module")
def models(grpc_channel):
    return model_service_pb2_grpc.ModelServiceStub(grpc_channel)


def predict_request(signature="", **inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "hpt"
    request.model_spec.signature_name = signature
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def rpc_error(call, request):
    with pytest.raises(grpc.RpcError) as info:
        call(request)
    return info.value.code(), info.value.details()


def example(**features):
    e = tf.train.Example()
    for name, value in features.items():
        e.features.feature[name].float_list.value.append(value)
    return e


def test_predict(stub):
    response = stub.Predict(predict_request(x=np.array([1.0, 2.0, 5.0], np.float32)))
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["y"]), [2.5, 3.0, 4.5])
    assert response.model_spec.name == "hpt"
    assert response.model_spec.version.value == 123
    assert response.model_spec.signature_name == "serving_default"


def test_predict_multi_output_with_filter(stub):
    request = predict_request("multi", x=np.array([1.0, 4.0], np.float32),
                              k=np.array([2, 3], np.int64))
    response = stub.Predict(request)
    assert set(response.outputs) == {"y", "k_text", "pair", "inv"}
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["k_text"]), [b"2", b"3"])
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["pair"]),
                                  [[1.0, 2.0], [4.0, 3.0]])
    request.output_filter.append("y")
    assert set(stub.Predict(request).outputs) == {"y"}


def test_predict_bytes(stub):
    raw = np.array([b"\x00\xff\xfeab"], dtype=object)
    response = stub.Predict(predict_request("bytes", image_bytes=raw))
    assert tf.make_ndarray(response.outputs["echo_bytes"]).tolist() == [b"\x00\xff\xfeab"]
    assert tf.make_ndarray(response.outputs["size"]).tolist() == [5]


def test_predict_missing_and_extra_inputs_are_named(stub):
    request = predict_request("multi", x=np.array([1.0], np.float32), z=np.array([1.0], np.float32),
                              w=np.array([1.0], np.float32))
    code, details = rpc_error(stub.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == ("input size does not match signature: 3!=2 len({w,x,z}) != len({k,x}). "
                       "Sent extra: {w,z}. Missing but required: {k}.")


def test_predict_unknown_signature_is_failed_precondition(stub):
    code, details = rpc_error(stub.Predict, predict_request("nope", x=np.array([1.0], np.float32)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert details == 'Serving signature key "nope" not found.'


def test_predict_wrong_dtype(stub):
    code, details = rpc_error(stub.Predict, predict_request(x=np.array([1, 2], np.int64)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "Expects arg[0] to be float but int64 is provided"


def test_predict_unknown_output_filter(stub):
    request = predict_request(x=np.array([1.0], np.float32))
    request.output_filter.append("z")
    code, details = rpc_error(stub.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == ("output tensor alias not found in signature: z Outputs expected to be "
                       "in the set {y}.")


def test_unknown_model_and_version(stub):
    request = predict_request(x=np.array([1.0], np.float32))
    request.model_spec.name = "nope"
    assert rpc_error(stub.Predict, request) == (
        grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)")
    request.model_spec.name = "hpt"
    request.model_spec.version.value = 7
    assert rpc_error(stub.Predict, request) == (
        grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(hpt, 7)")
    request.model_spec.version_label = "stable"
    assert stub.Predict(request).model_spec.version.value == 123


def test_large_message_over_default_4mb(stub):
    x = np.arange(2_000_000, dtype=np.float32)  # 8 MB each way
    response = stub.Predict(predict_request(x=x))
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["y"]), 0.5 * x + 2)


def test_classify_with_and_without_context(stub):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "hpt"
    request.model_spec.signature_name = "classify"
    request.input.example_list.examples.extend([example(x=1.0), example(x=3.0)])
    response = stub.Classify(request)
    got = [[(c.label, c.score) for c in row.classes] for row in response.result.classifications]
    assert got == [[("neg", 2.5), ("pos", 3.5)], [("neg", 3.5), ("pos", 4.5)]]
    assert response.model_spec.signature_name == "classify"
    request.input.Clear()
    request.input.example_list_with_context.context.CopyFrom(example(x=3.0))
    request.input.example_list_with_context.examples.extend([tf.train.Example(), example(x=1.0)])
    response = stub.Classify(request)
    assert [row.classes[0].score for row in response.result.classifications] == [3.5, 2.5]


def test_classify_empty_input(stub):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "hpt"
    request.model_spec.signature_name = "classify"
    assert rpc_error(stub.Classify, request) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")


def test_regress(stub):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "hpt"
    request.model_spec.signature_name = "regress_x_to_y"
    request.input.example_list.examples.extend([example(x=1.0), example(x=2.0)])
    response = stub.Regress(request)
    assert [r.value for r in response.result.regressions] == [2.5, 3.0]


def test_multi_inference(stub):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("classify", "tensorflow/serving/classify"),
                              ("regress_x_to_y", "tensorflow/serving/regress")):
        task = request.tasks.add()
        task.model_spec.name = "hpt"
        task.model_spec.signature_name = signature
        task.method_name = method
    request.input.example_list.examples.append(example(x=1.0))
    response = stub.MultiInference(request)
    assert response.results[0].classification_result.classifications[0].classes[1].score == 3.5
    assert response.results[1].regression_result.regressions[0].value == 2.5
    assert response.results[1].model_spec.version.value == 123


def test_get_model_metadata(stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "hpt"
    response = stub.GetModelMetadata(request)
    signature_def_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_def_map)
    assert signature_def_map.signature_def["classify"].method_name == "tensorflow/serving/classify"
    assert response.model_spec.version.value == 123
    request.metadata_field[:] = ["graph"]
    assert rpc_error(stub.GetModelMetadata, request) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Metadata field graph is not supported")
    del request.metadata_field[:]
    assert rpc_error(stub.GetModelMetadata, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "GetModelMetadataRequest must specify at least one metadata_field")


def test_get_model_status(models):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "hpt"
    response = models.GetModelStatus(request)
    [status] = response.model_version_status
    assert status.version == 123
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    request.model_spec.name = "nope"
    assert rpc_error(models.GetModelStatus, request) == (
        grpc.StatusCode.NOT_FOUND, "Could not find any versions of model nope")


def test_reload_config_adds_and_removes_a_model(models, stub, model_dirs, helpers):
    from google.protobuf import text_format

    def reload(extra):
        config = model_server_config_pb2.ModelServerConfig()
        text_format.Parse(helpers.model_config_text(model_dirs, extra), config)
        request = model_management_pb2.ReloadConfigRequest(config=config)
        return models.HandleReloadConfigRequest(request)

    extra = (f'config {{ name: "hpt2" base_path: "{model_dirs["hpt"]}" '
             'model_platform: "tensorflow" }')
    assert reload(extra).status.error_code == 0
    request = predict_request(x=np.array([2.0], np.float32))
    request.model_spec.name = "hpt2"
    np.testing.assert_array_equal(tf.make_ndarray(stub.Predict(request).outputs["y"]), [3.0])
    reload("")
    assert rpc_error(stub.Predict, request)[0] == grpc.StatusCode.NOT_FOUND
    status = models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
        model_spec=request.model_spec))
    assert [s.state for s in status.model_version_status] == [
        get_model_status_pb2.ModelVersionStatus.END]
