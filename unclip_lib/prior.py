"""The two priors P(z_i | y) of unCLIP (section 2.2): from a caption to a CLIP image embedding.

Both read the caption twice, as CLIP's per-token text encodings and as the CLIP text
embedding z_t, and both are decoder-only causal transformers.

Diffusion prior: a Gaussian diffusion over z_i (scaled to unit variance per component).
The transformer reads [caption tokens, z_t, timestep embedding, noised z_i, query] and its
output at the final query token predicts the *unnoised* z_i (MSE, x0 prediction). The
caption (tokens and z_t) is dropped 10% of the time for classifier-free guidance. Sampling
draws two candidates per caption and keeps the one with the larger z_i . z_t.

Autoregressive prior: z_i is rotated by PCA and truncated to the leading components that
keep nearly all of the variance; each component is quantised into buckets. The transformer
reads [caption tokens, z_t, a token for the quantised z_i . z_t] and then predicts the
bucket of each component in order of decreasing eigenvalue. At sampling the z_i . z_t
token is set to a high value, as the paper does.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .decoder import timestep_embedding
from .distributed import batch_rand


@dataclass(frozen=True)
class PriorConfig:
    dim: int = 128            # width of z_i and z_t
    text_dim: int = 128       # width of CLIP's per-token caption encodings
    text_len: int = 40        # caption tokens read; our longest caption has 34
    width: int = 256
    layers: int = 4
    heads: int = 8
    # autoregressive prior only: filled in from the PCA fitted on training embeddings
    components: int = 0
    # The paper's 1,024 buckets per component need the paper's data: with 256, our AR prior
    # was still at chance after 500 steps (cross-entropy 5.53 against ln 256 = 5.55, sampled
    # z_i at cosine 0.20 with the truth); with 32 it learns within 150 steps.
    buckets: int = 32


PRIOR_PRESETS = {
    "shapes": PriorConfig(),
    "emoji": PriorConfig(text_len=48),   # the emoji CLIP reads 48 tokens (longer captions with tags)
    "micro": PriorConfig(width=64, layers=2, heads=4, buckets=16),
}


class Block(nn.Module):
    """Pre-norm transformer block with causal self-attention. x: [N, L, W]."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, past: tuple | None = None):
        """x [N, L, W] continuing P earlier tokens whose keys and values are `past`
        ([N, H, P, W/H] each, or None); mask [N or 1, 1, L, P + L]. Returns (x, (k, v)) with
        the keys and values of all P + L tokens."""
        n, length, w = x.shape
        q, k, v = self.qkv(self.ln1(x)).reshape(n, length, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(out.transpose(1, 2).reshape(n, length, w))
        return x + self.mlp(self.ln2(x)), (k, v)


class CausalTransformer(nn.Module):
    """Decoder-only transformer over a sequence of embeddings [N, L, W] -> [N, L, W].
    key_keep [N, L] bool masks padding (caption tokens past the end of the caption).

    Sampling reuses work through `past`, the per-layer keys and values of a sequence's
    first P tokens (returned with return_past=True): causal attention means later tokens
    never change them, so the caption prefix is encoded once per sample, not once per
    denoising step or per code."""

    def __init__(self, width: int, layers: int, heads: int, max_len: int):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(max_len, width) * 0.01)
        self.blocks = nn.ModuleList([Block(width, heads) for _ in range(layers)])
        self.ln = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, key_keep: torch.Tensor | None = None, past: list | None = None,
                return_past: bool = False):
        """x [N, L, W] (tokens P..P+L-1 if past holds P); key_keep [N, P + L]."""
        n, length, _ = x.shape
        start = 0 if past is None else past[0][0].shape[2]
        total = start + length
        causal = torch.ones(length, total, dtype=torch.bool, device=x.device).tril(diagonal=start)
        mask = causal[None, None] if key_keep is None else causal[None, None] & key_keep[:, None, None, :]
        x = x + self.pos[start:total]
        present = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, mask, None if past is None else past[i])
            present.append(kv)
        return (self.ln(x), present) if return_past else self.ln(x)


