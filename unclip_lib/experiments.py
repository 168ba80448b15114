"""The paper's image manipulations, measured with the attribute evaluator.

Each function draws fresh one-object scenes from the world (so the ground truth is known),
runs one manipulation of section 3 through the pipeline at base resolution, and reads the
results with the evaluator, which is independent of CLIP:

    pipe, evaluator = load_unclip("shapes"), load_evaluator("shapes")
    variation_scores(pipe, evaluator, n_images=100, etas=(0, 0.5, 1), seed=0)
    text_diff_scores(pipe, evaluator, key="color", n_images=100, seed=0)
    interpolation_scores(pipe, evaluator, n_pairs=50, steps=5, seed=0)

Everything takes a seed and draws its scenes from it, so a figure can be re-measured on
scenes no test has seen by changing one number.
"""
from __future__ import annotations

import numpy as np
import torch

from .evaluate import attribute_matches, pixel_diversity, psnr
from .images import resize
from .world import COLORS, SHAPES, ShapesWorld, canonical_caption

EDITABLE = {"color": list(COLORS), "shape": list(SHAPES)}


def source_scenes(n: int, seed: int, resolution: int = 64, split: str = "all"):
    """n fresh one-object scenes without written words (a Batch) to manipulate."""
    return ShapesWorld(seed=seed).sample(n, objects=1, resolution=resolution, split=split, word_prob=0.0, seed=0)


def _rate(m: np.ndarray) -> float:
    return float(np.mean(m))


def variation_scores(pipe, evaluator, n_images: int = 100, n: int = 4, etas=(0.0, 0.25, 0.5, 0.75, 1.0),
                     seed: int = 0, batch=None, latent=None) -> dict[float, dict]:
    """For each eta: the share of variations that keep the source's shape, colour and
    size (and shape and colour together), and their pixel diversity (mean RMS distance
    between the n variations of one source). Base resolution. batch: the scenes to use
    (default: n_images fresh ones); latent: their pipe.encode(batch.images), if at hand."""
    batch = batch if batch is not None else source_scenes(n_images, seed)
    latent = latent if latent is not None else pipe.encode(batch.images)
    truth = [a for a in batch.attributes for _ in range(n)]
    out = {}
    for eta in etas:
        images = pipe.variations(latent=latent, n=n, eta=float(eta), seed=seed, upsample=False)
        m = attribute_matches(evaluator.predict(images, objects=1), truth, ("shape", "color", "size"))
        per_source = images.view(-1, n, *images.shape[1:]).transpose(0, 1)      # [n, N, 3, r, r]
        out[float(eta)] = {"shape": _rate(m["shape"]), "color": _rate(m["color"]), "size": _rate(m["size"]),
                           "shape+color": _rate(m["shape"] * m["color"]),
                           "diversity": pixel_diversity(per_source) if n > 1 else 0.0}
    return out


def edit_targets(attributes: list[dict], key: str, seed: int) -> list[str]:
    """A random value of `key` different from each scene's own (the edit's target)."""
    if key not in EDITABLE:
        raise ValueError(f"key must be one of {list(EDITABLE)}, got {key!r}")
    rng = np.random.default_rng(seed)
    return [str(rng.choice([v for v in EDITABLE[key] if v != a[key]])) for a in attributes]


