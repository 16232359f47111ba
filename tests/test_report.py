"""The evaluation report that ``run_training`` writes beside ``metrics.json``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def report_dir(penguins_run) -> Path:
    return Path(penguins_run.config.trainer_dir)


def test_report_html_references_decodable_pngs(report_dir):
    page = (report_dir / "report.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert set(images) == {"learning_curves.png", "confusion_matrix.png", "per_class.png"}
    for name in images:
        with Image.open(report_dir / name) as image:
            assert image.format == "PNG"
            image.load()  # a full decode, not just the header
            assert image.width >= 200 and image.height >= 150, (name, image.size)
            low, high = image.convert("L").getextrema()
            assert low < high, f"{name} is blank"
    assert "Adelie" in page  # the per-class table names the classes


def test_confusion_matrix_agrees_with_metrics(penguins_run, report_dir):
    report = json.loads((report_dir / "report.json").read_text())
    cm = np.array(report["confusion_matrix"])
    assert report["classes"] == penguins_run.model.head.label_vocabulary
    assert cm.shape == (len(report["classes"]),) * 2
    assert cm.sum() == penguins_run.stats["eval"]["written"]
    metrics = json.loads((report_dir / "metrics.json").read_text())
    assert np.trace(cm) / cm.sum() == pytest.approx(metrics["accuracy"], abs=1e-6)
    assert set(report["history"]) >= {"loss", "val_loss", "accuracy", "val_accuracy"}
