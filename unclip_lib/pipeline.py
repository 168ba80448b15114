"""The unCLIP stack: CLIP, decoder and upsamplers behind one object.

    pipe = load_unclip("shapes")
    z_i = pipe.clip.encode_image(images)
    x = pipe.decode(z_i, seed=0)                       # [N, 3, 128, 128]
    x_T = pipe.invert(images)                          # DDIM inversion at base resolution
    pipe.decode(z_i, x_T=x_T, eta=0, upsample=False)   # reconstructs images at 32 px

Every sampler takes the latents it would otherwise draw (x_T), and a seed for the rest.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .clip import Clip, load_clip
from .decoder import DiffusionDecoder, DiffusionUpsampler, load_decoder, load_upsampler
from .images import as_image_batch, resize


@dataclass
class SamplingDefaults:
    decoder_steps: int = 25
    decoder_guidance: float = 3.0
    upsampler_steps: tuple = (4, 2)  # PSNR falls with more steps (sharper samples); see BENCHMARKS.md
    inversion_steps: int = 50
    inversion_refine: int = 3
    # inversion (and decoding a given x_T) runs the plain conditional model: guidance
    # extrapolates between two predictions and makes the DDIM ODE much harder to invert
    # (naive inversion of 32 px images: ~43 dB at guidance 1 against ~32 dB at 3; BENCHMARKS.md)
    inversion_guidance: float = 1.0


class UnCLIP:
    """CLIP + decoder + upsamplers. Images in and out: [N, 3, H, W] in [0, 1]."""

    def __init__(self, clip: Clip, decoder: DiffusionDecoder, upsamplers: list[DiffusionUpsampler],
                 defaults: SamplingDefaults | None = None):
        self.clip, self.decoder, self.upsamplers = clip, decoder, upsamplers
        self.defaults = defaults or SamplingDefaults()

    @property
    def base_resolution(self) -> int:
        return self.decoder.resolution

    @property
    def resolution(self) -> int:
        return self.upsamplers[-1].resolution if self.upsamplers else self.base_resolution

    def _check_z(self, z_i: torch.Tensor) -> torch.Tensor:
        if not isinstance(z_i, torch.Tensor) or z_i.dim() != 2:
            raise ValueError(f"z_i must be a tensor [N, D], got {getattr(z_i, 'shape', type(z_i))}")
        d = self.decoder.unet.config.clip_dim
        if z_i.shape[1] != d:
            raise ValueError(f"z_i has width {z_i.shape[1]} but this decoder reads CLIP embeddings of width {d}"
                             f" (was it made by another CLIP than {self.clip.name!r}?)")
        if z_i.shape[0] == 0:
            raise ValueError("z_i: got an empty batch")
        if not torch.isfinite(z_i).all():
            raise ValueError("z_i contains NaN or infinite values")
        return z_i.float()

    @torch.no_grad()
    def decode(self, z_i: torch.Tensor, x_T: torch.Tensor | None = None, eta: float = 0.0, seed: int = 0,
               upsample: bool = True, captions: list[str] | None = None, steps: int | None = None,
               guidance: float | None = None, guidance_text: float = 1.0, progress: bool = False) -> torch.Tensor:
        """Images from CLIP image embeddings z_i [N, D]: base resolution if upsample=False,
        else through both upsamplers. x_T [N, 3, r, r] fixes the decoder's starting noise;
        a given x_T is decoded with the inversion's step count (it belongs to that DDIM
        schedule) unless `steps` says otherwise, and with the inversion's guidance."""
        z_i = self._check_z(z_i)
        d = self.defaults
        g = torch.Generator().manual_seed(seed)
        text = mask = None
        if captions is not None:
            text, mask = self.clip.text_tokens(captions)
        exact = x_T is not None and eta == 0.0  # a given x_T: keep the sampler invertible
        steps = steps or (d.inversion_steps if x_T is not None else d.decoder_steps)
        if guidance is None:
            guidance = d.inversion_guidance if x_T is not None else d.decoder_guidance
        base = self.decoder.sample(z_i, text, mask, x_T=x_T, steps=steps, eta=eta,
                                   guidance_clip=guidance,
                                   guidance_text=guidance_text, generator=g, clip_x0=not exact,
                                   progress=progress)
        return self.upsample(base, seed=seed) if upsample else base

    @torch.no_grad()
    def upsample(self, images, seed: int = 0, steps: tuple | None = None) -> torch.Tensor:
        """Run base-resolution images through the upsampler cascade."""
        x = as_image_batch(images)
        g = torch.Generator().manual_seed(seed + 1)
        for up, n in zip(self.upsamplers, steps or self.defaults.upsampler_steps):
            x = up.sample(resize(x, up.resolution // 2), steps=n, generator=g)
        return x

    @torch.no_grad()
    def invert(self, images, z_i: torch.Tensor | None = None, steps: int | None = None,
               refine: int | None = None, guidance: float | None = None) -> torch.Tensor:
        """DDIM inversion of the base decoder conditioned on z_i (from CLIP if not given):
        x_T [N, 3, r, r] such that decode(z_i, x_T, eta=0, upsample=False) gives back the
        images at base resolution. refine=0 is plain DDIM inversion; the default refines
        each step by fixed-point iterations."""
        x = as_image_batch(images)
        z_i = self.clip.encode_image(x) if z_i is None else self._check_z(z_i)
        d = self.defaults
        base = resize(x, self.base_resolution)
        return self.decoder.invert(base, z_i, steps=steps or d.inversion_steps,
                                   refine=d.inversion_refine if refine is None else refine,
                                   guidance_clip=d.inversion_guidance if guidance is None else guidance)


def load_unclip(name: str = "shapes") -> UnCLIP:
    """The shipped stack of the shapes world."""
    if name != "shapes":
        raise KeyError(f"unknown unCLIP stack {name!r}; known: ['shapes']")
    return UnCLIP(load_clip("shapes"), load_decoder("shapes"), [load_upsampler("up64"), load_upsampler("up128")])
