"""Edits: redraw a masked region of an image from a caption or an image embedding.

DALL-E 2's edits (after GLIDE) keep every pixel outside a mask and generate the inside so
that the whole image fits a description. Here by sampling (RePaint, Lugmayr et al. 2022):
the shipped decoder, untouched, draws the region while the kept pixels are imposed at
every step at the step's noise level (`GaussianDiffusion.repaint_sample`); the upsamplers
then enlarge the result and the kept pixels of the input are composited back at every
stage, so they are kept exactly at every resolution.

    pipe = load_unclip("shapes")
    mask = box_mask(0, 0, 16, 32, size=32)                        # the left half: [1, 1, 32, 32]
    out = pipe.inpaint(image, mask, caption="a blue star on the left")
    out = pipe.inpaint(image, mask, z_i=pipe.clip.encode_image(other_image))

A mask is 1 (True) where the image is redrawn and 0 where it is kept: a bool or float
tensor [N, 1, H, W] (or [1, H, W], [H, W]; float values in [0, 1] blend), or a PIL image
(white: redraw), at the input's resolution or any other square size (it is resized).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .checks import check_int
from .images import center_crop


def box_mask(x0: int, y0: int, x1: int, y1: int, size: int = 32, n: int = 1) -> torch.Tensor:
    """A rectangular mask [n, 1, size, size] (float, 1 inside): columns x0..x1 - 1 and rows
    y0..y1 - 1 in pixels of a size x size image (x1, y1 exclusive, as in slicing)."""
    size = check_int(size, "size", 1, hint="the mask's side in pixels")
    n = check_int(n, "n", 1, hint="the number of masks")
    coords = {}
    for name, value in (("x0", x0), ("y0", y0), ("x1", x1), ("y1", y1)):
        coords[name] = check_int(value, name, 0, size, hint=f"a pixel coordinate in [0, {size}] of a {size} px image")
    for lo, hi in (("x0", "x1"), ("y0", "y1")):
        if coords[hi] <= coords[lo]:
            raise ValueError(f"box_mask: {hi} ({coords[hi]}) must be greater than {lo} ({coords[lo]}): the box "
                             f"covers {lo}..{hi} - 1")
    mask = torch.zeros(n, 1, size, size)
    mask[:, :, coords["y0"]:coords["y1"], coords["x0"]:coords["x1"]] = 1
    return mask


def as_mask(mask, n: int, name: str = "mask") -> torch.Tensor:
    """A checked mask [n, 1, S, S] float in [0, 1] (1: redraw) from a bool / float tensor or
    array [N or 1, 1, S, S], [1, S, S] or [S, S], or a PIL image (its luminance; white:
    redraw). One mask serves a whole batch; masks that are not square are centre-cropped."""
    if isinstance(mask, Image.Image):
        mask = torch.from_numpy(np.asarray(mask.convert("L"), dtype=np.float32) / 255)
    elif isinstance(mask, np.ndarray):
        if mask.dtype == object:
            raise TypeError(f"{name}: a numpy array of objects; give a bool or float array [N, 1, H, W]")
        mask = torch.from_numpy(mask.copy())
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a bool or float tensor [N, 1, H, W] (1: redraw), a numpy array or a PIL "
                        f"image, e.g. box_mask(0, 0, 16, 32), got {type(mask).__name__}")
    if mask.dim() == 2:
        mask = mask[None, None]
    elif mask.dim() == 3:
        if mask.shape[0] != 1:
            raise ValueError(f"{name}: a 3-D mask must be [1, H, W], got {list(mask.shape)}; masks have one channel"
                             " (give [N, 1, H, W] for one mask per image)")
        mask = mask[None]
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"{name} must have one channel, [N, 1, H, W], got shape {list(mask.shape)}")
    if mask.shape[0] not in (1, n):
        raise ValueError(f"{name}: {mask.shape[0]} masks for {n} images; give one mask, or one per image")
    if min(mask.shape[-2:]) < 1:
        raise ValueError(f"{name} is empty, shape {list(mask.shape)}")
    if mask.dtype == torch.bool:
        mask = mask.float()
    elif mask.dtype == torch.uint8:
        raise TypeError(f"{name} is uint8: give a bool mask, or a float mask in [0, 1] (mask.float() / 255 for "
                        "0..255 values)")
    elif not mask.is_floating_point():
        raise TypeError(f"{name} must be bool or float, got {mask.dtype}; use mask.bool() or mask.float()")
    mask = mask.float()
    if not torch.isfinite(mask).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    lo, hi = float(mask.min()), float(mask.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"{name} values must lie in [0, 1] (1: redraw, 0: keep), got [{lo:.3g}, {hi:.3g}]")
    return center_crop(mask).expand(n, -1, -1, -1).contiguous()


def mask_at(mask: torch.Tensor, size: int) -> torch.Tensor:
    """mask [N, 1, S, S] at size x size: a pixel is redrawn as much as the most redrawn part
    of the area it covers (max pooling down, nearest up), so a kept pixel at any resolution
    is one the mask kept entirely."""
    s = mask.shape[-1]
    if s == size:
        return mask
    if s > size and s % size == 0:
        return F.max_pool2d(mask, s // size)
    if s < size and size % s == 0:
        return F.interpolate(mask, scale_factor=size // s, mode="nearest")
    # other ratios: a finer grid that both sizes divide nearly, then the same max pooling
    return F.adaptive_max_pool2d(F.interpolate(mask, size=(size * 4, size * 4), mode="nearest"), size)


def random_masks(n: int, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training masks for an inpainting decoder: [n, 1, size, size] (1: redraw), each one of
    a box (45%: sides a quarter to three quarters of the image, anywhere), a half of the
    image (25%), a free-form blob of two overlapping discs (25%) or the whole image (5%, so
    the decoder still draws from nothing). Drawn for the whole batch at once (`batch_rand`),
    so processes that split a batch draw the single-process masks."""
    from .distributed import batch_rand

    p = batch_rand((n, 7), generator).double()                                   # [n, 7] in [0, 1)
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64) + 0.5,
                            torch.arange(size, dtype=torch.float64) + 0.5, indexing="ij")
    ys, xs = ys / size, xs / size                                                  # [S, S] in (0, 1)
    v = lambda j: p[:, j, None, None]  # noqa: E731
    w, h = 0.25 + 0.5 * v(1), 0.25 + 0.5 * v(2)
    x0, y0 = v(3) * (1 - w), v(4) * (1 - h)
    box = (xs >= x0) & (xs < x0 + w) & (ys >= y0) & (ys < y0 + h)
    side = (v(1) * 4).floor()
    half = torch.where(side == 0, xs < 0.5, torch.where(side == 1, xs >= 0.5, torch.where(side == 2, ys < 0.5,
                                                                                         ys >= 0.5)))
    r1, r2 = 0.12 + 0.18 * v(5), 0.12 + 0.18 * v(6)
    blob = (((xs - v(1)) ** 2 + (ys - v(2)) ** 2) < r1 ** 2) | (((xs - v(3)) ** 2 + (ys - v(4)) ** 2) < r2 ** 2)
    kind = v(0)
    mask = torch.where(kind < 0.45, box, torch.where(kind < 0.70, half, torch.where(kind < 0.95, blob, True)))
    return mask[:, None].float()


