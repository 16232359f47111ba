"""The web console on SavedModels not made by tfbake (no raw feature contract), in a
real headless Chromium: the form is built from each signature's input tensors
(numbers, text, a checkbox for bool, JSON for values with dimensions, a file picker for
``*_bytes``), the request built from it is answered, and every signature is listed."""

from __future__ import annotations

import base64
import json

import pytest
import tensorflow as tf


@pytest.fixture
def page(console_page, other_models_served):
    return console_page(other_models_served[0], height=1100)


def _open(page, model: str, first_field: str):
    page.locator("#models tbody tr", has_text=model).first.click()
    page.locator(f"#feature-{first_field}").wait_for()
    page.wait_for_function("document.querySelector('#json-editor').value.includes('instances')"
                           " || document.querySelector('#json-editor').value.includes('inputs')")


def _answer(page) -> dict:
    """The answer table (output -> value) once the raw answer is shown."""
    page.locator("#answer .raw-answer").wait_for()
    cells = page.locator("#answer table tr td").all_inner_texts()
    return {name: json.loads(value) for name, value in zip(cells[::2], cells[1::2])}


def test_a_tf1_model_form_from_its_tensors(page, tmp_path):
    _open(page, "tf1_linear", "x")
    assert not page.locator("#contract-section").is_visible()  # no contract to show
    assert page.locator("#feature-x").evaluate("e => e.tagName") == "TEXTAREA"  # [3] per row
    assert json.loads(page.input_value("#feature-x")) == [1.0, 1.0, 1.0]
    page.fill("#feature-x", "[1, 0, 2]")
    page.fill("#feature-word", "héllo")
    page.click("#send-form")
    assert _answer(page) == {"score": 7.0, "length": 5}
    body = json.loads(page.input_value("#json-editor"))
    assert body["instances"] == [{"word": "héllo", "x": [1.0, 0.0, 2.0]}]
    assert page.inner_text("#send-form") == "Send"
    page.screenshot(path=tmp_path / "tf1_linear.png", full_page=True)


def test_int32_and_bool_inputs_and_a_signature_without_batch_dimension(page, tmp_path):
    _open(page, "counter", "count")
    options = page.locator("#signature option")
    texts = dict(zip(options.evaluate_all("os => os.map(o => o.value)"),
                     options.all_inner_texts()))
    assert set(texts) == {"serving_default", "scale", "half"}  # every signature listed
    assert page.locator('#signature option[value="half"]').is_disabled()
    assert texts["half"] == "half (not callable here)"
    assert page.inner_text('#signatures tr[data-signature="half"] .reason') == (
        "Not callable here: TF Serving's JSON cannot carry the dtype of x (DT_HALF)")
    assert page.get_attribute("#feature-flag", "type") == "checkbox"
    page.fill("#feature-count", "5")
    page.fill("#feature-pair", "[2, 3]")
    page.check("#feature-flag")
    page.click("#send-form")
    assert _answer(page) == {"total": 10, "flagged": 5}
    page.screenshot(path=tmp_path / "counter.png", full_page=True)

    page.select_option("#signature", "scale")
    page.locator("#feature-factor").wait_for()
    page.fill("#feature-values", "[1, 2, 3]")
    page.fill("#feature-factor", "4")
    page.click("#send-form")
    assert _answer(page) == {"scaled": [4, 8, 12]}  # columnar: the whole tensor
    assert json.loads(page.input_value("#json-editor"))["inputs"] == {
        "values": [1, 2, 3], "factor": 4}
    page.screenshot(path=tmp_path / "counter_scale.png", full_page=True)


def test_a_wrong_value_is_refused_naming_the_input(page):
    _open(page, "counter", "count")
    page.fill("#feature-pair", "[2, 3, 4]")
    page.click("#send-form")
    error = page.locator("#answer .error")
    error.wait_for()
    assert error.inner_text() == ('Input "pair" (int32) takes values of shape [2] per '
                                  "instance, got [3]")


def test_an_uploaded_png_reaches_a_bytes_input(page, tmp_path):
    white = tmp_path / "white.png"
    white.write_bytes(tf.io.encode_png(tf.fill([4, 4, 1], tf.constant(255, tf.uint8))).numpy())
    _open(page, "images", "image_bytes")
    upload = page.locator("#feature-image_bytes")
    assert upload.get_attribute("type") == "file"
    upload.set_input_files(str(white))
    page.wait_for_function(
        "document.querySelector('#json-editor').value.includes("
        f"'{base64.b64encode(white.read_bytes()).decode()[:40]}')")
    page.click("#send-form")
    assert _answer(page) == {"brightness": 1.0}
    page.screenshot(path=tmp_path / "images.png", full_page=True)
