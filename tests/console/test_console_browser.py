"""The web console in a real headless Chromium (Debian's, driven by Playwright) on the
real penguins server: model list, the generated form answered with species scores, and
the server's own error message. Screenshots of each state go to the test's temp dir."""

from __future__ import annotations

import json

import pytest
import requests

SPECIES = {"Adelie", "Chinstrap", "Gentoo"}


@pytest.fixture
def page(console_page, served):
    return console_page(served[0])


def _open_penguins(page):
    page.locator("#models tbody tr", has_text="AVAILABLE").first.click()
    page.locator("#feature-island").wait_for()
    page.wait_for_function("document.querySelector('#json-editor').value.includes('examples')")


def test_model_list_shows_the_served_version(page, penguins_run, tmp_path):
    row = page.locator("#models tbody tr", has_text="penguins")
    row.wait_for()
    version = penguins_run.export_dir.rstrip("/").rsplit("/", 1)[-1]
    assert row.locator("td").all_inner_texts()[:3] == ["penguins", version, "AVAILABLE"]
    page.screenshot(path=tmp_path / "model_list.png", full_page=True)


def test_form_from_the_contract_answers_with_species_scores(page, tmp_path):
    _open_penguins(page)
    contract = page.locator("#contract tbody td:first-child").all_inner_texts()
    fields = page.locator("#fields input, #fields textarea")
    assert [fields.nth(i).get_attribute("name") for i in range(fields.count())] == contract
    page.fill("#feature-island", "Biscoe")
    page.fill("#feature-bill_length_mm", "47.5")
    page.fill("#feature-flipper_length_mm", "217")
    page.fill("#feature-body_mass_g", "4900")
    page.click("#send-form")
    page.locator("#answer .class-row").first.wait_for()
    names = page.locator("#answer .class-name").all_inner_texts()
    assert set(names) == SPECIES
    scores = [float(s) for s in page.locator("#answer .score").all_inner_texts()]
    assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-3
    widths = page.locator("#answer .bar").evaluate_all("bars => bars.map(b => b.style.width)")
    assert float(widths[0].rstrip("%")) == pytest.approx(scores[0] * 100, abs=0.01)
    # The request sent is the editor's, a real tf.Example as :classify JSON.
    body = json.loads(page.input_value("#json-editor"))
    assert body["examples"][0]["island"] == "Biscoe"
    assert body["examples"][0]["bill_length_mm"] == 47.5
    assert {s.split()[0] for s in page.locator(".sample-head").all_inner_texts()} == {
        "curl", "python-requests", "python-grpc", "javascript-fetch"}
    page.screenshot(path=tmp_path / "penguins_answer.png", full_page=True)


def test_a_bad_request_shows_the_servers_error(page, served, tmp_path):
    _open_penguins(page)
    page.fill("#feature-island", "")  # island is required by the contract
    page.click("#send-form")
    error = page.locator("#answer .error")
    error.wait_for()
    path = page.inner_text("#request-path").split(" ", 1)[1]
    direct = requests.post(served[0] + path, data=page.input_value("#json-editor"), timeout=30)
    assert direct.status_code == 400
    assert error.inner_text().strip() == direct.json()["error"].strip()
    assert "island" in error.inner_text()
    page.screenshot(path=tmp_path / "error.png", full_page=True)
