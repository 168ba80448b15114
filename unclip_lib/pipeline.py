"""The unCLIP stack: CLIP, the priors, decoder and upsamplers behind one object.

    pipe = load_unclip("shapes")
    x = pipe.generate(["a small red triangle"], seed=0)  # text -> [1, 3, 128, 128]
    out = pipe.generate(captions, prior="autoregressive", return_intermediates=True)
    out.z_t, out.z_i, out.base, out.images
    z_i = pipe.clip.encode_image(images)
    x = pipe.decode(z_i, seed=0)                       # [N, 3, 128, 128]
    x_T = pipe.invert(images)                          # DDIM inversion at base resolution
    pipe.decode(z_i, x_T=x_T, eta=0, upsample=False)   # reconstructs images at 32 px

Every sampler takes the latents it would otherwise draw (x_T), and a seed for the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from .clip import Clip, load_clip
from .decoder import DiffusionDecoder, DiffusionUpsampler, load_decoder, load_upsampler
from .images import as_image_batch, resize


@dataclass
class SamplingDefaults:
    # the ODE solver of every deterministic sampling from noise (prior, decoder, upsamplers):
    # "dpm++" (DPM-Solver++(2M)) or "ddim". Inversion, decoding an inverted x_T and eta > 0
    # always use DDIM, whose exact inverse and noise injection they need.
    sampler: str = "dpm++"
    decoder_steps: int = 25
    decoder_guidance: float = 3.0
    upsampler_steps: tuple = (4, 2)  # PSNR falls with more steps (sharper samples); see BENCHMARKS.md
    inversion_steps: int = 50
    inversion_refine: int = 3
    # inversion (and decoding a given x_T) runs the plain conditional model: guidance
    # extrapolates between two predictions and makes the DDIM ODE much harder to invert
    # (naive inversion of 32 px images: ~43 dB at guidance 1 against ~32 dB at 3; BENCHMARKS.md)
    inversion_guidance: float = 1.0
    prior_steps: int = 64             # diffusion prior DDIM steps
    prior_guidance: float = 2.0       # classifier-free guidance of either prior
    prior_candidates: int = 2         # best-of-n by z_i . z_t (diffusion prior; the paper's 2)
    # a call samples its whole batch at once: beyond this many images, ask for chunks rather
    # than run out of memory halfway (1024 base images take about 2 GB)
    max_batch: int = 1024


class Bipartite(NamedTuple):
    """The bipartite latent of images (section 3): what CLIP sees and what DDIM inversion adds."""
    z_i: torch.Tensor                    # [N, D] CLIP image embeddings
    x_T: torch.Tensor | None             # [N, 3, r, r] the decoder's DDIM latents

    def select(self, index) -> "Bipartite":
        """The latents of some images: index is a slice, a list or an index tensor."""
        index = [index] if isinstance(index, int) else index
        return Bipartite(self.z_i[index], None if self.x_T is None else self.x_T[index])


# x_T along an interpolation: slerped between the two inversions, one random latent held
# fixed, or a fresh random latent per step
INTERPOLATION_MODES = ("slerp", "fixed", "random")

# What generate() can put in the decoder's z_i slot: a prior's sample, or the ablations of
# the paper's section 5.1 ("z_t": the text embedding itself; "caption": no z_i at all).
CONDITIONINGS = ("diffusion", "autoregressive", "z_t", "caption")


@dataclass
class Generation:
    """What generate() made, stage by stage (N captions)."""
    captions: list[str]
    images: torch.Tensor                 # [N, 3, R, R] full resolution, in [0, 1]
    base: torch.Tensor                   # [N, 3, r, r] the decoder's output
    z_t: torch.Tensor                    # [N, D] CLIP text embeddings
    z_i: torch.Tensor | None             # [N, D] the image embeddings decoded (None for "caption")
    seconds: dict = field(default_factory=dict)  # wall-clock seconds per stage


class UnCLIP:
    """CLIP + priors + decoder + upsamplers. Images in and out: [N, 3, H, W] in [0, 1]."""

    def __init__(self, clip: Clip, decoder: DiffusionDecoder, upsamplers: list[DiffusionUpsampler],
                 priors: dict | None = None, defaults: SamplingDefaults | None = None):
        self.clip, self.decoder, self.upsamplers = clip, decoder, upsamplers
        self.priors = dict(priors or {})
        self.defaults = defaults or SamplingDefaults()

    @property
    def base_resolution(self) -> int:
        return self.decoder.resolution

    @property
    def resolution(self) -> int:
        return self.upsamplers[-1].resolution if self.upsamplers else self.base_resolution

    def _check_batch(self, n: int, what: str) -> None:
        if n > self.defaults.max_batch:
            raise ValueError(f"{what}: {n} images in one call; the pipeline samples a whole batch at once, so "
                             f"call it in chunks of at most {self.defaults.max_batch} (pipe.defaults.max_batch)")

    def _sampler(self, sampler: str | None) -> str:
        from .diffusion import SAMPLERS

        sampler = self.defaults.sampler if sampler is None else sampler
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {list(SAMPLERS)}, got {sampler!r}")
        return sampler

    @staticmethod
    def _check_settings(seed=0, steps=None, guidance=None) -> None:
        """Clear errors for sampling settings that torch would reject obscurely (or not at all)."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if guidance is not None and not (isinstance(guidance, (int, float)) and np.isfinite(guidance)
                                         and guidance >= 0):
            raise ValueError(f"guidance must be a finite number >= 0 (1: no guidance), got {guidance!r}")

    def _check_z(self, z_i: torch.Tensor) -> torch.Tensor:
        if not isinstance(z_i, torch.Tensor) or z_i.dim() != 2:
            raise ValueError(f"z_i must be a tensor [N, D], got {getattr(z_i, 'shape', type(z_i))}")
        if not z_i.is_floating_point():
            raise TypeError(f"z_i must hold floating-point values, got {z_i.dtype}")
        d = self.decoder.unet.config.clip_dim
        if z_i.shape[1] != d:
            raise ValueError(f"z_i has width {z_i.shape[1]} but this decoder reads CLIP embeddings of width {d}"
                             f" (was it made by another CLIP than {self.clip.name!r}?)")
        if z_i.shape[0] == 0:
            raise ValueError("z_i: got an empty batch")
        self._check_batch(z_i.shape[0], "z_i")
        if not torch.isfinite(z_i).all():
            raise ValueError("z_i contains NaN or infinite values")
        return z_i.float()

    def check_captions(self, captions) -> list[str]:
        """A list of non-empty captions short enough for the priors, or a clear error."""
        if isinstance(captions, str):
            captions = [captions]
        captions = list(captions)
        if not captions:
            raise ValueError("captions: got an empty list; give at least one caption")
        self._check_batch(len(captions), "captions")
        for i, c in enumerate(captions):
            if not isinstance(c, str):
                raise TypeError(f"caption {i} is a {type(c).__name__}, not a string")
            if not c.strip():
                raise ValueError(f"caption {i} is empty; describe the image, e.g. 'a small red triangle'")
        limit = min([p.config.text_len for p in self.priors.values()], default=None)
        if limit is not None:
            tokens = self.clip.tokenize(captions)
            lengths = tokens.argmax(dim=-1) + 1       # up to and including the end token
            for i, n in enumerate(lengths.tolist()):
                if n > limit:
                    more = "at least " if n >= tokens.shape[1] else ""
                    raise ValueError(f"caption {i} has {more}{n} tokens but the priors read at most {limit}:"
                                     f" shorten it ({captions[i][:60]!r}...)")
        return captions

    def prior(self, name: str):
        if name not in self.priors:
            known = sorted(self.priors)
            raise ValueError(f"unknown prior {name!r}; this stack has {known}" if known else
                             f"this stack has no prior {name!r}: build it with load_unclip('shapes')")
        return self.priors[name]

    @torch.no_grad()
    def sample_z_i(self, captions, prior: str = "diffusion", seed: int = 0, guidance: float | None = None,
                   steps: int | None = None, sampler: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_i [N, D], z_t [N, D]): CLIP image embeddings drawn by a prior for the captions
        (sampler: the diffusion prior's ODE solver, default pipe.defaults.sampler)."""
        sampler = self._sampler(sampler)
        captions = self.check_captions(captions)
        d = self.defaults
        g = torch.Generator().manual_seed(seed)
        z_t = self.clip.encode_text(captions)
        model = self.prior(prior)
        text, mask = self.clip.text_tokens(captions)
        guidance = d.prior_guidance if guidance is None else guidance
        if prior == "diffusion":
            z_i = model.sample(text, mask, z_t, steps=steps or d.prior_steps, guidance=guidance,
                               candidates=d.prior_candidates, generator=g, sampler=sampler)
        else:
            z_i = model.sample(text, mask, z_t, guidance=guidance, generator=g)
        return z_i, z_t

    @torch.no_grad()
    def generate(self, captions, prior: str = "diffusion", seed: int = 0, prior_guidance: float | None = None,
                 prior_steps: int | None = None, decoder_guidance: float | None = None,
                 decoder_steps: int | None = None, upsampler_steps: tuple | None = None,
                 x_T: torch.Tensor | None = None, upsample: bool = True, return_intermediates: bool = False,
                 progress: bool = False, sampler: str | None = None):
        """Text to image: images [N, 3, R, R] in [0, 1] for N captions, or a Generation
        holding z_t, z_i and the base images too if return_intermediates. sampler: the ODE
        solver of every stage ("dpm++" or "ddim"; default pipe.defaults.sampler).

        prior: "diffusion" or "autoregressive" draw z_i from that prior; "z_t" decodes the
        CLIP text embedding as if it were an image embedding, "caption" decodes from the
        caption alone (z_i dropped, caption guidance = decoder_guidance): the ablations of
        the paper's "importance of the prior". x_T [N, 3, r, r] fixes the decoder's noise."""
        import time

        from tqdm.auto import tqdm

        if prior not in CONDITIONINGS:
            raise ValueError(f"unknown prior {prior!r}; choose one of {list(CONDITIONINGS)}")
        self._check_settings(seed, decoder_steps, decoder_guidance)
        self._check_settings(seed, prior_steps, prior_guidance)
        sampler = self._sampler(sampler)
        captions = self.check_captions(captions)
        d = self.defaults
        guidance = d.decoder_guidance if decoder_guidance is None else decoder_guidance
        stages = ["prior", "decoder"] + [f"upsampler {u.resolution}" for u in self.upsamplers if upsample]
        bar = tqdm(total=len(stages), desc="generate", disable=not progress, leave=False)
        seconds, t = {}, time.perf_counter()

        def done(stage):
            nonlocal t
            seconds[stage] = round(time.perf_counter() - t, 3)
            t = time.perf_counter()
            bar.set_postfix_str(stage)
            bar.update()

        text = mask = None
        if prior in ("diffusion", "autoregressive"):
            z_i, z_t = self.sample_z_i(captions, prior, seed, prior_guidance, prior_steps, sampler)
        else:
            z_t = self.clip.encode_text(captions)
        if prior == "z_t":
            z_i = z_t
        elif prior == "caption":
            z_i = None
            text, mask = self.clip.text_tokens(captions)
        done("prior")
        if x_T is not None:
            x_T = self._check_x_T(x_T, len(captions))
        g = torch.Generator().manual_seed(seed + 1)
        base = self.decoder.sample(z_i, text, mask, x_T=x_T, steps=decoder_steps or d.decoder_steps,
                                   guidance_clip=guidance, guidance_text=guidance, generator=g, sampler=sampler)
        done("decoder")
        images = base
        if upsample:
            g = torch.Generator().manual_seed(seed + 2)
            for up, n in zip(self.upsamplers, upsampler_steps or d.upsampler_steps):
                images = up.sample(resize(images, up.resolution // 2), steps=n, generator=g, sampler=sampler)
                done(f"upsampler {up.resolution}")
        bar.close()
        if not return_intermediates:
            return images
        return Generation(captions, images, base, z_t, z_i, seconds)

    @torch.no_grad()
    def decode(self, z_i: torch.Tensor, x_T: torch.Tensor | None = None, eta: float = 0.0, seed: int = 0,
               upsample: bool = True, captions: list[str] | None = None, steps: int | None = None,
               guidance: float | None = None, guidance_text: float = 1.0, clip_x0: bool | None = None,
               progress: bool = False, sampler: str | None = None) -> torch.Tensor:
        """Images from CLIP image embeddings z_i [N, D]: base resolution if upsample=False,
        else through both upsamplers. x_T [N, 3, r, r] fixes the decoder's starting noise;
        a given x_T is decoded with the inversion's step count and DDIM (it belongs to that
        schedule) unless `steps` / `sampler` say otherwise, and with the inversion's guidance.
        Without x_T the default sampler draws (pipe.defaults.sampler); eta > 0 is DDIM's.
        clip_x0: clip each x0 prediction to [-1, 1]; by default off only for a given x_T at
        eta = 0, where clipping would break the exact inverse of pipe.invert."""
        z_i = self._check_z(z_i)
        self._check_settings(seed, steps, guidance)
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1] (0: deterministic DDIM, 1: DDPM-like noise), got {eta}")
        if sampler is None:
            sampler = "ddim" if (x_T is not None or eta > 0) else self.defaults.sampler
        sampler = self._sampler(sampler)
        if sampler == "dpm++" and eta > 0:
            raise ValueError(f"eta={eta} needs sampler='ddim' (DPM-Solver++ is deterministic)")
        d = self.defaults
        text = mask = None
        if captions is not None:
            text, mask = self.clip.text_tokens(captions)
        steps = steps or (d.inversion_steps if x_T is not None else d.decoder_steps)
        if guidance is None:
            guidance = d.inversion_guidance if x_T is not None else d.decoder_guidance
        if x_T is not None:
            x_T = self._check_x_T(x_T, z_i.shape[0])
        if clip_x0 is None:
            clip_x0 = not (x_T is not None and eta == 0.0)  # a given x_T: keep the sampler invertible
        base = self.decoder.sample(z_i, text, mask, x_T=x_T, steps=steps, eta=eta, guidance_clip=guidance,
                                   guidance_text=guidance_text, generator=torch.Generator().manual_seed(seed),
                                   clip_x0=clip_x0, progress=progress, sampler=sampler)
        return self.upsample(base, seed=seed) if upsample else base

    def _check_x_T(self, x_T: torch.Tensor, n: int) -> torch.Tensor:
        r = self.base_resolution
        if not isinstance(x_T, torch.Tensor) or tuple(x_T.shape) != (n, 3, r, r):
            raise ValueError(f"x_T must be a tensor [{n}, 3, {r}, {r}] (one base-resolution latent per z_i),"
                             f" got {list(getattr(x_T, 'shape', [type(x_T).__name__]))}")
        if not torch.isfinite(x_T).all():
            raise ValueError("x_T contains NaN or infinite values")
        return x_T.float()

    @torch.no_grad()
    def upsample(self, images, seed: int = 0, steps: tuple | None = None, sampler: str | None = None) -> torch.Tensor:
        """Run base-resolution images through the upsampler cascade."""
        x = as_image_batch(images)
        self._check_batch(x.shape[0], "images")
        self._check_settings(seed)
        sampler = self._sampler(sampler)
        g = torch.Generator().manual_seed(seed + 1)
        for up, n in zip(self.upsamplers, steps or self.defaults.upsampler_steps):
            x = up.sample(resize(x, up.resolution // 2), steps=n, generator=g, sampler=sampler)
        return x

    @torch.no_grad()
    def invert(self, images, z_i: torch.Tensor | None = None, steps: int | None = None,
               refine: int | None = None, guidance: float | None = None) -> torch.Tensor:
        """DDIM inversion of the base decoder conditioned on z_i (from CLIP if not given):
        x_T [N, 3, r, r] such that decode(z_i, x_T, eta=0, upsample=False) gives back the
        images at base resolution. refine=0 is plain DDIM inversion; the default refines
        each step by fixed-point iterations."""
        x = as_image_batch(images)
        self._check_batch(x.shape[0], "images")
        self._check_settings(0, steps, guidance)
        z_i = self.clip.encode_image(x) if z_i is None else self._check_z(z_i)
        d = self.defaults
        base = resize(x, self.base_resolution)
        return self.decoder.invert(base, z_i, steps=steps or d.inversion_steps,
                                   refine=d.inversion_refine if refine is None else refine,
                                   guidance_clip=d.inversion_guidance if guidance is None else guidance)

    # ------------------------------------------------------------------ manipulations
    # All of them work on the bipartite latent (z_i, x_T) of section 3: z_i from the CLIP
    # image encoder says what the image is, x_T from DDIM inversion holds whatever else the
    # decoder needs to redraw this very image. They decode x_T with the inversion's DDIM
    # schedule and guidance, so that an unchanged latent gives the input back.

    @torch.no_grad()
    def encode(self, images, refine: int | None = None) -> Bipartite:
        """The bipartite latent of images [N, 3, H, W]: z_i [N, D] and x_T [N, 3, r, r]."""
        x = as_image_batch(images)
        z_i = self.clip.encode_image(x)
        return Bipartite(z_i, self.invert(x, z_i=z_i, refine=refine))

    def _latent(self, images, latent: Bipartite | None) -> Bipartite:
        if latent is not None:
            return Bipartite(self._check_z(latent.z_i), self._check_x_T(latent.x_T, latent.z_i.shape[0]))
        if images is None:
            raise ValueError("give the images to manipulate (or their latent=pipe.encode(images))")
        return self.encode(images)

    @torch.no_grad()
    def variations(self, images=None, n: int = 4, eta: float = 1.0, seed: int = 0, upsample: bool = True,
                   guidance: float | None = None, latent: Bipartite | None = None) -> torch.Tensor:
        """n variations of each image: its bipartite latent decoded with DDIM at eta > 0,
        which re-draws noise along the way and so varies what z_i does not pin down.
        eta = 0 returns the reconstruction (n identical copies). Returns [N * n, 3, R, R],
        image 0's variations first. latent: a precomputed pipe.encode(images); guidance:
        the decoder's z_i guidance (default: the inversion's, so eta = 0 reconstructs)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1] (0: the reconstruction, 1: DDPM-like noise), got {eta}")
        z_i, x_T = self._latent(images, latent)
        return self.decode(z_i.repeat_interleave(n, 0), x_T=x_T.repeat_interleave(n, 0), eta=eta, seed=seed,
                           upsample=upsample, guidance=guidance)

    @torch.no_grad()
    def interpolate(self, images_a=None, images_b=None, steps: int = 5, x_T: str = "slerp", seed: int = 0,
                    upsample: bool = True, latents: tuple[Bipartite, Bipartite] | None = None) -> torch.Tensor:
        """Blend image a into image b: z_i slerped from z_a to z_b over `steps` evenly
        spaced thetas in [0, 1], decoded with eta = 0 and x_T chosen by mode:
        "slerp": slerped between the two images' inversions, so the ends reconstruct a and b;
        "fixed": one random latent (from seed) shared by the whole path, the paper's Figure 4;
        "random": a fresh random latent per step.
        Returns [N * steps, 3, R, R] for N pairs, pair 0's path first."""
        from .latents import slerp

        if x_T not in INTERPOLATION_MODES:
            raise ValueError(f"x_T must be one of {list(INTERPOLATION_MODES)}, got {x_T!r}")
        if not isinstance(steps, int) or steps < 2:
            raise ValueError(f"steps must be an integer >= 2 (the two ends included), got {steps!r}")
        if latents is not None:
            a, b = (self._latent(None, lat) for lat in latents)
        else:
            if images_a is None or images_b is None:
                raise ValueError("give both images_a and images_b (or latents=(pipe.encode(a), pipe.encode(b)))")
            xa, xb = as_image_batch(images_a, "images_a"), as_image_batch(images_b, "images_b")
            if xa.shape[0] != xb.shape[0]:
                raise ValueError(f"images_a and images_b must pair up: got {xa.shape[0]} and {xb.shape[0]} images")
            a = self.encode(xa) if x_T == "slerp" else Bipartite(self.clip.encode_image(xa), None)
            b = self.encode(xb) if x_T == "slerp" else Bipartite(self.clip.encode_image(xb), None)
        n, r = a.z_i.shape[0], self.base_resolution
        if b.z_i.shape[0] != n:
            raise ValueError(f"the two latents must pair up: got {n} and {b.z_i.shape[0]}")
        thetas = torch.linspace(0, 1, steps)
        z = torch.stack([slerp(a.z_i, b.z_i, float(th)) for th in thetas], 1).flatten(0, 1)  # [n*steps, D]
        g = torch.Generator().manual_seed(seed)
        if x_T == "slerp":
            noise = torch.stack([slerp(a.x_T, b.x_T, float(th)) for th in thetas], 1).flatten(0, 1)
            return self.decode(z, x_T=noise, eta=0.0, seed=seed, upsample=upsample)
        if x_T == "fixed":
            noise = torch.randn((n, 1, 3, r, r), generator=g).expand(-1, steps, -1, -1, -1).flatten(0, 1)
        else:
            noise = torch.randn((n * steps, 3, r, r), generator=g)
        # random latents are not inversions: decode them as generate() would
        d = self.defaults
        return self.decode(z, x_T=noise.contiguous(), eta=0.0, seed=seed, upsample=upsample,
                           steps=d.decoder_steps, guidance=d.decoder_guidance, clip_x0=True, sampler=d.sampler)

    @torch.no_grad()
    def text_diff(self, images=None, from_caption="", to_caption="", thetas=(0.0, 0.25, 0.5),
                  seed: int = 0, upsample: bool = True, latent: Bipartite | None = None) -> torch.Tensor:
        """Edit images towards a new description (section 3.3): z_d = normalise(z_t - z_t0)
        from the CLIP text embeddings of to_caption (z_t) and from_caption (z_t0), then
        z_i' = slerp(z_i, z_d, theta), decoded with the image's inverted x_T held fixed, so
        theta = 0 gives the input back. The captions are one string for every image or a
        list with one per image. Returns [N * len(thetas), 3, R, R], image 0's row first."""
        from .latents import slerp, text_diff_direction

        thetas = [float(t) for t in ([thetas] if isinstance(thetas, (int, float)) else thetas)]
        if not thetas:
            raise ValueError("thetas: give at least one value in [0, 1]")
        if any(not 0.0 <= t <= 1.0 for t in thetas):
            raise ValueError(f"thetas must lie in [0, 1] (0: the input, 1: the text direction itself), got {thetas}")
        z_i, x_T = self._latent(images, latent)
        n = z_i.shape[0]
        pairs = []
        for name, c in (("from_caption", from_caption), ("to_caption", to_caption)):
            c = [c] * n if isinstance(c, str) else list(c)
            if len(c) != n:
                raise ValueError(f"{name}: give one caption, or one per image ({n}), got {len(c)}")
            pairs.append(self.check_captions(c))
        for source, target in zip(*pairs):
            if source.strip().lower() == target.strip().lower():
                raise ValueError(f"from_caption and to_caption are the same ({source!r}): a text diff needs two"
                                 " different descriptions")
        z_t0, z_t = self.clip.encode_text(pairs[0]), self.clip.encode_text(pairs[1])
        z_d = text_diff_direction(z_t, z_t0)                                    # [N, D]
        k = len(thetas)
        z = torch.stack([slerp(z_i, z_d, th) for th in thetas], 1).flatten(0, 1)  # [N*k, D]
        return self.decode(z, x_T=x_T.repeat_interleave(k, 0), eta=0.0, seed=seed, upsample=upsample)

def load_unclip(name: str = "shapes", priors: tuple = ("diffusion", "autoregressive")) -> UnCLIP:
    """The shipped stack of the shapes world: CLIP, the priors named, decoder, upsamplers."""
    from .prior import load_prior

    if name != "shapes":
        raise KeyError(f"unknown unCLIP stack {name!r}; known: ['shapes']")
    return UnCLIP(load_clip("shapes"), load_decoder("shapes"), [load_upsampler("up64"), load_upsampler("up128")],
                  priors={p: load_prior(p) for p in priors})
