"""`make site`: the course as static HTML with its committed outputs."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _site_module():
    spec = importlib.util.spec_from_file_location("make_site", ROOT / "scripts" / "make_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_site_pages_carry_the_committed_outputs_and_an_index(tmp_path):
    source = tmp_path / "notebooks"
    source.mkdir()
    shutil.copy(ROOT / "notebooks" / "04_priors.ipynb", source)
    site = _site_module()
    pages = site.build_site(source, tmp_path / "site")
    page = pages[0].read_text()
    nb = json.loads((source / "04_priors.ipynb").read_text())
    images = sum("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))
    assert images >= 1 and page.count("data:image/png;base64") >= images
    index = (tmp_path / "site" / "index.html").read_text()
    assert '<a href="04_priors.html">04 · The two priors' in index
    assert site.main(["--notebooks", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2


def test_every_notebook_opens_with_a_title_and_a_summary():
    site = _site_module()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        title, summary = site.title_and_summary(json.loads(path.read_text()))
        assert title.startswith(path.stem[:2]), (path.name, title)
        assert len(summary) > 20, (path.name, summary)
