"""Every flag of tensorflow_model_server is accepted, and the ones that mean something
here do it: TLS with a certificate made here, a UNIX socket, CORS as TF Serving
answers it, the gRPC health service, response tensors packed or in typed fields,
MetaGraph tags, load retries, labels for versions not loaded yet."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import threading

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tfbake import model_server
from tfbake.model_server.config import NOT_APPLICABLE, build_arg_parser, parse_flags
from tfbake.model_server.manager import StartupError
from tfbake.model_server.tensors import tensor_proto

# Every flag of tensorflow_model_server, read from tensorflow/serving's
# tensorflow_serving/model_servers/main.cc (the flag_list of main()), with a value.
TF_SERVING_FLAGS = {
    "port": "0",
    "grpc_socket_path": "{tmp}/grpc.sock",
    "rest_api_port": "{rest_port}",
    "rest_api_num_threads": "2",
    "rest_api_timeout_in_ms": "20000",
    "rest_api_enable_cors_support": "true",
    "enable_batching": "true",
    "allow_version_labels_for_unavailable_models": "true",
    "batching_parameters_file": "{tmp}/batching.config",
    "enable_per_model_batching_parameters": "true",
    "model_config_file": "{tmp}/models.config",
    "model_config_file_poll_wait_seconds": "0",
    "model_name": "ignored",
    "model_base_path": "/ignored/with/a/model/config/file",
    "num_load_threads": "2",
    "num_unload_threads": "2",
    "max_num_load_retries": "1",
    "load_retry_interval_micros": "1000",
    "file_system_poll_wait_seconds": "1",
    "flush_filesystem_caches": "true",
    "tensorflow_session_parallelism": "0",
    "tensorflow_session_config_file": "{tmp}/session.config",
    "tensorflow_intra_op_parallelism": "2",
    "tensorflow_inter_op_parallelism": "2",
    "use_alts_credentials": "false",
    "ssl_config_file": "{tmp}/ssl.config",
    "platform_config_file": "{tmp}/platform.config",
    "per_process_gpu_memory_fraction": "0.5",
    "saved_model_tags": "serve",
    "grpc_channel_arguments": "grpc.max_connection_age_ms=600000,grpc.primary_user_agent=t",
    "grpc_max_threads": "8",
    "enable_model_warmup": "true",
    "num_request_iterations_for_warmup": "2",
    "version": None,  # prints the version and exits: see its own test
    "monitoring_config_file": "{tmp}/monitoring.config",
    "remove_unused_fields_from_bundle_metagraph": "true",
    "prefer_tflite_model": "false",
    "num_tflite_pools": "2",
    "num_tflite_interpreters_per_pool": "1",
    "enable_signature_method_name_check": "false",
    "xla_cpu_compilation_enabled": "false",
    "xla_gpu_compilation_enabled": "false",
    "enable_profiler": "true",
    "thread_pool_factory_config_file": "{tmp}/thread_pool.config",
    "mixed_precision": "bfloat16",
    "skip_initialize_tpu": "true",
    "enable_grpc_healthcheck_service": "true",
    "enable_serialization_as_tensor_content": "true",
}
TLS_NAME = "localhost"


def test_the_parser_knows_every_flag_of_tensorflow_model_server():
    known = {a.dest for a in build_arg_parser()._actions} | {"version"}
    assert set(TF_SERVING_FLAGS) <= known


def test_the_docs_table_says_what_becomes_of_every_flag():
    docs = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "tf_serving.md")
    with open(docs) as f:
        rows = [line for line in f if line.startswith("| `--")]
    documented = {flag for row in rows for flag in re.findall(r"`--([a-z_-]+)", row.split("|")[1])}
    parsed = {a.option_strings[0][2:] for a in build_arg_parser()._actions
              if a.option_strings and a.dest != "help"}
    assert set(TF_SERVING_FLAGS) | parsed <= documented


def test_each_flag_parses_alone_and_says_when_it_has_no_effect(tmp_path):
    for name, value in TF_SERVING_FLAGS.items():
        if value is None:
            continue
        text = value.format(tmp=tmp_path, rest_port=0)
        base = [] if name in ("model_base_path", "model_config_file") else ["--model_base_path=/m"]
        if name == "batching_parameters_file":
            base.append("--enable_batching")
        options = parse_flags([*base, f"--{name}={text}"])
        notices = options.notices()
        if name in NOT_APPLICABLE:
            assert notices == [f"--{name}={text} has no effect here: {NOT_APPLICABLE[name]}"]
        elif name not in ("model_name", "model_config_file"):
            assert notices == [], name


def test_a_boolean_flag_alone_means_true():
    options = parse_flags(["--model_base_path=/m", "--rest_api_enable_cors_support",
                           "--enable_profiler"])
    assert options.rest_api_enable_cors_support is True
    assert options.ignored_flags == {"enable_profiler": "true"}


def test_version_prints_the_version_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_info:
        model_server.main(["--version"])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("TensorFlow ModelServer: tfbake ")
    assert lines[1] == f"TensorFlow Library: {tf.__version__}"


@pytest.mark.parametrize("flags, message", [
    (["--use_alts_credentials", "--ssl_config_file=/s"], "Either use_alts_credentials"),
    (["--batching_parameters_file=/b"], "without setting --enable_batching"),
    (["--tensorflow_session_parallelism=2", "--tensorflow_intra_op_parallelism=2",
      "--tensorflow_inter_op_parallelism=2"], "You cannot configure all."),
    (["--grpc_channel_arguments=grpc.keepalive_time_ms"], "expected key=value"),
])
def test_combinations_tensorflow_model_server_refuses_are_refused(flags, message, capsys):
    assert model_server.main(["--model_base_path=/m", *flags]) == 1
    assert message in capsys.readouterr().err


def _self_signed_certificate() -> tuple[str, str]:
    """A key and a certificate for TLS_NAME and 127.0.0.1, valid for a day (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TLS_NAME)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(TLS_NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM).decode()


