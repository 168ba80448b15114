"""unclip-lab: unCLIP (Ramesh et al. 2022, the model behind DALL-E 2) rebuilt small.

    from unclip_lib import ShapesWorld, load_clip, load_evaluator
    world = ShapesWorld(seed=0)
    batch = world.sample(16)                 # images [16, 3, 64, 64] in [0, 1]
    clip = load_clip("shapes")
    z_i = clip.encode_image(batch.images)    # [16, D], L2-normalised

The names below are imported on first use (PEP 562), not with the package: the
`unclip-lab` command checks its arguments before torch loads, so a bad one fails at once.
"""
from importlib import import_module

_EXPORTS = {
    "Clip": "clip", "ClipConfig": "clip", "load_clip": "clip", "new_clip": "clip",
    "EmojiDataset": "emoji", "EmojiWorld": "emoji",
    "Evaluator": "evaluate", "load_evaluator": "evaluate",
    "slerp": "latents", "text_diff_direction": "latents",
    "Bipartite": "pipeline", "UnCLIP": "pipeline", "load_unclip": "pipeline",
    "Batch": "world", "ShapesDataset": "world", "ShapesWorld": "world",
    "EmojiEvaluator": "emoji_eval", "get_world": "worlds",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'unclip_lib' has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value        # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
