"""The CLIP-conditioned diffusion decoder (GLIDE-style UNet) and the diffusion upsamplers.

Decoder P(x | z_i, y), as in unCLIP section 2.1:
- a UNet predicts the noise of a noised image x_t;
- the CLIP image embedding z_i is projected and *added to the timestep embedding*, and
  projected into `clip_tokens` (4) extra tokens *concatenated to the caption-encoder tokens*
  that every attention layer reads (GLIDE's encoder_kv);
- for classifier-free guidance, training replaces z_i by a learned null embedding 10% of
  the time and the caption by a learned null token 50% of the time.

Upsamplers: the same UNet without caption or z_i, conditioned on the low-resolution image
(bicubic-upsampled and concatenated as extra input channels), trained on random crops of
degraded inputs (Gaussian blur for the first stage, a BSR-like mix for the second).

Images inside the models live in [-1, 1].
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .distributed import batch_rand


@dataclass(frozen=True)
class UNetConfig:
    resolution: int = 32
    base_channels: int = 64
    channel_mults: tuple = (1, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple = (16, 8)
    head_channels: int = 32
    dropout: float = 0.0
    # conditioning: 0 disables
    clip_dim: int = 128          # width of z_i
    text_dim: int = 128          # width of the caption-encoder tokens
    clip_tokens: int = 4         # z_i -> this many extra context tokens
    low_res_channels: int = 0    # upsamplers: channels of the conditioning image
    # inpainting decoders (GLIDE's way): the kept pixels and the keep-mask as 4 more input
    # channels of the trunk, after all others (so a warm start pads the input layer with zeros)
    inpaint_channels: int = 0
    pixel_shuffle: int = 1       # >1: run the UNet at resolution / f on space-to-depth pixels
    # >0 (with pixel_shuffle > 1): a full-resolution output stage of this width that reads
    # x_t and the folded trunk's prediction on the image's own pixel grid and corrects it
    full_res_channels: int = 0

    def __post_init__(self):
        object.__setattr__(self, "channel_mults", tuple(self.channel_mults))
        object.__setattr__(self, "attn_resolutions", tuple(self.attn_resolutions))


# Sized for a 2-core CPU (measured in BENCHMARKS.md). The trunk of every model works on
# space-to-depth pixels (pixel_shuffle): the base decoder's trunk sees 32x32x3 as 16x16x12, so
# its convolutions run at 16 and 8 px, where it can afford 64-128 channels and attention at
# 8x8 (2.2x faster per training step than a plain 32 px UNet of the same size). A trunk alone
# predicts each 2x2 block's four pixels from separate output channels, and its samples carry
# a period-2 grid texture on flat areas; a full-resolution output stage (full_res_channels)
# corrects the trunk's prediction on the image's own pixel grid, at a fraction of its cost.
DECODER_PRESETS = {
    "base32": UNetConfig(base_channels=64, channel_mults=(1, 2), num_res_blocks=2, attn_resolutions=(8,),
                         pixel_shuffle=2, full_res_channels=32),
    # the emoji world's: 1,600 concepts in four styles need more than shapes do: wider, one more
    # level (the trunk down to 4x4, attention at 8 and 4); about 2x base32's time per step
    "emoji32": UNetConfig(base_channels=96, channel_mults=(1, 2, 2), num_res_blocks=2, attn_resolutions=(8, 4),
                          pixel_shuffle=2, full_res_channels=32),
    "micro": UNetConfig(base_channels=32, channel_mults=(1, 2), num_res_blocks=1, attn_resolutions=(8,),
                        pixel_shuffle=2, full_res_channels=16),
    # the trunk alone: the first stage of the shipped decoder's training (README), and the
    # texture's baseline
    "folded32": UNetConfig(base_channels=64, channel_mults=(1, 2), num_res_blocks=2, attn_resolutions=(8,),
                           pixel_shuffle=2),
    # base32 reading the masked image and its mask too: fine-tuned from the shipped decoder
    "inpaint32": UNetConfig(base_channels=64, channel_mults=(1, 2), num_res_blocks=2, attn_resolutions=(8,),
                            pixel_shuffle=2, full_res_channels=32, inpaint_channels=4),
}
_UP = dict(channel_mults=(1, 2), num_res_blocks=1, attn_resolutions=(), clip_dim=0, text_dim=0,
           clip_tokens=0, low_res_channels=3)
UPSAMPLER_PRESETS = {
    "up64": UNetConfig(resolution=64, base_channels=48, pixel_shuffle=2, full_res_channels=24, **_UP),
    # 2x2 folding: at 4x4 (32 px inside) this stage learned too little of the residual to
    # beat bicubic; 32 channels at 64 px cost about the same per step (BENCHMARKS.md)
    "up128": UNetConfig(resolution=128, base_channels=32, pixel_shuffle=2, full_res_channels=16, **_UP),
    # the trunks alone: the first training stage of each shipped upsampler, and the baseline
    "up64_folded": UNetConfig(resolution=64, base_channels=48, pixel_shuffle=2, **_UP),
    "up128_folded": UNetConfig(resolution=128, base_channels=32, pixel_shuffle=2, **_UP),
}


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of timesteps [N] -> [N, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(ch, 32), ch)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GN-SiLU-conv, scale/shift from the embedding, GN-SiLU-dropout-conv, plus skip."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float):
        super().__init__()
        self.in_layers = nn.Sequential(_norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * cout))
        self.out_norm = _norm(cout)
        self.out_layers = nn.Sequential(nn.SiLU(), nn.Dropout(dropout), _zero(nn.Conv2d(cout, cout, 3, padding=1)))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.out_layers(self.out_norm(h) * (1 + scale) + shift)
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over pixels whose keys/values also include context tokens
    (caption tokens + z_i tokens), as GLIDE's encoder_kv. x: [N, C, H, W]; ctx: [N, L, C]."""

    def __init__(self, ch: int, head_channels: int, ctx_width: int = 0):
        super().__init__()
        self.heads = max(1, ch // head_channels)
        self.norm = _norm(ch)
        self.qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.ctx_kv = nn.Linear(ctx_width, 2 * ch) if ctx_width else None
        self.proj = _zero(nn.Conv1d(ch, ch, 1))

    def forward(self, x, ctx=None, ctx_mask=None):
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x).reshape(n, c, h * w)).chunk(3, dim=1)  # [N, C, HW]
        mask = None
        if self.ctx_kv is not None and ctx is not None:
            ck, cv = self.ctx_kv(ctx).transpose(1, 2).chunk(2, dim=1)       # [N, C, L]
            k, v = torch.cat([ck, k], dim=2), torch.cat([cv, v], dim=2)
            if ctx_mask is not None:
                mask = torch.cat([ctx_mask, ctx_mask.new_ones(n, h * w)], dim=1)[:, None, None, :]
        split = lambda z: z.reshape(n, self.heads, c // self.heads, -1).transpose(2, 3)  # noqa: E731
        out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask)
        out = out.transpose(2, 3).reshape(n, c, h * w)
        return x + self.proj(out).reshape(n, c, h, w)


