"""Degradations of the upsamplers' low-resolution inputs (conditioning augmentation).

unCLIP trains its first upsampler on low-res inputs corrupted by Gaussian blur, and its
second on a more diverse BSR-style mix (blur, noise, resizing, JPEG compression), so that
at sampling time they forgive the artefacts of the stage before them.

All functions take images [N, 3, H, W] in [0, 1] and a torch.Generator, and return the
same shape.
"""
from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def _kernel(sigma: float, radius: int) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / max(sigma, 1e-3)) ** 2)
    return k / k.sum()


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma (pixels). images [N, 3, H, W]."""
    n = images.shape[0]
    sigmas = torch.as_tensor(sigma, dtype=torch.float32).expand(n)
    out = torch.empty_like(images)
    for i in range(n):
        s = float(sigmas[i])
        if s <= 0.05:
            out[i] = images[i]
            continue
        r = max(1, int(3 * s + 0.5))
        k = _kernel(s, r)
        x = F.pad(images[i:i + 1], (r, r, r, r), mode="reflect")
        x = F.conv2d(x, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
        x = F.conv2d(x, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
        out[i] = x[0]
    return out


def blur_degrade(images: torch.Tensor, generator: torch.Generator,
                 sigma_range: tuple[float, float] = (0.4, 0.6)) -> torch.Tensor:
    """First-stage degradation: Gaussian blur with sigma drawn per image."""
    lo, hi = sigma_range
    sigma = lo + (hi - lo) * torch.rand(images.shape[0], generator=generator)
    return gaussian_blur(images, sigma)


def jpeg(images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG round trip at a per-image quality (PIL)."""
    out = []
    for img, q in zip(images, quality.tolist()):
        arr = (img.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=int(q))
        buf.seek(0)
        out.append(torch.from_numpy(np.array(Image.open(buf).convert("RGB"))).permute(2, 0, 1))
    return torch.stack(out).float() / 255


def bsr_degrade(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Second-stage degradation, a BSR-like random mix applied in random order:
    blur (p=0.7), down-and-up resize (p=0.5), Gaussian noise (p=0.5), JPEG (p=0.5)."""
    n, _, h, w = images.shape
    x = images
    ops = torch.randperm(4, generator=generator).tolist()
    u = lambda: torch.rand(n, generator=generator)  # noqa: E731
    for op in ops:
        if op == 0:
            use = u() < 0.7
            sigma = torch.where(use, 0.3 + 0.9 * u(), torch.zeros(n))
            x = gaussian_blur(x, sigma)
        elif op == 1:
            use = u() < 0.5
            scale = float(0.5 + 0.4 * torch.rand(1, generator=generator))
            small = F.interpolate(x, scale_factor=scale, mode="bilinear", antialias=True, align_corners=False)
            back = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
            x = torch.where(use[:, None, None, None], back, x)
        elif op == 2:
            use = (u() < 0.5).float()[:, None, None, None]
            sigma = (0.01 + 0.04 * u())[:, None, None, None]
            x = x + use * sigma * torch.randn(x.shape, generator=generator)
        else:
            use = u() < 0.5
            q = (30 + 60 * u()).round()
            compressed = jpeg(x.clamp(0, 1), q)
            x = torch.where(use[:, None, None, None], compressed, x)
    return x.clamp(0, 1)