class _CaptionPrefix(nn.Module):
    """Embeds the caption part of the sequence: CLIP token encodings [N, L, text_dim] and
    z_t [N, dim] -> [N, L + 1, width], with learned nulls used when the caption is dropped."""

    def __init__(self, c: PriorConfig):
        super().__init__()
        self.text_proj = nn.Sequential(nn.LayerNorm(c.text_dim), nn.Linear(c.text_dim, c.width))
        self.z_t_proj = nn.Linear(c.dim, c.width)
        self.null_text = nn.Parameter(torch.randn(c.width) * 0.02)
        self.null_z_t = nn.Parameter(torch.randn(c.width) * 0.02)
        self.text_len = c.text_len

    def forward(self, text, text_mask, z_t, keep):
        """keep [N] bool: False replaces the caption by the nulls (one null token, rest masked)."""
        n = z_t.shape[0]
        if text.shape[1] > self.text_len:
            # CLIP pads to its context length; only real tokens beyond ours are an error
            if bool(text_mask[:, self.text_len:].any()):
                longest = int(text_mask.sum(1).max())
                raise ValueError(f"a caption has {longest} tokens; this prior reads at most {self.text_len}: "
                                 "shorten the caption")
            text, text_mask = text[:, :self.text_len], text_mask[:, :self.text_len]
        tokens = self.text_proj(text)
        tokens = F.pad(tokens, (0, 0, 0, self.text_len - tokens.shape[1]))
        mask = F.pad(text_mask, (0, self.text_len - text_mask.shape[1]), value=False)
        first = torch.where(keep[:, None], tokens[:, 0], self.null_text.expand(n, -1))
        tokens = torch.cat([first[:, None], tokens[:, 1:]], dim=1)
        mask = torch.cat([mask[:, :1] | ~keep[:, None], mask[:, 1:] & keep[:, None]], dim=1)
        z = torch.where(keep[:, None], self.z_t_proj(z_t), self.null_z_t.expand(n, -1))
        return torch.cat([tokens, z[:, None]], dim=1), torch.cat([mask, mask.new_ones(n, 1)], dim=1)


def _check_inputs(c: PriorConfig, text, text_mask, z_t):
    if z_t.dim() != 2 or z_t.shape[1] != c.dim:
        raise ValueError(f"z_t must have shape [N, {c.dim}], got {list(z_t.shape)}")
    if text.dim() != 3 or text.shape[0] != z_t.shape[0] or text.shape[2] != c.text_dim:
        raise ValueError(f"caption encodings must have shape [{z_t.shape[0]}, L, {c.text_dim}], got {list(text.shape)}")
    if text_mask.shape != text.shape[:2]:
        raise ValueError(f"text_mask must have shape {list(text.shape[:2])}, got {list(text_mask.shape)}")


# ----------------------------------------------------------------------------- diffusion prior