class UNet(nn.Module):
    """GLIDE/ADM-style UNet predicting epsilon.

    forward(x_t [N, 3, R, R], t [N], z_i [N, clip_dim] | None, text [N, L, text_dim] | None,
            text_mask [N, L] bool | None, low_res [N, 3, R, R] | None) -> [N, 3, R, R]
    z_i = None means "dropped" (the learned null embedding); text = None likewise;
    clip_keep / text_keep [N] bool drop them per example (training).
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = c = config
        ch = c.base_channels
        emb_dim = 4 * ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        ctx_width = ch * c.channel_mults[-1]
        self.has_context = c.clip_dim > 0 or c.text_dim > 0
        if c.clip_dim:
            self.clip_to_emb = nn.Linear(c.clip_dim, emb_dim)
            self.clip_to_tokens = nn.Linear(c.clip_dim, c.clip_tokens * ctx_width)
            self.null_clip = nn.Parameter(torch.zeros(c.clip_dim))
        if c.text_dim:
            self.text_proj = nn.Sequential(nn.LayerNorm(c.text_dim), nn.Linear(c.text_dim, ctx_width))
            self.null_text = nn.Parameter(torch.randn(1, 1, ctx_width) * 0.02)
        # every attention layer reads the context through its own projection to its width
        self.ctx_width = ctx_width

        f2 = c.pixel_shuffle ** 2
        self.input = nn.Conv2d((3 + c.low_res_channels + c.inpaint_channels) * f2, ch, 3, padding=1)
        self.down = nn.ModuleList()
        skips, cur, res = [ch], ch, c.resolution // c.pixel_shuffle
        for level, mult in enumerate(c.channel_mults):
            for _ in range(c.num_res_blocks):
                layers = nn.ModuleList([ResBlock(cur, ch * mult, emb_dim, c.dropout)])
                cur = ch * mult
                if res in c.attn_resolutions:
                    layers.append(self._attention(cur))
                self.down.append(layers)
                skips.append(cur)
            if level < len(c.channel_mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(cur, cur, 3, stride=2, padding=1)]))
                skips.append(cur)
                res //= 2
        self.middle = nn.ModuleList([ResBlock(cur, cur, emb_dim, c.dropout), self._attention(cur),
                                     ResBlock(cur, cur, emb_dim, c.dropout)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(c.channel_mults))):
            for i in range(c.num_res_blocks + 1):
                layers = nn.ModuleList([ResBlock(cur + skips.pop(), ch * mult, emb_dim, c.dropout)])
                cur = ch * mult
                if res in c.attn_resolutions:
                    layers.append(self._attention(cur))
                if level > 0 and i == c.num_res_blocks:
                    layers.append(Upsample(cur))
                    res *= 2
                self.up.append(layers)
        self.out = nn.Sequential(_norm(cur), nn.SiLU(), _zero(nn.Conv2d(cur, 3 * f2, 3, padding=1)))
        full = c.full_res_channels if c.pixel_shuffle > 1 else 0
        if full:
            # The folded trunk writes each 2x2 block's four pixels from four separate output
            # channels, and its samples carry a period-2 grid on flat areas: small per-step
            # offsets that the sampler accumulates, too small in the loss for training to
            # remove (a correction stage alone, 300 steps, left 26x the renders' grid power).
            # So the trunk's prediction is low-passed (`nyquist_blur`), which removes any 2x2
            # pattern by construction, and this stage, which sees x_t (and the low-res
            # condition) and that prediction on the full pixel grid, where one set of
            # convolution weights serves every pixel, adds back the fine detail. Its last
            # layer starts at zero, so a warm start begins from the trunk's blurred output.
            self.refine_in = nn.Conv2d(2 * 3 + c.low_res_channels, full, 3, padding=1)
            self.refine = nn.ModuleList([ResBlock(full, full, emb_dim, c.dropout) for _ in range(2)])
            self.refine_out = nn.Sequential(_norm(full), nn.SiLU(), _zero(nn.Conv2d(full, 3, 3, padding=1)))

    def _attention(self, ch: int) -> nn.Module:
        return AttentionBlock(ch, self.config.head_channels, self.ctx_width if self.has_context else 0)

    def context(self, n, device, z_i=None, text=None, text_mask=None, clip_keep=None, text_keep=None):
        """Embedding offset [N, E] and context tokens [N, L, W] with mask [N, L].

        A dropped condition (None, or False in its keep-mask [N]) is replaced by its learned
        null: z_i by `null_clip`; the caption by the single `null_text` token, which is
        masked out wherever the caption is kept."""
        c = self.config
        emb_add = 0
        tokens, masks = [], []
        ones = lambda k: torch.ones(n, k, dtype=torch.bool, device=device)  # noqa: E731
        if c.clip_dim:
            if z_i is None:
                z = self.null_clip.expand(n, -1)
            else:
                if z_i.shape != (n, c.clip_dim):
                    raise ValueError(f"z_i must have shape [{n}, {c.clip_dim}], got {list(z_i.shape)}")
                z = z_i if clip_keep is None else torch.where(clip_keep[:, None], z_i, self.null_clip)
            emb_add = self.clip_to_emb(z)
            tokens.append(self.clip_to_tokens(z).reshape(n, c.clip_tokens, self.ctx_width))
            masks.append(ones(c.clip_tokens))
        if c.text_dim:
            keep = torch.zeros(n, dtype=torch.bool, device=device) if text is None else (
                ones(1)[:, 0] if text_keep is None else text_keep)
            tokens.append(self.null_text.expand(n, -1, -1))
            masks.append(~keep[:, None])
            if text is not None:
                if text.shape[0] != n or text.shape[-1] != c.text_dim:
                    raise ValueError(f"caption tokens must have shape [{n}, L, {c.text_dim}], got {list(text.shape)}")
                tokens.append(self.text_proj(text))
                m = text_mask if text_mask is not None else ones(text.shape[1])
                masks.append(m & keep[:, None])
        if not tokens:
            return emb_add, None, None
        return emb_add, torch.cat(tokens, 1), torch.cat(masks, 1)

    def forward(self, x, t, z_i=None, text=None, text_mask=None, low_res=None,
                clip_keep=None, text_keep=None, inpaint=None):
        n = x.shape[0]
        emb = self.time_mlp(timestep_embedding(t, self.config.base_channels))
        emb_add, ctx, ctx_mask = self.context(n, x.device, z_i, text, text_mask, clip_keep, text_keep)
        emb = emb + emb_add
        if self.config.low_res_channels:
            if low_res is None:
                raise ValueError("this upsampler needs the low-resolution image (low_res=...)")
            x = torch.cat([x, low_res], dim=1)
        f = self.config.pixel_shuffle
        x_full = x
        if self.config.inpaint_channels:
            if inpaint is None:
                raise ValueError("this inpainting decoder needs the masked image and its mask (inpaint=...)")
            x = torch.cat([x, inpaint], dim=1)
        h = self.input(F.pixel_unshuffle(x, f) if f > 1 else x)
        hs = [h]
        for layers in self.down:
            for layer in layers:
                h = self._run_layer(layer, h, emb, ctx, ctx_mask)
            hs.append(h)
        for layer in self.middle:
            h = self._run_layer(layer, h, emb, ctx, ctx_mask)
        for layers in self.up:
            h = torch.cat([h, hs.pop()], dim=1)
            for layer in layers:
                h = self._run_layer(layer, h, emb, ctx, ctx_mask)
        out = self.out(h)
        if f == 1:
            return out
        out = F.pixel_shuffle(out, f)
        if self.config.full_res_channels:
            # the trunk's share is low-passed so that no 2x2 pattern survives it; the rest of
            # the spectrum comes from the full-resolution stage, which cannot imprint one
            out = nyquist_blur(out)
            r = self.refine_in(torch.cat([x_full, out], dim=1))
            for block in self.refine:
                r = block(r, emb)
            out = out + self.refine_out(r)
        return out

    @staticmethod
    def _run_layer(layer, h, emb, ctx, ctx_mask):
        if isinstance(layer, ResBlock):
            return layer(h, emb)
        if isinstance(layer, AttentionBlock):
            return layer(h, ctx, ctx_mask)
        return layer(h)


def nyquist_blur(x: torch.Tensor) -> torch.Tensor:
    """x [N, C, H, W] filtered by the separable binomial kernel [1, 2, 1] / 4 (reflected at
    the borders). Its response is exactly zero at the Nyquist frequency of either axis, so it
    removes any pattern repeating every 2 pixels (the frequencies (0, H/2), (H/2, 0) and
    (H/2, H/2)) and attenuates its neighbourhood, while leaving low frequencies nearly as they are."""
    c = x.shape[1]
    k = x.new_tensor([0.25, 0.5, 0.25])
    weight = (k[:, None] * k[None, :]).expand(c, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), weight, groups=c)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def inpaint_condition(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What an inpainting decoder reads besides x_t: [N, 4, R, R], the kept pixels in [-1, 1]
    (0 where redrawn) and the keep-mask, from images [N, 3, R, R] in [0, 1] and the redraw
    mask [N, 1, R, R] (1: redraw)."""
    keep = 1 - mask
    return torch.cat([(images * 2 - 1) * keep, keep], dim=1)