def _text_proto_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@pytest.fixture(scope="module")
def every_flag_server(model_dirs, helpers, tmp_path_factory):
    """``python -m tfbake.model_server`` with every flag of tensorflow_model_server at once."""
    tmp = tmp_path_factory.mktemp("flags")
    key, certificate = _self_signed_certificate()
    (tmp / "ssl.config").write_text(
        f"server_key: {_text_proto_string(key)}\nserver_cert: {_text_proto_string(certificate)}\n"
        "client_verify: false\n")
    (tmp / "batching.config").write_text("max_batch_size { value: 8 }\n")
    (tmp / "monitoring.config").write_text("prometheus_config { enable: true }\n")
    (tmp / "session.config").write_text("intra_op_parallelism_threads: 2\n"
                                        "allow_soft_placement: true\n")
    for name in ("platform.config", "thread_pool.config"):
        (tmp / name).write_text("")
    (tmp / "models.config").write_text(  # two models: --num_load_threads=2 loads both at once
        "model_config_list {\n"
        f'  config {{ name: "hpt" base_path: "{model_dirs["hpt"]}" model_platform: "tensorflow"\n'
        '           version_labels { key: "next" value: 99999 } }\n'
        f'  config {{ name: "hpt_too" base_path: "{model_dirs["hpt"]}" }}\n'
        "}\n")
    flags = [f"--{name}={value.format(tmp=tmp, rest_port=helpers.free_port())}"
             for name, value in TF_SERVING_FLAGS.items() if value is not None]
    server = helpers.ServerProcess(flags, str(tmp), "every_flag").wait_ready()
    yield server, certificate, tmp
    server.stop()


def _tls_channel(target: str, certificate: str) -> grpc.Channel:
    return grpc.secure_channel(
        target, grpc.ssl_channel_credentials(root_certificates=certificate.encode()),
        options=[("grpc.ssl_target_name_override", TLS_NAME)])


def _predict(channel, x: float) -> predict_pb2.PredictResponse:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "hpt"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([x], dtype=tf.float32))
    return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)


def test_every_flag_at_once_starts_a_server_with_a_notice_per_flag_without_effect(
        every_flag_server):
    server, _, _ = every_flag_server
    log = server.stderr()
    for name in NOT_APPLICABLE:
        assert f"--{name}=" in log and NOT_APPLICABLE[name] in log, name
    assert "--model_name and --model_base_path are ignored" in log
    assert "only the thread counts of a ConfigProto apply here; ignored: allow_soft_placement" \
        in log
    for model in ("hpt", "hpt_too"):
        r = requests.post(f"{server.rest_url}/v1/models/{model}:predict",
                          json={"instances": [1.0]}, timeout=30)
        assert r.json() == {"predictions": [2.5]}