class DiffusionPrior(nn.Module):
    """P(z_i | y) as a diffusion over z_i. z_i, z_t: [N, dim], unit length."""

    def __init__(self, config: PriorConfig, schedule: str = "cosine", num_steps: int = 1000):
        super().__init__()
        from .diffusion import GaussianDiffusion

        self.config = c = config
        self.prefix = _CaptionPrefix(c)
        self.time_mlp = nn.Sequential(nn.Linear(c.width, c.width), nn.SiLU(), nn.Linear(c.width, c.width))
        self.x_proj = nn.Linear(c.dim, c.width)
        self.query = nn.Parameter(torch.randn(c.width) * 0.02)
        self.transformer = CausalTransformer(c.width, c.layers, c.heads, c.text_len + 4)
        self.out = nn.Linear(c.width, c.dim)
        self.diffusion = GaussianDiffusion(schedule, num_steps, prediction="x0")
        # unit-length z_i has components of size ~ 1/sqrt(dim): scale to unit variance
        self.scale = math.sqrt(c.dim)

    def forward(self, x_t, t, text, text_mask, z_t, keep=None):
        """Predicted clean (scaled) z_i [N, dim] from noised x_t [N, dim] at steps t [N]."""
        n = x_t.shape[0]
        keep = torch.ones(n, dtype=torch.bool, device=x_t.device) if keep is None else keep
        prefix, mask = self.prefix(text, text_mask, z_t, keep)
        step = self.time_mlp(timestep_embedding(t, self.config.width))
        seq = torch.cat([prefix, step[:, None], self.x_proj(x_t)[:, None], self.query.expand(n, 1, -1)], dim=1)
        mask = torch.cat([mask, mask.new_ones(n, 3)], dim=1)
        return self.out(self.transformer(seq, mask)[:, -1])

    def loss(self, z_i, text, text_mask, z_t, generator: torch.Generator, p_drop: float = 0.1) -> torch.Tensor:
        """MSE between the prediction and the unnoised z_i; caption dropped with prob p_drop."""
        _check_inputs(self.config, text, text_mask, z_t)
        keep = (batch_rand((z_i.shape[0],), generator) >= p_drop).to(z_i.device)
        fn = lambda x, t: self(x, t, text, text_mask, z_t, keep)  # noqa: E731
        return self.diffusion.training_loss(fn, z_i * self.scale, generator)

    def encode_prefix(self, text, text_mask, z_t, keep) -> tuple[list, torch.Tensor]:
        """The caption prefix's per-layer keys/values and its key mask [N, L + 1]."""
        prefix, mask = self.prefix(text, text_mask, z_t, keep)
        _, past = self.transformer(prefix, mask, return_past=True)
        return past, mask

    def denoise(self, x_t, t, past, prefix_mask):
        """forward() for an encoded prefix (encode_prefix): x_t [N, dim], t [N] -> [N, dim]."""
        n = x_t.shape[0]
        step = self.time_mlp(timestep_embedding(t, self.config.width))
        seq = torch.stack([step, self.x_proj(x_t), self.query.expand(n, -1)], dim=1)
        mask = torch.cat([prefix_mask, prefix_mask.new_ones(n, 3)], dim=1)
        return self.out(self.transformer(seq, mask, past=past)[:, -1])

    @torch.no_grad()
    def sample(self, text, text_mask, z_t, steps: int = 64, guidance: float = 2.0, candidates: int = 2,
               generator: torch.Generator | None = None, eta: float = 0.0, sampler: str = "ddim") -> torch.Tensor:
        """z_i [N, dim], unit length: `candidates` draws per caption, keeping the one with the
        largest z_i . z_t (the paper's best-of-2). sampler: "ddim" or "dpm++" (eta 0)."""
        c = self.config
        _check_inputs(c, text, text_mask, z_t)
        n = z_t.shape[0]
        rep = lambda x: x.repeat_interleave(candidates, dim=0)  # noqa: E731
        text_r, mask_r, z_t_r = rep(text), rep(text_mask), rep(z_t)
        m = n * candidates
        guided = guidance != 1.0
        two = (lambda x: torch.cat([x, x])) if guided else (lambda x: x)  # noqa: E731
        keep = torch.cat([torch.ones(m, dtype=torch.bool), torch.zeros(m, dtype=torch.bool)]) if guided else \
            torch.ones(m, dtype=torch.bool)
        past, prefix_mask = self.encode_prefix(two(text_r), two(mask_r), two(z_t_r), keep.to(z_t.device))

        def fn(x, t):
            out = self.denoise(two(x), two(t), past, prefix_mask)
            if not guided:
                return out
            cond, uncond = out.chunk(2)
            return uncond + guidance * (cond - uncond)

        x_T = torch.randn((m, c.dim), generator=generator).to(z_t.device)
        z = F.normalize(self.diffusion.sample(fn, x_T=x_T, steps=steps, sampler=sampler, eta=eta,
                                              generator=generator), dim=-1)
        return best_of(z.view(n, candidates, c.dim), z_t)


def best_of(candidates: torch.Tensor, z_t: torch.Tensor) -> torch.Tensor:
    """candidates [N, C, dim], z_t [N, dim] -> the candidate with the largest dot with z_t [N, dim]."""
    best = (candidates * z_t[:, None]).sum(-1).argmax(dim=1)
    return candidates[torch.arange(candidates.shape[0]), best]


