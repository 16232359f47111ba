"""The penguins export: its signatures, and one answer however it is loaded or fed.

Every comparison puts two independent paths side by side: the Beam job's transformed
data through the trained model, the export's signatures on raw serialized examples,
TF Serving's way of loading (the TF1 session loader), saved_model_cli and tfx_bsl's
RunInference.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import textwrap
import time

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from tensorflow.core.protobuf import saved_model_pb2

from tfbake import serving_input, stages, transform
from tfbake.trainer.export import TEMP_PREFIX, remove_stale_temp_dirs

TOLERANCE = 1e-5


def _raw_rows(config, split: str) -> tuple[list[dict], list[str]]:
    """The split's CSV rows as raw feature dicts (label removed) and their labels."""
    path = config.data.train if split == "train" else config.data.eval
    decoder = transform.CsvRowDecoder(
        config.raw_feature_spec(), transform.read_header(path, ","), config.data.csv
    )
    with open(path) as f:
        rows = [decoder.decode_dict(line) for line in f.read().splitlines()[1:]]
    labels = [row.pop(config.label.name) for row in rows]
    return rows, labels


def _examples(config, rows) -> list[bytes]:
    return serving_input.serialize_examples(rows, stages.serving_feature_spec(config))


def _beam_transformed(run, split: str) -> dict[str, np.ndarray]:
    spec = run.model.tft_output.transformed_feature_spec()
    files = sorted(glob.glob(transform.data_pattern(run.config.transform_dir, split)))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1000)
    batches = [tf.io.parse_example(b, spec) for b in dataset]
    return {k: np.concatenate([b[k].numpy() for b in batches]) for k in spec}


def _match_rows(served: dict, beam_rows: dict) -> np.ndarray:
    """For each served row, the index of the Beam row with the same transformed features.

    Asserts that such a row exists (max abs diff <= TOLERANCE over every feature).
    """
    names = sorted(served)
    a = np.stack([served[k].astype(np.float64) for k in names], axis=1)
    b = np.stack([beam_rows[k].astype(np.float64) for k in names], axis=1)
    diff = np.abs(a[:, None, :] - b[None, :, :]).max(axis=2)
    match = diff.argmin(axis=1)
    worst = diff[np.arange(len(a)), match]
    bad = np.flatnonzero(worst > TOLERANCE)
    assert bad.size == 0, (
        f"served rows {bad[:5].tolist()} have no Beam-transformed twin "
        f"(closest differ by {worst[bad[:5]].tolist()} over {names})"
    )
    return match


@pytest.fixture(scope="module")
def eval_examples(penguins_run):
    rows, labels = _raw_rows(penguins_run.config, "eval")
    return rows, labels, _examples(penguins_run.config, rows)


@pytest.fixture(scope="module")
def loaded(penguins_run):
    return tf.saved_model.load(penguins_run.export_dir)


def _signature_defs(export_dir: str) -> dict:
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    return dict(saved_model.meta_graphs[0].signature_def)


def _io(tensor_infos) -> dict:
    return {
        name: (tf.dtypes.as_dtype(info.dtype).name, [d.size for d in info.tensor_shape.dim])
        for name, info in tensor_infos.items()
    }


def test_signatures_follow_the_canned_estimator_table(penguins_run):
    defs = _signature_defs(penguins_run.export_dir)
    k = 3  # Adelie, Chinstrap, Gentoo
    classify = {
        "method": "tensorflow/serving/classify",
        "inputs": {"inputs": ("string", [-1])},
        "outputs": {"classes": ("string", [-1, k]), "scores": ("float32", [-1, k])},
    }
    predict_outputs = {
        "logits": ("float32", [-1, k]),
        "probabilities": ("float32", [-1, k]),
        "class_ids": ("int64", [-1, 1]),
        "classes": ("string", [-1, 1]),
        "all_class_ids": ("int32", [-1, k]),
        "all_classes": ("string", [-1, k]),
    }
    expected = {
        "serving_default": classify,
        "classification": classify,
        "predict": {
            "method": "tensorflow/serving/predict",
            "inputs": {"examples": ("string", [-1])},
            "outputs": predict_outputs,
        },
        "predict_raw": {
            "method": "tensorflow/serving/predict",
            # A nullable feature comes with its count (0: missing, 1: present).
            "inputs": {
                "island": ("string", [-1]),
                "bill_length_mm": ("float32", [-1]),
                "bill_length_mm_count": ("int64", [-1]),
                "bill_depth_mm": ("float32", [-1]),
                "bill_depth_mm_count": ("int64", [-1]),
                "flipper_length_mm": ("float32", [-1]),
                "flipper_length_mm_count": ("int64", [-1]),
                "body_mass_g": ("float32", [-1]),
                "body_mass_g_count": ("int64", [-1]),
                "sex": ("string", [-1]),
                "sex_count": ("int64", [-1]),
                "year": ("int64", [-1]),
            },
            "outputs": predict_outputs,
        },
    }
    for key, want in expected.items():
        got = defs[key]
        assert got.method_name == want["method"], key
        assert _io(got.inputs) == want["inputs"], key
        assert _io(got.outputs) == want["outputs"], key
    transform_features = defs["transform_features"]
    assert _io(transform_features.inputs) == {"examples": ("string", [-1])}
    assert set(transform_features.outputs) == set(penguins_run.config.features)  # no label


