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

import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from .checks import (MAX_BATCH, MAX_REFINE, SCHEDULE_STEPS, check_batch, check_captions, check_eta, check_flag,
                     check_guidance, check_int, check_number, check_seed, check_steps, is_real, warn_user)
from .clip import Clip, load_clip
from .decoder import DiffusionDecoder, DiffusionUpsampler, load_decoder, load_upsampler
from .images import as_image_batch, resize


@dataclass
class SamplingDefaults:
    # the ODE solver of every deterministic sampling from noise (prior, decoder, upsamplers):
    # "dpm++" (DPM-Solver++(2M), timesteps even in log-SNR) or "ddim". Inversion, decoding an
    # inverted x_T and eta > 0 always use DDIM, whose exact inverse and noise injection they
    # need. The step counts come from the sweep of scripts/bench.py --sampling (BENCHMARKS.md,
    # "Sampling"): 10 DPM-Solver++ steps match 25 DDIM steps' attribute accuracy and distance
    # to true renders within the sweep's noise, and so do 8 prior steps against DDIM's 64.
    sampler: str = "dpm++"
    decoder_steps: int = 10
    decoder_guidance: float = 3.0
    # the decoder also reads the caption's tokens beside z_i, as the paper's does (GLIDE's text
    # pathway kept, its section 2.1; trained with the caption dropped half the time); False
    # decodes z_i alone, the ablation. The caption costs a third UNet call per step and is not
    # guided: eps = e(-,-) + s (e(z,-) - e(-,-)) + e(z,y) - e(z,-). Measured both ways in
    # BENCHMARKS.md ("Limitations": binding).
    decoder_caption: bool = True
    # upsampler PSNR peaks at 2 steps for 32 -> 64 and at 1-2 for 64 -> 128 (more steps give
    # sharper samples that drift from the posterior mean); BENCHMARKS.md
    upsampler_steps: tuple = (2, 1)
    inversion_steps: int = 50
    inversion_refine: int = 3
    # inversion (and decoding a given x_T) runs the plain conditional model: guidance
    # extrapolates between two predictions and makes the DDIM ODE much harder to invert
    # (naive inversion of 32 px images: ~43 dB at guidance 1 against ~32 dB at 3; BENCHMARKS.md)
    inversion_guidance: float = 1.0
    # edits: "glide" (the fine-tuned inpainting decoder, when the stack has one) or "repaint"
    # (the plain decoder, each of its inpaint_steps redone inpaint_resample times). On 256
    # scenes the inpainting decoder draws the asked object in 96% against RePaint's 88% at 2
    # resamples (92% at 1, 78% at 4: more resampling trades the asked object for a softer seam);
    # BENCHMARKS.md, "Edits"
    inpaint_method: str = "glide"
    inpaint_steps: int = 25
    inpaint_resample: int = 2
    prior_steps: int = 8              # diffusion prior steps (of pipe.defaults.sampler)
    prior_guidance: float = 2.0       # classifier-free guidance of either prior
    prior_candidates: int = 2         # best-of-n by z_i . z_t (diffusion prior; the paper's 2)
    # a call samples its whole batch at once: beyond this many images, ask for chunks rather
    # than run out of memory halfway (1024 base images take about 2 GB)
    max_batch: int = MAX_BATCH


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
    """CLIP + priors + decoder + upsamplers. Images in and out: [N, 3, H, W] in [0, 1].

    Images of any size are accepted (at least 8 x 8 pixels); images that are not square
    are centre-cropped to a square, never stretched (as data.py does with image files).
    Every argument is checked before any model runs, so a bad one fails at once."""

    def __init__(self, clip: Clip, decoder: DiffusionDecoder, upsamplers: list[DiffusionUpsampler],
                 priors: dict | None = None, defaults: SamplingDefaults | None = None,
                 inpainter: DiffusionDecoder | None = None, world=None):
        self.clip, self.decoder, self.upsamplers = clip, decoder, upsamplers
        # the world the stack was trained on (ShapesWorld, EmojiWorld), when known: text diffs
        # check that their captions name something of it (world.check_caption)
        self.world = world
        # a decoder fine-tuned to read the kept pixels and the mask (GLIDE's way), for inpaint()
        self.inpainter = inpainter
        self.priors = dict(priors or {})
        self.defaults = defaults or SamplingDefaults()

    @property
    def base_resolution(self) -> int:
        return self.decoder.resolution

    @property
    def resolution(self) -> int:
        return self.upsamplers[-1].resolution if self.upsamplers else self.base_resolution

    # ------------------------------------------------------------------ argument checks

    def _check_batch(self, n: int, what: str) -> None:
        check_batch(n, what, self.defaults.max_batch)

    def _sampler(self, sampler: str | None) -> str:
        from .diffusion import SAMPLERS

        sampler = self.defaults.sampler if sampler is None else sampler
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {list(SAMPLERS)}, got {sampler!r}")
        return sampler

    @staticmethod
    def _steps(model, steps, name: str, optional: bool = True) -> int | None:
        """A step count for model's sampler (None: the default), at most its schedule's length."""
        diffusion = getattr(model, "diffusion", None)
        return check_steps(steps, name, diffusion.num_steps if diffusion is not None else SCHEDULE_STEPS, optional)

    def _upsampler_steps(self, steps, name: str = "upsampler_steps") -> tuple[int, ...]:
        """One step count per upsampler stage (None: pipe.defaults.upsampler_steps)."""
        stages = [up.resolution for up in self.upsamplers]
        if steps is None:  # the defaults name one count per shipped stage; a custom cascade takes a prefix
            default = tuple(self.defaults.upsampler_steps)
            steps = tuple(default[min(i, len(default) - 1)] for i in range(len(stages)))
        if isinstance(steps, (str, bytes)) or not isinstance(steps, (tuple, list)):
            raise TypeError(f"{name} must be a tuple of {len(stages)} step counts, one per upsampler "
                            f"({', '.join(f'{r} px' for r in stages)}), e.g. {tuple(self.defaults.upsampler_steps)},"
                            f" got {steps!r}")
        if len(steps) != len(stages):
            raise ValueError(f"{name} must give one step count per upsampler: {len(stages)} "
                             f"({', '.join(f'{r} px' for r in stages)}), got {len(steps)}: {tuple(steps)!r}")
        return tuple(self._steps(up, n, f"{name}[{i}]", optional=False)
                     for i, (up, n) in enumerate(zip(self.upsamplers, steps)))

    def _check_z(self, z_i, name: str = "z_i") -> torch.Tensor:
        """CLIP image embeddings [N, D] for the decoder: finite, of its width, no zero rows
        (float32; `_unit_length` then normalises rows far from unit length, with a warning)."""
        if not isinstance(z_i, torch.Tensor):
            raise TypeError(f"{name} must be a tensor [N, D] of CLIP image embeddings (e.g. "
                            f"pipe.clip.encode_image(images)), got {type(z_i).__name__}")
        if z_i.dim() != 2:
            one = "; one embedding needs a batch axis: z_i[None]" if z_i.dim() == 1 else ""
            raise ValueError(f"{name} must be a tensor [N, D], got shape {list(z_i.shape)}{one}")
        if not z_i.is_floating_point():
            raise TypeError(f"{name} must hold floating-point values, got {z_i.dtype}; use .float()")
        d = self.decoder.unet.config.clip_dim
        if z_i.shape[1] != d:
            raise ValueError(f"{name} has width {z_i.shape[1]} but this decoder reads CLIP embeddings of width {d}"
                             f" (was it made by another CLIP than {self.clip.name!r}?)")
        if z_i.shape[0] == 0:
            raise ValueError(f"{name}: got an empty batch; give at least one embedding")
        self._check_batch(z_i.shape[0], name)
        if not torch.isfinite(z_i).all():
            raise ValueError(f"{name} contains NaN or infinite values; give finite CLIP embeddings")
        zero = (z_i.norm(dim=-1) < ZERO_NORM).nonzero().flatten().tolist()
        if zero:
            raise ValueError(f"{name}: row {zero[0]} is all zeros and has no direction; CLIP embeddings are unit "
                             "vectors (to decode without an image embedding use generate(..., prior='caption'))")
        return z_i.float()

    def _check_x_T(self, x_T, n: int, name: str = "x_T") -> torch.Tensor:
        r = self.base_resolution
        want = f"{name} must be a tensor [{n}, 3, {r}, {r}] (one base-resolution latent per z_i)"
        if not isinstance(x_T, torch.Tensor):
            raise TypeError(f"{want}, got {type(x_T).__name__}")
        if tuple(x_T.shape) != (n, 3, r, r):
            raise ValueError(f"{want}, got {list(x_T.shape)}")
        if not x_T.is_floating_point():
            raise TypeError(f"{name} must hold floating-point values, got {x_T.dtype}; use .float()")
        if not torch.isfinite(x_T).all():
            raise ValueError(f"{name} contains NaN or infinite values; give finite latents (e.g. pipe.invert(images))")
        return x_T.float()

    def check_captions(self, captions, name: str = "captions") -> list[str]:
        """A list of non-empty captions short enough for the priors, or a clear error."""
        captions = check_captions(captions, name, limit=self.defaults.max_batch)
        limit = min([p.config.text_len for p in self.priors.values()], default=None)
        if limit is not None:
            with warnings.catch_warnings():      # CLIP's truncation warning: the error below says more
                warnings.simplefilter("ignore")
                tokens = self.clip.tokenize(captions, name)
            lengths = tokens.argmax(dim=-1) + 1       # up to and including the end token
            for i, n in enumerate(lengths.tolist()):
                if n > limit:
                    more = "at least " if n >= tokens.shape[1] else ""
                    raise ValueError(f"{name}[{i}] has {more}{n} tokens but the priors read at most {limit}:"
                                     f" shorten it ({captions[i][:60]!r}...)")
        return captions

    def _captions_per_item(self, captions, n: int, name: str, item: str) -> list[str]:
        """One caption for all n items, or one per item (CLIP reads them; no prior does)."""
        captions = check_captions([captions] * n if isinstance(captions, str) else captions, name,
                                  limit=self.defaults.max_batch)
        if len(captions) != n:
            raise ValueError(f"{name}: give one caption, or one per {item} ({n}), got {len(captions)}")
        return captions

    def prior(self, name: str):
        if not isinstance(name, str) or name not in self.priors:
            known = sorted(self.priors)
            if known:
                raise ValueError(f"unknown prior {name!r}; this stack has {known}")
            raise ValueError(f"this stack has no prior, so it cannot turn a caption into z_i: {self._prior_hint()}; "
                             "without one, start from images (pipe.decode of their z_i, variations, text_diff)")
        return self.priors[name]

    def _prior_hint(self) -> str:
        """How to get priors for this stack's world: load them, or train them if not shipped."""
        from .checkpoints import shipped_names
        from .worlds import WORLD_NAMES, world_class

        names = [w for w in WORLD_NAMES if self.world is not None and isinstance(self.world, world_class(w))]
        if not names:
            return "give UnCLIP(..., priors={'diffusion': load_prior(...)})"
        world = names[0]
        if all(p in shipped_names("prior") for p in world_class(world).weights.priors.values()):
            return f"load_unclip({world!r}) loads both of its priors"
        return (f"the {world} world's priors are not shipped; train one with `unclip-lab train prior --world {world} "
                "--kind diffusion --export ...`")

    def _source(self, images, latent, need_x_T: bool = True, name: str = "images", latent_name: str = "latent"):
        """What a manipulation starts from, checked: a Bipartite latent, or an image batch."""
        if latent is not None:
            return self._as_bipartite(latent, latent_name, need_x_T)
        if images is None:
            raise ValueError(f"give the {name} to manipulate (or their {latent_name}=pipe.encode({name}))")
        return as_image_batch(images, name, limit=self.defaults.max_batch)

    def _as_bipartite(self, latent, name: str, need_x_T: bool = True) -> Bipartite:
        if isinstance(latent, dict) or not (isinstance(latent, tuple) and len(latent) == 2):
            raise TypeError(f"{name} must be a Bipartite latent (z_i, x_T) as pipe.encode(images) returns, "
                            f"got {type(latent).__name__}")
        z_i = self._check_z(latent[0], f"{name}.z_i")
        if latent[1] is None and not need_x_T:
            return Bipartite(z_i, None)
        if latent[1] is None:
            raise ValueError(f"{name}.x_T is None, but this manipulation decodes the inverted x_T: make the latent"
                             " with pipe.encode(images)")
        return Bipartite(z_i, self._check_x_T(latent[1], z_i.shape[0], f"{name}.x_T"))

    def _encoded(self, source) -> Bipartite:
        return source if isinstance(source, Bipartite) else self.encode(source)

    @staticmethod
    def _count(source) -> int:
        return source.z_i.shape[0] if isinstance(source, Bipartite) else source.shape[0]

    @torch.no_grad()
    def sample_z_i(self, captions, prior: str = "diffusion", seed: int = 0, guidance: float | None = None,
                   steps: int | None = None, sampler: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_i [N, D], z_t [N, D]): CLIP image embeddings drawn by a prior for the captions
        (steps and sampler: the diffusion prior's; default pipe.defaults.prior_steps / .sampler)."""
        model = self.prior(prior)
        seed = check_seed(seed)
        guidance = check_guidance(guidance)
        steps = self._steps(model, steps, "steps")
        sampler = self._sampler(sampler)
        captions = self.check_captions(captions)
        return self._sample_z_i(captions, prior, seed, guidance, steps, sampler)

    def _sample_z_i(self, captions: list[str], prior: str, seed: int, guidance: float | None,
                    steps: int | None, sampler: str) -> tuple[torch.Tensor, torch.Tensor]:
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
                 progress: bool = False, sampler: str | None = None, decoder_caption: bool | None = None):
        """Text to image: images [N, 3, R, R] in [0, 1] for N captions, or a Generation
        holding z_t, z_i and the base images too if return_intermediates. sampler: the ODE
        solver of every stage ("dpm++" or "ddim"; default pipe.defaults.sampler).

        prior: "diffusion" or "autoregressive" draw z_i from that prior; "z_t" decodes the
        CLIP text embedding as if it were an image embedding, "caption" decodes from the
        caption alone (z_i dropped, caption guidance = decoder_guidance): the ablations of
        the paper's "importance of the prior". x_T [N, 3, r, r] fixes the decoder's noise.
        decoder_caption: whether the decoder reads the caption beside z_i (default
        pipe.defaults.decoder_caption; "caption" always does, having nothing else).
        upsampler_steps: one step count per upsampler (default pipe.defaults.upsampler_steps);
        prior_steps: the diffusion prior's (the autoregressive prior has no steps)."""
        import time

        from tqdm.auto import tqdm

        if prior not in CONDITIONINGS:
            raise ValueError(f"unknown prior {prior!r}; choose one of {list(CONDITIONINGS)}")
        model = self.prior(prior) if prior in ("diffusion", "autoregressive") else None
        seed = check_seed(seed)
        prior_guidance = check_guidance(prior_guidance, "prior_guidance")
        prior_steps = self._steps(model, prior_steps, "prior_steps")
        decoder_guidance = check_guidance(decoder_guidance, "decoder_guidance")
        decoder_steps = self._steps(self.decoder, decoder_steps, "decoder_steps")
        upsample = check_flag(upsample, "upsample")
        upsampler_steps = self._upsampler_steps(upsampler_steps) if upsample else ()
        sampler = self._sampler(sampler)
        decoder_caption = check_flag(self.defaults.decoder_caption if decoder_caption is None else decoder_caption,
                                     "decoder_caption")
        captions = self.check_captions(captions)
        if x_T is not None:
            x_T = self._check_x_T(x_T, len(captions))
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
        if model is not None:
            z_i, z_t = self._sample_z_i(captions, prior, seed, prior_guidance, prior_steps, sampler)
        else:
            z_t = self.clip.encode_text(captions)
        if prior == "z_t":
            z_i = z_t
        elif prior == "caption":
            z_i = None
        if prior == "caption" or decoder_caption:
            text, mask = self.clip.text_tokens(captions)
        done("prior")
        g = torch.Generator().manual_seed(seed + 1)
        base = self.decoder.sample(z_i, text, mask, x_T=x_T, steps=decoder_steps or d.decoder_steps,
                                   guidance_clip=guidance, guidance_text=guidance if z_i is None else 1.0,
                                   generator=g, sampler=sampler)
        done("decoder")
        images = base
        if upsample:
            g = torch.Generator().manual_seed(seed + 2)
            for up, n in zip(self.upsamplers, upsampler_steps):
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
        else through both upsamplers. z_i rows should be unit vectors, as CLIP's are: rows
        far from unit length are normalised (with a warning), zero rows refused.
        x_T [N, 3, r, r] fixes the decoder's starting noise;
        a given x_T is decoded with the inversion's step count and DDIM (it belongs to that
        schedule) unless `steps` / `sampler` say otherwise, and with the inversion's guidance.
        Without x_T the default sampler draws (pipe.defaults.sampler); eta > 0 is DDIM's.
        captions: one for all, or one per z_i. clip_x0: clip each x0 prediction to [-1, 1];
        by default off only for a given x_T at eta = 0, where clipping would break the exact
        inverse of pipe.invert."""
        z_i = self._check_z(z_i)
        n = z_i.shape[0]
        seed = check_seed(seed)
        steps = self._steps(self.decoder, steps, "steps")
        guidance = check_guidance(guidance)
        guidance_text = check_guidance(guidance_text, "guidance_text", optional=False)
        eta = check_eta(eta)
        upsample = check_flag(upsample, "upsample")
        upsampler_steps = self._upsampler_steps(None) if upsample else ()
        if clip_x0 is not None:
            clip_x0 = check_flag(clip_x0, "clip_x0")
        if sampler is None:
            sampler = "ddim" if (x_T is not None or eta > 0) else self.defaults.sampler
        sampler = self._sampler(sampler)
        if sampler == "dpm++" and eta > 0:
            raise ValueError(f"eta={eta} needs sampler='ddim' (DPM-Solver++ is deterministic)")
        if captions is not None:
            captions = self._captions_per_item(captions, n, "captions", "embedding")
        if x_T is not None:
            x_T = self._check_x_T(x_T, n)
        z_i = _unit_length(z_i)
        d = self.defaults
        text = mask = None
        if captions is not None:
            text, mask = self.clip.text_tokens(captions)
        steps = steps or (d.inversion_steps if x_T is not None else d.decoder_steps)
        if guidance is None:
            guidance = d.inversion_guidance if x_T is not None else d.decoder_guidance
        if clip_x0 is None:
            clip_x0 = not (x_T is not None and eta == 0.0)  # a given x_T: keep the sampler invertible
        base = self.decoder.sample(z_i, text, mask, x_T=x_T, steps=steps, eta=eta, guidance_clip=guidance,
                                   guidance_text=guidance_text, generator=torch.Generator().manual_seed(seed),
                                   clip_x0=clip_x0, progress=progress, sampler=sampler)
        return self._upsample(base, seed, upsampler_steps, self._sampler(None)) if upsample else base

    @torch.no_grad()
    def upsample(self, images, seed: int = 0, steps: tuple | None = None, sampler: str | None = None) -> torch.Tensor:
        """Run images through the upsampler cascade (any size: the first stage reads them at
        its input resolution). steps: one count per upsampler (default pipe.defaults.upsampler_steps)."""
        seed = check_seed(seed)
        steps = self._upsampler_steps(steps, "steps")
        sampler = self._sampler(sampler)
        return self._upsample(as_image_batch(images, limit=self.defaults.max_batch), seed, steps, sampler)

    def _upsample(self, x: torch.Tensor, seed: int, steps: tuple, sampler: str,
                  keep: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The cascade on x; keep = (images, mask): after every stage the images' pixels where
        the mask is 0 are put back (inpaint), so they stay exact at every resolution."""
        from .edits import composite, mask_at

        g = torch.Generator().manual_seed(seed + 1)
        for up, n in zip(self.upsamplers, steps):
            x = up.sample(resize(x, up.resolution // 2), steps=n, generator=g, sampler=sampler)
            if keep is not None:
                x = composite(x, resize(keep[0], up.resolution), mask_at(keep[1], up.resolution))
        return x

    @torch.no_grad()
    def invert(self, images, z_i: torch.Tensor | None = None, steps: int | None = None,
               refine: int | None = None, guidance: float | None = None) -> torch.Tensor:
        """DDIM inversion of the base decoder conditioned on z_i (from CLIP if not given):
        x_T [N, 3, r, r] such that decode(z_i, x_T, eta=0, upsample=False) gives back the
        images at base resolution. refine=0 is plain DDIM inversion; the default refines
        each step by fixed-point iterations (at most 100)."""
        steps = self._steps(self.decoder, steps, "steps")
        refine = _check_refine(refine)
        guidance = check_guidance(guidance)
        x = as_image_batch(images, limit=self.defaults.max_batch)
        if z_i is not None:
            z_i = self._check_z(z_i)
            if z_i.shape[0] != x.shape[0]:
                raise ValueError(f"z_i has {z_i.shape[0]} rows but images holds {x.shape[0]} images; give one "
                                 "embedding per image, or z_i=None to compute them with CLIP")
        z_i = self.clip.encode_image(x) if z_i is None else _unit_length(z_i)
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
        refine = _check_refine(refine)
        x = as_image_batch(images, limit=self.defaults.max_batch)
        z_i = self.clip.encode_image(x)
        return Bipartite(z_i, self.invert(x, z_i=z_i, refine=refine))

    @torch.no_grad()
    def variations(self, images=None, n: int = 4, eta: float = 1.0, seed: int = 0, upsample: bool = True,
                   guidance: float | None = None, latent: Bipartite | None = None) -> torch.Tensor:
        """n variations of each image: its bipartite latent decoded with DDIM at eta > 0,
        which re-draws noise along the way and so varies what z_i does not pin down.
        eta = 0 returns the reconstruction (n identical copies). Returns [N * n, 3, R, R],
        image 0's variations first. latent: a precomputed pipe.encode(images); guidance:
        the decoder's z_i guidance (default: the inversion's, so eta = 0 reconstructs)."""
        n = check_int(n, "n", 1, hint="a positive integer, the number of variations per image")
        eta = check_eta(eta)
        seed = check_seed(seed)
        upsample = check_flag(upsample, "upsample")
        guidance = check_guidance(guidance)
        source = self._source(images, latent)
        self._check_batch(self._count(source) * n, "variations (images x n)")
        z_i, x_T = self._encoded(source)
        return self.decode(z_i.repeat_interleave(n, 0), x_T=x_T.repeat_interleave(n, 0), eta=eta, seed=seed,
                           upsample=upsample, guidance=guidance)

    def _interpolation_ends(self, images_a, images_b, latents, need_x_T: bool) -> tuple:
        """The two checked ends of an interpolation: Bipartite latents or image batches."""
        if latents is not None:
            if isinstance(latents, Bipartite) or not (isinstance(latents, (tuple, list)) and len(latents) == 2):
                raise TypeError("latents must be a pair (pipe.encode(images_a), pipe.encode(images_b)), got "
                                + ("one latent" if isinstance(latents, Bipartite) else type(latents).__name__))
            return tuple(self._as_bipartite(lat, f"latents[{i}]", need_x_T) for i, lat in enumerate(latents))
        if images_a is None or images_b is None:
            raise ValueError("give both images_a and images_b (or latents=(pipe.encode(a), pipe.encode(b)))")
        return (as_image_batch(images_a, "images_a", limit=self.defaults.max_batch),
                as_image_batch(images_b, "images_b", limit=self.defaults.max_batch))

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
        steps = check_int(steps, "steps", 2, hint="the two ends included")
        seed = check_seed(seed)
        upsample = check_flag(upsample, "upsample")
        ends = self._interpolation_ends(images_a, images_b, latents, need_x_T=x_T == "slerp")
        n = self._count(ends[0])
        if self._count(ends[1]) != n:
            what = "the two latents" if latents is not None else "images_a and images_b"
            raise ValueError(f"{what} must pair up: got {n} and {self._count(ends[1])} images")
        self._check_batch(n * steps, "interpolate (pairs x steps)")
        if x_T == "slerp":
            a, b = (self._encoded(e) for e in ends)
        else:
            a, b = (e if isinstance(e, Bipartite) else Bipartite(self.clip.encode_image(e), None) for e in ends)
        r = self.base_resolution
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
    def text_diff(self, images=None, from_caption=None, to_caption=None, thetas=(0.0, 0.25, 0.5),
                  seed: int = 0, upsample: bool = True, latent: Bipartite | None = None) -> torch.Tensor:
        """Edit images towards a new description (section 3.3): z_d = normalise(z_t - z_t0)
        from the CLIP text embeddings of to_caption (z_t) and from_caption (z_t0), then
        z_i' = slerp(z_i, z_d, theta), decoded with the image's inverted x_T held fixed, so
        theta = 0 gives the input back. The captions (both required) are one string for
        every image or a list with one per image, and must name something of the stack's
        world (`world.check_caption`: a clear error with close names otherwise); thetas lie
        in [0, 1]. Returns
        [N * len(thetas), 3, R, R], image 0's row first."""
        from .latents import slerp, text_diff_direction

        thetas = _check_thetas(thetas)
        seed = check_seed(seed)
        upsample = check_flag(upsample, "upsample")
        for name, c, example in (("from_caption", from_caption, "what the image shows now, e.g. 'a red circle'"),
                                 ("to_caption", to_caption, "what it should show, e.g. 'a blue circle'")):
            if c is None:
                raise TypeError(f"text_diff needs {name}: {example}")
        source = self._source(images, latent)
        n = self._count(source)
        pairs = [self._captions_per_item(c, n, name, "image")
                 for name, c in (("from_caption", from_caption), ("to_caption", to_caption))]
        if self.world is not None:
            for name, captions in (("from_caption", pairs[0]), ("to_caption", pairs[1])):
                for caption in dict.fromkeys(captions):
                    self.world.check_caption(caption, name)
        for source_caption, target in zip(*pairs):
            if source_caption.strip().lower() == target.strip().lower():
                raise ValueError(f"from_caption and to_caption are the same ({source_caption!r}): a text diff needs"
                                 " two different descriptions; change to_caption")
        k = len(thetas)
        self._check_batch(n * k, "text_diff (images x thetas)")
        z_i, x_T = self._encoded(source)
        z_t0, z_t = self.clip.encode_text(pairs[0]), self.clip.encode_text(pairs[1])
        z_d = text_diff_direction(z_t, z_t0)                                    # [N, D]
        z = torch.stack([slerp(z_i, z_d, th) for th in thetas], 1).flatten(0, 1)  # [N*k, D]
        return self.decode(z, x_T=x_T.repeat_interleave(k, 0), eta=0.0, seed=seed, upsample=upsample)

    # ------------------------------------------------------------------ edits

    @torch.no_grad()
    def inpaint(self, images, mask, caption=None, z_i: torch.Tensor | None = None, prior: str = "diffusion",
                seed: int = 0, steps: int | None = None, resample: int | None = None, eta: float = 1.0,
                guidance: float | None = None, upsample: bool = True, prior_steps: int | None = None,
                method: str | None = None, progress: bool = False) -> torch.Tensor:
        """Redraw the masked region of images so that the whole image fits a caption (through a
        prior's z_i, as generate() does) or a given image embedding z_i [N or 1, D]; every
        pixel outside the mask is kept exactly, at the base resolution and, with upsample, at
        the full one (the input resized to it). mask: 1 / True where the image is redrawn
        (`edits.as_mask` lists the forms; `edits.box_mask` makes boxes). method: "glide", the
        inpainting decoder (fine-tuned to read the kept pixels and the mask; one sampling of
        `steps`), or "repaint", the plain decoder by RePaint sampling (steps, resample: its
        jumps back per step; eta > 0); default pipe.defaults.inpaint_method, "repaint" if the
        stack has no inpainting decoder. Then the upsamplers, with the kept pixels composited
        back at every stage.
        An empty mask returns the input, a full one is plain decoding (both with a warning).
        Returns [N, 3, R, R]."""
        from .edits import as_mask, mask_at

        if method is None:
            method = self.defaults.inpaint_method if self.inpainter is not None else "repaint"
        if method not in ("glide", "repaint"):
            raise ValueError(f"method must be 'glide' or 'repaint', got {method!r}")
        if method == "glide" and self.inpainter is None:
            raise ValueError("method='glide' needs an inpainting decoder, and this stack has none: use "
                             "method='repaint', or load_unclip('shapes'), which ships one")
        decoder = self.inpainter if method == "glide" else self.decoder
        seed = check_seed(seed)
        steps = self._steps(decoder, steps, "steps")
        resample = check_int(resample, "resample", 1, 100, optional=True,
                             hint="how often each step is redone to harmonise the region (1: no resampling)")
        eta = check_eta(eta)
        if eta == 0:
            raise ValueError("eta must be > 0 for inpainting: the kept pixels are re-noised at every step and the "
                             "region needs its own noise to follow them (1.0, the default, is RePaint's)")
        guidance = check_guidance(guidance)
        upsample = check_flag(upsample, "upsample")
        upsampler_steps = self._upsampler_steps(None) if upsample else ()
        if (caption is None) == (z_i is None):
            raise ValueError("inpaint needs exactly one of caption (what the image should show, e.g. 'a blue star on"
                             " the left') or z_i (an image embedding, e.g. pipe.clip.encode_image(other))")
        if caption is not None:
            model = self.prior(prior)
            prior_steps = self._steps(model, prior_steps, "prior_steps")
        x = as_image_batch(images, limit=self.defaults.max_batch)
        n = x.shape[0]
        mask = as_mask(mask, n)
        if caption is not None:
            captions = self.check_captions(self._captions_per_item(caption, n, "caption", "image"), "caption")
        else:
            z_i = self._check_z(z_i)
            if z_i.shape[0] not in (1, n):
                raise ValueError(f"z_i has {z_i.shape[0]} rows for {n} images; give one embedding, or one per image")
            z_i = _unit_length(z_i).expand(n, -1)
        size = self.resolution if upsample else self.base_resolution
        if not (mask > 0).any():
            warn_user("inpaint: the mask is empty (all zeros), so nothing is redrawn and the input is returned "
                      f"(at {size} px); mark the region to redraw with ones")
            return resize(x, size)
        if (mask == 1).all():
            warn_user("inpaint: the mask covers the whole image, so nothing is kept: this is plain "
                      "generation from the caption or z_i")
        d = self.defaults
        if caption is not None:
            z_i, _ = self._sample_z_i(captions, prior, seed, None, prior_steps, self._sampler(None))
        r = self.base_resolution
        base_mask = mask_at(mask, r)
        out = decoder.inpaint(resize(x, r), base_mask, z_i, steps=steps or d.inpaint_steps,
                              resample=resample or d.inpaint_resample, eta=eta,
                              guidance_clip=d.decoder_guidance if guidance is None else guidance,
                              generator=torch.Generator().manual_seed(seed + 1), progress=progress)
        return self._upsample(out, seed + 1, upsampler_steps, self._sampler(None), keep=(x, mask))


# z_i rows whose norm differs from 1 by more than this are normalised (CLIP's are unit vectors;
# half-precision rounding stays well inside it); below ZERO_NORM a row has no direction
UNIT_TOLERANCE, ZERO_NORM = 1e-2, 1e-6


def _unit_length(z: torch.Tensor, name: str = "z_i") -> torch.Tensor:
    """z [N, D] (checked: no zero rows) with every row of unit length: rows already close to
    it untouched (bit for bit), the others normalised with a warning."""
    norms = z.norm(dim=-1, keepdim=True)
    off = (norms - 1).abs() > UNIT_TOLERANCE
    if off.any():
        i = int(off[:, 0].nonzero()[0])
        warn_user(f"{name}: {int(off.sum())} of {z.shape[0]} rows are not unit vectors (row {i} has norm "
                  f"{float(norms[i]):.3g}); CLIP embeddings are, so they were normalised. Pass unit vectors "
                  "(F.normalize(z_i, dim=-1)) to silence this.")
        z = torch.where(off, z / norms, z)
    return z


def _check_refine(refine) -> int | None:
    return check_int(refine, "refine", 0, MAX_REFINE, optional=True,
                     hint="fixed-point iterations per inversion step; 0: plain DDIM inversion, 3: the default")


def _check_thetas(thetas) -> list[float]:
    """text_diff's thetas: one number or a list (tuple, 1-D tensor or array) of numbers in [0, 1]."""
    if isinstance(thetas, torch.Tensor):
        if thetas.dim() > 1:
            raise ValueError("thetas must be a number or a 1-D list of numbers in [0, 1], got shape "
                             f"{list(thetas.shape)}")
        thetas = thetas.reshape(-1).tolist()
    if is_real(thetas):
        thetas = [thetas]
    if isinstance(thetas, (str, bytes, dict)) or not hasattr(thetas, "__iter__"):
        raise TypeError("thetas must be a number or a list of numbers in [0, 1], got "
                        f"{type(thetas).__name__} {thetas!r}")
    thetas = list(thetas)
    if not thetas:
        raise ValueError("thetas: give at least one value in [0, 1]")
    return [check_number(float(t) if isinstance(t, torch.Tensor) and t.numel() == 1 else t, f"thetas[{i}]", 0, 1,
                         hint="0: the input, 1: the text direction itself") for i, t in enumerate(thetas)]


def load_unclip(name: str = "shapes", priors: tuple = ("diffusion", "autoregressive")) -> UnCLIP:
    """The shipped stack of a world ("shapes" or "emoji"): its CLIP, the priors named (a tuple
    of "diffusion" and / or "autoregressive", or () for none), decoder, upsamplers and, where
    the world ships one, the inpainting decoder of pipe.inpaint. Which files: the world's
    `weights` (worlds.WorldWeights)."""
    from .checkpoints import SHIPPED, data_dir
    from .prior import load_prior
    from .worlds import get_world, world_weights

    if not isinstance(name, str) or name not in ("shapes", "emoji"):
        from .checks import close_matches

        raise KeyError(f"unknown unCLIP stack {name!r}{close_matches(str(name), ('shapes', 'emoji'))}; "
                       "known: ['shapes', 'emoji']")
    weights = world_weights(name)
    priors = (priors,) if isinstance(priors, str) else priors
    if not isinstance(priors, (tuple, list)):
        raise TypeError(f"priors must be a tuple of prior names such as ('diffusion', 'autoregressive'), got "
                        f"{type(priors).__name__}")
    unknown = [p for p in priors if p not in weights.priors]
    if unknown:
        raise ValueError(f"priors: unknown {unknown}; choose from {list(weights.priors)}, e.g. priors=('diffusion',)"
                         " (or () for none)")
    # every file is checked before the first one loads (a missing prior fails at once, not after the CLIP)
    needed = [("clip", weights.clip), ("decoder", weights.decoder)] + \
        [("upsampler", u) for u in weights.upsamplers] + [("prior", weights.priors[p]) for p in priors] + \
        ([("decoder", weights.inpainter)] if weights.inpainter else [])
    missing = [f"{kind}/{short}" for kind, short in needed
               if f"{kind}/{short}" not in SHIPPED or not (data_dir() / f"{SHIPPED[f'{kind}/{short}'][1]}.safetensors").exists()]
    if missing:
        raise FileNotFoundError(
            f"load_unclip({name!r}): shipped weights missing: {missing}. Restore them with `git checkout -- data` "
            f"or train them with `unclip-lab train <kind> --world {name} --export ...` (README: the {name} world's "
            "models)" + (f"; the stack without them: priors=() and pipe.decode" if all(m.startswith("prior/")
                                                                                       for m in missing) else ""))
    return UnCLIP(load_clip(weights.clip), load_decoder(weights.decoder),
                  [load_upsampler(u) for u in weights.upsamplers],
                  priors={p: load_prior(weights.priors[p]) for p in priors},
                  inpainter=load_decoder(weights.inpainter) if weights.inpainter else None,
                  world=get_world(name))
