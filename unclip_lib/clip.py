"""CLIP: a joint image/text embedding space, built from open_clip's own classes.

Tiny presets (`CLIP_PRESETS`) are open_clip `CLIP` models with small vision and text
transformers and the real open_clip BPE tokenizer; they train on the shapes world with
open_clip's `ClipLoss`. Real open_clip models (e.g. ViT-B-32 / laion2b_s34b_b79k) load
through the same wrapper when their weights are in the local cache.

    clip = load_clip("shapes")
    z_i = clip.encode_image(images)     # [N, D], L2-normalised
    z_t = clip.encode_text(captions)    # [N, D], L2-normalised
"""
from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoints import (CheckpointError, foreign_weights_error, load_checkpoint, load_state_into, shipped_names,
                          shipped_path)
from .checks import check_captions, check_flag, check_int, is_foreign_weights
from .images import as_image_batch, resize


@dataclass(frozen=True)
class ClipConfig:
    """A tiny open_clip CLIP: a ViT image tower and a causal text transformer."""

    image_size: int = 64
    patch_size: int = 16
    vision_width: int = 128
    vision_layers: int = 4
    vision_head_width: int = 32
    context_length: int = 48
    text_width: int = 128
    text_heads: int = 4
    text_layers: int = 3
    embed_dim: int = 128


CLIP_PRESETS = {
    # the shipped model of the shapes world
    "shapes": ClipConfig(),
    # the emoji world's: 8 px patches (64 tokens), since 1,600 concepts in four styles and the
    # words written on them are finer than shapes
    "emoji": ClipConfig(patch_size=8),
    # a few-second model for tests and live demos
    "micro": ClipConfig(image_size=32, patch_size=8, vision_width=64, vision_layers=2,
                        vision_head_width=32, context_length=32, text_width=64, text_heads=2,
                        text_layers=2, embed_dim=64),
}
# Pixel normalisation of the tiny models (the real ones bring their own).
TINY_MEAN, TINY_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def build_open_clip(config: ClipConfig) -> nn.Module:
    """An untrained open_clip.model.CLIP of the given config."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(layers=config.vision_layers, width=config.vision_width,
                           head_width=config.vision_head_width, patch_size=config.patch_size,
                           image_size=config.image_size)
    text = CLIPTextCfg(context_length=config.context_length, width=config.text_width,
                       heads=config.text_heads, layers=config.text_layers)
    return CLIP(embed_dim=config.embed_dim, vision_cfg=vision, text_cfg=text)


class Clip(nn.Module):
    """An open_clip model with its tokenizer and pixel normalisation.

    Images in: [N, 3, H, W] in [0, 1] (or PIL / numpy), resized to the model's input size.
    Embeddings out: [N, D], L2-normalised.
    """

    def __init__(self, model: nn.Module, tokenizer, image_size: int, mean, std,
                 name: str = "custom", config: ClipConfig | None = None):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.context_length = getattr(tokenizer, "context_length", 77)
        self.name = name
        self.config = config
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if isinstance(
            getattr(self.model, "text_projection", None), torch.Tensor) else int(
            self.encode_text(["a"]).shape[1])

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    # -- inputs
    def preprocess(self, images) -> torch.Tensor:
        """[N, 3, H, W] in [0, 1] -> normalised model input [N, 3, S, S]."""
        x = as_image_batch(images).to(self.device)
        return (resize(x, self.image_size) - self.mean) / self.std

    def tokenize(self, captions, name: str = "captions") -> torch.Tensor:
        """Token ids [N, context_length] of one caption or a list of non-empty ones; longer
        captions are truncated with a warning."""
        captions = check_captions(captions, name)
        too_long = [c for c in captions if len(self.tokenizer.encode(c)) + 2 > self.context_length]
        if too_long:
            warnings.warn(f"{len(too_long)} caption(s) exceed the {self.context_length}-token context "
                          f"and were truncated, e.g. {too_long[0][:60]!r}", stacklevel=3)
        return self.tokenizer(captions).to(self.device)

    # -- embeddings
    def image_features(self, images) -> torch.Tensor:
        """Unnormalised image features [N, D] (differentiable; for training)."""
        return self.model.encode_image(self.preprocess(images))

    def text_features(self, captions) -> torch.Tensor:
        """Unnormalised text features [N, D] (differentiable; for training)."""
        return self.model.encode_text(self.tokenize(captions))

    def text_tokens(self, captions) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token text encodings [N, L, W] (final layer, after ln_final) and the
        padding mask [N, L] (True where a real token is); what the decoder attends to."""
        tokens = self.tokenize(captions)
        m = self.model
        x = m.token_embedding(tokens) + m.positional_embedding[: tokens.shape[1]]
        x = m.transformer(x, attn_mask=m.attn_mask)
        x = m.ln_final(x)
        eot = tokens.argmax(dim=-1, keepdim=True)
        mask = torch.arange(tokens.shape[1], device=tokens.device)[None] <= eot
        return x, mask

    @torch.no_grad()
    def encode_image(self, images, batch_size: int = 256) -> torch.Tensor:
        """CLIP image embeddings z_i [N, D], L2-normalised. Images that are not square are
        centre-cropped to a square before resizing to the model's input."""
        batch_size = check_int(batch_size, "batch_size", 1)
        x = as_image_batch(images)
        out = [F.normalize(self.image_features(x[i:i + batch_size]), dim=-1)
               for i in range(0, len(x), batch_size)]
        return torch.cat(out).float()

    @torch.no_grad()
    def encode_text(self, captions, batch_size: int = 512) -> torch.Tensor:
        """CLIP text embeddings z_t [N, D], L2-normalised, of one caption or a list of
        non-empty ones (an empty caption describes nothing and is refused)."""
        captions = check_captions(captions)
        batch_size = check_int(batch_size, "batch_size", 1)
        out = [F.normalize(self.text_features(captions[i:i + batch_size]), dim=-1)
               for i in range(0, len(captions), batch_size)]
        return torch.cat(out).float()

    @torch.no_grad()
    def zero_shot(self, images, candidates: list[str]) -> torch.Tensor:
        """Probabilities [N, C] over candidate captions (softmax of scaled cosine)."""
        candidates = check_captions(candidates, "candidates")
        z_i = self.encode_image(images)
        z_t = self.encode_text(candidates)
        return (self.logit_scale * z_i @ z_t.T).softmax(dim=-1)


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                     logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss via open_clip's ClipLoss. features: [N, D] (any norm)."""
    from open_clip.loss import ClipLoss

    return ClipLoss()(F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1),
                      logit_scale)


