"""The worlds the stack trains and measures in, by name.

A world supplies images, captions, attributes and the ways to measure a model on them;
every trainer and probe takes the world as a parameter, so the modules never branch on
which world it is. Both worlds answer the same calls:

- `dataset(seed, resolution, length)`: map-style (image [3, R, R], training caption) items;
- `clip_batch(seed, step, batch_size, resolution, recipe)` -> (images, captions): CLIP's batch of a
  step, `recipe` one of `clip_recipes` (a dict, its first key the default);
- `draw_training(rng, split, word_prob, multi_share)` -> (attributes, details) of one
  random training image (`multi_share`: share of two-object scenes, where a world has them);
- `render_drawn(attrs, details, resolution)` -> uint8 [R, R, 3];
- `training_caption(attrs, rng)`, `caption(attrs)`;
- `clip_report(clip, n, seed)` -> {figure: value}: the world's zero-shot figures of a CLIP;
- `evaluator_recipe(validate)` -> `EvaluatorRecipe`: how to train and check its ruler;
- `weights`: a `WorldWeights`, the shipped names of its models (what `load_unclip(world)` loads).

    world = get_world("emoji")
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

WORLD_NAMES = ("shapes", "emoji")


def get_world(name: str, seed: int = 0):
    """A world by name ("shapes" or "emoji"); a clear error for any other name."""
    if name == "shapes":
        from .world import ShapesWorld

        return ShapesWorld(seed=seed)
    if name == "emoji":
        from .emoji import EmojiWorld

        return EmojiWorld(seed=seed)
    from .checks import close_matches

    raise ValueError(f"unknown world {name!r}{close_matches(name, WORLD_NAMES)}; worlds: {list(WORLD_NAMES)}")


def world_class(name: str) -> type:
    """The class of a world by name, without loading its data (for checks before any work)."""
    check_world_name(name)
    if name == "shapes":
        from .world import ShapesWorld

        return ShapesWorld
    from .emoji import EmojiWorld

    return EmojiWorld


def check_clip_recipe(world: str, recipe: str | None) -> str:
    """A world's CLIP batch recipe by name (None: its default), checked before any work."""
    recipes = list(world_class(world).clip_recipes)
    if recipe is None:
        return recipes[0]
    if recipe not in recipes:
        from .checks import close_matches

        raise ValueError(f"unknown CLIP batch recipe {recipe!r}{close_matches(str(recipe), recipes)}; "
                         f"the {world} world's: {recipes}")
    return recipe


def check_world_name(name) -> str:
    """The name of a world, checked before any work."""
    if name not in WORLD_NAMES:
        from .checks import close_matches

        raise ValueError(f"unknown world {name!r}{close_matches(str(name), WORLD_NAMES)}; "
                         f"worlds: {list(WORLD_NAMES)}")
    return name


@dataclass(frozen=True)
class WorldWeights:
    """The shipped weights of a world's stack, by their names in checkpoints.SHIPPED (each
    without its kind: load_clip(weights.clip), load_prior(weights.priors["diffusion"]), ...).
    `inpainter`: the decoder of pipe.inpaint, None where the world ships none."""

    clip: str
    evaluator: str
    decoder: str
    upsamplers: tuple[str, ...]
    priors: dict[str, str]
    inpainter: str | None = None


def world_weights(name: str) -> WorldWeights:
    """The shipped weights of a world by name, checked before any loading."""
    return world_class(name).weights


@dataclass
class EvaluatorRecipe:
    """What training a world's evaluator needs: the untrained network and its config,
    batches(seed, batch_size) -> make_batch(step) -> (images, labels), the loss of
    (logits, labels), report(net) -> validation figures, and wrap(net) -> the evaluator."""

    net: nn.Module
    config: dict
    batches: Callable
    loss: Callable
    report: Callable
    wrap: Callable