def drop_conditions(z_i: torch.Tensor, text: torch.Tensor, generator: torch.Generator,
                    p_clip: float = 0.1, p_text: float = 0.5):
    """Classifier-free guidance dropout: per example, z_i -> null with prob p_clip, caption
    -> null with prob p_text. Returns boolean keep-masks [N] for each."""
    n = z_i.shape[0]
    keep_clip = batch_rand((n,), generator) >= p_clip
    keep_text = batch_rand((n,), generator) >= p_text
    return keep_clip, keep_text


# ----------------------------------------------------------------------------- samplers

class _DiffusionModel(nn.Module):
    """A UNet and the diffusion process it reverses.

    The linear schedule, not the cosine one: the cosine schedule's last step has
    alpha_bar ~ 2e-9, which makes the top DDIM step (and so inversion) ill-conditioned:
    sqrt(alpha_bar_T / alpha_bar_prev) is 1.6e-3 at 50 steps, against 0.82 for linear.

    The UNet predicts v = sqrt(a) eps - sqrt(1 - a) x0 (Salimans & Ho), not eps: at high
    noise x0 = (x_t - sqrt(1 - a) eps) / sqrt(a) multiplies any error of an eps model by
    up to 1/sqrt(a_T) = 158, and our first eps decoder (1000 steps) sampled saturated
    colour fields because of it; from v, x0 = sqrt(a) x_t - sqrt(1 - a) v is well-conditioned."""

    def __init__(self, unet: UNet, schedule: str = "linear", num_steps: int = 1000, prediction: str = "v"):
        super().__init__()
        from .diffusion import GaussianDiffusion

        self.unet = unet
        self.diffusion = GaussianDiffusion(schedule, num_steps, prediction=prediction)

    @property
    def resolution(self) -> int:
        return self.unet.config.resolution


