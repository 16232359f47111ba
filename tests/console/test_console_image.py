"""A PNG uploaded in the console's form reaches a real image export (one small Beam
run, a tiny image_classifier) as tf.Example bytes and comes back as a class."""

from __future__ import annotations

import base64
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import yaml

from tfbake import model_server

CLASSES = ("bright", "dark")
SIZE = 8


def _png(level: int, rng) -> bytes:
    pixels = np.clip(level + rng.integers(-20, 20, (SIZE, SIZE, 1)), 0, 255).astype(np.uint8)
    return tf.io.encode_png(pixels).numpy()


def _write_examples(path, count: int, rng) -> None:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(count):
            label = CLASSES[i % 2]
            example = tf.train.Example(features=tf.train.Features(feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[_png(220 if label == "bright" else 30, rng)])),
                "label": tf.train.Feature(bytes_list=tf.train.BytesList(value=[label.encode()])),
            }))
            writer.write(example.SerializeToString())


@pytest.fixture(scope="module")
def image_server(tmp_path_factory):
    """Transform, train and export a tiny gray-image classifier; serve it in-process."""
    from tfbake import stages
    from tfbake.config import load_config

    tmp = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    _write_examples(tmp / "train.tfrecord", 32, rng)
    _write_examples(tmp / "eval.tfrecord", 8, rng)
    raw = {
        "name": "images",
        "data": {"format": "tfrecord", "train": str(tmp / "train.tfrecord"),
                 "eval": str(tmp / "eval.tfrecord")},
        "features": {"image": {"type": "string", "media": "image"}},
        "label": {"name": "label", "type": "string"},
        "preprocessing": {"image": {"image": {"height": SIZE, "width": SIZE, "channels": 1}}},
        "model": {"type": "image_classifier", "filters": [4], "kernel_size": 3,
                  "hidden_units": [8]},
        "training": {"epochs": 1, "batch_size": 8, "early_stopping": None},
        "artifacts": str(tmp / "artifacts"),
        "beam": {"direct_num_workers": 1, "direct_running_mode": "in_memory"},
    }
    config_path = tmp / "images.yaml"
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    config = load_config(config_path)
    stages.run_transform(config)
    model, _ = stages.run_training(config)
    export_dir = stages.run_export(config, model)
    png = tmp / "upload.png"
    png.write_bytes(_png(220, rng))
    with model_server.serve(os.path.dirname(export_dir), model_name="images") as server:
        yield server, png


def test_uploaded_png_is_classified(console_page, image_server, tmp_path):
    server, png = image_server
    page = console_page(server.rest_url)
    page.locator("#models tbody tr", has_text="AVAILABLE").first.click()
    upload = page.locator("#feature-image")
    assert upload.get_attribute("type") == "file"  # the contract's media: image
    upload.set_input_files(str(png))
    page.wait_for_function(
        "document.querySelector('#feature-image').dataset.b64 !== undefined && "
        "document.querySelector('#json-editor').value.includes('b64')")
    page.click("#send-form")
    page.locator("#answer .class-row").first.wait_for()
    assert set(page.locator("#answer .class-name").all_inner_texts()) == set(CLASSES)
    # The uploaded file's bytes are what the request carried.
    body = json.loads(page.input_value("#json-editor"))
    assert base64.b64decode(body["examples"][0]["image"]["b64"]) == png.read_bytes()
    page.screenshot(path=tmp_path / "image_answer.png", full_page=True)
