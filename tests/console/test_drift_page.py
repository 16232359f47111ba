"""``tfbake drift --html``: the page renders in headless Chromium, one plot per feature,
the drifted ones marked."""

from __future__ import annotations

from tests import traffic_data


def test_drift_page_renders_a_plot_per_feature_and_marks_the_drifted(
        penguins_run, browser, tmp_path, capsys):
    from tfbake.cli import main

    config = penguins_run.config
    evaluation = traffic_data.read_rows(config.data.eval, traffic_data.feature_types(config))
    logs = tmp_path / "logs"
    logs.mkdir()
    shifted = traffic_data.shifted(evaluation, "body_mass_g", "island", "Dream")
    traffic_data.write_classify_log(str(logs / "log.tfrecord"), shifted, "penguins")
    page_path = tmp_path / "drift.html"
    assert main(["drift", str(penguins_run.config_path), "--logs", str(logs),
                 "--html", str(page_path)]) == 1
    capsys.readouterr()
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(page_path.as_uri())
    figures = page.locator("figure")
    assert figures.count() == len(config.features)
    assert page.locator("figure.drift").evaluate_all("fs => fs.map(f => f.id)") == [
        "island", "body_mass_g"]
    widths = page.locator("figure img").evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
    assert all(w > 0 for w in widths)  # every plot decoded
    assert page.locator("h1").inner_text() == "Drift: island, body_mass_g"
    page.screenshot(path=str(tmp_path / "drift.png"), full_page=True)
    page.close()
    assert not errors
