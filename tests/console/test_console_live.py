"""The console's model list follows the server live, in a real headless Chromium: a
version label from the model config file, and a new version that fails to load shown
as END with its error beside the version still serving, without reloading the page."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from tests.conftest import serve

MODEL = "penguins_live"


@pytest.fixture
def live_server(penguins_run, tmp_path):
    """A real server on a copy of the penguins export, its version labelled ``stable``,
    polling the base path every second. Yields ``(rest_url, base_path, version)``."""
    version = int(os.path.basename(penguins_run.export_dir))
    base = tmp_path / "exports"
    shutil.copytree(penguins_run.export_dir, base / str(version))
    config = tmp_path / "models.config"
    config.write_text(
        "model_config_list {\n"
        f'  config {{ name: "{MODEL}" base_path: "{base}" model_platform: "tensorflow"\n'
        f'           version_labels {{ key: "stable" value: {version} }} }}\n'
        "}\n"
    )
    flags = [f"--model_config_file={config}", "--file_system_poll_wait_seconds=1"]
    with serve(sys.executable, flags, tmp_path) as (rest, _):
        yield rest, base, version


def _row_texts(page, version: int) -> list[str]:
    row = page.locator(f'#models tbody tr[data-version="{version}"]')
    return row.locator("td").all_inner_texts()


def test_labels_and_a_failed_version_appear_without_a_reload(console_page, live_server,
                                                             tmp_path):
    rest, base, version = live_server
    page = console_page(rest, height=800)
    page.locator(f'#models tbody tr[data-version="{version}"]').wait_for()
    assert _row_texts(page, version) == [MODEL, str(version), "AVAILABLE", "stable"]
    page.evaluate("window.stillTheSamePage = true")

    # A newer version whose graph is cut short: the server keeps the old one serving.
    staging = tmp_path / "staging"
    shutil.copytree(base / str(version), staging)
    graph = staging / "saved_model.pb"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    os.rename(staging, base / str(version + 1))

    failed = page.locator(f'#models tbody tr[data-version="{version + 1}"] td.state-error')
    failed.wait_for(timeout=60_000)
    assert failed.inner_text().startswith("END with error (")
    assert failed.locator(".muted").inner_text().strip()  # the loader's own message
    assert _row_texts(page, version) == [MODEL, str(version), "AVAILABLE", "stable"]
    assert page.evaluate("window.stillTheSamePage") is True  # refreshed in place
    page.screenshot(path=tmp_path / "live_states.png", full_page=True)
