"""Figures stay legible at the notebook's width: Jupyter shrinks a figure wider than its output
area (viz.NOTEBOOK_WIDTH) to fit, its text with it, so no figure may be wider and no text may be
set under viz.MIN_FONTSIZE (8 pt), in the library's figures and in the notebooks' own."""
from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from unclip_lib.viz import MIN_FONTSIZE, NOTEBOOK_WIDTH, show_images, similarity_heatmap  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FONTSIZE = re.compile(r"fontsize\s*=\s*(\d+(?:\.\d+)?)")
FIGSIZE = re.compile(r"figsize\s*=\s*\(\s*(\d+(?:\.\d+)?)\s*,")


@pytest.mark.parametrize("ncols,size,fontsize", [(8, 1.6, 6), (4, 2.6, 7), (5, 1.2, 8), (12, 1.0, 9)])
def test_image_grids_fit_the_notebook_with_legible_titles(ncols, size, fontsize):
    import matplotlib.pyplot as plt

    titles = ["thumbs up: medium-dark skin tone -> thumbs up: dark skin tone"] * (2 * ncols)
    fig = show_images(torch.rand(2 * ncols, 3, 8, 8), titles, ncols=ncols, size=size, fontsize=fontsize,
                      suptitle="a grid")
    assert fig.get_size_inches()[0] <= NOTEBOOK_WIDTH + 1e-9
    shown = [ax.title for ax in fig.axes if ax.get_title()]
    assert len(shown) == 2 * ncols and min(t.get_fontsize() for t in shown) >= MIN_FONTSIZE
    # wrapped to the image's width: no title runs into its neighbour's
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    cell = fig.bbox.width / min(ncols, 2 * ncols)
    assert max(t.get_window_extent(renderer).width for t in shown) <= cell
    plt.close(fig)


def test_heatmaps_fit_the_notebook():
    import matplotlib.pyplot as plt

    labels = [f"label {i}" for i in range(30)]
    ax = similarity_heatmap(torch.rand(5, 30), labels[:5], labels)
    assert ax.figure.get_size_inches()[0] <= NOTEBOOK_WIDTH + 1e-9
    assert min(t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels()) >= MIN_FONTSIZE
    plt.close(ax.figure)


def _code_cells():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            if cell["cell_type"] == "code":
                yield path.name, i, "".join(cell["source"])


def test_notebooks_set_no_small_text_and_no_figure_wider_than_the_notebook():
    small = [f"{name} cell {i}: fontsize={v}" for name, i, code in _code_cells()
             for v in FONTSIZE.findall(code) if float(v) < MIN_FONTSIZE]
    wide = [f"{name} cell {i}: figsize width {w}" for name, i, code in _code_cells()
            for w in FIGSIZE.findall(code) if float(w) > NOTEBOOK_WIDTH]
    assert not small + wide, "text under 8 pt or figures Jupyter would shrink:\n" + "\n".join(small + wide)


def test_the_notebook_check_can_fail():
    code = 'fig, ax = plt.subplots(figsize=(14, 6.5)); show_images(x, t, fontsize=6); ax.legend(fontsize = 7.5)'
    assert FONTSIZE.findall(code) == ["6", "7.5"] and FIGSIZE.findall(code) == ["14"]
