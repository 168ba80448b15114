"""Fidelity against diversity: what the decoder is conditioned on, and its guidance scale.

The paper's section 5 compares unCLIP (prior + decoder) with GLIDE, which decodes from the
caption alone, and finds that unCLIP keeps its diversity as guidance rises while GLIDE's
samples collapse onto one look (its Figures 9-10 and the human evaluations). Here the
same decoder plays both parts: conditioned on a prior's z_i, it is unCLIP; with z_i
dropped (it was trained with z_i zeroed 10% of the time and the caption dropped 50%), it
is a GLIDE-like caption-conditioned model, so the comparison isolates the conditioning.

    pipe, evaluator = load_unclip("shapes"), load_evaluator("shapes")
    conditioning_scores(pipe, evaluator, ("caption", "diffusion"), guidance=3.0, seed=0)
    guidance_sweep(pipe, evaluator, guidances=(1, 3, 8), seed=0)

Fidelity is read by the evaluator (independent of CLIP): does the image show the shape
and colour the caption states (and the size and position, when stated)? Diversity is
measured across the samples of one caption: RMS pixel distance, and the entropy (bits)
of attributes the caption leaves open: size (2 values, at most 1 bit), position (5, at
most 2.32 bits) and the background tint, which no caption ever mentions (4, at most 2).
"""
from __future__ import annotations

import numpy as np
import torch

from .evaluate import attribute_entropy, pixel_diversity, text_prompts, text_to_image_scores
from .pipeline import CONDITIONINGS

CONDITIONING_NAMES = {"caption": "caption only (GLIDE-like)", "z_t": "text embedding z_t",
                      "diffusion": "diffusion prior z_i", "autoregressive": "autoregressive prior z_i",
                      "image": "z_i of the true image (control)"}


def sample_grid(pipe, captions: list[str], prior: str, samples: int, seed: int,
                guidance: float | None = None, upsample: bool = False) -> torch.Tensor:
    """samples draws for each caption: images [S, N, 3, r, r] (base resolution unless
    upsample). Draw j uses seed + 1000 * j for both the prior and the decoder, so two
    conditionings (or two guidance scales) see the same seeds."""
    return torch.stack([pipe.generate(captions, prior=prior, seed=seed + 1000 * j, decoder_guidance=guidance,
                                      upsample=upsample) for j in range(samples)])


def grid_scores(evaluator, images: torch.Tensor, stated: list[dict]) -> dict[str, float]:
    """Fidelity and diversity of images [S, N, 3, r, r] drawn for N captions stating `stated`.

    Returns {"shape+color", "all": accuracy over all S * N images; "diversity": RMS pixel
    distance between samples of one caption; "size_entropy", "position_entropy": over the
    captions that leave that attribute open (NaN if none does); "background_entropy";
    "open_entropy": their sum, the semantic diversity}."""
    s, n = images.shape[:2]
    preds = [evaluator.predict(x, objects=1) for x in images]                   # [S][N]
    flat = [p for row in preds for p in row]
    sc = text_to_image_scores(flat, stated * s)
    per_caption = [[preds[j][i] for j in range(s)] for i in range(n)]
    out = {"shape+color": sc["shape+color"], "all": sc["all"],
           "diversity": pixel_diversity(images) if s > 1 else 0.0}
    for key in ("size", "position", "background"):
        open_ = [c for c, st in zip(per_caption, stated) if key not in st]
        out[f"{key}_entropy"] = attribute_entropy(open_, key) if open_ else float("nan")
    # semantic diversity in one number: what varies among the things the caption leaves open
    out["open_entropy"] = float(np.nansum([out[f"{k}_entropy"] for k in ("size", "position", "background")]))
    return out


def _check(conditionings, samples: int, n_captions: int) -> None:
    unknown = [c for c in conditionings if c not in CONDITIONINGS]
    if unknown:
        raise ValueError(f"unknown conditioning(s) {unknown}; choose from {list(CONDITIONINGS)}")
    if samples < 2:
        raise ValueError(f"samples must be at least 2 to measure diversity, got {samples}")
    if n_captions < 1:
        raise ValueError(f"n_captions must be at least 1, got {n_captions}")


def conditioning_scores(pipe, evaluator, conditionings=CONDITIONINGS, guidance: float | None = None,
                        n_captions: int = 50, samples: int = 4, seed: int = 0,
                        p_size: float = 0.5, p_position: float = 0.5) -> dict[str, dict]:
    """The paper's "importance of the prior" (section 5.1): the same decoder fed the
    caption alone, the text embedding z_t in place of z_i, or a prior's z_i.

    n_captions fresh one-object captions of seen shape x colour pairs (shape and colour
    always stated, size and position each with probability p_size / p_position), samples
    draws of each at base resolution. Returns {conditioning: grid_scores(...)}."""
    _check(conditionings, samples, n_captions)
    captions, stated = text_prompts(n_captions, seed=seed, split="train", p_size=p_size, p_position=p_position)
    return {cond: grid_scores(evaluator, sample_grid(pipe, captions, cond, samples, seed, guidance), stated)
            for cond in conditionings}


def guidance_sweep(pipe, evaluator, guidances=(1.0, 2.0, 3.0, 5.0, 8.0), conditionings=("diffusion", "caption"),
                   n_captions: int = 50, samples: int = 4, seed: int = 0) -> dict[str, dict[float, dict]]:
    """Fidelity and diversity against the decoder's guidance scale, for unCLIP (a prior's
    z_i) and the GLIDE-like caption-only decoder: {conditioning: {guidance: grid_scores}}.

    Every guidance sees the same captions and seeds, so the prior draws the same z_i for
    each guidance and only the decoder's guidance changes, as in the paper's Figure 9.
    Captions state shape and colour only, leaving size, position and background open."""
    _check(conditionings, samples, n_captions)
    if not guidances or min(guidances) < 0:
        raise ValueError(f"guidances must be a non-empty list of scales >= 0, got {guidances}")
    captions, stated = text_prompts(n_captions, seed=seed, split="train", p_size=0.0, p_position=0.0)
    return {cond: {float(g): grid_scores(evaluator, sample_grid(pipe, captions, cond, samples, seed, float(g)), stated)
                   for g in guidances}
            for cond in conditionings}


def keeps_diversity(sweep: dict[float, dict], key: str = "diversity") -> float:
    """Diversity at the highest guidance as a share of the diversity at the lowest (1.0:
    none lost). sweep: {guidance: grid_scores} of one conditioning."""
    lo, hi = min(sweep), max(sweep)
    base = sweep[lo][key]
    return float(sweep[hi][key] / base) if base > 0 else float("nan")


def entropy_bound(key: str) -> float:
    """The largest possible entropy (bits) of an attribute: log2 of its number of values."""
    from .world import ShapesWorld

    return float(np.log2(len(ShapesWorld.vocabulary[key])))