class DiffusionDecoder(_DiffusionModel):
    """The decoder P(x | z_i, y): a UNet plus its diffusion, with guided sampling and
    inversion. Images in and out in [0, 1]; z_i [N, clip_dim]; caption tokens from CLIP.

    Guidance with two dropped conditions (z_i and caption), three model calls per step:
        eps = e(-, -) + s_clip * (e(z, -) - e(-, -)) + s_text * (e(z, y) - e(z, -))
    With no caption, two calls: eps = e(-) + s_clip * (e(z) - e(-)).
    """

    def model_fn(self, z_i: torch.Tensor | None, text=None, text_mask=None,
                 guidance_clip: float = 1.0, guidance_text: float = 1.0, inpaint: torch.Tensor | None = None):
        """eps(x_t, t) with classifier-free guidance folded in (one batched UNet call).
        inpaint [N, 4, R, R]: an inpainting decoder's kept pixels and mask (`inpaint_condition`)."""
        use_text = text is not None and self.unet.config.text_dim > 0
        if inpaint is not None:
            def unet(x, t, **kw):   # every guidance part reads the same masked image
                return self.unet(x, t, inpaint=inpaint.repeat(x.shape[0] // inpaint.shape[0], 1, 1, 1), **kw)
        else:
            unet = self.unet

        def fn(x, t):
            n = x.shape[0]
            if z_i is None and use_text:
                # caption alone (z_i dropped): the GLIDE-like baseline of the paper's section 5.1
                if guidance_text == 1.0:
                    return unet(x, t, text=text, text_mask=text_mask)
                keep = torch.cat([torch.zeros(n, dtype=torch.bool, device=x.device),
                                  torch.ones(n, dtype=torch.bool, device=x.device)])
                out = unet(torch.cat([x, x]), torch.cat([t, t]), text=text.repeat(2, 1, 1),
                           text_mask=text_mask.repeat(2, 1), text_keep=keep)
                uncond, cond = out.chunk(2)
                return uncond + guidance_text * (cond - uncond)
            if z_i is None:
                return unet(x, t)
            xs, ts = [x, x], [t, t]
            zs = [z_i, z_i]
            ck = [torch.zeros(n, dtype=torch.bool, device=x.device), torch.ones(n, dtype=torch.bool, device=x.device)]
            parts = 2
            if use_text:
                xs.append(x); ts.append(t); zs.append(z_i)
                ck.append(torch.ones(n, dtype=torch.bool, device=x.device))
                parts = 3
            kw = {}
            if use_text:
                kw = dict(text=text.repeat(parts, 1, 1), text_mask=text_mask.repeat(parts, 1),
                          text_keep=torch.cat([torch.zeros(2 * n, dtype=torch.bool, device=x.device),
                                               torch.ones(n, dtype=torch.bool, device=x.device)]))
            if guidance_clip == 1.0 and not use_text:
                return unet(x, t, z_i=z_i)
            out = unet(torch.cat(xs), torch.cat(ts), z_i=torch.cat(zs), clip_keep=torch.cat(ck), **kw)
            chunks = out.chunk(parts)
            eps = chunks[0] + guidance_clip * (chunks[1] - chunks[0])
            if use_text:
                eps = eps + guidance_text * (chunks[2] - chunks[1])
            return eps

        return fn

    @torch.no_grad()
    def sample(self, z_i: torch.Tensor, text=None, text_mask=None, x_T: torch.Tensor | None = None,
               steps: int = 25, eta: float = 0.0, guidance_clip: float = 3.0, guidance_text: float = 1.0,
               generator: torch.Generator | None = None, clip_x0: bool = True, progress: bool = False,
               sampler: str = "ddim", spacing: str | None = None, inpaint: torch.Tensor | None = None):
        """Images [N, 3, R, R] in [0, 1] decoded from z_i [N, clip_dim] (and optional caption
        tokens). x_T [N, 3, R, R] fixes the starting noise; otherwise it is drawn from
        `generator`. clip_x0=False keeps the sampler exactly invertible. z_i=None decodes
        from the caption alone (guided by guidance_text), or unconditionally without one.
        sampler: "ddim" (any eta; the inverse of `invert`) or "dpm++" (DPM-Solver++(2M), eta 0);
        spacing: their timesteps ("uniform", "logsnr"; None: the sampler's default)."""
        if z_i is None and text is None and x_T is None:
            raise ValueError("give z_i, caption tokens or x_T: nothing says how many images to draw")
        n = z_i.shape[0] if z_i is not None else (text.shape[0] if text is not None else x_T.shape[0])
        r = self.resolution
        fn = self.model_fn(z_i, text, text_mask, guidance_clip, guidance_text, inpaint)
        if x_T is None:
            x_T = torch.randn((n, 3, r, r), generator=generator).to(self.unet.out[-1].weight.device)
        elif x_T.shape != (n, 3, r, r):
            raise ValueError(f"x_T must have shape [{n}, 3, {r}, {r}], got {list(x_T.shape)}")
        x = self.diffusion.sample(fn, x_T=x_T, steps=steps, sampler=sampler, eta=eta, generator=generator,
                                  clip_x0=1.0 if clip_x0 else None, progress=progress, spacing=spacing)
        return ((x + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def invert(self, images: torch.Tensor, z_i: torch.Tensor, steps: int = 50, refine: int = 0,
               guidance_clip: float = 1.0, progress: bool = False) -> torch.Tensor:
        """x_T [N, 3, R, R] such that sample(z_i, x_T=x_T, eta=0, clip_x0=False) gives back
        the images [N, 3, R, R] in [0, 1] (exactly in the limit of refine iterations)."""
        if images.shape[-1] != self.resolution or images.shape[-2] != self.resolution:
            raise ValueError(f"images must be {self.resolution}x{self.resolution} for inversion, got "
                             f"{list(images.shape[-2:])}; resize them first")
        fn = self.model_fn(z_i, None, None, guidance_clip)
        return self.diffusion.ddim_invert(fn, images * 2 - 1, steps=steps, refine=refine, progress=progress)

    @torch.no_grad()
    def inpaint(self, images: torch.Tensor, mask: torch.Tensor, z_i: torch.Tensor | None, text=None,
                text_mask=None, steps: int = 25, resample: int = 4, eta: float = 1.0, guidance_clip: float = 3.0,
                guidance_text: float = 1.0, generator: torch.Generator | None = None,
                progress: bool = False) -> torch.Tensor:
        """images [N, 3, R, R] in [0, 1] with the region where mask [N, 1, R, R] is 1 redrawn
        from z_i (and / or caption tokens). A decoder trained for it (`inpaint_channels`, GLIDE's
        way) samples once while reading the kept pixels and the mask (`sample`; resample and eta
        unused); any other by RePaint sampling (`GaussianDiffusion.repaint_sample`; model calls:
        (steps - 1) x resample + 1, each guided). Pixels where mask = 0 are kept exactly."""
        from .edits import composite

        if self.unet.config.inpaint_channels:
            out = self.sample(z_i, text, text_mask, steps=steps, guidance_clip=guidance_clip,
                              guidance_text=guidance_text, generator=generator, progress=progress,
                              inpaint=inpaint_condition(images, mask))
            return composite(out, images, mask)
        fn = self.model_fn(z_i, text, text_mask, guidance_clip, guidance_text)
        x = self.diffusion.repaint_sample(fn, images * 2 - 1, 1 - mask, steps=steps, resample=resample, eta=eta,
                                          generator=generator, clip_x0=1.0, progress=progress)
        return composite(((x + 1) / 2).clamp(0, 1), images, mask)

    def loss(self, images: torch.Tensor, z_i: torch.Tensor, text, text_mask, generator: torch.Generator,
             p_clip: float = 0.1, p_text: float = 0.5) -> torch.Tensor:
        """Training loss on images [N, 3, R, R] in [0, 1] with condition dropout; an inpainting
        decoder also reads the images under random masks (`edits.random_masks`)."""
        keep_clip, keep_text = drop_conditions(z_i, text, generator, p_clip, p_text)
        inpaint = None
        if self.unet.config.inpaint_channels:
            from .edits import random_masks

            mask = random_masks(images.shape[0], images.shape[-1], generator).to(images.device)
            inpaint = inpaint_condition(images, mask)
        fn = lambda x, t: self.unet(x, t, z_i=z_i, text=text, text_mask=text_mask,  # noqa: E731
                                    clip_keep=keep_clip.to(x.device), text_keep=keep_text.to(x.device),
                                    inpaint=inpaint)
        return self.diffusion.training_loss(fn, images * 2 - 1, generator)


class DiffusionUpsampler(_DiffusionModel):
    """A diffusion upsampler P(x_high | x_low): a UNet conditioned on the bicubic-upsampled
    low-resolution image. Images in and out in [0, 1].

    With residual > 0 the diffusion runs on (x_high - bicubic) / residual rather than on
    x_high (as SRDiff does): the model then only has to add the detail bicubic misses, and
    its conditional mean, which is what a one- or two-step DDIM returns, starts from
    bicubic instead of from a blank image. Our 64->128 stage lost to bicubic without it."""

    def __init__(self, unet: UNet, schedule: str = "linear", num_steps: int = 1000, prediction: str = "v",
                 residual: float = 0.0):
        super().__init__(unet, schedule, num_steps, prediction)
        if residual < 0:
            raise ValueError(f"residual scale must be >= 0, got {residual}")
        self.residual = float(residual)

    @staticmethod
    def condition(low_res: torch.Tensor, size: int) -> torch.Tensor:
        """Low-res [N, 3, r, r] in [0, 1] -> bicubic [N, 3, size, size] in [-1, 1]."""
        up = F.interpolate(low_res, size=(size, size), mode="bicubic", align_corners=False)
        return up.clamp(0, 1) * 2 - 1

    @torch.no_grad()
    def sample(self, low_res: torch.Tensor, steps: int = 10, eta: float = 0.0,
               generator: torch.Generator | None = None, x_T: torch.Tensor | None = None,
               progress: bool = False, sampler: str = "ddim") -> torch.Tensor:
        """Upsampled images [N, 3, R, R] in [0, 1] from low_res [N, 3, r, r] in [0, 1]
        (sampler "ddim" or "dpm++"; they agree up to 3 steps, both being first order there)."""
        n, size = low_res.shape[0], self.resolution
        cond = self.condition(low_res, size)
        fn = lambda x, t: self.unet(x, t, low_res=cond)  # noqa: E731
        if x_T is None:
            x_T = torch.randn((n, 3, size, size), generator=generator).to(low_res.device)
        # the residual lies in [-2, 2] (before scaling); the image in [-1, 1]
        bound = 2.0 / self.residual if self.residual else 1.0
        x = self.diffusion.sample(fn, x_T=x_T, steps=steps, sampler=sampler, eta=eta, generator=generator,
                                  clip_x0=bound, progress=progress)
        if self.residual:
            x = cond + self.residual * x
        return ((x + 1) / 2).clamp(0, 1)

    def loss(self, high: torch.Tensor, degraded_low: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """high [N, 3, c, c] crops in [0, 1]; degraded_low [N, 3, c/k, c/k] matching crops."""
        cond = self.condition(degraded_low, high.shape[-1])
        target = high * 2 - 1
        if self.residual:
            target = (target - cond) / self.residual
        return self.diffusion.training_loss(lambda x, t: self.unet(x, t, low_res=cond), target, generator)


# ----------------------------------------------------------------------------- loading

def _unet_from(config: dict, path) -> UNet:
    from .checkpoints import CheckpointError

    try:
        return UNet(UNetConfig(**config["unet"]))
    except (TypeError, KeyError) as err:
        raise CheckpointError(f"{path}: config does not describe a UNet ({err})") from err


def load_decoder(name: str = "shapes") -> DiffusionDecoder:
    """The shipped base decoder ("shapes") or a decoder checkpoint (.safetensors path)."""
    from .checkpoints import load_checkpoint, load_state_into, shipped_path, weights_name

    name = weights_name(name, "decoder")
    path = name if name.endswith(".safetensors") else shipped_path(f"decoder/{name}")
    tensors, config, _ = load_checkpoint(path, "decoder")
    decoder = DiffusionDecoder(_unet_from(config, path), schedule=config.get("schedule", "linear"),
                               prediction=config.get("prediction", "eps"))
    load_state_into(decoder, tensors, str(path))
    return decoder.eval()


def load_upsampler(name: str) -> DiffusionUpsampler:
    """A shipped upsampler stage ("up64", "up128", "emoji_up64") or an upsampler checkpoint path."""
    from .checkpoints import load_checkpoint, load_state_into, shipped_path, weights_name

    name = weights_name(name, "upsampler")
    path = name if name.endswith(".safetensors") else shipped_path(f"upsampler/{name}")
    tensors, config, _ = load_checkpoint(path, "upsampler")
    upsampler = DiffusionUpsampler(_unet_from(config, path), schedule=config.get("schedule", "linear"),
                                   prediction=config.get("prediction", "eps"),
                                   residual=config.get("residual", 0.0))
    load_state_into(upsampler, tensors, str(path))
    return upsampler.eval()