def test_tls_grpc_with_a_self_signed_certificate_and_plaintext_refused(every_flag_server):
    server, certificate, tmp = every_flag_server
    with _tls_channel(server.grpc_target, certificate) as channel:
        response = _predict(channel, 4.0)
    # --enable_serialization_as_tensor_content: packed bytes, not float_val.
    assert response.outputs["y"].tensor_content and not response.outputs["y"].float_val
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [4.0]
    with _tls_channel(f"unix:{tmp}/grpc.sock", certificate) as channel:
        assert tf.make_ndarray(_predict(channel, 2.0).outputs["y"]).tolist() == [3.0]
    with grpc.insecure_channel(server.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            _predict(channel, 1.0)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_grpc_health_service_reports_both_services_serving(every_flag_server):
    server, certificate, _ = every_flag_server
    with _tls_channel(server.grpc_target, certificate) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("PredictionService", "ModelService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_cors_preflight_and_headers_as_tf_serving(every_flag_server):
    server, _, _ = every_flag_server
    url = server.rest_url + "/v1/models/hpt:predict"
    cors = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, GET",
            "Access-Control-Allow-Headers": "Content-Type"}
    preflight = requests.options(url, headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"}, timeout=30)
    assert preflight.status_code == 200
    assert {k: preflight.headers.get(k) for k in cors} == cors
    no_origin = requests.options(url, timeout=30)
    assert no_origin.status_code == 400
    assert no_origin.json() == {"error": "Origin header is missing in CORS preflight"}
    answer = requests.post(url, json={"instances": [1.0]}, timeout=30)
    assert {k: answer.headers.get(k) for k in cors} == cors
    error = requests.post(url, json={}, timeout=30)
    assert error.status_code == 400 and error.headers["Access-Control-Allow-Origin"] == "*"


def test_a_label_may_name_a_version_not_loaded_yet(every_flag_server):
    # --allow_version_labels_for_unavailable_models: "next" -> 99999, not on disk.
    server, _, _ = every_flag_server
    r = requests.post(server.rest_url + "/v1/models/hpt/labels/next:predict",
                      json={"instances": [1.0]}, timeout=30)
    assert r.status_code == 404
    assert r.json() == {"error": "Servable not found for request: Specific(hpt, 99999)"}


def test_without_the_flag_a_label_on_a_missing_version_stops_start_up(model_dirs, tmp_path):
    config = tmp_path / "models.config"
    config.write_text(
        "model_config_list { config { name: \"hpt\" "
        f"base_path: \"{model_dirs['hpt']}\" model_platform: \"tensorflow\" "
        "version_labels { key: \"next\" value: 99999 } } }\n")
    with pytest.raises(StartupError, match="Request to assign label to version 99999 of model "
                                           "hpt, which is not currently available"):
        model_server.serve(model_config_file=str(config))


def test_response_tensors_are_typed_fields_by_default(grpc_channel):
    # As TF Serving without --enable_serialization_as_tensor_content.
    y = _predict(grpc_channel, 4.0).outputs["y"]
    assert list(y.float_val) == [4.0] and not y.tensor_content


@pytest.mark.parametrize("array", [
    np.array([[1.5, -2.0]], np.float32), np.array([1.25], np.float64),
    np.array([1, -2], np.int32), np.array([-3], np.int8), np.array([200], np.uint8),
    np.array([2**40], np.int64), np.array([2**63], np.uint64), np.array([True, False]),
    np.array([1.5], np.float16), np.array([b"a", b"\xff"], object),
], ids=lambda a: str(a.dtype))
def test_response_tensors_of_every_dtype_read_back_typed_or_packed(array):
    for packed in (False, True):
        proto = tensor_proto(array, packed)
        assert bool(proto.tensor_content) == (packed and array.dtype != object)
        back = tf.make_ndarray(proto)
        assert back.dtype == array.dtype and back.tolist() == array.tolist()


@pytest.mark.parametrize("array", [
    np.array([b"a", b"\xff", b""], object), np.array([["caf\u00e9", "b"]], object),
    np.array(["ab", "c"]), np.array([b"ab", b"c"]), np.array(b"x", object),
    np.zeros((0, 3), object), np.array([[b"a"], ["b"]], object),
], ids=lambda a: f"{a.dtype}{a.shape}")
def test_string_response_tensors_are_the_protos_tensorflow_writes(array):
    assert tensor_proto(array) == tf.make_tensor_proto(array)


def _two_meta_graph_model(path: str) -> None:
    """A TF1 SavedModel with MetaGraphs tagged {serve} (y = x + 1) and {serve, gpu}
    (y = x + 100)."""
    builder = tf.compat.v1.saved_model.Builder(path)
    for tags, offset in (([tf.saved_model.SERVING], 1.0), ([tf.saved_model.SERVING, "gpu"], 100.0)):
        with tf.Graph().as_default(), tf.compat.v1.Session() as session:
            x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
            y = tf.identity(x + offset, name="y")
            signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
            signatures = {"serving_default": signature}
            if offset == 1.0:
                builder.add_meta_graph_and_variables(session, tags, signature_def_map=signatures)
            else:
                builder.add_meta_graph(tags, signature_def_map=signatures)
    builder.save()


def test_saved_model_tags_choose_the_meta_graph(tmp_path):
    _two_meta_graph_model(str(tmp_path / "tags" / "1"))
    for tags, expected in (("serve", 3.0), ("gpu,serve", 102.0)):
        with model_server.serve(str(tmp_path / "tags"), model_name="m",
                                saved_model_tags=tags) as server:
            r = requests.post(server.rest_url + "/v1/models/m:predict",
                              json={"instances": [2.0]}, timeout=30)
            assert r.json() == {"predictions": [expected]}, tags
    with pytest.raises(StartupError, match="has no MetaGraph tagged 'serve,tpu'"):
        model_server.serve(str(tmp_path / "tags"), model_name="m", saved_model_tags="serve,tpu")


def test_a_failed_load_is_retried_as_the_flags_say(model_dirs, tmp_path):
    # Version 1 is unreadable at start-up and mended 0.3 s later: retried, it serves.
    base = tmp_path / "retried"
    shutil.copytree(os.path.join(model_dirs["staged"], "1"), base / "1")
    pb = base / "1" / "saved_model.pb"
    good = pb.read_bytes()
    pb.write_bytes(good[: len(good) // 2])
    threading.Timer(0.3, pb.write_bytes, [good]).start()
    with model_server.serve(str(base), model_name="retried", max_num_load_retries=5,
                            load_retry_interval_micros=200_000,
                            file_system_poll_wait_seconds=0) as server:
        r = requests.post(server.rest_url + "/v1/models/retried:predict",
                          json={"instances": [0.0]}, timeout=30)
        assert r.json() == {"predictions": [1.0]}


def test_thread_flags_bound_concurrent_requests(model_dirs, tmp_path, helpers):
    # Batches wait 0.5 s for more rows: two concurrent requests would share one call.
    params = tmp_path / "batching.config"
    params.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 500000 }\n")
    with model_server.serve(model_dirs["hpt"], model_name="hpt", enable_batching=True,
                            batching_parameters_file=str(params), rest_api_num_threads=1,
                            grpc_max_threads=1) as server:
        metrics = server.server.metrics

        def calls() -> int:
            return sum(int(float(line.rsplit(" ", 1)[1])) for line in
                       metrics.page().decode().splitlines()
                       if line.startswith(":tfbake:serving:model_call_count"))

        before = calls()
        answers = helpers.run_threads(2, lambda i: requests.post(
            server.rest_url + "/v1/models/hpt:predict", json={"instances": [float(i)]},
            timeout=30).json())
        assert answers == [{"predictions": [2.0]}, {"predictions": [2.5]}]
        assert calls() - before == 2  # --rest_api_num_threads=1: one after the other

        with grpc.insecure_channel(server.grpc_target) as channel:
            outcomes = helpers.run_threads(2, lambda i: _predict(channel, 1.0))
        refused = [o for o in outcomes if isinstance(o, grpc.RpcError)]
        assert len(refused) == 1  # --grpc_max_threads=1: the second call is refused
        assert refused[0].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