def text_diff_scores(pipe, evaluator, key: str = "color", n_images: int = 100,
                     thetas=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5), seed: int = 0, batch=None, latent=None) -> dict:
    """Text diffs "a red circle" -> "a blue circle" (key="color") or "a red circle" ->
    "a red star" (key="shape") on fresh scenes, each towards a random other value.

    Returns {"per_theta": {theta: {"target": share showing the target value, "kept": share
    keeping the other attribute}}, "edited": share reaching the target at some theta while
    keeping the other attribute there, "first_theta": mean smallest such theta over the
    edited, "psnr_theta0": PSNR (dB) of theta = 0 against the input at base resolution}.
    batch / latent as in variation_scores."""
    other = "shape" if key == "color" else "color"
    batch = batch if batch is not None else source_scenes(n_images, seed)
    targets = edit_targets(batch.attributes, key, seed)
    from_captions = [canonical_caption({"shape": a["shape"], "color": a["color"]}) for a in batch.attributes]
    to_captions = [canonical_caption({"shape": a["shape"], "color": a["color"], key: t})
                   for a, t in zip(batch.attributes, targets)]
    thetas = [float(t) for t in thetas]
    latent = latent if latent is not None else pipe.encode(batch.images)
    images = pipe.text_diff(latent=latent, from_caption=from_captions, to_caption=to_captions, thetas=thetas,
                            seed=seed, upsample=False)
    k, n = len(thetas), len(batch.attributes)
    preds = evaluator.predict(images, objects=1)
    hit = np.array([p[key] == t for p, t in zip(preds, np.repeat(targets, k))]).reshape(n, k)
    kept = np.array([p[other] == a[other] for p, a in zip(preds, np.repeat(batch.attributes, k))]).reshape(n, k)
    success = hit & kept
    first = [thetas[int(np.argmax(row))] for row in success if row.any()]
    out = {"per_theta": {th: {"target": _rate(hit[:, j]), "kept": _rate(kept[:, j])} for j, th in enumerate(thetas)},
           "edited": _rate(success.any(1)), "first_theta": float(np.mean(first)) if first else float("nan")}
    if 0.0 in thetas:
        j = thetas.index(0.0)
        base = resize(batch.images, pipe.base_resolution)
        out["psnr_theta0"] = psnr(images.view(n, k, *images.shape[1:])[:, j], base)
    return out


def interpolation_pairs(n_pairs: int, seed: int, resolution: int = 64):
    """(batch_a, images_b, attributes_b): fresh scenes a, and scenes b that differ from
    each a in both shape and colour (size, position and background drawn afresh)."""
    a = source_scenes(n_pairs, seed, resolution)
    b = source_scenes(n_pairs, seed + 1, resolution)
    shapes, colours = edit_targets(a.attributes, "shape", seed), edit_targets(a.attributes, "color", seed + 1)
    attrs_b = [{**ab, "shape": s, "color": c} for ab, s, c in zip(b.attributes, shapes, colours)]
    return a, ShapesWorld(seed=seed).render(attrs_b, resolution, details=b.details), attrs_b


def interpolation_scores(pipe, evaluator, n_pairs: int = 50, steps: int = 5, modes=("slerp", "fixed"),
                         seed: int = 0) -> dict[str, list[dict]]:
    """Along slerp(z_a, z_b, theta), per step and x_T mode: the share of decoded images
    showing a's shape and colour ("a") and b's ("b"), each the mean over the two attributes.
    Base resolution."""
    a, images_b, attrs_b = interpolation_pairs(n_pairs, seed)
    latents = None
    out = {}
    for mode in modes:
        if mode == "slerp" and latents is None:
            latents = (pipe.encode(a.images), pipe.encode(images_b))
        lat = latents if mode == "slerp" else None
        images = pipe.interpolate(a.images, images_b, steps=steps, x_T=mode, seed=seed, upsample=False,
                                  latents=lat)
        preds = evaluator.predict(images, objects=1)
        rows = []
        for j, th in enumerate(torch.linspace(0, 1, steps).tolist()):
            p = preds[j::steps]
            ma = attribute_matches(p, a.attributes, ("shape", "color"))
            mb = attribute_matches(p, attrs_b, ("shape", "color"))
            rows.append({"theta": round(th, 3),
                         "a": float(np.mean([ma["shape"].mean(), ma["color"].mean()])),
                         "b": float(np.mean([mb["shape"].mean(), mb["color"].mean()])),
                         "a_shape": _rate(ma["shape"]), "a_color": _rate(ma["color"]),
                         "b_shape": _rate(mb["shape"]), "b_color": _rate(mb["color"])})
        out[mode] = rows
    return out