def _tokenizer(context_length: int):
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)


def new_clip(preset: str | ClipConfig = "shapes") -> Clip:
    """An untrained tiny CLIP of a preset."""
    config = preset if isinstance(preset, ClipConfig) else CLIP_PRESETS.get(preset)
    if config is None:
        raise KeyError(f"unknown CLIP preset {preset!r}; known presets: {sorted(CLIP_PRESETS)}")
    name = preset if isinstance(preset, str) else "custom"
    return Clip(build_open_clip(config), _tokenizer(config.context_length), config.image_size,
                TINY_MEAN, TINY_STD, name=name, config=config)


def clip_from_checkpoint(path: str | Path) -> Clip:
    """A tiny CLIP from one of our safetensors checkpoints."""
    tensors, config, _ = load_checkpoint(path, "clip")
    try:
        cfg = ClipConfig(**config)
    except TypeError as err:
        raise CheckpointError(f"{path}: config does not describe a CLIP ({err})") from err
    clip = new_clip(cfg)
    prefixed = {k if k.startswith("model.") else f"model.{k}": v for k, v in tensors.items()}
    load_state_into(clip, prefixed, str(path))
    clip.name = Path(path).stem
    return clip.eval()


def _require_safetensors(path: str) -> None:
    """Local weight files must be safetensors: a pickle (.pt, .bin) can run code when loaded."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt"):
            pass
    except Exception as err:  # safetensors raises its own error types, and OSError
        raise CheckpointError(f"{path} is not a safetensors file ({type(err).__name__}); unclip-lab loads local "
                              "weights only from .safetensors, which cannot run code; convert a checkpoint "
                              "you trust once, with safetensors.torch.save_file") from err


def _cached_open_clip_weights(name: str, pretrained: str) -> str | None:
    """Local path of an open_clip pretrained checkpoint if it is cached, without network."""
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    if os.path.isfile(pretrained):
        _require_safetensors(pretrained)
        return pretrained
    cfg = get_pretrained_cfg(name, pretrained)
    if not cfg:
        tags = [t for m, t in open_clip.list_pretrained() if m == name]
        raise KeyError(f"open_clip has no pretrained tag {pretrained!r} for {name!r}; "
                       f"known tags: {tags}")
    if "file" in cfg and os.path.isfile(cfg["file"]):
        return cfg["file"]
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(hub)
        for fname in ([filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]):
            path = try_to_load_from_cache(repo, fname)
            if isinstance(path, str) and os.path.isfile(path):
                return path
    url = cfg.get("url", "")
    if url:
        path = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(path):
            return path
    return None


def load_clip(name: str = "shapes", pretrained: str | None = None, download: bool = False,
              device: str | torch.device | None = None) -> Clip:
    """Load a CLIP by name.

    - "shapes", "emoji": the tiny CLIPs shipped with unclip-lab, one per world (trained by
      `unclip-lab train clip --world ...`);
    - a path to one of our .safetensors CLIP checkpoints (a str or Path);
    - an open_clip model name with a `pretrained` tag, e.g. ("ViT-B-32", "laion2b_s34b_b79k"),
      loaded from the local cache; with download=True it may be fetched from the hub.
    Local weights load only from .safetensors: a .pt / .bin path is refused, never unpickled.
    """
    name = _clip_name(name)
    if pretrained is not None and not isinstance(pretrained, (str, os.PathLike)):
        raise TypeError(f"pretrained must be an open_clip tag such as 'laion2b_s34b_b79k' or a .safetensors path,"
                        f" got {type(pretrained).__name__}")
    download = check_flag(download, "download")
    if name.endswith(".safetensors"):
        clip = clip_from_checkpoint(name)
    elif name in shipped_names("clip") and pretrained is None:
        clip = clip_from_checkpoint(shipped_path(f"clip/{name}"))
    else:
        clip = _load_open_clip(name, pretrained, download)
    return clip.to(device or "cpu").eval()


def _clip_name(name) -> str:
    """load_clip's name as a string; a path to weights that are not safetensors is refused."""
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"load_clip: name must be 'shapes', 'emoji', an open_clip model name such as 'ViT-B-32' or "
                        f"the path of a .safetensors checkpoint, got {type(name).__name__} {name!r}")
    if is_foreign_weights(name):
        raise foreign_weights_error("load_clip", name)
    return name