def composite(generated: torch.Tensor, original: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """generated inside the mask, original outside it, blended where the mask is fractional:
    [N, 3, R, R] each, mask [N, 1, R, R]. Kept pixels (mask 0) are original's bit for bit."""
    out = original + mask * (generated - original)
    return torch.where(mask == 0, original, torch.where(mask == 1, generated, out))


def seam_energy(images: torch.Tensor, mask: torch.Tensor, width: int = 1) -> torch.Tensor:
    """Mean gradient magnitude [N] of images [N, 3, R, R] on the mask's border: the pixels
    within `width` of where the mask changes (mask [N, 1, R, R], binarised at 0.5). A seam
    shows up as more energy there than the same border has in a real image."""
    m = (mask > 0.5).float()
    k = 2 * width + 1
    grown = F.max_pool2d(m, k, stride=1, padding=width)
    shrunk = -F.max_pool2d(-m, k, stride=1, padding=width)
    border = (grown - shrunk)[:, 0] > 0                                                # [N, R, R]
    gx = F.pad(images[..., :, 1:] - images[..., :, :-1], (0, 1, 0, 0))
    gy = F.pad(images[..., 1:, :] - images[..., :-1, :], (0, 0, 0, 1))
    energy = (gx ** 2 + gy ** 2).sum(1).sqrt()                                         # [N, R, R]
    counts = border.flatten(1).sum(1).clamp(min=1)
    return (energy * border).flatten(1).sum(1) / counts


# ----------------------------------------------------------------------------- measuring edits

HALVES = {"left": (0, 0, 2, 4), "right": (2, 0, 4, 4), "top": (0, 0, 4, 2), "bottom": (0, 2, 4, 4)}


def half_mask(position: str, size: int) -> torch.Tensor:
    """The half of a size x size image on the side of `position` ("left", "right", "top",
    "bottom"): the box a user would draw around an object there. [1, 1, size, size]."""
    x0, y0, x1, y1 = (v * size // 4 for v in HALVES[position])
    return box_mask(x0, y0, x1, y1, size)


def replacement_task(world, n: int, seed: int = 0, resolution: int = 32):
    """n two-object scenes, each with one object to replace by a new one at the same place:
    (batch, masks [n, 1, R, R] of that object's half, captions of the new object, the
    target scenes' attributes). The new object differs in shape and colour, keeps the size."""
    rng = np.random.default_rng([seed, 2])
    batch = world.sample(n, objects=2, seed=seed, resolution=resolution)
    res = resolution
    shapes, colors = world.vocabulary["shape"], world.vocabulary["color"]
    masks, captions, targets = [], [], []
    for attrs in batch.attributes:
        edit = int(rng.integers(2))
        old = attrs["objects"][edit]
        new = dict(old, shape=str(rng.choice([s for s in shapes if s != old["shape"]])),
                   color=str(rng.choice([c for c in colors if c != old["color"]])))
        objs = list(attrs["objects"])
        objs[edit] = new
        masks.append(half_mask(old["position"], res))
        captions.append(world.caption(new))
        targets.append(dict(attrs, objects=objs, edit=edit))
    return batch, torch.cat(masks), captions, targets


def inpaint_scores(pipe, evaluator, world, n: int = 64, seed: int = 0, batch_size: int = 16,
                   **inpaint_kwargs) -> dict[str, float]:
    """Replace one object of n fresh two-object scenes (`replacement_task`) with
    pipe.inpaint at base resolution, judged by the evaluator: the share where the asked
    object is read in its place ("asked": shape and colour), where the kept object is read
    unchanged ("kept": shape, colour, size), both ("both"); the PSNR of the kept pixels
    against the input (inf when every one is exact); and the seam: gradient energy on the
    mask's border in the edits over the same border in true renders of the target scenes."""
    res = pipe.base_resolution
    batch, masks, captions, targets = replacement_task(world, n, seed, res)
    images = batch.images
    outs = [pipe.inpaint(images[i:i + batch_size], masks[i:i + batch_size], caption=captions[i:i + batch_size],
                         seed=seed + i, upsample=False, **inpaint_kwargs) for i in range(0, n, batch_size)]
    out = torch.cat(outs)
    predicted = evaluator.predict(out, objects=2)
    asked, kept = [], []
    for p, t in zip(predicted, targets):
        by_pos = {o["position"]: o for o in p["objects"]}
        new, old = t["objects"][t["edit"]], t["objects"][1 - t["edit"]]
        q, k = by_pos.get(new["position"], {}), by_pos.get(old["position"], {})
        asked.append(q.get("shape") == new["shape"] and q.get("color") == new["color"])
        kept.append(all(k.get(key) == old[key] for key in ("shape", "color", "size")))
    keep = (masks == 0).expand_as(out)
    mse = float(((out - images)[keep] ** 2).mean())
    truth = world.render([{k: v for k, v in t.items() if k != "edit"} for t in targets], res, batch.details)
    seam = float(seam_energy(out, masks).mean() / seam_energy(truth, masks).mean())
    return {"asked": float(np.mean(asked)), "kept": float(np.mean(kept)),
            "both": float(np.mean(np.array(asked) & np.array(kept))),
            "kept_psnr": float("inf") if mse == 0 else float(10 * np.log10(1 / mse)),
            "seam": seam, "n": n}