def test_classes_are_the_label_vocabulary_and_vocabularies_are_assets(
    penguins_run, loaded, eval_examples
):
    answer = loaded.signatures["classification"](inputs=tf.constant(eval_examples[2][:1]))
    assert sorted(answer["classes"].numpy()[0].astype(str)) == ["Adelie", "Chinstrap", "Gentoo"]
    assets = sorted(os.listdir(os.path.join(penguins_run.export_dir, "assets")))
    assert {"island", "sex", "species"} <= set(assets)


def test_saved_model_cli_answers_with_species_names(
    penguins_run, eval_examples, venv_bin, tmp_path
):
    rows, labels, _ = eval_examples
    picks = [labels.index(s) for s in ("Adelie", "Chinstrap", "Gentoo")]
    examples = [{k: [v] for k, v in rows[i].items()} for i in picks]
    result = subprocess.run(
        [
            os.path.join(venv_bin, "saved_model_cli"),
            "run",
            "--dir",
            penguins_run.export_dir,
            "--tag_set",
            "serve",
            "--signature_def",
            "classification",
            "--input_examples",
            f"inputs={json.dumps(examples)}",
            "--outdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    classes = np.load(tmp_path / "classes.npy", allow_pickle=True).astype(str)
    scores = np.load(tmp_path / "scores.npy")
    predicted = [classes[i][scores[i].argmax()] for i in range(len(picks))]
    assert predicted == ["Adelie", "Chinstrap", "Gentoo"]


def _tf1_session_probabilities(export_dir: str, examples: list[bytes]) -> np.ndarray:
    """As TF Serving loads: the TF1 loader, tags "serve", the signature's tensor names."""
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
        predict = meta_graph.signature_def["predict"]
        return session.run(
            predict.outputs["probabilities"].name, {predict.inputs["examples"].name: examples}
        )


def _run_inference_scores(export_dir: str, examples: list[bytes], out_dir) -> dict:
    """tfx_bsl's RunInference over the raw examples: example -> {class: score}, keyed by
    the example's deterministic serialization (map order is not fixed otherwise)."""
    from tensorflow_serving.apis import prediction_log_pb2
    from tfx_bsl.public.beam import RunInference
    from tfx_bsl.public.proto import model_spec_pb2

    spec = model_spec_pb2.InferenceSpecType(
        saved_model_spec=model_spec_pb2.SavedModelSpec(
            model_path=export_dir, signature_name=["classification"]
        )
    )
    prefix = os.path.join(str(out_dir), "logs")
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        _ = (
            pipeline
            | beam.Create([tf.train.Example.FromString(e) for e in examples])
            | RunInference(spec)
            | beam.Map(lambda log: log.SerializeToString())
            | beam.io.WriteToTFRecord(prefix)
        )
    scores = {}
    for record in tf.data.TFRecordDataset(glob.glob(prefix + "*")):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request, result = log.classify_log.request, log.classify_log.response.result
        for example, classification in zip(
            request.input.example_list.examples, result.classifications, strict=True
        ):
            scores[example.SerializeToString(deterministic=True)] = {
                c.label: c.score for c in classification.classes
            }
    return scores


def test_one_model_one_answer_across_loaders(penguins_run, eval_examples, loaded, tmp_path):
    rows, labels, examples = eval_examples
    batch = tf.constant(examples)
    # (b) tf.saved_model.load, raw serialized examples in.
    served = {k: v.numpy() for k, v in loaded.signatures["predict"](examples=batch).items()}
    served_features = {
        k: v.numpy() for k, v in loaded.signatures["transform_features"](examples=batch).items()
    }
    # (a) the trained model on the Beam job's transformed eval data.
    beam_rows = _beam_transformed(penguins_run, "eval")
    beam_labels = beam_rows.pop(penguins_run.config.label.name)
    beam_logits = penguins_run.model.keras_model(beam_rows, training=False)
    beam_probabilities = tf.nn.softmax(beam_logits).numpy()
    match = _match_rows(served_features, beam_rows)
    assert sorted(match.tolist()) == list(range(len(examples)))  # one to one
    np.testing.assert_allclose(served["probabilities"], beam_probabilities[match], atol=TOLERANCE)
    vocabulary = [c.decode() for c in served["all_classes"][0]]
    assert [vocabulary[i] for i in beam_labels[match]] == labels
    # (c) the TF1 session loader, as TF Serving.
    np.testing.assert_allclose(
        _tf1_session_probabilities(penguins_run.export_dir, examples),
        served["probabilities"],
        atol=TOLERANCE,
    )
    # (d) tfx_bsl RunInference, which picks Classify by the signature's method name.
    inference = _run_inference_scores(penguins_run.export_dir, examples, tmp_path)
    assert len(inference) == len(set(examples))
    for i, example in enumerate(examples):
        key = tf.train.Example.FromString(example).SerializeToString(deterministic=True)
        np.testing.assert_allclose(
            [inference[key][c] for c in vocabulary],
            served["probabilities"][i],
            atol=TOLERANCE,
        )
    accuracy = np.mean(served["classes"][:, 0].astype(str) == np.array(labels))
    assert accuracy >= 0.95


def test_missing_nullable_features_are_served_as_beam_transformed_them(penguins_run, loaded):
    for split in ("train", "eval"):
        rows, _ = _raw_rows(penguins_run.config, split)
        with_gaps = [row for row in rows if len(row) < len(penguins_run.config.features)]
        if not with_gaps:
            continue
        served = loaded.signatures["transform_features"](
            examples=tf.constant(_examples(penguins_run.config, with_gaps))
        )
        beam_rows = _beam_transformed(penguins_run, split)
        beam_rows.pop(penguins_run.config.label.name)
        _match_rows({k: v.numpy() for k, v in served.items()}, beam_rows)
    all_rows = sum((_raw_rows(penguins_run.config, s)[0] for s in ("train", "eval")), [])
    # The palmerpenguins rows with a missing value.
    assert sum(len(r) < len(penguins_run.config.features) for r in all_rows) == 11


def test_predict_raw_takes_named_features_and_agrees_with_examples(
    penguins_run, eval_examples, loaded
):
    rows, _, examples = eval_examples
    spec = stages.serving_feature_spec(penguins_run.config)
    assert any(len(row) < len(spec) for row in rows)  # missing values among them
    columns = serving_input.raw_columns(rows, spec)
    raw = loaded.signatures["predict_raw"](**columns)["probabilities"].numpy()
    parsed = loaded.signatures["predict"](examples=tf.constant(examples))["probabilities"]
    np.testing.assert_allclose(raw, parsed.numpy(), atol=TOLERANCE)


def test_export_survives_deletion_of_the_transform_dir(
    penguins_run, eval_examples, loaded, python, tmp_path
):
    _, _, examples = eval_examples
    expected = loaded.signatures["classification"](inputs=tf.constant(examples[:5]))["scores"]
    transform_dir = penguins_run.config.transform_dir
    moved = str(tmp_path / "moved-transform")
    script = textwrap.dedent(f"""
        import json, sys, tensorflow as tf
        examples = [bytes.fromhex(h) for h in {[e.hex() for e in examples[:5]]!r}]
        model = tf.saved_model.load({penguins_run.export_dir!r})
        scores = model.signatures["classification"](inputs=tf.constant(examples))["scores"]
        print(json.dumps(scores.numpy().tolist()))
    """)
    shutil.move(transform_dir, moved)
    try:
        result = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=180)
    finally:
        shutil.move(moved, transform_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(scores, expected.numpy(), atol=TOLERANCE)


def _versions(export_dir_base) -> list[str]:
    return [n for n in os.listdir(export_dir_base) if n.isdigit()]


def test_a_failing_export_leaves_no_version_folder(penguins_run, tmp_path):
    def broken_serving_input_fn():
        raise RuntimeError("broken serving_input_fn")

    base = tmp_path / "export"
    with pytest.raises(RuntimeError, match="broken serving_input_fn"):
        penguins_run.model.export_saved_model(str(base), broken_serving_input_fn)
    assert _versions(base) == [] and os.listdir(base) == []


def test_a_killed_export_leaves_no_version_folder(penguins_run, python, tmp_path):
    base = tmp_path / "export"
    script = textwrap.dedent(f"""
        from tfbake import stages
        from tfbake.config import load_config
        config = load_config({str(penguins_run.config_path)!r})
        model = stages.load_trained_model(config)
        from tfbake import serving_input
        model.export_saved_model({str(base)!r}, serving_input.build_parsing_serving_input_fn(
            stages.serving_feature_spec(config)))
    """)
    process = subprocess.Popen(
        [python, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (base.exists() and os.listdir(base)):
        time.sleep(0.005)
    assert base.exists() and os.listdir(base), "the export never started"
    assert _versions(base) == [], "a version folder appeared before the export finished"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert _versions(base) == []
    # The next export removes the killed one's hidden folder.
    (stale,) = os.listdir(base)
    assert stale.startswith(TEMP_PREFIX)
    fn = serving_input.build_parsing_serving_input_fn(
        stages.serving_feature_spec(penguins_run.config))
    published = penguins_run.model.export_saved_model(str(base), fn)
    assert os.listdir(base) == [os.path.basename(published)]


def test_only_hidden_folders_untouched_since_the_export_started_are_removed(tmp_path):
    started = time.time()
    stale, writing = tmp_path / f"{TEMP_PREFIX}1-dead", tmp_path / f"{TEMP_PREFIX}2-live"
    for folder in (stale, writing):
        (folder / "variables").mkdir(parents=True)
        (folder / "variables" / "variables.index").write_bytes(b"x")
    for path in (stale / "variables" / "variables.index", stale / "variables", stale):
        os.utime(path, (started - 60, started - 60))
    for path in (writing / "variables", writing):
        os.utime(path, (started - 60, started - 60))
    recent = started + 1  # only its newest file is recent
    os.utime(writing / "variables" / "variables.index", (recent, recent))
    (tmp_path / "7").mkdir()
    assert remove_stale_temp_dirs(str(tmp_path), started) == [str(stale)]
    assert sorted(os.listdir(tmp_path)) == sorted(["7", writing.name])


def test_exports_are_integer_versions_and_a_new_export_is_a_new_version(penguins_run, tmp_path):
    spec = stages.serving_feature_spec(penguins_run.config)
    fn = serving_input.build_parsing_serving_input_fn(spec)
    first = penguins_run.model.export_saved_model(str(tmp_path), fn)
    second = penguins_run.model.export_saved_model(str(tmp_path), fn)
    assert int(os.path.basename(second)) > int(os.path.basename(first)) >= 1_700_000_000
    assert sorted(os.listdir(tmp_path)) == sorted(
        [os.path.basename(first), os.path.basename(second)]
    )


def test_warmup_requests_are_real_prediction_logs(penguins_run, loaded):
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(penguins_run.export_dir, "assets.extra", "tf_serving_warmup_requests")
    logs = [
        prediction_log_pb2.PredictionLog.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(path)
    ]
    kinds = sorted(log.WhichOneof("log_type") for log in logs)
    assert kinds == ["classify_log", "classify_log", "predict_log", "predict_log"]
    for log in logs:
        if log.WhichOneof("log_type") == "classify_log":
            request = log.classify_log.request
            examples = [e.SerializeToString() for e in request.input.example_list.examples]
            assert request.model_spec.signature_name in ("classification", "serving_default")
            answer = loaded.signatures[request.model_spec.signature_name](
                inputs=tf.constant(examples)
            )
        else:
            request = log.predict_log.request
            examples = list(tf.make_ndarray(request.inputs["examples"]))
            answer = loaded.signatures[request.model_spec.signature_name](
                examples=tf.constant(examples)
            )
        assert len(examples) == penguins_run.config.export.warmup_examples
        assert all(v.shape[0] == len(examples) for v in answer.values())
