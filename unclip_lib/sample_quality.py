"""How clean and how close to real the samples are, and what each sampler step buys.

Three measurements that need no attribute labels beyond the scenes themselves, for any
stack and its world (the world object supplies the scenes and their true renders):

- `texture_scores`: decodings of fresh scenes' z_i against the true renders of the same
  scenes, as the share of spectral power on the lines a 2x2 folding UNet (and the cascade
  above it) imprints (`evaluate.texture_ratio`: 1.0 is no excess texture);
- `distance_scores`: text to image against the true renders of the same captions, as the
  Frechet and kernel distances in the evaluator's feature space plus attribute accuracy;
- `solver_sweep`: the same figures against model evaluations, for DDIM and DPM-Solver++ at
  several step counts, to choose the default sampler and steps.

    pipe, evaluator = load_unclip("shapes"), load_evaluator("shapes")
    texture_scores(pipe, ShapesWorld(seed=1), n=64)
    distance_scores(pipe, evaluator, ShapesWorld(seed=2), n=200, conditionings=("diffusion", "z_t"))
    solver_sweep(pipe, evaluator, ShapesWorld(seed=3), [("ddim", 25), ("dpm++", 10)], n=200)
"""
from __future__ import annotations

import time

import torch

from .evaluate import attribute_accuracy, frechet_distance, imprint_periods, kernel_distance, texture_ratio


def _scenes(world, n: int, seed: int):
    if n < 2:
        raise ValueError(f"n must be at least 2 images (distances compare sets), got {n}")
    return world.sample(n, objects=1, seed=seed)


def stage_resolutions(pipe) -> tuple[int, ...]:
    """The resolutions at which the stack's UNets work, base first: (32, 64, 128)."""
    return (pipe.base_resolution,) + tuple(u.resolution for u in pipe.upsamplers)


def texture_scores(pipe, world, n: int = 64, seed: int = 0, sampler: str | None = None,
                   steps: int | None = None) -> dict[int, dict[int, float]]:
    """Excess grid texture of decodings from z_i: {resolution: {period: ratio}} for the base
    resolution and the full one, each against true renders of the same n fresh scenes at
    that resolution (ratio 1.0: as much power on the period's lines as real images have)."""
    batch = _scenes(world, n, seed)
    z_i = pipe.clip.encode_image(batch.images)
    base = pipe.decode(z_i, seed=seed, upsample=False, sampler=sampler, steps=steps)
    stages = stage_resolutions(pipe)
    out = {pipe.base_resolution: texture_ratio(base, world.render(batch.attributes, pipe.base_resolution,
                                                                  batch.details),
                                               imprint_periods(pipe.base_resolution, stages))}
    if pipe.upsamplers:
        full = pipe.upsample(base, seed=seed, sampler=sampler)
        out[pipe.resolution] = texture_ratio(full, world.render(batch.attributes, pipe.resolution, batch.details),
                                             imprint_periods(pipe.resolution, stages))
    return out


def _judge(evaluator, images, batch, real_images, keys) -> dict[str, float]:
    acc = attribute_accuracy(evaluator.predict(images, objects=1), batch.attributes, keys=keys)
    fa, fb = evaluator.features(images), evaluator.features(real_images)
    return {"all": acc["all"], **{k: acc[k] for k in keys},
            "fd": frechet_distance(fa, fb), "kd": kernel_distance(fa, fb)}


def distance_scores(pipe, evaluator, world, n: int = 200, seed: int = 0,
                    conditionings=("diffusion", "autoregressive", "z_t", "caption"),
                    upsample: bool = False, keys=("shape", "color", "size", "position"),
                    **generate_kwargs) -> dict[str, dict[str, float]]:
    """Text to image for the canonical captions of n fresh one-object scenes, judged against
    those scenes: {conditioning: {"all", per-attribute accuracy, "fd", "kd", "seconds"}}.
    "fd" / "kd": Frechet / kernel distance in the evaluator's features between the samples
    and the scenes' true renders (at base resolution, or full with upsample=True). Both are
    biased by the sample size (256 features): compare rows of one call, not across sizes."""
    batch = _scenes(world, n, seed)
    res = pipe.resolution if upsample else pipe.base_resolution
    real = world.render(batch.attributes, res, batch.details)
    out = {}
    for cond in conditionings:
        t = time.perf_counter()
        images = pipe.generate(batch.captions, prior=cond, seed=seed, upsample=upsample, **generate_kwargs)
        seconds = time.perf_counter() - t
        out[cond] = {**_judge(evaluator, images, batch, real, keys), "seconds": round(seconds, 2)}
    return out


def model_calls(pipe, sampler: str, decoder_steps: int, prior_steps: int, guided: bool = True) -> dict[str, int]:
    """UNet / transformer evaluations per image for the stages of text to image: the decoder
    (two per step with guidance), the diffusion prior (candidates x two per step with
    guidance) and each upsampler (one per step)."""
    d = pipe.defaults
    return {"prior": prior_steps * d.prior_candidates * (2 if d.prior_guidance != 1 else 1),
            "decoder": decoder_steps * (2 if guided else 1),
            **{f"upsampler {u.resolution}": s for u, s in zip(pipe.upsamplers, d.upsampler_steps)}}


def solver_sweep(pipe, evaluator, world, settings, n: int = 200, seed: int = 0, prior: str = "diffusion",
                 prior_steps: int | None = None) -> list[dict]:
    """Text to image at base resolution for each (sampler, decoder steps[, prior steps]) in
    `settings`, on the same captions and seeds: one row each with the accuracy, the
    distances to true renders and the decoder's model evaluations per image."""
    batch = _scenes(world, n, seed)
    real = world.render(batch.attributes, pipe.base_resolution, batch.details)
    rows = []
    for setting in settings:
        sampler, steps, p_steps = (tuple(setting) + (prior_steps,))[:3]
        t = time.perf_counter()
        images = pipe.generate(batch.captions, prior=prior, seed=seed, upsample=False, sampler=sampler,
                               decoder_steps=steps, prior_steps=p_steps)
        seconds = time.perf_counter() - t
        scores = _judge(evaluator, images, batch, real, ("shape", "color", "size", "position"))
        rows.append({"sampler": sampler, "decoder_steps": steps, "prior_steps": p_steps or pipe.defaults.prior_steps,
                     "decoder_calls": 2 * steps, **scores, "seconds": round(seconds, 2)})
    return rows