# ----------------------------------------------------------------------------- autoregressive prior

class PCAQuantizer(nn.Module):
    """PCA rotation + per-component quantile buckets, fitted on training embeddings.

    encode: z [N, dim] -> bucket ids [N, K];  decode: ids [N, K] -> z [N, dim] (unit length).
    Also quantises z_i . z_t into the same number of buckets."""

    def __init__(self, dim: int, components: int, buckets: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("basis", torch.zeros(components, dim))        # rows: eigenvectors
        self.register_buffer("explained", torch.zeros(components))          # variance ratio each
        self.register_buffer("edges", torch.zeros(components, buckets - 1))  # inner bucket edges
        self.register_buffer("centres", torch.zeros(components, buckets))
        self.register_buffer("dot_edges", torch.zeros(buckets - 1))

    @classmethod
    def fit(cls, z_i: torch.Tensor, z_t: torch.Tensor, buckets: int, keep_variance: float = 0.99,
            max_components: int | None = None) -> "PCAQuantizer":
        """z_i, z_t [N, dim]. Keeps the fewest leading components explaining keep_variance."""
        z = z_i.double()
        mean = z.mean(0)
        _, s, vh = torch.linalg.svd(z - mean, full_matrices=False)
        ratio = s ** 2 / (s ** 2).sum()
        k = int((ratio.cumsum(0) < keep_variance).sum()) + 1
        k = min(k, max_components or k)
        q = cls(z.shape[1], k, buckets)
        q.mean.copy_(mean.float())
        q.basis.copy_(vh[:k].float())
        q.explained.copy_(ratio[:k].float())
        coords = (z - mean) @ vh[:k].T                                         # [N, K]
        probs = torch.linspace(0, 1, buckets + 1, dtype=torch.float64)
        qs = torch.quantile(coords, probs, dim=0).T                             # [K, B + 1]
        q.edges.copy_(qs[:, 1:-1].float())
        q.centres.copy_(((qs[:, :-1] + qs[:, 1:]) / 2).float())
        dots = (z_i * z_t).sum(-1).double()
        q.dot_edges.copy_(torch.quantile(dots, probs[1:-1]).float())
        return q

    @property
    def components(self) -> int:
        return self.basis.shape[0]

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        coords = (z - self.mean) @ self.basis.T                                 # [N, K]
        return torch.stack([torch.bucketize(coords[:, k].contiguous(), self.edges[k])
                            for k in range(self.components)], dim=1)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        coords = torch.gather(self.centres.expand(ids.shape[0], -1, -1), 2, ids[..., None])[..., 0]
        return F.normalize(self.mean + coords @ self.basis, dim=-1)

    def dot_bucket(self, dots: torch.Tensor) -> torch.Tensor:
        return torch.bucketize(dots.contiguous(), self.dot_edges)


class AutoregressivePrior(nn.Module):
    """P(z_i | y) as a sequence of quantised PCA coordinates predicted in order of decreasing
    eigenvalue. z_i, z_t: [N, dim], unit length."""

    def __init__(self, config: PriorConfig, quantizer: PCAQuantizer | None = None):
        super().__init__()
        if quantizer is None:
            if not config.components:
                raise ValueError("an autoregressive prior needs a fitted PCAQuantizer or config.components")
            quantizer = PCAQuantizer(config.dim, config.components, config.buckets)
        self.quantizer = quantizer
        self.config = c = PriorConfig(**{**asdict(config), "components": quantizer.components})
        self.prefix = _CaptionPrefix(c)
        self.dot_embed = nn.Embedding(c.buckets, c.width)
        self.code_embed = nn.Embedding(c.components * c.buckets, c.width)  # one table per component
        self.transformer = CausalTransformer(c.width, c.layers, c.heads, c.text_len + 2 + c.components)
        self.head = nn.Linear(c.width, c.buckets)

    def logits(self, ids, dot_ids, text, text_mask, z_t, keep=None):
        """Logits [N, k + 1, buckets] for components 1..k+1 given the first k ids [N, k]."""
        n, k = ids.shape
        keep = torch.ones(n, dtype=torch.bool, device=z_t.device) if keep is None else keep
        prefix, mask = self.prefix(text, text_mask, z_t, keep)
        offsets = torch.arange(k, device=ids.device) * self.config.buckets
        seq = torch.cat([prefix, self.dot_embed(dot_ids)[:, None], self.code_embed(ids + offsets)], dim=1)
        mask = torch.cat([mask, mask.new_ones(n, 1 + k)], dim=1)
        h = self.transformer(seq, mask)
        return self.head(h[:, prefix.shape[1]:])                               # from the dot token on

    def loss(self, z_i, text, text_mask, z_t, generator: torch.Generator, p_drop: float = 0.1) -> torch.Tensor:
        """Cross-entropy of every component's bucket (teacher forcing)."""
        _check_inputs(self.config, text, text_mask, z_t)
        ids = self.quantizer.encode(z_i)
        dot_ids = self.quantizer.dot_bucket((z_i * z_t).sum(-1))
        keep = (batch_rand((z_i.shape[0],), generator) >= p_drop).to(z_i.device)
        logits = self.logits(ids[:, :-1], dot_ids, text, text_mask, z_t, keep)
        return F.cross_entropy(logits.reshape(-1, self.config.buckets), ids.reshape(-1))

    @torch.no_grad()
    def sample(self, text, text_mask, z_t, guidance: float = 2.0, temperature: float = 1.0,
               dot_quantile: float = 0.9, generator: torch.Generator | None = None) -> torch.Tensor:
        """z_i [N, dim], unit length. The z_i . z_t token is set to the bucket holding the
        `dot_quantile` quantile of the training set's dot products (a high value)."""
        c = self.config
        _check_inputs(c, text, text_mask, z_t)
        n = z_t.shape[0]
        dot_ids = torch.full((n,), min(int(dot_quantile * c.buckets), c.buckets - 1), dtype=torch.long,
                             device=z_t.device)
        guided = guidance != 1.0
        two = (lambda x: torch.cat([x, x])) if guided else (lambda x: x)  # noqa: E731
        keep = torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)]) if guided else \
            torch.ones(n, dtype=torch.bool)
        prefix, mask = self.prefix(two(text), two(text_mask), two(z_t), keep.to(z_t.device))
        seq = torch.cat([prefix, self.dot_embed(two(dot_ids))[:, None]], dim=1)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        h, past = self.transformer(seq, mask, return_past=True)
        ids = []
        for k in range(c.components):
            logits = self.head(h[:, -1])
            if guided:
                cond, uncond = logits.chunk(2)
                logits = uncond + guidance * (cond - uncond)
            probs = (logits / temperature).softmax(-1)
            ids.append(torch.multinomial(probs, 1, generator=generator)[:, 0])
            if k + 1 < c.components:
                token = self.code_embed(two(ids[-1] + k * c.buckets))[:, None]
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
                h, past = self.transformer(token, mask, past=past, return_past=True)
        return self.quantizer.decode(torch.stack(ids, dim=1))


# ----------------------------------------------------------------------------- loading

def load_prior(name: str = "diffusion") -> DiffusionPrior | AutoregressivePrior:
    """A shipped prior ("diffusion", "autoregressive") or a prior checkpoint (.safetensors path)."""
    from .checkpoints import CheckpointError, load_checkpoint, load_state_into, shipped_path, weights_name

    name = weights_name(name, "prior")
    path = name if name.endswith(".safetensors") else shipped_path(f"prior/{name}")
    tensors, config, _ = load_checkpoint(path, "prior")
    try:
        pc, kind = PriorConfig(**config["prior"]), config["kind"]
    except (TypeError, KeyError) as err:
        raise CheckpointError(f"{path}: config does not describe a prior ({err})") from err
    prior = DiffusionPrior(pc) if kind == "diffusion" else AutoregressivePrior(pc)
    load_state_into(prior, tensors, str(path))
    return prior.eval()
