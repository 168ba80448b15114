"""unclip-lab: unCLIP (Ramesh et al. 2022, the model behind DALL-E 2) rebuilt small.

    from unclip_lib import ShapesWorld, load_clip, load_evaluator
    world = ShapesWorld(seed=0)
    batch = world.sample(16)                 # images [16, 3, 64, 64] in [0, 1]
    clip = load_clip("shapes")
    z_i = clip.encode_image(batch.images)    # [16, D], L2-normalised
"""
from .clip import Clip, ClipConfig, load_clip, new_clip
from .emoji import EmojiDataset, EmojiWorld
from .evaluate import Evaluator, load_evaluator
from .latents import slerp, text_diff_direction
from .pipeline import Bipartite, UnCLIP, load_unclip
from .world import Batch, ShapesDataset, ShapesWorld

__all__ = ["Batch", "Bipartite", "Clip", "ClipConfig", "EmojiDataset", "EmojiWorld", "Evaluator", "ShapesDataset",
           "ShapesWorld", "UnCLIP",
           "load_clip", "load_evaluator", "load_unclip", "new_clip", "slerp",
           "text_diff_direction"]
__version__ = "0.1.0"
