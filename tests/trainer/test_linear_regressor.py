"""The classic linear export example: ``LinearRegressor`` on ``y = 2x + 10 + noise``,
through a real Beam + tf.Transform run, training and the export, recovers weight 2 and
bias 10 in the user's units, with the label passed through and with it normalized by
the ``preprocessing_fn`` (``tft.scale_to_z_score``: TFT analyzers).

The weight and bias are read from the export's ``regression`` signature (``outputs``
at x = 0 and x = 1), so they include every step, the undoing of the normalization too.
Noise sd 0.5 over 400 rows with x in [-5, 5] puts the least-squares line within about
0.01 (weight) and 0.03 (bias) of the truth; the tolerances (0.05, 0.15) leave room for
where training stops.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from tfbake import serving_input, trainer, transform

WEIGHT, BIAS, NOISE_SD = 2.0, 10.0, 0.5
WEIGHT_TOLERANCE, BIAS_TOLERANCE = 0.05, 0.15
RAW_FEATURE_SPEC = {
    "x": tf.io.FixedLenFeature([], tf.float32),
    "y": tf.io.FixedLenFeature([], tf.float32),
}
SERVING_FEATURE_SPEC = serving_input.without(RAW_FEATURE_SPEC, ["y"])
# Numbers pass through: x and, unless normalized, the label y.
PASS_THROUGH = transform.build_preprocessing_fn(RAW_FEATURE_SPEC, {})


def _normalizing_preprocessing_fn(inputs: dict) -> dict:
    """As PASS_THROUGH, with the label z-scored by TFT analyzers (mean, var)."""
    outputs = PASS_THROUGH(inputs)
    outputs["y"] = tft.scale_to_z_score(outputs["y"])
    return outputs


PREPROCESSING_FNS = {
    "label_passed_through": PASS_THROUGH,
    "label_z_scored": _normalizing_preprocessing_fn,
}


def _rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        x = rng.uniform(-5, 5)
        rows.append({"x": round(x, 4), "y": round(WEIGHT * x + BIAS + rng.gauss(0, NOISE_SD), 4)})
    return rows


TRAIN_ROWS, EVAL_ROWS = _rows(400, seed=0), _rows(100, seed=1)


@pytest.fixture(scope="module", params=list(PREPROCESSING_FNS))
def transformed(request, beam_transform, tmp_path_factory):
    """One Beam run per label treatment; returns (treatment, tft_output, transform dir)."""
    tmp = tmp_path_factory.mktemp(request.param)
    tft_output = beam_transform(
        tmp, RAW_FEATURE_SPEC, PREPROCESSING_FNS[request.param], TRAIN_ROWS, EVAL_ROWS
    )
    return request.param, tft_output, str(tmp / "transform")


@pytest.fixture(scope="module")
def trained(transformed, tmp_path_factory):
    """The LinearRegressor trained on the module's transform output, and its export."""
    _, tft_output, transform_dir = transformed
    tf.keras.utils.set_random_seed(0)
    model = trainer.LinearRegressor(tft_output, "y", optimizer="sgd", learning_rate=0.02)
    train_fn = trainer.make_input_fn(
        transform.data_pattern(transform_dir, "train"), tft_output, "y", shuffle=True, seed=0
    )
    model.train(train_fn, epochs=60)
    export_dir = model.export_saved_model(
        str(tmp_path_factory.mktemp("export")),
        serving_input.build_parsing_serving_input_fn(SERVING_FEATURE_SPEC),
    )
    return model, export_dir


def _served_line(export_dir: str) -> tuple[float, float]:
    """(weight, bias) as the export answers: outputs(1) - outputs(0), outputs(0)."""
    regress = tf.saved_model.load(export_dir).signatures["regression"]
    examples = serving_input.serialize_examples([{"x": 0.0}, {"x": 1.0}], SERVING_FEATURE_SPEC)
    at_0, at_1 = regress(inputs=tf.constant(examples))["outputs"].numpy()[:, 0]
    return float(at_1 - at_0), float(at_0)


def test_the_export_recovers_weight_2_and_bias_10_in_user_units(transformed, trained):
    weight, bias = _served_line(trained[1])
    print(f"{transformed[0]}: weight {weight:.4f}, bias {bias:.4f}")
    assert abs(weight - WEIGHT) <= WEIGHT_TOLERANCE
    assert abs(bias - BIAS) <= BIAS_TOLERANCE
    x = np.array([r["x"] for r in TRAIN_ROWS])
    y = np.array([r["y"] for r in TRAIN_ROWS])
    ls_weight, ls_bias = np.polyfit(x, y, 1)  # the best line through this very data
    assert abs(weight - ls_weight) <= WEIGHT_TOLERANCE and abs(bias - ls_bias) <= BIAS_TOLERANCE


def test_the_head_undoes_exactly_the_normalization_of_the_tft_analyzers(transformed, trained):
    treatment, tft_output, _ = transformed
    model = trained[0]
    labels = np.array([r["y"] for r in TRAIN_ROWS])
    if treatment == "label_passed_through":
        assert (model.head.label_mean, model.head.label_std) == (0.0, 1.0)
    else:
        # tft.scale_to_z_score: the training labels' mean and (population) std.
        np.testing.assert_allclose(
            [model.head.label_mean, model.head.label_std], [labels.mean(), labels.std()], rtol=1e-4
        )
        # The trained layer works in normalized units; the export's line is it, undone.
        kernel, layer_bias = model.keras_model.get_layer("linear_logits").get_weights()
        weight, bias = _served_line(trained[1])
        assert abs(float(kernel[0, 0]) * model.head.label_std - weight) < 1e-3
        assert (
            abs(float(layer_bias[0]) * model.head.label_std + model.head.label_mean - bias) < 1e-3
        )


def test_metrics_are_in_user_units(transformed, trained):
    _, tft_output, transform_dir = transformed
    eval_fn = trainer.make_input_fn(transform.data_pattern(transform_dir, "eval"), tft_output, "y")
    metrics = trained[0].evaluate(eval_fn)
    # Noise sd 0.5: the RMSE of a good line is about 0.5 in y's units, normalized or not.
    assert 0.35 < metrics["rmse"] < 0.7, metrics
