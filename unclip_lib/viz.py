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


def show_images(images, titles: list[str] | None = None, ncols: int = 8, size: float = 1.6,
                fontsize: int = 7, suptitle: str | None = None):
    """Matplotlib figure of images with optional titles under each. Returns the figure."""
    import matplotlib.pyplot as plt

    x = as_image_batch(images)
    n = len(x)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + (0.35 if titles else 0))),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        ax = axes.flat[i]
        ax.imshow(x[i].permute(1, 2, 0).numpy(), interpolation="nearest")
        if titles:
            ax.set_title(_wrap(titles[i], 22), fontsize=fontsize)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width and line:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    lines.append(line)
    return "\n".join(lines[:4])


def similarity_heatmap(matrix, row_labels, col_labels, title: str = "", ax=None):
    """Heatmap of a [R, C] similarity matrix with labels."""
    import matplotlib.pyplot as plt

    m = matrix.detach().cpu().numpy() if isinstance(matrix, torch.Tensor) else np.asarray(matrix)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.45 * len(col_labels) + 3, 0.35 * len(row_labels) + 1.5))
    im = ax.imshow(m, cmap="viridis")
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=7)
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
