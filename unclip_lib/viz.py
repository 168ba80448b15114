"""Image grids and plots used by the notebooks and the demo."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .images import as_image_batch


def grid(images, nrow: int | None = None, pad: int = 2, scale: int = 1, pad_value: float = 1.0) -> Image.Image:
    """A PIL image of a batch [N, 3, H, W] laid out in rows of `nrow` (nearest upscaling by `scale`)."""
    x = as_image_batch(images)
    if scale > 1:
        x = F.interpolate(x, scale_factor=scale, mode="nearest")
    n, _, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    canvas = torch.full((3, rows * (h + pad) + pad, nrow * (w + pad) + pad), pad_value)
    for i in range(n):
        r, c = divmod(i, nrow)
        canvas[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = x[i]
    return Image.fromarray((canvas.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


# Jupyter draws a figure at 100 dpi and shrinks one wider than its output area (about 9 inches
# in JupyterLab and the classic notebook at their default widths) to fit, its text with it. The
# course's figures are laid out within that width, so that text set at 8 pt reads at 8 pt.
NOTEBOOK_WIDTH = 9.0    # inches
MIN_FONTSIZE = 8        # points, the smallest text of any figure


def show_images(images, titles: list[str] | None = None, ncols: int = 8, size: float = 1.6,
                fontsize: int = MIN_FONTSIZE, suptitle: str | None = None):
    """Matplotlib figure of images [N, 3, H, W] in rows of ncols, with optional titles under
    each. Each image is `size` inches square, less where ncols of them would be wider than the
    notebook (NOTEBOOK_WIDTH); titles are at least MIN_FONTSIZE points, wrapped to the image's
    width (at most three lines). Returns the figure."""
    import matplotlib.pyplot as plt

    x = as_image_batch(images)
    n = len(x)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    size = min(size, NOTEBOOK_WIDTH / ncols)
    fontsize = max(fontsize, MIN_FONTSIZE)
    wrapped = [_wrap(t, title_width(size, fontsize)) for t in titles] if titles else None
    lines = max((t.count("\n") + 1 for t in wrapped), default=0) if wrapped else 0
    title_height = (lines * fontsize * 1.3 + 8) / 72 if lines else 0.0   # inches: the lines and their pad
    top = 0.4 if suptitle else 0.0
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + title_height) + top),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        ax = axes.flat[i]
        ax.imshow(x[i].permute(1, 2, 0).numpy(), interpolation="nearest")
        if wrapped:
            ax.set_title(wrapped[i], fontsize=fontsize)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def title_width(size: float, fontsize: float) -> int:
    """Characters of a title that fit under an image `size` inches wide at `fontsize` points
    (Matplotlib's DejaVu Sans: a lower-case glyph is about 0.65 em wide on average)."""
    return max(6, int(size * 72 / (fontsize * 0.68)))


def _wrap(text: str, width: int, max_lines: int = 3) -> str:
    """text in lines of at most `width` characters (its own line breaks kept), cut with an
    ellipsis after max_lines."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for w in paragraph.split():
            if len(line) + len(w) + 1 > width and line:
                lines.append(line)
                line = w
            else:
                line = f"{line} {w}".strip()
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines - 1] + [lines[max_lines - 1][:max(1, width - 1)] + "…"]
    return "\n".join(lines)


def similarity_heatmap(matrix, row_labels, col_labels, title: str = "", ax=None):
    """Heatmap of a [R, C] similarity matrix with labels."""
    import matplotlib.pyplot as plt

    m = matrix.detach().cpu().numpy() if isinstance(matrix, torch.Tensor) else np.asarray(matrix)
    if ax is None:
        _, ax = plt.subplots(figsize=(min(NOTEBOOK_WIDTH, 0.45 * len(col_labels) + 3), 0.35 * len(row_labels) + 1.5))
    im = ax.imshow(m, cmap="viridis")
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=60, ha="right", fontsize=MIN_FONTSIZE)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=MIN_FONTSIZE)
    ax.set_title(title)
    ax.figure.colorbar(im, ax=ax, fraction=0.03)
    ax.figure.tight_layout()
    return ax


# One colour per attribute value across the course: a colour attribute is drawn in its own
# colour (the world's RGB), any other value in a fixed categorical colour by its vocabulary index.
_CATEGORICAL = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf")


def value_colors(key: str, values) -> list[str]:
    """Matplotlib colours ('#rrggbb') for the values of one attribute, the same in every
    figure: colour names in their own colour, other values by position in `values`."""
    from .world import COLORS

    out = []
    for i, value in enumerate(values):
        if key == "color" and value in COLORS:
            out.append("#%02x%02x%02x" % COLORS[value])
        else:
            out.append(_CATEGORICAL[i % len(_CATEGORICAL)])
    return out
