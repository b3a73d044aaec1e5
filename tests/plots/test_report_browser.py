"""report.html in a real browser, moved away from its folder: every figure loads, nothing errs on the console."""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest

from tests.browser import chromium_path, open_page

if chromium_path() is None and not os.environ.get("CI"):
    pytest.skip("headless Chromium not installed (apt-get install chromium); CI installs it and runs these",
                allow_module_level=True)


def test_the_browser_check_catches_a_missing_image_and_a_script_error(tmp_path):
    """The harness itself: a page with a broken image link and a failing script is reported as broken."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><img src="figures/none.png" alt="x">'
                    "<script>undefined_function()</script></body></html>")
    report = open_page(page)
    assert [i["naturalWidth"] for i in report.images] == [0]
    assert any("undefined_function" in e for e in report.errors), report.errors
    assert any("none.png" in e or "ERR_FILE_NOT_FOUND" in e for e in report.errors), report.errors


def test_report_moved_to_another_folder_shows_every_figure(tmp_path):
    from lit_rcqa.analysis.pipeline import run_analyses
    from tests.analysis.test_pipeline import Source, make_records
    from tests.conftest import make_tiny_qa_model

    records = make_records()
    hidden = {"q4": np.random.default_rng(2).normal(size=(3, len(records[4].tokens), 8))}
    run_analyses(Source(records), tmp_path / "analysis", hidden=hidden, model=make_tiny_qa_model("bert", layers=2),
                 jsd_k=(2,), tsne_examples=1, html_examples=2, progress=False)
    page = (tmp_path / "analysis" / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'\bsrc\s*=\s*["\']?([^"\'\s>]*)', page)
    assert sources and all(s.startswith("data:") for s in sources)  # nothing loaded from outside the page
    moved = tmp_path / "elsewhere" / "report.html"
    moved.parent.mkdir()
    shutil.copy(tmp_path / "analysis" / "report.html", moved)
    shutil.rmtree(tmp_path / "analysis")  # the figures folder is gone too

    report = open_page(moved)
    n_figures = len(list(re.finditer("<figure>", page)))
    assert len(report.images) == n_figures >= 10
    assert all(i["complete"] and i["naturalWidth"] > 0 for i in report.images), report.images
    assert report.errors == []