def _load_open_clip(name: str, pretrained: str | None, download: bool) -> Clip:
    import open_clip

    known = sorted(set(open_clip.list_models()))
    if name not in known:
        raise KeyError(f"unknown CLIP {name!r}. Shipped: {shipped_names('clip')}; tiny presets (untrained, "
                       f"see new_clip): {sorted(CLIP_PRESETS)}; open_clip models include "
                       f"{known[:8]}... (open_clip.list_models() lists all {len(known)})")
    if pretrained is None:
        raise ValueError(f"open_clip model {name!r} needs a pretrained tag (pretrained=...), e.g. "
                         f"{[t for m, t in open_clip.list_pretrained() if m == name][:4]}")
    path = _cached_open_clip_weights(name, pretrained)
    if path is None and not download:
        raise FileNotFoundError(
            f"weights for open_clip {name} / {pretrained} are not in the local cache "
            f"(~/.cache/huggingface/hub or ~/.cache/clip) and unclip-lab does not download at run "
            f"time by default. Fetch them once, online, with:\n"
            f"    python -c \"import open_clip; open_clip.create_model_and_transforms("
            f"'{name}', pretrained='{pretrained}')\"\n"
            f"or call load_clip('{name}', pretrained='{pretrained}', download=True).")
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=path or pretrained)
    tokenizer = open_clip.get_tokenizer(name)
    cfg = model.visual.preprocess_cfg if hasattr(model.visual, "preprocess_cfg") else {}
    size = cfg.get("size", model.visual.image_size)
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)
    std = cfg.get("std", open_clip.OPENAI_DATASET_STD)
    return Clip(model, tokenizer, int(size), mean, std, name=f"{name}/{pretrained}")
